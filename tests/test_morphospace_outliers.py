"""Neighbour graph, outliers, suspect labels, retrieval and the projection cache."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from palaeo_ssl.morphospace import outliers as ol
from palaeo_ssl.morphospace import projections as pj


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=400, n_features=32, centers=5, cluster_std=1.0, random_state=0)
    return x.astype(np.float32), y


def test_exact_knn_graph_matches_sklearn(blobs):
    x, _ = blobs
    ind, dist = pj.knn_graph(x, 12)
    assert ind.shape == dist.shape == (400, 13)
    np.testing.assert_array_equal(ind[:, 0], np.arange(400))
    assert (dist[:, 0] == 0).all() and (np.diff(dist, axis=1) >= -1e-6).all()
    ref_d, ref_i = NearestNeighbors(n_neighbors=13, metric="cosine").fit(x).kneighbors(x)
    np.testing.assert_allclose(dist, ref_d, atol=1e-5)
    assert (ind == ref_i).mean() > 0.99  # equal up to ties


def test_nndescent_graph_is_cleaned(monkeypatch, blobs):
    """Large sets use pynndescent (its numba compile takes ~30 s, so a stand-in is used here):
    the image itself is moved to column 0 and incomplete rows are searched exactly."""
    import pynndescent

    x, _ = blobs
    exact_i, exact_d = pj.knn_graph(x, 10, exact=True)
    fake_i, fake_d = exact_i.copy(), exact_d.copy()
    fake_i[5] = np.r_[exact_i[5, 1:3], 5, exact_i[5, 3:]]  # self displaced by a duplicate-like neighbour
    fake_d[5] = np.r_[exact_d[5, 1:3], 0.0, exact_d[5, 3:]]
    fake_i[9, -2:] = -1  # NN-descent could not fill this row
    fake_d[9, -2:] = np.inf
    seen = {}

    class FakeNNDescent:
        def __init__(self, data, metric, n_neighbors, random_state, **kw):
            seen.update(metric=metric, n_neighbors=n_neighbors, random_state=random_state)
            self.neighbor_graph = (fake_i, fake_d)

    monkeypatch.setattr(pynndescent, "NNDescent", FakeNNDescent)
    ind, dist = pj.knn_graph(x, 10, exact=False, seed=3)
    assert seen == {"metric": "cosine", "n_neighbors": 11, "random_state": 3}
    np.testing.assert_array_equal(ind[:, 0], np.arange(400))
    np.testing.assert_array_equal(ind[5, 1:3], exact_i[5, 1:3])
    np.testing.assert_array_equal(ind[9], exact_i[9])
    np.testing.assert_allclose(dist[9], exact_d[9], atol=1e-6)
    assert (ind >= 0).all() and np.isfinite(dist).all()


def test_lof_equals_sklearn_and_finds_a_planted_outlier(blobs):
    x, y = blobs
    ind, dist = pj.knn_graph(x, 10)
    ref = -LocalOutlierFactor(n_neighbors=10, metric="cosine").fit(x).negative_outlier_factor_
    np.testing.assert_allclose(ol.local_outlier_factor(ind, dist, 10), ref, rtol=1e-4)
    far = np.vstack([x, -x.mean(axis=0, keepdims=True) * 3 + 5])
    ind, dist = pj.knn_graph(far, 10)
    table = ol.neighbourhood_table(ind, dist, paths=[f"p{i}.png" for i in range(401)], labels=np.r_[y, 0],
                                   class_names=list("abcde"))
    assert table.loc[400, "outlier_rank"] == 1
    assert table.sort_values("outlier_rank").iloc[0]["path"] == "p400.png"


def test_suspect_labels_find_injected_flips():
    x, y = make_blobs(n_samples=1000, n_features=16, centers=8, cluster_std=1.0, center_box=(-20, 20), random_state=1)
    rng = np.random.default_rng(0)
    flipped = rng.choice(1000, size=50, replace=False)  # 5% of the labels
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 8, size=50)) % 8
    ind, dist = pj.knn_graph(x, 10)
    table = ol.neighbourhood_table(ind, dist, paths=[f"c/{i}.png" for i in range(1000)], labels=noisy,
                                   class_names=[f"k{c}" for c in range(8)])
    sus = ol.suspect_labels(table)
    found = np.isin(flipped, sus["index"]).mean()
    assert found >= 0.8
    top = sus.head(50)
    assert np.isin(top["index"], flipped).mean() >= 0.8  # the most suspect are the flips
    assert list(sus.columns) == ol.SUSPECT_COLUMNS and (sus["rank"] == np.arange(1, len(sus) + 1)).all()
    assert (np.diff(sus["suspect_score"].to_numpy()) <= 1e-12).all()
    i = int(flipped[0])
    assert table.loc[i, "neighbour_class"] == f"k{y[i]}"  # the neighbours' class is the true one
    assert table.loc[i, "path"] == f"c/{i}.png"


def test_majority_ties_go_to_the_more_similar_class():
    # image 0 (label 0) has 4 neighbours: two of class 1 (similar) and two of class 2 (less similar)
    ind = np.array([[0, 1, 2, 3, 4]] + [[i, 0, 1, 2, 3] for i in range(1, 5)])
    dist = np.array([[0, 0.1, 0.1, 0.3, 0.3]] + [[0, 0.1, 0.1, 0.1, 0.1]] * 4)
    labels = np.array([0, 2, 2, 1, 1])
    s = ol.neighbour_label_scores(ind, dist, labels, k=4)
    assert s["neighbour_class"][0] == 2 and s["neighbour_class_share"][0] == 0.5
    assert s["other_label_fraction"][0] == 1.0
    # without labels for the neighbours there is nothing to compare
    s = ol.neighbour_label_scores(ind, dist, np.array([0, -1, -1, -1, -1]), k=4)
    assert s["n_labelled_neighbours"][0] == 0 and np.isnan(s["other_label_fraction"][0])


def test_retrieval_finds_the_query_first(blobs):
    x, y = blobs
    idx, sim = ol.nearest_neighbours(x, x[[7, 123]], k=5, block=64)
    assert list(idx[:, 0]) == [7, 123] and np.allclose(sim[:, 0], 1.0, atol=1e-5)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    brute = np.argsort(-(u[[7, 123]] @ u.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(idx, brute)
    t = ol.similar_table(x, x[42], paths=[f"p{i}" for i in range(400)], labels=y, class_names=list("abcde"), k=3)
    assert list(t.columns) == ["rank", "index", "path", "class_name", "similarity"]
    assert t.loc[0, "path"] == "p42" and t.loc[0, "class_name"] == "abcde"[y[42]]
    assert (np.diff(t["similarity"]) <= 0).all()


@pytest.mark.slow  # UMAP's first call in a process compiles its numba code (about 10 s)
def test_projections_are_seeded_and_cached(tmp_path, blobs):
    x, _ = blobs
    x = x[:150]
    times: dict[str, float] = {}
    a = pj.compute_projections(x, tmp_path, seed=1, timings=times)
    assert set(times) == {"pca", "knn", "umap", "umap15", "tsne"}
    assert a["pca"].shape == (150, 2) and a["umap"].shape == (150, 2) and a["umap15"].shape == (150, 15)
    assert a["tsne"].shape == (150, 2) and np.isfinite(a["tsne"]).all()
    assert 0 < a["pca_explained_variance_ratio"].sum() <= 1
    assert (tmp_path / pj.CACHE_FILE).is_file()
    times2: dict[str, float] = {}
    b = pj.compute_projections(x, tmp_path, seed=1, timings=times2)
    assert times2 == {}  # everything came from the cache
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    fresh = pj.compute_projections(x, None, seed=1, which=("pca", "umap"))
    np.testing.assert_array_equal(fresh["umap"], a["umap"])  # same seed, same numbers without the cache
    other = pj.compute_projections(x, tmp_path, seed=2, which=("pca", "umap"))
    assert not np.array_equal(other["umap"], a["umap"])
    times3: dict[str, float] = {}
    only = pj.compute_projections(x, None, seed=1, which=("umap",), timings=times3)
    assert set(times3) == {"knn", "umap"} and "pca" not in only  # only what was asked for
    np.testing.assert_array_equal(only["umap"], a["umap"])


def test_projection_cache_and_seeds_with_umap_stood_in(tmp_path, blobs, monkeypatch):
    """The test above for the fast tier: UMAP replaced, so no numba compile; PCA, t-SNE, the graph and the cache real."""
    calls = []

    def stand_in(features, *, n_components=2, seed=0, knn=None, **_):
        calls.append((n_components, seed, knn is not None and knn[0].shape[0] == len(features)))
        return np.asarray(features)[:, :n_components].astype(np.float32)

    monkeypatch.setattr(pj, "umap_projection", stand_in)
    x, _ = blobs
    x = x[:150]
    times: dict[str, float] = {}
    a = pj.compute_projections(x, tmp_path, seed=1, timings=times)
    assert set(times) == {"pca", "knn", "umap", "umap15", "tsne"}
    assert calls == [(2, 1, True), (15, 1, True)]  # both UMAPs get the seed and the one neighbour graph
    assert a["pca"].shape == (150, 2) and a["umap"].shape == (150, 2) and a["umap15"].shape == (150, 15)
    assert a["knn_indices"].shape == (150, pj.KNN_K + 1) and np.isfinite(a["tsne"]).all()
    times2: dict[str, float] = {}
    b = pj.compute_projections(x, tmp_path, seed=1, timings=times2)
    assert times2 == {} and len(calls) == 2  # everything came from the cache
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(pj.compute_projections(x, None, seed=1, which=("tsne",))["tsne"], a["tsne"])
    times_other: dict[str, float] = {}
    pj.compute_projections(x, tmp_path, seed=2, which=("pca", "tsne"), timings=times_other)
    assert set(times_other) == {"tsne"}  # another seed is another t-SNE; PCA is not seeded
    times3: dict[str, float] = {}
    only = pj.compute_projections(x, None, seed=1, which=("umap",), timings=times3)
    assert set(times3) == {"knn", "umap"} and "pca" not in only and "tsne" not in only


def test_tsne_subsample_is_stated_by_nan_rows(blobs):
    x, _ = blobs
    t = pj.tsne_projection(x[:120], seed=0, max_points=60)
    assert t["index"].size == 60
    assert np.isfinite(t["coords"][t["index"]]).all()
    assert np.isnan(np.delete(t["coords"], t["index"], axis=0)).all()
    assert pj.n_components_for(np.array([0.5, 0.3, 0.16, 0.04])) == 3
    assert pj.n_components_for(np.full(100, 0.01), cap=50) == 50
