"""The morphospace stage on a memory-mapped store holds no second copy of the features and no N x N matrix.

tracemalloc sees every array numpy allocates (not the pages of the memory-mapped
file), so its peak during the analysis is the working memory of the stage: a
normalised or ``astype`` copy of the features alone would exceed the limit.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from palaeo_ssl import Embeddings, load_embeddings
from palaeo_ssl.morphospace import MorphospaceConfig, compute_morphospace
from palaeo_ssl.morphospace import disparity as dp
from palaeo_ssl.morphospace import projections as pj
from palaeo_ssl.morphospace import rows
from palaeo_ssl.morphospace.rows import UnitRows

N, D = 16000, 1024


@pytest.fixture(scope="module")
def mapped_store(tmp_path_factory):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, size=N)
    centres = rng.normal(size=(8, 32)).astype(np.float32)
    basis = rng.normal(size=(32, D)).astype(np.float32)
    x = (centres[y] + rng.normal(size=(N, 32)).astype(np.float32)) @ basis
    x += rng.standard_t(3, size=(N, D)).astype(np.float32)  # not unit rows: a copy would be needed to normalise
    folder = tmp_path_factory.mktemp("mapped") / "store"
    Embeddings(x, [f"G{c}_s/img_{i}.png" for i, c in enumerate(y)], y, [f"G{c}_s" for c in range(8)]).save(folder)
    return folder


@pytest.mark.slow
def test_unit_rows_of_a_memmap_are_read_in_blocks(mapped_store, monkeypatch):
    monkeypatch.setattr(rows, "BLOCK", 1000)
    emb = load_embeddings(mapped_store)
    assert isinstance(emb.features, np.memmap) or not emb.features.flags.owndata
    x = dp.unit_rows(emb.features)
    assert isinstance(x, UnitRows)
    ref = np.asarray(emb.features[:3000], dtype=np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(x[:3000], ref, atol=1e-6)
    w = np.random.default_rng(1).integers(0, 3, size=N).astype(np.float64)
    v = np.random.default_rng(2).normal(size=D)
    np.testing.assert_allclose((x @ v)[:3000], ref @ v, rtol=1e-4, atol=1e-4)
    # bootstrap-weighted sums and the Gram statistics equal those of an explicit normalised copy
    full = np.asarray(x)  # the one deliberate full copy of this test
    assert dp._linear_stats(x, w) == pytest.approx(dp._linear_stats(full, w), rel=1e-5)
    assert dp._pairwise_std(x, w) == pytest.approx(dp._pairwise_std(full, w), rel=1e-4)
    xc = full - full.mean(axis=0)
    fourth = float((np.einsum("ij,ij->i", xc, xc, dtype=np.float64) ** 2).sum())
    eigs = np.linalg.eigvalsh((xc.T @ xc).astype(np.float64)) / N
    assert dp._effective_rank(x) == pytest.approx(dp._lw_effective_rank(eigs, float(N), D, fourth), rel=1e-4)
    # PCA block by block equals scikit-learn's on the copy (up to float32 rounding)
    from sklearn.decomposition import PCA

    ours = pj.pca_projection(x, n_components=5)
    ref_pca = PCA(n_components=5, svd_solver="covariance_eigh").fit(full)
    np.testing.assert_allclose(ours["explained_variance_ratio"], ref_pca.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(np.abs(ours["scores"][:500]), np.abs(ref_pca.transform(full[:500])), atol=2e-3)


def _umap_stand_in(features, *, n_components=2, standin=None, **_):
    """UMAP's own working memory is the library's (its graph, its numba layout); replaced here by the
    stand-in rows the stage hands it, so the test measures the stage's code around it."""
    assert standin is not None, "the stage must give UMAP the PCA scores above 4,096 images, not the features"
    return np.ascontiguousarray(standin[:, :n_components], dtype=np.float32)


@pytest.mark.slow
def test_morphospace_stage_holds_no_copy_of_the_features(mapped_store, monkeypatch, tmp_path):
    from palaeo_ssl.morphospace import run as morph_run

    monkeypatch.setattr(rows, "BLOCK", 1024)
    monkeypatch.setattr(pj, "KNN_BLOCK_CELLS", 1 << 18)
    monkeypatch.setattr(pj, "umap_projection", _umap_stand_in)
    monkeypatch.setattr(morph_run, "WORKING_MEMORY_MB", 16)  # scikit-learn's chunks of pairwise distances
    # silhouette and Davies-Bouldin score a seeded subsample held in memory (5,000 rows by default: bounded,
    # not growing with N, but at this test's N a third of the features): a small one here
    from palaeo_ssl.morphospace import clustering

    monkeypatch.setattr(clustering, "SILHOUETTE_MAX_POINTS", 1000)
    # the paper's HDBSCAN rule (min_samples = 2% of the images fitted) holds fitted x min_samples neighbour
    # distances: bounded by HDBSCAN_MAX_POINTS (20,000 x 400), 80 MB at this N; a smaller fit here
    monkeypatch.setattr(clustering, "HDBSCAN_MAX_POINTS", 3000)
    # t-SNE embeds an in-memory subsample (at most tsne_max_points rows): kept small here so that the
    # assertion is about the rest of the stage
    config = MorphospaceConfig(protocol="paper", n_boot=5, n_boot_std=2, tsne_max_points=1000,
                               rarefaction_repeats=2, rarefaction_max=100)
    # imports and compilation allocate Python objects once per process: done before measuring
    rng = np.random.default_rng(3)
    small = Embeddings(rng.normal(size=(300, D)).astype(np.float32), [f"G{i % 3}_s/{i}.png" for i in range(300)],
                       np.arange(300) % 3, ["G0_s", "G1_s", "G2_s"]).save(tmp_path / "small")
    compute_morphospace(small, config)
    emb = load_embeddings(mapped_store)
    feature_bytes = emb.features.nbytes
    tracemalloc.start()
    try:
        result = compute_morphospace(emb, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.projections["umap"].shape == (N, 2)
    assert len(result.tables["outliers"]) == N
    print(f"peak traced {peak / 2**20:.1f} MiB for {feature_bytes / 2**20:.1f} MiB of features")
    # a second (N, D) float32 array alone is feature_bytes; an N x N float32 matrix is 16x that
    assert peak < 0.8 * feature_bytes, f"peak {peak / 2**20:.1f} MiB: the stage copied the features"


@pytest.mark.slow
def test_nn_descent_recall_is_measured_and_recorded(mapped_store, monkeypatch):
    monkeypatch.setattr(pj, "EXACT_KNN_MAX", 5000)  # N = 12,000: NN-descent
    emb = load_embeddings(mapped_store)
    x = dp.unit_rows(emb.features)
    res = pj.compute_projections(x, None, 0, which=("pca", "umap"))
    assert 0.8 <= float(res["knn_recall"]) <= 1.0
    exact, _ = pj.knn_graph(x, pj.KNN_K, exact=True)
    assert pj.knn_recall(x, exact, sample=200) == pytest.approx(1.0)
    broken = exact.copy()
    broken[:, 1:16] = np.random.default_rng(0).integers(0, N, size=(N, 15))
    assert pj.knn_recall(x, broken, sample=200) < 0.6
