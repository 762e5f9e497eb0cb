"""Few or no labels: suggestion strategies, novelty, calibration and abstention (palaeo_ssl.labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from palaeo_ssl import Embeddings
from palaeo_ssl.errors import UserError
from palaeo_ssl.labels import (STRATEGIES, Calibrator, choose_threshold, compute_novelty, expected_calibration_error,
                               explorer_columns, fit_abstention, novelty_scores, risk_coverage, select, suggest)
from palaeo_ssl.labels.geometry import density, nearest, nearest_per_group
from palaeo_ssl.params import ParameterError


def blobs(n_per=40, classes=4, dim=16, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    centres = rng.normal(size=(classes, dim)) * 3
    x = (centres[y] + rng.normal(size=(len(y), dim)) * spread).astype(np.float32)
    return x, y


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------------- geometry
def test_nearest_and_per_group_equal_a_dense_reference():
    rng = np.random.default_rng(1)
    q, r = unit(rng.normal(size=(37, 8))), unit(rng.normal(size=(23, 8)))
    groups = rng.integers(0, 4, 23)
    groups[groups == 2] = 3  # group 2 has no rows
    sim, arg = nearest(q, r)
    full = q @ r.T
    np.testing.assert_allclose(sim, full.max(1), rtol=1e-6)
    np.testing.assert_array_equal(arg, full.argmax(1))
    per = nearest_per_group(q, r, groups, 4)
    for g in (0, 1, 3):
        np.testing.assert_allclose(per[:, g], full[:, groups == g].max(1), rtol=1e-6)
    assert np.isneginf(per[:, 2]).all()


def test_density_is_mean_similarity_to_the_k_nearest_others():
    rng = np.random.default_rng(2)
    z = unit(rng.normal(size=(30, 5)))
    members = np.arange(5, 25)
    d = density(z, members, k=3)
    s = z[members] @ z[members].T
    np.fill_diagonal(s, -np.inf)
    np.testing.assert_allclose(d, np.sort(s, axis=1)[:, -3:].mean(1), rtol=1e-5)


# ---------------------------------------------------------------------- strategies
#: the standard probe fitted for the margins makes these slow on a shared machine
_PROBED = {("uncertain", True), ("auto", True)}


@pytest.mark.parametrize("strategy,labelled", [
    pytest.param(s, lab, marks=[pytest.mark.slow] if (s, lab) in _PROBED else [])
    for lab in (False, True) for s in STRATEGIES])
def test_every_strategy_returns_the_budget_of_distinct_unlabelled_specimens_reproducibly(strategy, labelled):
    x, y = blobs()
    labels = np.full(len(y), -1)
    if labelled:
        labels[::10] = y[::10]
    a = select(x, labels, 13, strategy, seed=3)
    b = select(x, labels, 13, strategy, seed=3)
    assert len(a.index) == 13 and len(np.unique(a.index)) == 13
    assert (labels[a.index] < 0).all()
    np.testing.assert_array_equal(a.index, b.index)
    assert len(a.details) == 13
    if labelled:
        assert np.isfinite(a.details["distance_to_labelled"]).all()
    assert a.strategy == {"auto": "uncertain" if labelled else "typical",
                          "uncertain": "uncertain" if labelled else "typical"}.get(strategy, strategy)


@pytest.mark.slow
def test_budget_equal_to_the_unlabelled_pool_takes_all_of_it():
    x, y = blobs(n_per=10)
    labels = np.where(np.arange(len(y)) < 30, y, -1)
    for strategy in STRATEGIES:
        sel = select(x, labels, 10, strategy, seed=0)
        assert sorted(sel.index.tolist()) == list(range(30, 40))


def test_budget_larger_than_the_unlabelled_pool_names_the_budget():
    x, y = blobs(n_per=5)
    labels = np.where(np.arange(len(y)) < 15, y, -1)
    with pytest.raises(ParameterError, match=r"budget 6 is larger than the 5 unlabelled") as err:
        select(x, labels, 6)
    assert err.value.param == "budget"
    with pytest.raises(UserError, match="every specimen is labelled"):
        select(x, y, 1)


def test_typical_cold_start_takes_one_specimen_per_blob_and_its_most_typical():
    x, y = blobs(n_per=50, classes=5, spread=0.4)
    sel = select(x, np.full(len(y), -1), 5, "typical", seed=0)
    assert sorted(y[sel.index].tolist()) == [0, 1, 2, 3, 4]
    assert (sel.details["step"] == "typical").all()
    z = unit(x)
    for i in sel.index:  # the pick is the densest of its blob's members
        members = np.flatnonzero(y == y[i])
        d = density(z, members, k=20)
        assert d[np.flatnonzero(members == i)[0]] >= np.percentile(d, 90)


@pytest.mark.slow
def test_uncertain_covers_unlabelled_clusters_first_then_the_least_sure():
    x, y = blobs(n_per=40, classes=4, spread=0.5)
    labels = np.full(len(y), -1)
    for c in (0, 1, 2):  # class 3 has no label: its cluster must come first
        labels[np.flatnonzero(y == c)[:3]] = c
    sel = select(x, labels, 8, "uncertain", seed=0)
    d = sel.details
    assert d["step"].tolist() == ["coverage"] * 4 + ["margin"] * 4  # at most half the batch for coverage
    assert (d.loc[d.step == "coverage", "cluster_labelled"] == 0).all()
    assert 3 in y[sel.index[:4]]  # the unlabelled class is among the covered clusters
    margin = d.loc[d.step == "margin", "margin"].to_numpy()
    assert (np.diff(margin) >= 0).all() and (margin >= 0).all() and (margin <= 1).all()
    assert d.loc[d.step == "margin", "cluster"].is_unique  # one per cluster while clusters are left
    # the margin picks are the least sure of the candidates not in a cluster already picked from
    unl = np.flatnonzero(labels < 0)
    from palaeo_ssl.labels.strategies import probe_margins
    m = probe_margins(x, labels, unl, seed=0)[:, 0]
    rest = ~np.isin(unl, sel.index[:4])
    assert margin[0] == pytest.approx(m[rest].min())


def test_diverse_picks_the_farthest_specimen_from_the_labelled():
    x, y = blobs(n_per=30, classes=3, spread=0.3)
    labels = np.where(y == 0, 0, -1)
    labels[np.flatnonzero(y == 1)[:5]] = 1
    sel = select(x, labels, 1, "diverse", seed=0)
    z = unit(x)
    sim, _ = nearest(z, z[labels >= 0])
    sim[labels >= 0] = np.inf
    assert sel.index[0] == int(np.argmin(sim))


def test_unknown_strategy_is_refused_by_name():
    x, y = blobs(n_per=5)
    with pytest.raises(ParameterError, match="strategy"):
        select(x, np.full(len(y), -1), 2, "smart")


# ---------------------------------------------------------------------- novelty
def test_novelty_ranks_a_held_out_class_above_the_known_ones():
    from sklearn.metrics import roc_auc_score

    x, y = blobs(n_per=40, classes=5, spread=0.8, seed=4)
    labels = np.full(len(y), -1)
    for c in range(4):  # class 4 never labelled
        labels[np.flatnonzero(y == c)[:20]] = c
    score, near, per_class = novelty_scores(x, labels, 5)
    unl = labels < 0
    assert roc_auc_score(y[unl] == 4, score[unl]) > 0.95
    assert per_class.shape == (len(y), 5) and np.isinf(per_class[:, 4]).all()
    np.testing.assert_allclose(score, per_class[:, :4].min(1), atol=1e-6)
    assert (labels[near] >= 0).all()


def test_compute_novelty_table_lists_every_unlabelled_specimen_most_novel_first():
    x, y = blobs(n_per=20, classes=3)
    labels = np.where(np.arange(len(y)) % 4 == 0, y, -1)
    emb = Embeddings(x, [f"s{i}.png" for i in range(len(y))], labels, ["a", "b", "c"])
    res = compute_novelty(emb)
    t = res.table
    assert len(t) == int((labels < 0).sum())
    assert list(t.columns[:5]) == ["rank", "path", "novelty", "nearest_class", "nearest_labelled"]
    assert {"distance_a", "distance_b", "distance_c"} <= set(t.columns)
    assert (np.diff(t["novelty"].to_numpy()) <= 1e-12).all()
    full = res.scores_for(len(emb))
    assert np.isnan(full[labels >= 0]).all() and np.isfinite(full[labels < 0]).all()


# ---------------------------------------------------------------------- calibration and abstention
def test_temperature_and_isotonic_calibration_improve_ece_on_an_overconfident_case():
    rng = np.random.default_rng(0)
    n, c = 4000, 4
    true_logits = rng.normal(size=(n, c)) * 1.5
    p_true = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(c, p=p) for p in p_true])
    over = np.exp(true_logits * 4)  # the same ranking, four times too sharp
    over /= over.sum(1, keepdims=True)
    before = expected_calibration_error(over, y)
    temp = Calibrator.fit(over, y, "temperature")
    assert temp.temperature == pytest.approx(4.0, rel=0.15)
    after_t = expected_calibration_error(temp.transform(over), y)
    iso = Calibrator.fit(over, y, "isotonic")
    after_i = expected_calibration_error(iso.transform(over), y)
    assert before > 0.1 and after_t < before / 3 and after_i < before / 3
    np.testing.assert_array_equal(temp.transform(over).argmax(1), over.argmax(1))
    np.testing.assert_allclose(iso.transform(over).sum(1), 1.0, atol=1e-9)


def test_risk_coverage_and_threshold_on_a_known_case():
    conf = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    t = risk_coverage(conf, correct)
    assert t["min_probability"].tolist() == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert t["n_kept"].tolist() == [1, 3, 4, 5, 6]
    np.testing.assert_allclose(t["accuracy"], [1, 2 / 3, 3 / 4, 3 / 5, 1 / 2])
    assert choose_threshold(t, target_accuracy=0.75) == 0.7  # the largest coverage reaching 0.75
    assert choose_threshold(t, target_accuracy=1.0) == 0.9
    assert choose_threshold(t, min_probability=0.55) == 0.55
    assert choose_threshold(t.iloc[1:], target_accuracy=0.99) > 1.0  # none reaches it: nothing kept


@pytest.mark.slow
def test_abstention_keeps_the_stated_accuracy_on_held_out_data():
    from palaeo_ssl.probes import make_probe
    from palaeo_ssl.probes.classifiers import fit_quietly

    x, y = blobs(n_per=150, classes=3, dim=8, spread=2.6, seed=5)  # overlapping: about 85% separable
    rng = np.random.default_rng(0)
    train = rng.random(len(y)) < 0.5
    model = make_probe("logreg", "standard", y[train], seed=0)
    fit_quietly(model, x[train], y[train])
    ab = fit_abstention(x[train], y[train], 3, target_accuracy=0.95, seed=0, fitted_model=model)
    assert ab.cv_accuracy >= 0.95 and 0 < ab.cv_coverage < 1
    cal, kept = ab.apply(model.predict_proba(x[~train]))
    overall = (cal.argmax(1) == y[~train]).mean()
    kept_acc = (cal.argmax(1) == y[~train])[kept].mean()
    assert overall < 0.93 and kept_acc >= 0.92 and kept_acc > overall
    assert ab.ece_after <= ab.ece_before + 0.01
    rec = ab.record()
    assert rec["method"] == "temperature" and rec["threshold"] == ab.threshold


def test_abstention_needs_exactly_one_way_to_the_threshold():
    x, y = blobs(n_per=10, classes=2)
    with pytest.raises(ParameterError, match="target_accuracy"):
        fit_abstention(x, y, 2)
    with pytest.raises(ParameterError, match="min_probability"):
        fit_abstention(x, y, 2, min_probability=1.5)


# ---------------------------------------------------------------------- Embeddings level and explorer columns
@pytest.mark.slow
def test_suggest_on_embeddings_and_explorer_columns():
    from palaeo_ssl.probes.predictions import classify

    x, y = blobs(n_per=20, classes=3)
    labels = np.where(np.arange(len(y)) % 3 == 0, y, -1)
    emb = Embeddings(x, [f"s{i}.png" for i in range(len(y))], labels, ["a", "b", "c"])
    res = suggest(emb, 7, seed=1)
    assert res.strategy == "uncertain" and res.requested == "auto"
    assert res.table["rank"].tolist() == list(range(1, 8))
    assert list(res.table.columns[:4]) == ["rank", "path", "strategy", "reason"]
    assert all(isinstance(r, str) and r for r in res.table["reason"])
    assert res.novelty is not None and len(res.novelty.table) == int((labels < 0).sum())
    cls = classify(emb.subset(labels < 0), emb, target_accuracy=0.9, progress=False)
    cols = explorer_columns(emb, res, cls)
    assert set(cols["scores"]) == {"suggestion rank", "novelty", "confidence"}
    for v in cols["scores"].values():
        assert v.shape == (len(emb),) and np.isnan(v[labels >= 0]).all()
    rank = cols["scores"]["suggestion rank"]
    assert np.isfinite(rank).sum() == 7 and sorted(rank[res.index]) == list(range(1, 8))
    pred = cols["predicted"]
    assert pred.shape == (len(emb),) and pred.dtype.kind == "i"
    assert (pred[labels >= 0] == -1).all()
    frame = cls.predictions.set_index("path")
    for i in np.flatnonzero(labels < 0):
        name = frame.loc[emb.paths[i], "predicted_class"]
        assert pred[i] == (-1 if name == "unassigned" else emb.class_names.index(name))
    conf = cols["scores"]["confidence"][labels < 0]
    assert ((conf > 0) & (conf <= 1)).all()


def test_explorer_columns_without_labels_hold_only_the_suggestion_rank():
    x, _ = blobs(n_per=10, classes=2)
    emb = Embeddings(x, [f"s{i}.png" for i in range(len(x))], np.full(len(x), -1), [])
    res = suggest(emb, 4)
    cols = explorer_columns(emb, res)
    assert list(cols["scores"]) == ["suggestion rank"] and (cols["predicted"] == -1).all()
    assert res.novelty is None


@pytest.mark.slow
def test_lloyd_k_means_for_large_stores_finds_separated_blobs_reproducibly():
    from sklearn.metrics import adjusted_rand_score

    from palaeo_ssl.labels.strategies import FULL_KMEANS_MAX_ROWS, cluster, lloyd

    x, y = blobs(n_per=700, classes=9, dim=12, spread=0.3, seed=7)  # 6,300 rows: above the full k-means limit
    assert len(y) > FULL_KMEANS_MAX_ROWS
    z = unit(x)
    a = cluster(z, 9, seed=1)
    np.testing.assert_array_equal(a, lloyd(z, 9, seed=1))
    assert adjusted_rand_score(y, a) > 0.95
    sel = select(x, np.full(len(y), -1), 9, "typical", seed=0)
    assert sorted(y[sel.index].tolist()) == list(range(9))


def test_labelling_stage_with_one_label_per_class_skips_only_the_calibrated_predictions(caplog):
    from palaeo_ssl.labels import LabelsConfig, compute_labels

    x, y = blobs(n_per=10, classes=3)
    labels = np.full(len(y), -1)
    labels[[0, 10, 20]] = [0, 1, 2]
    emb = Embeddings(x, [f"s{i}.png" for i in range(len(y))], labels, ["a", "b", "c"])
    res = compute_labels(emb, LabelsConfig(budget=4, strategy="typical"))
    assert res.classified is None and "calibrated predictions skipped" in caplog.text
    assert len(res.suggestions.index) == 4 and res.suggestions.novelty is not None
    assert set(res.explorer["scores"]) == {"suggestion rank", "novelty"}


def test_calibration_folds_refit_the_standard_probe_with_its_chosen_c():
    """The folds calibrate the probe that classifies: the same standard logistic regression (its own
    standardisation and balanced weights), with the C it chose on every label fixed."""
    from sklearn.datasets import load_digits

    from palaeo_ssl.labels.calibration import fixed_regularisation
    from palaeo_ssl.probes import make_probe
    from palaeo_ssl.probes.classifiers import fit_quietly

    X, y = load_digits(return_X_y=True)
    X, y = X[:300].astype(np.float64), y[:300]
    model = make_probe("logreg", "standard", y, seed=0)
    fit_quietly(model, X, y)
    fold_model = fixed_regularisation(model)()
    assert type(fold_model) is type(model) and tuple(fold_model.Cs) == (float(model.C_),)
    fit_quietly(fold_model, X, y)
    assert fold_model.C_ == model.C_
    # the same objective at the same C: the same probabilities, up to the solver's stopping rule
    np.testing.assert_allclose(fold_model.predict_proba(X), model.predict_proba(X), atol=0.05)
    assert (fold_model.predict(X) == model.predict(X)).mean() >= 0.99
