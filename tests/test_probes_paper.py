"""The ``paper`` protocol equals a plain re-implementation of the reference code (Rodgers 2025).

The re-implementation below follows the reference notebook line by line:
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
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_score, recall_score
from sklearn.model_selection import ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer
from threadpoolctl import threadpool_limits

from palaeo_ssl import Embeddings
from palaeo_ssl.probes import run_cross_validation, run_few_shot

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rodgers2025"
METRICS = ["top1_accuracy", "top2_accuracy", "top3_accuracy", "f1_macro", "f1_weighted", "precision_macro",
           "recall_macro", "specificity_macro", "balanced_accuracy"]


# ---------------------------------------------------------------------- the plain re-implementation
def _folds(y, random_state, max_splits=5):
    idx = np.arange(len(y))
    if np.unique(y, return_counts=True)[1].min() >= max_splits:
        return list(StratifiedKFold(n_splits=max_splits, shuffle=True, random_state=random_state).split(idx, y))
    try:
        return list(StratifiedShuffleSplit(n_splits=max_splits, test_size=0.2, random_state=random_state).split(idx, y))
    except ValueError:
        return list(ShuffleSplit(n_splits=max_splits, test_size=0.2, random_state=random_state).split(idx))


def _top_k(y_true, y_probas, k, classes):
    if k >= y_probas.shape[1]:
        return np.nan
    class_to_idx = {c: i for i, c in enumerate(classes)}
    y_idx = np.array([class_to_idx.get(v, -1) for v in y_true])
    valid = y_idx != -1
    if not valid.any():
        return np.nan
    top = np.argpartition(y_probas, -k, axis=1)[:, -k:]
    return np.mean(np.any(top[valid] == y_idx[valid][:, None], axis=1))


def _classifiers(k=5):
    return {
        "k-Nearest Neighbours": Pipeline([("normalize", Normalizer(norm="l2")),
                                          ("knn", KNeighborsClassifier(n_neighbors=k, metric="cosine"))]),
        "Logistic Regression": LogisticRegression(random_state=42, max_iter=1000, class_weight="balanced"),
    }


def _fold_metrics(clf, y_val, p, spec_labels):
    y_pred = clf.classes_[np.argmax(p, axis=1)]
    cm = confusion_matrix(y_val, y_pred, labels=spec_labels)
    tn = cm.sum() - (cm.sum(axis=1) + cm.sum(axis=0) - np.diag(cm))
    fp = cm.sum(axis=0) - np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    return {
        "top1_accuracy": _top_k(y_val, p, 1, clf.classes_),
        "top2_accuracy": _top_k(y_val, p, 2, clf.classes_),
        "top3_accuracy": _top_k(y_val, p, 3, clf.classes_),
        "f1_macro": f1_score(y_val, y_pred, average="macro", zero_division=0),
        "f1_weighted": f1_score(y_val, y_pred, average="weighted", zero_division=0),
        "precision_macro": precision_score(y_val, y_pred, average="macro", zero_division=0),
        "recall_macro": recall_score(y_val, y_pred, average="macro", zero_division=0),
        "specificity_macro": np.nanmean(spec),
        "balanced_accuracy": balanced_accuracy_score(y_val, y_pred),
    }


def plain_cross_validation(features, labels, n_repeats=10, train_sizes=(0.1, 0.3, 0.5, 0.7, 1),
                           names=("k-Nearest Neighbours", "Logistic Regression")):
    rows = []
    n_classes = len(np.unique(labels))
    for frac in train_sizes:
        if frac < 1.0 and int(np.ceil(frac * len(labels))) < n_classes:
            continue
        for r in range(n_repeats):
            if frac < 1.0:
                xs, _, ys, _ = train_test_split(features, labels, train_size=frac, stratify=labels,
                                                random_state=42 + r, shuffle=True)
            else:
                xs, ys = np.array(features), np.array(labels)
            folds = _folds(ys, 42 + r)
            for name, clf in _classifiers().items():
                if name not in names:
                    continue
                for tr, va in folds:
                    if len(np.unique(ys[tr])) < n_classes:
                        continue
                    clf.fit(xs[tr], ys[tr])
                    row = _fold_metrics(clf, ys[va], clf.predict_proba(xs[va]), clf.classes_)
                    row.update(train_fraction=frac, repeat=r, classifier=name)
                    rows.append(row)
    df = pd.DataFrame(rows)
    spec = {"n_folds_used": ("top1_accuracy", "count")}
    for m in METRICS:
        spec[f"mean_{m}"] = (m, "mean")
        spec[f"std_{m}"] = (m, "std")
    return df.groupby(["train_fraction", "classifier"]).agg(**spec).reset_index()


def plain_few_shot(features, labels, shots, n_repeats, seed=0):
    out = []
    for k in shots:
        for name, clf in _classifiers(min(5, k)).items():
            per = {m: [] for m in METRICS}
            for e in range(n_repeats):
                rng = np.random.default_rng([seed, k, e])
                train = []
                for c in np.unique(labels):
                    members = np.where(labels == c)[0]
                    train.extend(rng.choice(members, size=min(k, len(members) - 1), replace=False))
                train = np.array(train)
                test = np.setdiff1d(np.arange(len(labels)), train)
                clf.fit(features[train], labels[train])
                p = clf.predict_proba(features[test])
                y_pred = clf.classes_[np.argmax(p, axis=1)]
                present = np.unique(np.concatenate([labels[test], y_pred]))
                for m, v in _fold_metrics(clf, labels[test], p, present).items():
                    per[m].append(v)
            row = {"few_shot_values": k, "classifier": name, "n_repeats_successful": n_repeats}
            for m in METRICS:
                mean, std = np.nanmean(per[m]), np.nanstd(per[m])
                if m.startswith("top"):
                    row[f"mean_{m}"], row[f"std_{m}"] = mean, std
                else:
                    row[m], row[f"{m}_std"] = mean, std
            out.append(row)
    return pd.DataFrame(out)


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
    expected = plain_cross_validation(x, y, n_repeats=3)
    got = run_cross_validation(emb, protocol="paper", n_repeats=3, n_jobs=1)
    _assert_same(expected, got.table)
    assert sorted(set(got.table["train_fraction"])) == [0.1, 0.3, 0.5, 0.7, 1.0]
    assert (got.table.loc[got.table["train_fraction"] >= 0.5, "n_folds_used"] == 15).all()


def test_paper_cross_validation_equals_plain_reference_with_skipped_folds():
    # a 3-image class: small subsamples fall back to StratifiedShuffleSplit / ShuffleSplit and
    # many folds lose the class from their training part; the whole 0.1 fraction goes
    x, y, emb = _data([40, 30, 12, 6, 3], d=17, sep=0.8, seed=1)
    expected = plain_cross_validation(x, y, n_repeats=4)
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
    expected = plain_few_shot(x, y, shots, n_repeats=6)
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
    expected = plain_cross_validation(x, y, n_repeats=2, names=("k-Nearest Neighbours",))
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
