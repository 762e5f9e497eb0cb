"""Probes: metrics against scikit-learn, the probes themselves, the standard protocol and seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import config_context, metrics as skm
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer

from palaeo_ssl import Embeddings
from palaeo_ssl.probes import (
    CentroidProbe,
    KNNProbe,
    cross_validate,
    fit_probe,
    few_shot,
    run_cross_validation,
    run_few_shot,
)
from palaeo_ssl.probes.classifiers import parse_probes, rank_votes
from palaeo_ssl.probes.metrics import confusion_counts, label_metrics, t_interval
from palaeo_ssl.probes.splits import nested_stratified_order, standard_splits
from palaeo_ssl.errors import UserError


def blobs(n=240, d=16, c=4, sep=1.0, seed=0, specimens=False, counts=None) -> Embeddings:
    rng = np.random.default_rng(seed)
    if counts is None:
        y = np.arange(n) % c
    else:
        y = np.concatenate([np.full(k, i) for i, k in enumerate(counts)])
        c = len(counts)
    x = rng.normal(size=(c, d))[y] * sep + rng.normal(size=(len(y), d))
    spec = [f"s{i // 3}" for i in range(len(y))] if specimens else None
    return Embeddings(x.astype(np.float32), [f"img{i}.jpg" for i in range(len(y))], y,
                      [f"class {i}" for i in range(c)], specimens=spec)


@pytest.fixture(scope="module")
def digits() -> Embeddings:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Embeddings(d.data.astype(np.float32), [f"digit_{i}.png" for i in range(len(d.target))], d.target,
                      [str(i) for i in range(10)])


# ---------------------------------------------------------------------- metrics
def test_metrics_equal_sklearn_with_absent_and_extra_classes():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 6, 300)
    y_true[y_true == 4] = 5          # class 4 never true ...
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 7, 300))  # ... 6 only predicted
    m = label_metrics(y_true, y_pred)
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-12)
    assert m["f1_weighted"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0),
                                             abs=1e-12)
    assert m["precision_macro"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-12)
    assert m["recall_macro"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro", zero_division=0),
                                              abs=1e-12)
    with pytest.warns(UserWarning):
        bal = skm.balanced_accuracy_score(y_true, y_pred)
    assert m["balanced_accuracy"] == pytest.approx(bal, abs=1e-12)
    assert m["cohen_kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred), abs=1e-12)
    labels = np.arange(8)
    np.testing.assert_array_equal(confusion_counts(y_true, y_pred, labels),
                                  skm.confusion_matrix(y_true, y_pred, labels=labels))
    # specificity by hand over the present labels
    cm = skm.confusion_matrix(y_true, y_pred)
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    fp = cm.sum(0) - np.diag(cm)
    assert m["specificity_macro"] == pytest.approx(np.mean(tn / (tn + fp)), abs=1e-12)


def test_top_k_of_many_k_equals_argpartition_per_k():
    from palaeo_ssl.probes.metrics import reference_topk, reference_topk_many

    rng = np.random.default_rng(3)
    classes = np.array([0, 2, 3, 5, 6, 7, 9])
    y = rng.choice([0, 1, 2, 3, 5, 6, 7, 9], size=400)          # class 1 was never trained on
    votes = rng.multinomial(5, np.full(len(classes), 1 / len(classes)), size=400) / 5.0   # k-NN votes: many ties
    smooth = rng.dirichlet(np.ones(len(classes)), size=400)      # logistic-style: no ties
    smooth[:50] = 1.0 / len(classes)                              # ... except some flat rows
    for proba in (votes, smooth):
        many = reference_topk_many(y, proba, (1, 2, 3, 7, 9), classes)
        for k in (1, 2, 3, 7, 9):
            one = reference_topk(y, proba, k, classes)
            assert (np.isnan(one) and np.isnan(many[k])) or one == many[k], (k, one, many[k])
    assert np.isnan(reference_topk_many(np.array([1, 1]), votes[:2], (1,), classes)[1])


def test_t_interval_corrected_is_wider_and_contains_mean():
    v = np.array([0.8, 0.82, 0.79, 0.85, 0.81])
    lo, hi = t_interval(v)
    clo, chi = t_interval(v, correction=0.25)
    assert lo < v.mean() < hi
    assert clo < lo and chi > hi
    assert np.isnan(t_interval([0.5])[0])


# ---------------------------------------------------------------------- probes
@pytest.mark.parametrize("d", [37, 64])
def test_reference_knn_is_bit_identical_to_sklearn_pipeline(d):
    rng = np.random.default_rng(d)
    x = rng.normal(size=(300, d)).astype(np.float32) + 0.3
    y = rng.integers(0, 5, 300)
    xt, xq = x[:220], x[220:]
    ref = Pipeline([("n", Normalizer()), ("k", KNeighborsClassifier(5, metric="cosine"))]).fit(xt, y[:220])
    ours = KNNProbe(5, weights="uniform").fit(xt, y[:220])
    assert np.array_equal(ours.predict_proba(xq), ref.predict_proba(xq))
    # a small working memory makes scikit-learn (and us) compute distances in chunks of query rows
    with config_context(working_memory=0.005):
        assert np.array_equal(ours.predict_proba(xq), ref.predict_proba(xq))


def test_similarity_knn_breaks_ties_by_summed_similarity_then_at_random():
    votes = np.array([[2.0, 2.0, 1.0]])
    sums = np.array([[0.5, 0.9, 0.2]])
    assert rank_votes(votes, sums, 0)[0, 0] == 1  # the tie on votes goes to the larger summed similarity
    tied = np.array([[0.7, 0.7, 0.2]])
    winners = {int(rank_votes(votes, tied, s)[0, 0]) for s in range(40)}
    assert winners == {0, 1}  # a full tie is not always resolved towards the lowest class index
    assert rank_votes(votes, tied, 5)[0, 0] == rank_votes(votes, tied, 5)[0, 0]


def test_similarity_knn_and_centroid_on_separable_data():
    emb = blobs(n=200, d=8, c=4, sep=4.0)
    knn = KNNProbe().fit(emb.features[:150], emb.labels[:150])
    proba = knn.predict_proba(emb.features[150:])
    assert proba.shape == (50, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (knn.predict(emb.features[150:]) == emb.labels[150:]).mean() > 0.95
    cen = CentroidProbe().fit(emb.features[:150], emb.labels[:150])
    assert (cen.predict(emb.features[150:]) == emb.labels[150:]).mean() > 0.95
    # k is clamped to the training-set size
    small = KNNProbe(n_neighbors=20).fit(emb.features[:6], emb.labels[:6])
    assert small.rank(emb.features[:3]).shape == (3, len(np.unique(emb.labels[:6])))


def test_parse_probes():
    assert parse_probes(None, "paper") == ("logreg", "knn")
    assert parse_probes("LR, kNN,centroid,knn", "standard") == ("logreg", "knn", "centroid")
    with pytest.raises(UserError, match="unknown probe"):
        parse_probes("svm", "standard")


# ---------------------------------------------------------------------- standard protocol
def test_standard_protocol_on_digits_reaches_95_percent(digits):
    table = cross_validate(digits, protocol="standard", probes="logreg,knn", fractions=(1.0,), n_repeats=1,
                           n_jobs=1)
    top1 = dict(zip(table["classifier"], table["mean_top1_accuracy"]))
    assert top1["Logistic Regression"] >= 0.95
    assert top1["k-Nearest Neighbours"] >= 0.95
    assert (table["n_folds_used"] == 5).all()
    assert (table["ci_low_top1_accuracy"] <= table["mean_top1_accuracy"]).all()
    assert (table["mean_top1_accuracy"] <= table["ci_high_top1_accuracy"]).all()


def test_standard_protocol_reports_missing_classes_instead_of_dropping_folds():
    emb = blobs(counts=[60, 40, 30, 4], d=8, sep=2.0)
    res = run_cross_validation(emb, protocol="standard", probes="knn,centroid", fractions=(0.1, 1.0), n_repeats=2,
                               n_jobs=1)
    t = res.table
    assert (t["n_folds_used"] == 10).all()  # 2 repeats x 5 folds, none dropped
    low = t[t["train_fraction"] == 0.1]
    assert (low["min_classes_trained"] < 4).all()
    assert low["missing_classes"].str.contains("class 3").all()
    assert (res.folds["n_classes_trained"] <= 4).all()
    # paired comparison on identical splits
    p = res.paired
    assert set(p["metric"]) == {"top1_accuracy", "balanced_accuracy"}
    assert (p["n_pairs"] == 10).all()
    assert (p["ci_low"] <= p["mean_difference"]).all() and (p["mean_difference"] <= p["ci_high"]).all()
    # the confusion matrix covers every image once (repeat 0, all test folds)
    for cm in res.confusion.values():
        assert cm.sum() == len(emb) and cm.shape == (4, 4)


def test_grouped_splits_keep_specimens_together_and_subsets_nested():
    emb = blobs(n=150, c=3, specimens=True)
    groups = np.asarray(emb.specimens)
    splits = standard_splits(emb.labels, groups, n_splits=5, n_repeats=2, seed=0, fractions=(0.1, 0.5, 1.0))
    assert len(splits) == 10
    for s in splits:
        assert not set(groups[s.train]) & set(groups[s.test])
        a, b, c = s.subsets[0.1], s.subsets[0.5], s.subsets[1.0]
        assert set(a) <= set(b) <= set(c) == set(s.train)
        assert abs(len(b) - 0.5 * len(s.train)) <= 1
    order = nested_stratified_order(np.repeat([0, 1, 2], [50, 30, 20]), np.random.default_rng(0))
    first = np.repeat([0, 1, 2], [50, 30, 20])[order[:10]]
    assert np.bincount(first, minlength=3).tolist() == [5, 3, 2]  # a prefix is stratified


def test_too_few_groups_is_a_user_error():
    emb = blobs(n=30, c=3)
    emb.specimens = ["a", "b", "c"] * 10
    with pytest.raises(UserError, match="specimens"):
        cross_validate(emb, protocol="standard", n_jobs=1)


# ---------------------------------------------------------------------- few-shot and seeds
def test_standard_few_shot_seeds_and_excluded_classes():
    emb = blobs(counts=[30, 30, 30, 4], d=8, sep=3.0)
    kw = dict(protocol="standard", shots=(1, 5), episodes=4, probes="knn,centroid", n_jobs=1)
    a = run_few_shot(emb, seed=0, **kw)
    b = run_few_shot(emb, seed=0, **kw)
    c = run_few_shot(emb, seed=1, **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert all(np.array_equal(a.support[k], b.support[k]) for k in a.support)
    assert any(not np.array_equal(a.support[k], c.support[k]) for k in a.support)
    t = a.table
    five = t[t["few_shot_values"] == 5]
    assert (five["excluded_classes"] == "class 3").all() and (five["n_classes_used"] == 3).all()
    assert (t[t["few_shot_values"] == 1]["n_classes_used"] == 4).all()
    # every probe saw the same episodes: the support sizes match per episode
    ep = a.episodes
    assert ep.groupby(["few_shot_values", "episode"])["n_support"].nunique().max() == 1
    assert ((t["mean_top1_accuracy"] >= 0) & (t["mean_top1_accuracy"] <= 1)).all()
    assert (t["n_repeats_successful"] == 4).all()


def test_cross_validate_same_seed_same_numbers_any_n_jobs():
    emb = blobs(n=120, d=8, c=3)
    kw = dict(protocol="paper", fractions=(0.5, 1.0), n_repeats=2)
    a = cross_validate(emb, n_jobs=1, seed=3, **kw)
    b = cross_validate(emb, n_jobs=2, seed=3, **kw)
    pd.testing.assert_frame_equal(a, b)
    c = cross_validate(emb, n_jobs=1, seed=4, **kw)
    assert not np.allclose(a["mean_f1_macro"], c["mean_f1_macro"])


# ---------------------------------------------------------------------- fitted probe
@pytest.mark.parametrize("probe", ["logreg", "knn", "centroid"])
def test_fit_probe_predicts_new_rows(probe):
    emb = blobs(n=160, d=8, c=4, sep=4.0)
    fitted = fit_probe(emb.subset(np.arange(120)), probe=probe)
    new = emb.features[120:]
    proba = fitted.predict_proba(new)
    assert proba.shape == (40, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    pred = fitted.predict(new)
    assert (pred == emb.labels[120:]).mean() > 0.9
    assert fitted.predict_names(new[:2]) == [fitted.class_names[i] for i in pred[:2]]
    top = fitted.top_k(new, 3)
    assert list(top.columns) == ["class_1", "probability_1", "class_2", "probability_2", "class_3", "probability_3"]
    assert (top["probability_1"] >= top["probability_2"]).all()
    with pytest.raises(ValueError, match="length 8"):
        fitted.predict(np.zeros((2, 5)))


def test_unlabelled_embeddings_are_a_user_error():
    emb = blobs(n=20)
    emb.labels[:] = -1
    with pytest.raises(UserError, match="no labels"):
        cross_validate(emb, n_jobs=1)
    with pytest.raises(UserError, match="protocol"):
        few_shot(blobs(n=20), protocol="best", n_jobs=1)
    with pytest.raises(UserError, match="n_query must be an integer >= 1, not 0"):
        few_shot(blobs(n=20), protocol="standard", n_query=0, n_jobs=1)


# ---------------------------------------------------------------------- engine and shared neighbours
def test_candidates_give_votes_only_when_the_k_nearest_are_determined():
    from palaeo_ssl.probes.neighbours import candidate_votes

    idx = np.array([[9, 0, 1, 2, 3, 4, 5, 6]])
    train = np.arange(8)              # image 9 (the query itself) is not in training
    pos = np.array([0, 0, 1, 1, 2, 0, 1, 2])
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]], dtype=np.float32)
    proba, resolved = candidate_votes(idx, dist, train, pos, 10, 3, k=5)
    assert resolved.tolist() == [True]
    np.testing.assert_array_equal(proba, [[0.4, 0.4, 0.2]])  # the 5 nearest training images: classes 0,0,1,1,2
    tied = dist.copy()
    tied[0, 6] = tied[0, 5]           # 5th and 6th training neighbours equally far
    assert candidate_votes(idx, tied, train, pos, 10, 3, k=5)[1].tolist() == [False]
    assert candidate_votes(idx[:, :6], dist[:, :6], train, pos, 10, 3, k=5)[1].tolist() == [False]  # too few


def test_workers_that_cannot_start_fall_back_to_this_process(monkeypatch):
    import palaeo_ssl.probes.engine as engine

    emb = blobs(n=90, d=6, c=3)
    expected = cross_validate(emb, protocol="paper", fractions=(1.0,), n_repeats=1, n_jobs=1)

    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise OSError("no processes here")

    monkeypatch.setattr(engine, "_execute_parallel", broken)
    got = cross_validate(emb, protocol="paper", fractions=(1.0,), n_repeats=1, n_jobs=2)
    assert calls == [1]  # the workers were tried (and failed) once
    pd.testing.assert_frame_equal(expected, got)
