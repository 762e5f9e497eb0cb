"""The ``paper`` protocol equals a plain re-implementation of the reference code (Rodgers 2025).

The re-implementation (``palaeo_ssl.testing.rodgers2025_cross_validation`` and
``rodgers2025_few_shot``) follows the reference notebook line by line:
scikit-learn's ``Normalizer + KNeighborsClassifier(metric="cosine")`` pipeline
and ``LogisticRegression``, one fit after another, scikit-learn's metric
functions, the reference's top-k and specificity code and its pandas
aggregation. Only the few-shot episodes are drawn from the documented seeded
generator (the reference's were unseeded), so both sides see the same episodes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from palaeo_ssl import Embeddings
from palaeo_ssl.probes import run_cross_validation, run_few_shot
from palaeo_ssl.testing import rodgers2025_cross_validation, rodgers2025_few_shot

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rodgers2025"


def _data(counts, d, sep, seed):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(k, i) for i, k in enumerate(counts)])
    x = (rng.normal(size=(len(counts), d))[y] * sep + rng.normal(size=(len(y), d)) + 0.5).astype(np.float32)
    return x, y, Embeddings(x, [f"{i}.tif" for i in range(len(y))], y, [f"taxon {i}" for i in range(len(counts))])


def _assert_same(expected: pd.DataFrame, got: pd.DataFrame):
    assert list(got.columns) == list(expected.columns)
    assert got.shape == expected.shape
    assert got["classifier"].tolist() == expected["classifier"].tolist()
    num = expected.select_dtypes("number").columns
    a = expected[num].to_numpy(dtype=float)
    b = got[num].to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(b[~np.isnan(b)], a[~np.isnan(a)], rtol=0, atol=1e-9)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------- tests
def test_paper_cross_validation_equals_plain_reference():
    x, y, emb = _data([60, 48, 42, 30], d=19, sep=0.9, seed=0)
    expected = rodgers2025_cross_validation(x, y, n_repeats=3)
    got = run_cross_validation(emb, protocol="paper", n_repeats=3, n_jobs=1)
    _assert_same(expected, got.table)
    assert sorted(set(got.table["train_fraction"])) == [0.1, 0.3, 0.5, 0.7, 1.0]
    assert (got.table.loc[got.table["train_fraction"] >= 0.5, "n_folds_used"] == 15).all()


def test_paper_cross_validation_equals_plain_reference_with_skipped_folds():
    # a 3-image class: small subsamples fall back to StratifiedShuffleSplit / ShuffleSplit and
    # many folds lose the class from their training part; the whole 0.1 fraction goes
    x, y, emb = _data([40, 30, 12, 6, 3], d=17, sep=0.8, seed=1)
    expected = rodgers2025_cross_validation(x, y, n_repeats=4)
    got = run_cross_validation(emb, protocol="paper", n_repeats=4, n_jobs=1)
    _assert_same(expected, got.table)
    assert got.table["n_folds_used"].min() < 20  # some folds were skipped ...
    assert 0.1 not in set(got.table["train_fraction"])  # ... all of them at 0.1
    skipped_folds = got.skipped.dropna(subset=["fold"])
    used = got.table.groupby("train_fraction")["n_folds_used"].first()
    per_fraction = skipped_folds.groupby("train_fraction").size().reindex(used.index, fill_value=0)
    assert ((used + per_fraction) == 20).all()  # used + skipped = repeats x folds
    assert skipped_folds["reason"].str.contains("taxon 4").all()


def test_paper_few_shot_equals_plain_reference():
    x, y, emb = _data([30, 25, 12, 8, 2], d=23, sep=0.8, seed=2)
    shots = (1, 2, 5, 20)
    expected = rodgers2025_few_shot(x, y, shots, episodes=6)
    got = run_few_shot(emb, protocol="paper", shots=shots, episodes=6, n_jobs=1)
    _assert_same(expected, got.table)


def test_paper_knn_from_shared_candidates_equals_plain_reference(monkeypatch):
    # large enough for the shared nearest-neighbour candidates; duplicated images make exact ties,
    # whose rows are recomputed in a padded block (large folds) or with the whole fold (small ones)
    import palaeo_ssl.probes.engine as engine

    x, y, emb = _data([700, 600, 500, 400, 300, 200], d=64, sep=0.5, seed=5)
    x[10:20] = x[0:10]
    emb.features[10:20] = emb.features[0:10]
    calls = []
    original = engine.candidate_votes

    def counting(*args, **kwargs):
        proba, resolved = original(*args, **kwargs)
        calls.append((len(resolved), int((~resolved).sum())))
        return proba, resolved

    monkeypatch.setattr(engine, "candidate_votes", counting)
    expected = rodgers2025_cross_validation(x, y, n_repeats=2, classifiers=("k-Nearest Neighbours",))
    got = run_cross_validation(emb, protocol="paper", probes="knn", n_repeats=2, n_jobs=1)
    _assert_same(expected, got.table)
    assert sum(bad == 0 for _, bad in calls) >= 5                      # folds answered from the candidates
    assert any(0 < bad and n >= 512 and bad <= n // 4 for n, bad in calls)  # a few rows recomputed in a block


def test_paper_two_classes_has_no_top2_top3():
    x, y, emb = _data([30, 25], d=8, sep=1.0, seed=3)
    t = run_cross_validation(emb, protocol="paper", n_repeats=1, fractions=(1.0,), n_jobs=1).table
    assert t["mean_top2_accuracy"].isna().all() and t["mean_top3_accuracy"].isna().all()
    assert t["mean_top1_accuracy"].notna().all()


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/reference is not present")
def test_paper_columns_equal_the_published_tables():
    x, y, emb = _data([20, 20, 20], d=8, sep=1.0, seed=4)
    cv = run_cross_validation(emb, protocol="paper", n_repeats=1, n_jobs=1).table
    fs = run_few_shot(emb, protocol="paper", shots=(1, 2), episodes=2, n_jobs=1).table
    for folder in sorted(REFERENCE.iterdir()):
        ref_cv = pd.read_csv(folder / "classification_cv_results.csv")
        ref_fs = pd.read_csv(folder / "few_shot_cv_results.csv")
        assert list(cv.columns) == list(ref_cv.columns), folder.name
        assert list(fs.columns) == list(ref_fs.columns), folder.name
        assert set(cv["classifier"]) == set(ref_cv["classifier"])
        # row layout: fractions ascending, Logistic Regression before k-Nearest Neighbours; few-shot kNN first
        assert ref_cv["classifier"].tolist()[:2] == cv["classifier"].tolist()[:2]
        assert ref_fs["classifier"].tolist()[:2] == fs["classifier"].tolist()[:2]
