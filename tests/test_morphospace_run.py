"""The morphospace stage (compute, write, run) and its command: every file written is read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from palaeo_ssl import Embeddings
from palaeo_ssl.cli import main
from palaeo_ssl.morphospace import explorer_inputs, groups_from_column, run_morphospace
from palaeo_ssl.report import compile_tex
from palaeo_ssl.testing import write_synthetic_image

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "rodgers2025"
N_PER, CLASSES, DIM = 40, ["alpha", "beta", "gamma_1", "delta"], 24


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A labelled store of 160 synthetic feature vectors whose images exist (small PNGs)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((len(CLASSES), DIM)) * 3
    feats, labels, paths = [], [], []
    for c, name in enumerate(CLASSES):
        for j in range(N_PER):
            feats.append(centres[c] + rng.standard_normal(DIM))
            labels.append(c)
            paths.append(f"{name}/img_{j:03d}.png")
    labels = np.array(labels)
    labels[[3, 50, 90]] = [1, 2, 3]  # three wrong labels
    for p in paths[::7]:  # some images exist, the others are drawn as unreadable tiles
        write_synthetic_image(root / p, size=(40, 30), seed=len(p))
    emb = Embeddings(np.array(feats, np.float32), paths, labels, CLASSES,
                     meta={"data_root": str(root), "dataset": "toy set"})
    return emb.save(tmp_path_factory.mktemp("store") / "store")


@pytest.fixture(scope="module")
def standard_result(store, tmp_path_factory):
    """The standard protocol with figures, a comparison and permutations (slow: the tests that read it are)."""
    out = tmp_path_factory.mktemp("morph") / "standard"
    return run_morphospace(store, out, n_boot=40, n_boot_std=5, compare={"classes": (["alpha"], ["beta", "delta"])},
                           n_permutations=99)


@pytest.fixture(scope="module")
def standard_run(standard_result):
    """The folder the standard run wrote."""
    return standard_result.files[-1].parent


@pytest.mark.slow
def test_standard_run_writes_and_reads_back_everything(standard_run, store):
    out = standard_run
    for stem in ("pca", "umap", "tsne", "dist_hist", "rarefaction", "outliers", "suspect_labels", "silhouette_k",
                 "umap_clusters_kmeans_known_k", "umap_clusters_kmeans_unknown_k", "umap_clusters_bayesian_gmm",
                 "umap_clusters_hdbscan", "umap_clusters_hdbscan_standard", "umap_clusters_ward_known_k"):
        for ext in ("png", "pdf"):
            f = out / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"

    clus = pd.read_csv(out / "clustering_metrics.csv")
    assert len(clus) == 12 and set(clus["Pipeline"]) == {"PCA", "Exploratory UMAP"}
    assert clus["Stability (ARI)"].between(-1, 1).all()
    assert clus[["ARI", "AMI", "NMI", "V-measure", "Purity"]].apply(lambda c: c.between(-1, 1)).all().all()
    assert (clus["Noise Fraction"].between(0, 1)).all()

    morph = pd.read_csv(out / "morphology_report.csv")
    assert len(morph) == 1 and morph.loc[0, "n_samples"] == 160 and morph.loc[0, "Dataset"] == "toy set"
    assert morph.loc[0, "mean_pairwise_distance_ci_low"] < morph.loc[0, "mean_pairwise_distance"] \
        < morph.loc[0, "mean_pairwise_distance_ci_high"]

    per = pd.read_csv(out / "disparity_per_class.csv")
    assert list(per["class"]) == CLASSES and per["n_samples"].sum() == 160
    assert per["rarefied_n"].nunique() == 1 and per["rarefied_effective_rank"].notna().all()

    rare = pd.read_csv(out / "rarefaction.csv")
    assert set(rare["group"]) == {"all images", *CLASSES}
    assert set(rare["metric"]) == {"mean_pairwise_distance", "effective_rank"}

    hist = pd.read_csv(out / "distance_histogram.csv")
    assert hist["all"].sum() == 160 * 159 // 2

    outl = pd.read_csv(out / "outliers.csv", keep_default_na=False)
    index = pd.read_csv(store / "index.csv", keep_default_na=False)
    assert len(outl) == 160 and sorted(outl["path"]) == sorted(index["path"])
    assert list(outl["outlier_rank"]) == list(range(1, 161))

    sus = pd.read_csv(out / "suspect_labels.csv", keep_default_na=False)
    assert {"alpha/img_003.png", "beta/img_010.png", "gamma_1/img_010.png"} <= set(sus["path"])
    assert set(sus["path"]) <= set(index["path"])

    labels = pd.read_csv(out / "cluster_labels.csv")
    assert len(labels) == 160 and "Exploratory UMAP / HDBSCAN (standard)" in labels

    test = pd.read_csv(out / "disparity_test.csv")
    assert test.loc[0, "group_a"] == "alpha" and test.loc[0, "group_b"] == "beta+delta"
    assert 0 < test.loc[0, "p_value"] <= 1 and test.loc[0, "n_a"] == 39  # one alpha image is labelled beta

    info = json.loads((out / "morphospace.json").read_text())
    assert info["n_images"] == 160 and info["protocol"] == "standard" and info["timings_s"]["total"] > 0
    with np.load(out / "projections.npz") as z:
        assert z["umap:coords"].shape == (160, 2)

    for tex in ("clustering_metrics.tex", "morphology_report.tex"):
        text = (out / tex).read_text()
        assert text.startswith("% requires: booktabs") and "\\begin{tabular}" in text


@pytest.mark.slow
def test_tex_compiles(standard_run):
    for tex in ("clustering_metrics.tex", "morphology_report.tex"):
        try:
            ok, log = compile_tex(standard_run / tex)
        except FileNotFoundError:
            pytest.skip("pdflatex is not installed")
        assert ok, log


@pytest.mark.slow
def test_columns_match_the_reference(standard_run):
    clus = pd.read_csv(standard_run / "clustering_metrics.csv")
    morph = pd.read_csv(standard_run / "morphology_report.csv")
    ref_clus = ["Pipeline", "Algorithm", "n_clusters", "ARI", "AMI", "Purity", "Silhouette", "DaviesBouldin",
                "Noise Fraction", "Components Used"]
    ref_morph = ["Dataset", "n_samples", "n_features", "n_pca_used", "metric", "mean_pairwise_distance",
                 "std_pairwise_distance", "mean_centroid_distance", "std_centroid_distance", "variance_sum",
                 "effective_rank"]
    assert list(clus.columns[:10]) == ref_clus and list(morph.columns[:11]) == ref_morph
    if REFERENCE.is_dir():  # the published tables, when present, have exactly these headers
        for ds in sorted(REFERENCE.iterdir()):
            assert list(pd.read_csv(ds / "clustering_metrics.csv").columns) == ref_clus
            assert list(pd.read_csv(ds / "morphology_report.csv").columns) == ref_morph
            assert set(pd.read_csv(ds / "clustering_metrics.csv")["Algorithm"]) <= set(clus["Algorithm"])


@pytest.mark.slow
def test_summary_and_paper_protocol_reuse_the_projections(standard_run, store, tmp_path, capsys):
    out = tmp_path / "paper"
    out.mkdir()
    shutil.copy(standard_run / "projections.npz", out / "projections.npz")
    code = main(["morphospace", str(store), "--out", str(out), "--protocol", "paper", "--no-progress",
                 "--no-figures", "--bootstrap", "20", "--bootstrap-std", "3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "160 images" in text and "best ARI" in text and "suspect_labels.csv" in text
    info = json.loads((out / "morphospace.json").read_text())
    assert not [k for k in info["timings_s"] if k.startswith("projection: ")]  # all from the cache
    clus = pd.read_csv(out / "clustering_metrics.csv")
    assert list(clus["Algorithm"].unique()) == ["KMeans (Known K)", "KMeans (Unknown K)", "Bayesian GMM", "HDBSCAN"]
    assert "Stability (ARI)" not in clus
    std = pd.read_csv(standard_run / "clustering_metrics.csv")
    merged = clus.merge(std, on=["Pipeline", "Algorithm"], suffixes=("", "_std"))
    np.testing.assert_allclose(merged["ARI"], merged["ARI_std"])  # same seed, same clusters
    assert not list(out.glob("*.png"))
    # the same inputs and seed give byte-identical tables
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(standard_run / "projections.npz", again / "projections.npz")
    assert main(["morphospace", str(store), "--out", str(again), "--protocol", "paper", "--no-progress",
                 "--no-figures", "--bootstrap", "20", "--bootstrap-std", "3"]) == 0
    csvs = sorted(p.name for p in out.glob("*.csv"))
    assert len(csvs) >= 8 and csvs == sorted(p.name for p in again.glob("*.csv"))
    for name in csvs + ["clustering_metrics.tex", "morphology_report.tex"]:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.slow
def test_unlabelled_store(store, tmp_path):
    from palaeo_ssl import load_embeddings

    emb = load_embeddings(store)
    emb = Embeddings(emb.features, emb.paths, np.full(len(emb), -1), [], meta=emb.meta)
    res = run_morphospace(emb, tmp_path, protocol="standard", seed=0, n_boot=10, n_boot_std=2, figures=False)
    assert "per_class" not in res.tables and len(res.tables["suspect_labels"]) == 0
    assert res.tables["clustering"]["ARI"].isna().all()
    assert set(res.tables["clustering"]["Algorithm"]) == {"KMeans (Unknown K)", "Bayesian GMM", "HDBSCAN",
                                                             "HDBSCAN (standard)"}
    assert not (tmp_path / "disparity_per_class.csv").exists()
    assert (tmp_path / "suspect_labels.csv").is_file()


@pytest.mark.slow
def test_explorer_inputs(standard_result, standard_run):
    inp = explorer_inputs(standard_result)
    assert inp["coords"].shape == (160, 2) and np.isfinite(inp["coords"]).all()
    assert inp["neighbours"].shape == (160, 11) and (inp["neighbours"][:, 0] == np.arange(160)).all()
    assert inp["neighbour_sim"][:, 0] == pytest.approx(1.0)
    assert len(inp["clusters"]) == 12 and all(v.shape == (160,) for v in inp["clusters"].values())
    outl = pd.read_csv(standard_run / "outliers.csv").sort_values("index")
    np.testing.assert_allclose(inp["outlier_score"], outl["outlier_score"])
    assert np.isfinite(inp["suspect_score"]).all()


def _period_table(store, folder) -> Path:
    from palaeo_ssl import load_embeddings

    emb = load_embeddings(store)
    manifest = folder / "manifest.csv"
    pd.DataFrame({"path": emb.paths, "period": ["Permian" if i % 2 else "Carboniferous" for i in range(160)]}) \
        .to_csv(manifest, index=False)
    return manifest


@pytest.mark.slow
def test_group_column_drives_the_disparity_test(store, tmp_path, capsys):
    manifest = _period_table(store, tmp_path)
    out = tmp_path / "m"
    assert main(["morphospace", str(store), "--out", str(out), "--no-progress", "--no-figures", "--bootstrap", "10",
                 "--bootstrap-std", "2", "--groups", str(manifest), "--group-column", "period",
                 "--permutations", "19"]) == 0
    assert pd.read_csv(out / "disparity_test.csv").loc[0, "n_b"] == 80
    capsys.readouterr()
    assert main(["morphospace", str(store), "--out", str(out), "--compare-classes", "alpha", "--vs", "nope"]) == 2
    assert "unknown class(es) ['nope']" in capsys.readouterr().err


def test_group_column_and_errors(store, tmp_path, capsys):
    from palaeo_ssl import load_embeddings

    emb = load_embeddings(store)
    manifest = _period_table(store, tmp_path)
    a_name, a, b_name, b = groups_from_column(emb, manifest, "period")
    assert (a_name, b_name) == ("Carboniferous", "Permian") and a.size == b.size == 80
    out = tmp_path / "m"
    assert main(["morphospace", str(store), "--out", str(out), "--groups", str(manifest)]) == 2
    assert "--group-column" in capsys.readouterr().err
    assert main(["morphospace", str(store), "--out", str(out), "--group-values", "a", "b"]) == 2  # not ignored
    assert "--group-values needs --groups" in capsys.readouterr().err
    assert main(["morphospace", str(tmp_path / "missing"), "--out", str(out)]) == 2


@pytest.mark.slow
def test_large_scatter_pdf_stays_small(tmp_path):
    from palaeo_ssl.plots.morphospace import plot_projection

    rng = np.random.default_rng(0)
    coords = rng.standard_normal((60000, 2))
    groups = rng.integers(-1, 50, 60000)
    names = [f"Genus_{i} species" for i in range(50)]
    paths = plot_projection(coords, groups, names, tmp_path / "big", title="60,000 points, 50 classes")
    pdf = tmp_path / "big.pdf"
    assert pdf in paths and 10_000 < pdf.stat().st_size < 3_000_000


# ---------------------------------------------------------------------- the fast tier
def _first_axes(features, *, n_components=2, seed=0, **_):
    """Stands in for UMAP in the fast tier: the first principal axes of the L2-normalised rows."""
    from palaeo_ssl.morphospace.projections import unit_rows

    x = np.asarray(unit_rows(features))  # the rows as one array (small here)
    u, s, _vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return (u[:, :n_components] * s[:n_components]).astype(np.float32)


@pytest.fixture(scope="module")
def small_result(store, tmp_path_factory):
    """The standard protocol on the store with small bootstrap and permutation counts, UMAP replaced.

    UMAP's first call in a process compiles its numba code (about 10 s); the slow tests run the
    real one. Everything around it (cache, clustering spaces, tables, explorer inputs) is the same code.
    """
    from palaeo_ssl.morphospace import MorphospaceConfig, compute_morphospace, projections

    config = MorphospaceConfig(n_boot=10, n_boot_std=2, rarefaction_repeats=3, n_permutations=19,
                               compare={"classes": (["alpha"], ["beta", "delta"])})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(projections, "umap_projection", _first_axes)
        return compute_morphospace(store, config, cache=tmp_path_factory.mktemp("small_morph"))


def test_small_morphospace_tables_written_and_read_back(small_result, tmp_path):
    from palaeo_ssl.morphospace import write_morphospace

    result = small_result
    assert result.projections["umap"].shape == (160, 2) and result.projections["umap15"].shape == (160, 15)
    assert set(result.tables) >= {"clustering", "morphology", "per_class", "rarefaction", "distance_histogram",
                                  "outliers", "suspect_labels", "disparity_test"}
    files = write_morphospace(result, tmp_path, figures=False)
    assert files and all(f.is_file() for f in files) and not list(tmp_path.glob("*.png"))
    clus = pd.read_csv(tmp_path / "clustering_metrics.csv")
    assert set(clus["Pipeline"]) == {"PCA", "Exploratory UMAP"} and clus["ARI"].between(-1, 1).all()
    assert pd.read_csv(tmp_path / "outliers.csv")["outlier_rank"].tolist() == list(range(1, 161))
    assert pd.read_csv(tmp_path / "disparity_test.csv").loc[0, "n_a"] == 39  # one alpha image is labelled beta
    assert pd.read_csv(tmp_path / "morphology_report.csv").loc[0, "n_samples"] == 160
    assert len(pd.read_csv(tmp_path / "cluster_labels.csv")) == 160
    for tex in ("clustering_metrics.tex", "morphology_report.tex"):
        assert (tmp_path / tex).read_text().startswith("% requires: booktabs")
    info = json.loads((tmp_path / "morphospace.json").read_text())
    assert info["n_images"] == 160 and info["protocol"] == "standard"
    inp = explorer_inputs(result)
    assert inp["coords"].shape == (160, 2) and inp["neighbours"].shape == (160, 11)
    np.testing.assert_allclose(inp["outlier_score"],
                               pd.read_csv(tmp_path / "outliers.csv").sort_values("index")["outlier_score"])


def test_small_morphospace_figures(small_result, store, tmp_path):
    from palaeo_ssl.plots import morphospace as pm

    r, emb = small_result, small_result.embeddings
    files = pm.plot_projection(r.projections["pca"], emb.labels, emb.class_names, tmp_path / "pca", title="PCA",
                               note="a note")
    files += pm.plot_cluster_panels(r.projections["umap"], dict(list(r.clusters.items())[:2]), tmp_path / "clusters",
                                    title="clusters")
    files += pm.plot_distance_histogram(r.tables["distance_histogram"], tmp_path / "dist_hist")
    files += pm.plot_rarefaction(r.tables["rarefaction"], tmp_path / "rarefaction", overall="all images")
    files += pm.plot_silhouette_search(r.clustering.silhouette_curves, {}, tmp_path / "silhouette_k")
    top = r.tables["outliers"].head(4)
    files += pm.plot_contact_sheet([emb.image_path(int(i)) for i in top["index"]] + [None], list("abcde"),
                                   tmp_path / "outliers", title="outliers")
    files += pm.plot_contact_sheet([], [], tmp_path / "empty", title="none", empty_message="nothing")
    for stem in ("pca", "clusters", "dist_hist", "rarefaction", "silhouette_k", "outliers", "empty"):
        assert tmp_path / f"{stem}.png" in files and tmp_path / f"{stem}.pdf" in files
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_misspelt_comparison_group_fails_before_anything_is_computed(store, monkeypatch):
    import palaeo_ssl.morphospace.run as mr
    from palaeo_ssl.errors import UserError
    from palaeo_ssl.morphospace import MorphospaceConfig, compute_morphospace

    def no_projections(*args, **kwargs):
        raise AssertionError("projections were computed before the groups were checked")

    monkeypatch.setattr(mr.pj, "compute_projections", no_projections)
    with pytest.raises(UserError, match=r"unknown class\(es\) \['nope'\]"):
        compute_morphospace(store, MorphospaceConfig(compare={"classes": (["alpha"], ["nope"])}))



def test_two_group_values_needed_names_the_parameter(store, tmp_path):
    from palaeo_ssl import load_embeddings
    from palaeo_ssl.params import ParameterError

    emb = load_embeddings(store)
    table = tmp_path / "groups.csv"
    pd.DataFrame({"path": emb.paths, "site": [f"s{i % 3}" for i in range(len(emb))]}).to_csv(table, index=False)
    with pytest.raises(ParameterError, match=r"holds 3 values .*name the two to compare \(values A B\)") as info:
        groups_from_column(emb, table, "site")
    assert info.value.message_for("--group-values").endswith("(--group-values A B)")


# ---------------------------------------------------------------------- the projection cache: only these features
def _quick_tsne(features, *, seed=0, **_):
    """Stands in for t-SNE in the fast tier (the cache, not t-SNE, is under test)."""
    coords = _first_axes(features, n_components=2)
    return {"coords": coords, "index": np.arange(len(coords)), "perplexity": np.asarray(20.0)}


@pytest.fixture()
def quick_projections(monkeypatch):
    from palaeo_ssl.morphospace import projections

    monkeypatch.setattr(projections, "umap_projection", _first_axes)
    monkeypatch.setattr(projections, "tsne_projection", _quick_tsne)


def _part_labelled_store(folder: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(3, 16))[y] * 2 + rng.normal(size=(60, 16))).astype(np.float32)
    y[::4] = -1  # 15 of 60 unlabelled
    return Embeddings(x, [f"img_{i}.png" for i in range(60)], y, ["a", "b", "c"]).save(folder)


@pytest.mark.slow
def test_a_resaved_store_is_not_given_the_old_features_projections(tmp_path, quick_projections):
    from palaeo_ssl import load_embeddings
    from palaeo_ssl.morphospace import MorphospaceConfig, compute_morphospace

    config = MorphospaceConfig(protocol="paper", n_boot=5, n_boot_std=2, rarefaction_repeats=2)
    folder = _part_labelled_store(tmp_path / "store")
    first = compute_morphospace(folder, config, cache=tmp_path / "morph")
    old = load_embeddings(folder)
    other = np.asarray(load_embeddings(_part_labelled_store(tmp_path / "other", seed=1)).features)
    Embeddings(other, old.paths, old.labels, old.class_names).save(folder)  # other features, the same index
    again = compute_morphospace(folder, config, cache=tmp_path / "morph")
    fresh = compute_morphospace(folder, config, cache=tmp_path / "fresh")
    np.testing.assert_allclose(again.projections["pca"], fresh.projections["pca"], atol=1e-5)
    assert not np.allclose(again.projections["pca"], first.projections["pca"], atol=1e-3)
    np.testing.assert_array_equal(again.tables["outliers"]["outlier_score"], fresh.tables["outliers"]["outlier_score"])


@pytest.mark.slow
def test_a_labelled_subset_after_the_whole_store_gets_its_own_projections(tmp_path, quick_projections):
    from palaeo_ssl import load_embeddings
    from palaeo_ssl.morphospace import MorphospaceConfig, compute_morphospace

    config = MorphospaceConfig(protocol="paper", n_boot=5, n_boot_std=2, rarefaction_repeats=2)
    emb = load_embeddings(_part_labelled_store(tmp_path / "store"))
    whole = compute_morphospace(emb, config, cache=tmp_path / "morph")
    part = compute_morphospace(emb.labelled(), config, cache=tmp_path / "morph")  # the same folder
    assert whole.projections["pca"].shape[0] == 60 and part.projections["pca"].shape[0] == 45
    assert part.projections["knn_indices"].max() < 45 and len(part.tables["outliers"]) == 45
    fresh = compute_morphospace(emb.labelled(), config, cache=tmp_path / "fresh")
    np.testing.assert_allclose(part.projections["umap"], fresh.projections["umap"], atol=1e-5)


def test_a_cached_array_of_another_row_count_is_never_returned(tmp_path):
    from palaeo_ssl.morphospace.projections import ProjectionCache, cache_key

    cache = ProjectionCache(tmp_path)
    key = cache_key("same-key", "pca", {}, None)
    cache.put("pca", key, {"scores": np.zeros((10, 3)), "explained_variance_ratio": np.ones(3)})
    assert ProjectionCache(tmp_path).get("pca", key, n_rows=10) is not None
    assert ProjectionCache(tmp_path).get("pca", key, n_rows=8) is None  # same key, other rows: recomputed


def test_the_projection_cache_is_keyed_by_the_features_and_rows_held(tmp_path):
    """The fast counterpart of the two tests above, at the cache itself (PCA and the neighbour graph)."""
    from palaeo_ssl import load_embeddings
    from palaeo_ssl.morphospace.projections import compute_projections

    def pca_of(emb, folder):
        return compute_projections(np.asarray(emb.features), folder, which=("pca",), identity=emb.identity())["pca"]

    folder = _part_labelled_store(tmp_path / "store")
    emb = load_embeddings(folder)
    first = pca_of(emb, tmp_path / "morph")
    part = pca_of(emb.labelled(), tmp_path / "morph")  # a subset into the same folder: its own rows
    assert part.shape == (45, 2)
    np.testing.assert_allclose(part, pca_of(emb.labelled(), tmp_path / "fresh"), atol=1e-5)
    other = np.asarray(load_embeddings(_part_labelled_store(tmp_path / "other", seed=1)).features)
    Embeddings(other, emb.paths, emb.labels, emb.class_names).save(folder)  # other features, the same index
    resaved = load_embeddings(folder)
    again = pca_of(resaved, tmp_path / "morph")
    np.testing.assert_allclose(again, pca_of(resaved, tmp_path / "fresh2"), atol=1e-5)
    assert not np.allclose(again, first, atol=1e-3)
