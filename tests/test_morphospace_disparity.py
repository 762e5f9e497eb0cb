"""Disparity without an N x N matrix: identities against scipy/sklearn, bootstrap, rarefaction, tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.covariance import LedoitWolf

from palaeo_ssl.morphospace import disparity as dp


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _data(n=60, d=24, seed=0, shift=0.4):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) + shift).astype(np.float32)


def _lw_erank(x):
    ev = np.linalg.eigvalsh(LedoitWolf().fit(x.astype(np.float64)).covariance_)
    p = ev / ev.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("n,d", [(60, 24), (20, 64), (300, 8)])
def test_summary_matches_pdist_and_sklearn(n, d):
    x = _data(n, d)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = pdist(u.astype(np.float64), "cosine")
    s = dp.disparity_summary(x)
    assert s["mean_pairwise_distance"] == pytest.approx(dist.mean(), abs=1e-6)
    assert s["std_pairwise_distance"] == pytest.approx(dist.std(), abs=1e-6)
    assert dp.mean_pairwise_distance(x) == pytest.approx(dist.mean(), abs=1e-6)
    assert dp.pairwise_distance_std(x) == pytest.approx(dist.std(), abs=1e-6)
    # the identity the issue names: variance sum (ddof=1) == mean pairwise cosine distance for unit vectors
    assert s["variance_sum"] == pytest.approx(u.astype(np.float64).var(axis=0, ddof=1).sum(), abs=1e-6)
    c = u.mean(axis=0)
    cd = 1 - u @ c / np.linalg.norm(c)
    assert s["mean_centroid_distance"] == pytest.approx(cd.mean(), abs=1e-6)
    assert s["std_centroid_distance"] == pytest.approx(cd.std(), abs=1e-6)
    # effective rank from the small Gram matrix equals the one from sklearn's Ledoit-Wolf covariance
    assert s["effective_rank"] == pytest.approx(_lw_erank(u), rel=1e-5)
    assert dp.effective_rank(x) == pytest.approx(s["effective_rank"])


def test_unit_rows():
    x = _data(10, 4)
    u = dp.unit_rows(x)
    assert u.dtype == np.float32 and np.allclose(np.linalg.norm(u, axis=1), 1, atol=1e-6)
    assert dp.unit_rows(u) is u  # already normalised: no copy
    assert dp.unit_rows(x.astype(np.float64)).dtype == np.float32
    x[3] = 0
    with pytest.raises(ValueError, match="row 3"):
        dp.unit_rows(x)


def test_bootstrap_replicate_equals_pdist_of_the_resample():
    """A weighted replicate is pdist of the resample without pairs of two copies of one image."""
    u = dp.unit_rows(_data(40, 30, seed=3))
    w = dp._counts(40, np.random.default_rng(1))
    assert w.max() >= 2  # there are duplicated images
    rep = np.repeat(u, w, axis=0)
    orig = np.repeat(np.arange(40), w)
    i, j = np.triu_indices(len(rep), 1)
    d = pdist(rep.astype(np.float64), "cosine")[orig[i] != orig[j]]
    assert dp._linear_stats(u, w)["mean_pairwise_distance"] == pytest.approx(d.mean(), abs=1e-6)
    assert dp._pairwise_std(u, w) == pytest.approx(d.std(), abs=1e-6)
    c = rep.mean(axis=0)
    cd = 1 - rep @ c / np.linalg.norm(c)
    assert dp._linear_stats(u, w)["std_centroid_distance"] == pytest.approx(cd.std(), abs=1e-6)


def test_bootstrap_intervals_cover_and_are_seeded():
    x = _data(400, 16, seed=5)
    a = dp.bootstrap_disparity(x, n_boot=60, n_boot_gram=15, seed=2)
    b = dp.bootstrap_disparity(x, n_boot=60, n_boot_gram=15, seed=2)
    c = dp.bootstrap_disparity(x, n_boot=60, n_boot_gram=15, seed=3)
    assert a.equals(b)
    assert not a.equals(c)
    rows = a.set_index("quantity")
    for q in dp.BOOTSTRAPPED_COLUMNS:
        assert rows.loc[q, "ci_low"] < rows.loc[q, "estimate"] < rows.loc[q, "ci_high"], q
    assert rows.loc["mean_pairwise_distance", "n_boot"] == 60
    assert rows.loc["std_pairwise_distance", "n_boot"] == 15
    assert np.isnan(rows.loc["effective_rank", "ci_low"])  # no bootstrap interval by design


def test_disparity_table_has_reference_columns():
    t = dp.disparity_table(_data(50, 8), dataset="toy", n_boot=20, n_boot_gram=5)
    ref = ["Dataset", "n_samples", "n_features", "n_pca_used", "metric", *dp.DISPARITY_COLUMNS]
    assert list(t.columns[: len(ref)]) == ref
    assert t.loc[0, "n_samples"] == 50 and t.loc[0, "metric"] == "cosine"
    assert t.loc[0, "n_bootstrap"] == 20 and t.loc[0, "n_bootstrap_std"] == 5
    assert "mean_pairwise_distance_ci_low" in t and "effective_rank_ci_low" not in t


def test_per_class_table():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((30, 12)) * 0.1 + 3, rng.standard_normal((50, 12)) + 1,
                        rng.standard_normal((10, 12))]).astype(np.float32)
    y = np.array([0] * 30 + [1] * 50 + [-1] * 10)  # unlabelled rows are left out
    t = dp.disparity_per_class(x, y, ["tight", "loose"], n_boot=30, n_boot_gram=5)
    assert list(t["class"]) == ["tight", "loose"] and list(t["n_samples"]) == [30, 50]
    assert t.loc[0, "mean_pairwise_distance"] < t.loc[1, "mean_pairwise_distance"]
    assert t.loc[1, "mean_pairwise_distance"] == pytest.approx(dp.mean_pairwise_distance(x[30:80]))


def test_rarefaction():
    x = _data(120, 20, seed=7)
    groups = {"all": np.arange(120), "a": np.arange(0, 40), "b": np.arange(40, 120)}
    t = dp.rarefaction(x, groups, max_size=60, n_repeats=8, seed=1)
    t2 = dp.rarefaction(x, groups, max_size=60, n_repeats=8, seed=1)
    assert t.equals(t2)
    assert list(t.columns) == ["group", "n", "metric", "mean", "ci_low", "ci_high", "n_repeats", "group_size"]
    assert t.attrs["common_n"] == 40
    for g in groups:  # every group is evaluated at the common size
        assert ((t["group"] == g) & (t["n"] == 40)).any()
    assert t[t["group"] == "all"]["n"].max() == 60  # capped by max_size
    full = t[(t["group"] == "a") & (t["n"] == 40) & (t["metric"] == "mean_pairwise_distance")].iloc[0]
    assert full["n_repeats"] == 1 and full["mean"] == pytest.approx(dp.mean_pairwise_distance(x[:40]))
    assert (t["ci_low"] <= t["mean"] + 1e-12).all() and (t["mean"] <= t["ci_high"] + 1e-12).all()
    er = t[(t["group"] == "all") & (t["metric"] == "effective_rank")].sort_values("n")
    assert er["mean"].iloc[0] < er["mean"].iloc[-1]  # the rank grows with the sample size here
    with pytest.raises(ValueError, match="unknown rarefaction metric"):
        dp.rarefaction(x, groups, metrics=("nope",))


def test_permutation_test():
    rng = np.random.default_rng(4)
    base = rng.standard_normal(16) * 2
    tight = (base + rng.standard_normal((40, 16)) * 0.2).astype(np.float32)
    loose = (base + rng.standard_normal((40, 16)) * 1.5).astype(np.float32)
    same = (base + rng.standard_normal((40, 16)) * 0.2).astype(np.float32)
    x = np.concatenate([tight, loose, same])
    a, b, c = np.arange(40), np.arange(40, 80), np.arange(80, 120)
    diff = dp.permutation_test(x, a, b, n_permutations=199, seed=0)
    assert diff["difference"] < 0 and diff["p_value"] == pytest.approx(1 / 200)
    assert diff["disparity_a"] == pytest.approx(dp.mean_pairwise_distance(tight))
    null = dp.permutation_test(x, a, c, n_permutations=199, seed=0)
    assert dp.permutation_test(x, a, c, n_permutations=199, seed=0) == null
    # calibrated under the null: two samples of one distribution rarely give p < 0.05
    ps = []
    for s in range(20):
        r = np.random.default_rng(100 + s)
        z = (base + r.standard_normal((60, 16)) * 0.2).astype(np.float32)
        ps.append(dp.permutation_test(z, np.arange(30), np.arange(30, 60), n_permutations=99, seed=s)["p_value"])
    assert np.mean(np.asarray(ps) < 0.05) <= 0.2 and np.median(ps) > 0.2
    er = dp.permutation_test(x, a, b, metric="effective_rank", n_permutations=19, seed=0)
    assert er["disparity_a"] == pytest.approx(dp.effective_rank(tight))
    with pytest.raises(ValueError, match="share images"):
        dp.permutation_test(x, a, np.arange(30, 60))


def test_distance_histogram():
    x = _data(90, 10, seed=2)
    y = np.repeat([0, 1, 2], 30)
    h = dp.distance_histogram(x, y, max_points=60, bins=20, seed=0)
    assert h.attrs["n_points"] == 60
    assert h["all"].sum() == 60 * 59 // 2
    assert (h["within_class"] + h["between_class"]).sum() == h["all"].sum()
    full = dp.distance_histogram(x, None, max_points=5000, bins=20)
    assert full["all"].sum() == 90 * 89 // 2 and "within_class" not in full
    assert full.attrs["mean"] == pytest.approx(dp.mean_pairwise_distance(x), abs=1e-6)
