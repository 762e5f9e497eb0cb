"""The morphospace stage on a memory-mapped store: the features are read in blocks, never copied whole.

The analyses get the features as a :class:`~palaeo_ssl.morphospace.rows.UnitRows` over the
memory-mapped array; the stage test makes turning it into one array an error.
"""

from __future__ import annotations

import numpy as np
import pytest

from palaeo_ssl import Embeddings, load_embeddings
from palaeo_ssl.morphospace import MorphospaceConfig, compute_morphospace
from palaeo_ssl.morphospace import disparity as dp
from palaeo_ssl.morphospace import projections as pj
from palaeo_ssl.morphospace import rows
from palaeo_ssl.morphospace.rows import UnitRows

N, D = 6000, 1024


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
def test_morphospace_stage_never_makes_the_features_one_array(mapped_store, monkeypatch):
    """Every step of the stage reads the memory-mapped features through UnitRows (blocks and subsets):
    turning them into one normalised array anywhere (``np.asarray``, ``astype``, a library call that
    converts its input) fails here."""
    emb = load_embeddings(mapped_store)
    made: list[str] = []

    def refuse(self, dtype=None, copy=None):
        import traceback

        made.append("".join(traceback.format_stack(limit=6)))
        raise AssertionError("the features were made one array (a full copy)")

    monkeypatch.setattr(UnitRows, "__array__", refuse)
    monkeypatch.setattr(pj, "umap_projection", _umap_stand_in)
    config = MorphospaceConfig(protocol="standard", n_boot=5, n_boot_std=2, tsne_max_points=1000,
                               rarefaction_repeats=2, rarefaction_max=100, n_permutations=9,
                               compare={"classes": (["G0_s"], ["G1_s"])})
    result = compute_morphospace(emb, config)
    assert not made, made[0]
    assert result.projections["umap"].shape == (N, 2) and len(result.tables["outliers"]) == N
    assert result.info["n_images"] == N


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
