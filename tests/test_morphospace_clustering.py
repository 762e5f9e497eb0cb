"""Clustering: recovery of separated blobs, HDBSCAN's size rule at 20,000 points, metrics, stability, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from palaeo_ssl.morphospace import clustering as cl


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=600, n_features=20, centers=6, cluster_std=1.0, center_box=(-15, 15), random_state=3)
    return x.astype(np.float32), y


def test_kmeans_known_k_recovers_blobs(blobs):
    x, y = blobs
    res = cl.cluster_morphospace({"space": x}, x, y, protocol="paper", seed=0)
    t = res.table.set_index("Algorithm")
    assert t.loc[cl.KMEANS_KNOWN, "ARI"] > 0.95
    assert t.loc[cl.KMEANS_KNOWN, "n_clusters"] == 6
    assert t.loc[cl.KMEANS_UNKNOWN, "n_clusters"] == 6  # the silhouette search finds K
    assert list(t.index) == list(cl.PAPER_ALGORITHMS)
    assert "Stability (ARI)" not in res.table  # paper protocol: the reference's columns
    assert res.silhouette_curves["space"][6] == max(res.silhouette_curves["space"].values())
    assert set(res.labels) == {("space", a) for a in cl.PAPER_ALGORITHMS}


def test_standard_protocol_adds_ward_hdbscan_and_stability(blobs):
    x, y = blobs
    res = cl.cluster_morphospace({"space": x}, x, y, protocol="standard", seed=0)
    t = res.table.set_index("Algorithm")
    assert list(t.index) == list(cl.STANDARD_ALGORITHMS)
    assert t.loc[cl.WARD, "ARI"] > 0.95
    assert t.loc[cl.HDBSCAN_STANDARD, "ARI"] > 0.9
    assert (t["Stability (ARI)"].between(-1, 1)).all()
    assert t.loc[cl.KMEANS_KNOWN, "Stability (ARI)"] > 0.9
    for col in ("ARI", "AMI", "NMI", "V-measure", "Purity", "Purity (excluding noise)", "Silhouette"):
        assert t[col].notna().all(), col
    again = cl.cluster_morphospace({"space": x}, x, y, protocol="standard", seed=0)
    assert res.table.equals(again.table)  # same seed, same numbers
    for key in res.labels:
        np.testing.assert_array_equal(res.labels[key], again.labels[key])


def test_without_labels_no_known_k_and_no_external_metrics(blobs):
    x, _ = blobs
    res = cl.cluster_morphospace({"space": x}, x, None, protocol="standard", seed=0)
    assert cl.KMEANS_KNOWN not in set(res.table["Algorithm"]) and cl.WARD not in set(res.table["Algorithm"])
    assert res.table["ARI"].isna().all() and res.table["Silhouette"].notna().all()


@pytest.mark.slow
def test_standard_hdbscan_on_30_clusters_of_20000_points():
    x, y = make_blobs(n_samples=20000, n_features=10, centers=30, cluster_std=1.0, center_box=(-30, 30), random_state=0)
    lab = cl.hdbscan_labels(x.astype(np.float32), "standard", seed=0)
    noise = float((lab < 0).mean())
    assert noise < 0.2
    assert adjusted_rand_score(y[lab >= 0], lab[lab >= 0]) > 0.8
    assert cl.hdbscan_standard_params(20000) == {"min_cluster_size": 71, "min_samples": 10}
    assert cl.hdbscan_paper_params(59244)["min_cluster_size"] == 1184


def test_subsampled_fits_label_every_image(blobs):
    x, y = blobs
    for lab in (cl.ward_labels(x, 6, seed=1, max_fit=200), cl.hdbscan_labels(x, "standard", seed=1, max_fit=200),
                cl.bgmm_labels(x, 6, seed=1, max_fit=200)):
        assert lab.shape == (600,)
        keep = lab >= 0
        assert keep.mean() > 0.8 and adjusted_rand_score(y[keep], lab[keep]) > 0.9
    np.testing.assert_array_equal(cl.ward_labels(x, 6, seed=1, max_fit=200), cl.ward_labels(x, 6, seed=1, max_fit=200))


def test_purity_with_and_without_noise():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0, 0, 1, 1, 1, -1])
    assert cl.purity(y, p) == pytest.approx(4 / 6)  # noise counted as wrong
    assert cl.purity(y, p, exclude_noise=True) == pytest.approx(4 / 5)
    assert cl.purity(y, np.full(6, -1)) == 0.0
    s = cl.clustering_scores(y, np.full(6, -1))
    assert s["n_clusters"] == 0 and s["Noise Fraction"] == 1.0 and s["ARI"] == 0.0 and np.isnan(s["Silhouette"])


def test_stability_measures_agreement(blobs):
    x, _ = blobs
    same = cl.stability(lambda z, s: cl.kmeans_labels(z, 6, s), x, seed=0)
    rand = cl.stability(lambda z, s: np.random.default_rng(s).integers(0, 6, z.shape[0]), x, seed=0)
    assert same > 0.95 and abs(rand) < 0.05
