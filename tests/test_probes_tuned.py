"""The standard protocol's tuned logistic regression, the training-size limit and the torch device path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from palaeo_ssl import Embeddings
from palaeo_ssl.params import ParameterError
from palaeo_ssl.probes import run_cross_validation
from palaeo_ssl.probes.classifiers import C_GRID, KNNProbe, cv_search_logreg, fit_quietly, resolve_device
from palaeo_ssl.probes.engine import RANKED, Task, run_task
from palaeo_ssl.probes.splits import standard_splits
from palaeo_ssl.probes.tuned_logreg import TunedLogisticRegression
from palaeo_ssl.protocol import get_protocol


def _correlated(n_per=30, n_classes=6, d=24, seed=0):
    """Class clusters mixed by an ill-conditioned random matrix (strongly correlated features)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    z = rng.normal(size=(n_classes, d))[y] * 0.8 + rng.normal(size=(len(y), d))
    mix = rng.normal(size=(d, d)) * (0.7 ** np.arange(d))[:, None] + np.eye(d) * 0.05
    X = (z @ mix + 3.0).astype(np.float32)
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


def _digits(n=900):
    X, y = load_digits(return_X_y=True)
    return X[:n].astype(np.float32), y[:n]


def test_same_minimiser_as_scikit_learn_at_a_fixed_c():
    # preconditioning changes the coordinates, not the function: the optimum is scikit-learn's
    X, y = _correlated()
    X = X.astype(np.float64)  # float64 products on both sides, so both can reach a tight tolerance
    ours = TunedLogisticRegression(Cs=(0.3,), tol=1e-9).fit(X, y)
    ref = Pipeline([("s", StandardScaler()), ("lr", LogisticRegression(C=0.3, class_weight="balanced", tol=1e-10,
                                                                        max_iter=10000))]).fit(X, y)
    assert ours.C_ == 0.3
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("data", [_correlated, _digits])
def test_chooses_the_c_of_logistic_regression_cv(data):
    X, y = data()
    tr, te = np.arange(0, len(y), 2), np.arange(1, len(y), 2)
    ref = fit_quietly(cv_search_logreg(y[tr], seed=3), X[tr], y[tr])
    ours = TunedLogisticRegression(Cs=C_GRID, patience=0, random_state=3).fit(X[tr], y[tr])
    ref_scores = np.asarray(ref[-1].scores_).reshape(-1, len(C_GRID)).mean(axis=0)
    # the same inner folds and objective: the same inner scores (both stop at a gradient of 1e-4)
    np.testing.assert_allclose(ours.scores_, ref_scores, atol=0.02)
    assert ours.C_ == float(np.ravel(ref[-1].C_)[0])
    assert abs(np.mean(ours.predict(X[te]) == y[te]) - np.mean(ref.predict(X[te]) == y[te])) <= 0.02


def test_grid_stops_after_patience_without_changing_a_unimodal_choice():
    X, y = _correlated(seed=1)
    full = TunedLogisticRegression(patience=0).fit(X, y)
    short = TunedLogisticRegression(patience=2).fit(X, y)
    best = int(np.nanargmax(full.scores_))
    assert short.C_ == full.C_
    # it searched at most two values past the best and left the rest
    assert np.isnan(short.scores_[best + 3:]).all() and np.isfinite(short.scores_[: best + 1]).all()
    assert short.n_iter_search_ <= full.n_iter_search_


def test_one_image_per_class_uses_c_one():
    X, y = _correlated(n_per=1, n_classes=5)
    model = TunedLogisticRegression().fit(X, y)
    assert model.C_ == 1.0 and np.isnan(model.scores_).all()
    np.testing.assert_array_equal(model.predict(X), y)


def test_the_tuned_fit_sees_only_the_training_split(monkeypatch):
    # the first column holds each row's index: every row any fit sees must be a training row
    X, y = _correlated()
    X = np.column_stack([np.arange(len(y), dtype=np.float32), X])
    seen: list[np.ndarray] = []
    original = TunedLogisticRegression.fit

    def spy(self, Xf, yf):
        seen.append(np.asarray(Xf)[:, 0].astype(int))
        return original(self, Xf, yf)

    monkeypatch.setattr(TunedLogisticRegression, "fit", spy)
    split = standard_splits(y, None, 5, 1, 0, fractions=(1.0,))[0]
    task = Task(probe="logreg", protocol=get_protocol("standard"), subsets=[split.subsets[1.0]],
                keys=[{"train_fraction": 1.0}], test=split.test, metric_mode=RANKED, n_classes_eval=6)
    row = run_task(task, X, y)[0]
    assert len(seen) == 1 and np.array_equal(np.sort(seen[0]), split.subsets[1.0])
    assert not np.intersect1d(seen[0], split.test).size
    assert 0.0 <= row["top1_accuracy"] <= 1.0


# ---------------------------------------------------------------------- the size limit
def test_subsample_is_stratified_seeded_and_leaves_the_test_fold():
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=2000, p=[0.4, 0.3, 0.2, 0.1])
    a = standard_splits(y, None, 5, 1, 7, fractions=(0.5, 1.0), max_train=300)
    b = standard_splits(y, None, 5, 1, 7, fractions=(0.5, 1.0), max_train=300)
    c = standard_splits(y, None, 5, 1, 8, fractions=(0.5, 1.0), max_train=300)
    free = standard_splits(y, None, 5, 1, 7, fractions=(0.5, 1.0))
    for sa, sb, sc, sf in zip(a, b, c, free):
        sub = sa.subsets[1.0]
        assert len(sub) == 300 and sa.available[1.0] == len(sf.subsets[1.0]) == 1600
        assert np.array_equal(sub, sb.subsets[1.0]) and not np.array_equal(sub, sc.subsets[1.0])
        assert np.isin(sub, sf.train).all() and np.array_equal(sa.test, sf.test)
        # stratified: each class within one image of its share of the training fold
        share = np.bincount(y[sf.train], minlength=4) / len(sf.train)
        assert np.all(np.abs(np.bincount(y[sub], minlength=4) - 300 * share) <= 1.5)


def _emb(X, y):
    return Embeddings(X, [f"{i}.png" for i in range(len(y))], y, [f"taxon_{c}" for c in range(int(y.max()) + 1)])


def test_cross_validation_reports_the_subsample():
    X, y = _correlated(n_per=40, n_classes=4)
    cv = run_cross_validation(_emb(X, y), protocol="standard", probes="logreg,centroid", n_repeats=1,
                              fractions=(0.3, 0.7, 1.0), n_jobs=1, max_train=60, device=None)
    folds = cv.folds
    assert folds["n_train"].max() == 60 and (folds["n_train_available"] >= folds["n_train"]).all()
    table = cv.table
    assert set(table["max_train_images"]) == {60}
    row = table[(table["train_fraction"] == 1.0) & (table["classifier"] == "Logistic Regression")].iloc[0]
    assert row["mean_n_train"] == 60 and row["mean_n_train_available"] == 128
    assert cv.subsample["max_train_images"] == 60 and cv.subsample["fractions_subsampled"] == [0.7, 1.0]
    assert "stratified subsample of 60" in cv.protocol.cv_caption and cv.protocol.name == "standard"
    # fractions above the limit hold the same images: the same numbers, fitted once
    lr = folds[folds["classifier"] == "Logistic Regression"].set_index(["fold", "train_fraction"])
    for fold in range(5):
        assert lr.loc[(fold, 0.7), "top1_accuracy"] == lr.loc[(fold, 1.0), "top1_accuracy"]
    # the confusion matrix counts each test image once
    assert cv.confusion["Logistic Regression"].sum() == len(y)
    free = run_cross_validation(_emb(X, y), protocol="standard", probes="centroid", n_repeats=1, n_jobs=1,
                                fractions=(1.0,), max_train=None)
    assert free.subsample["n_fits_subsampled"] == 0 and "subsample" not in free.protocol.cv_caption


def test_paper_protocol_refuses_a_size_limit():
    X, y = _correlated(n_per=10, n_classes=3)
    with pytest.raises(ParameterError, match="max_train"):
        run_cross_validation(_emb(X, y), protocol="paper", max_train=10, n_repeats=1, n_jobs=1)


# ---------------------------------------------------------------------- the torch path
def test_resolve_device():
    assert resolve_device(None) is None and resolve_device("numpy") is None
    assert resolve_device("cpu") == "cpu"
    torch = pytest.importorskip("torch")
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else None)
    with pytest.raises(ParameterError, match="device"):
        resolve_device("warp-drive")


def test_torch_logistic_regression_equals_numpy_on_cpu():
    pytest.importorskip("torch")
    X, y = _correlated(n_per=20, n_classes=4, d=12)
    X = X.astype(np.float64)  # the torch path computes in float64; numpy does for float64 features
    # to a tight tolerance both reach the one minimiser
    a = TunedLogisticRegression(Cs=(0.1, 1.0, 10.0), tol=1e-8).fit(X, y)
    b = TunedLogisticRegression(Cs=(0.1, 1.0, 10.0), tol=1e-8, device="cpu").fit(X, y)
    assert a.C_ == b.C_
    np.testing.assert_allclose(a.scores_, b.scores_, atol=1e-9)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-5)
    # at the protocol's tolerance (1e-4 on the gradient): the same choice and predictions
    a = TunedLogisticRegression(Cs=(0.1, 1.0, 10.0)).fit(X, y)
    b = TunedLogisticRegression(Cs=(0.1, 1.0, 10.0), device="cpu").fit(X, y)
    assert a.C_ == b.C_ and np.mean(a.predict(X) == b.predict(X)) >= 0.98
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=0.02)


def test_torch_knn_equals_numpy_on_cpu():
    pytest.importorskip("torch")
    X, y = _correlated(n_per=25, n_classes=5)
    a = KNNProbe().fit(X[:100], y[:100])
    b = KNNProbe(device="cpu").fit(X[:100], y[:100])
    np.testing.assert_allclose(a.predict_proba(X[100:]), b.predict_proba(X[100:]), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(a.rank(X[100:]), b.rank(X[100:]))


@pytest.mark.slow
def test_cross_validation_on_the_torch_path_equals_numpy():
    pytest.importorskip("torch")
    X, y = _correlated(n_per=15, n_classes=4, d=10)
    kw = dict(protocol="standard", probes="logreg,knn", n_repeats=1, fractions=(0.5, 1.0), n_jobs=1)
    a = run_cross_validation(_emb(X, y), device=None, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = run_cross_validation(_emb(X, y), device="cpu", **kw)
    assert a.device == "numpy" and b.device == "cpu"
    for m in ("mean_top1_accuracy", "mean_balanced_accuracy"):
        np.testing.assert_allclose(a.table[m], b.table[m], atol=0.01)


def test_fit_probe_learns_from_a_stratified_subsample_past_the_limit():
    from dataclasses import replace

    from palaeo_ssl.probes import fit_probe

    X, y = _correlated(n_per=30, n_classes=4)
    small = replace(get_protocol("standard"), max_train_images=40)
    fitted = fit_probe(_emb(X, y), "centroid", protocol=small, seed=1)
    assert fitted.meta["train_subsample"] == {"max_train_images": 40, "n_available": 120, "n_used": 40,
                                              "rule": "seeded stratified subsample"}
    again = fit_probe(_emb(X, y), "centroid", protocol=small, seed=1)
    np.testing.assert_array_equal(fitted.model.centroids_, again.model.centroids_)
    assert "train_subsample" not in fit_probe(_emb(X, y), "centroid", seed=1).meta
