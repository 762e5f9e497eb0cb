"""The whole morphospace analysis of one embedding store, written into one folder.

:func:`run_morphospace` (the ``palaeo-ssl morphospace`` command) computes the
projections (cached in ``projections.npz``), the clusterings, the disparity
with its intervals, rarefaction and distance histogram, the outlier and
suspect-label scores, and writes every table and figure; :func:`explorer_inputs`
reads them back for the interactive explorer.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import report
from ..embeddings import Embeddings, load_embeddings
from ..errors import UserError
from . import clustering as cl
from . import disparity as dp
from . import outliers as ol
from . import projections as pj

log = logging.getLogger(__name__)

PROTOCOLS = ("paper", "standard")
CONTACT_SHEET_SIZE = 25
#: the rarefaction group of the whole set
ALL_IMAGES = "all images"
#: columns of clustering_metrics.tex (all columns are in the CSV)
TEX_CLUSTER_COLUMNS = ["Pipeline", "Algorithm", "n_clusters", "ARI", "AMI", "Purity", "Purity (excluding noise)",
                       "Silhouette", "DaviesBouldin", "Noise Fraction", "Stability (ARI)"]


def slug(text: str) -> str:
    """File-name form of an algorithm name: ``"KMeans (Known K)"`` -> ``"kmeans_known_k"``."""
    out = "".join(ch.lower() if ch.isalnum() else "_" for ch in text)
    return "_".join(p for p in out.split("_") if p)


#: scikit-learn's chunk size for pairwise distances (MiB); its default (1024) made t-SNE's
#: neighbour search on 20,000 images add 1.7 GB to the peak memory
WORKING_MEMORY_MB = 128


@contextmanager
def _limits(n_threads: int | None):
    """BLAS/OpenMP threads (None: library default) and scikit-learn's working memory for the run."""
    import sklearn
    from threadpoolctl import threadpool_limits

    with sklearn.config_context(working_memory=WORKING_MEMORY_MB):
        if n_threads is None:
            yield
        else:
            with threadpool_limits(int(n_threads)):
                yield


def dataset_name(emb: Embeddings) -> str:
    """A readable name for the data set of ``emb`` (meta ``dataset``, data root or store folder name)."""
    for key in ("dataset", "data_root", "data", "store_path"):
        v = emb.meta.get(key)
        if v:
            return Path(str(v)).name if key != "dataset" else str(v)
    return "dataset"


# ---------------------------------------------------------------------- groups for the permutation test
def groups_from_classes(emb: Embeddings, classes_a: Sequence[str], classes_b: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the images in ``classes_a`` and in ``classes_b`` (class names)."""
    names = list(emb.class_names)
    missing = [c for c in [*classes_a, *classes_b] if c not in names]
    if missing:
        raise UserError(f"unknown class(es) {missing}; the store's classes are: {', '.join(names)}")
    if set(classes_a) & set(classes_b):
        raise UserError("a class cannot be in both groups of the disparity test")
    a = np.flatnonzero(np.isin(emb.labels, [names.index(c) for c in classes_a]))
    b = np.flatnonzero(np.isin(emb.labels, [names.index(c) for c in classes_b]))
    return a, b


def groups_from_column(emb: Embeddings, table: str | Path, column: str,
                       values: Sequence[str] | None = None) -> tuple[str, np.ndarray, str, np.ndarray]:
    """Two groups of images from a column of a CSV manifest with a ``path`` column.

    Paths are matched to the store's paths (as in its ``index.csv``, or by file
    name when those are not unique). With ``values`` None the column must hold
    exactly two distinct values. Returns ``(value_a, rows_a, value_b, rows_b)``.
    """
    try:
        df = pd.read_csv(table, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the group table {table}: {exc}") from None
    if "path" not in df.columns or column not in df.columns:
        raise UserError(f"{table} needs a 'path' column and a '{column}' column (it has: {', '.join(df.columns)})")
    key = {Path(p).as_posix(): v for p, v in zip(df["path"], df[column])}
    by_name = {Path(p).name: v for p, v in zip(df["path"], df[column])}
    if len(by_name) != len(df):
        by_name = {}
    vals = np.array([key.get(Path(p).as_posix(), by_name.get(Path(p).name, "")) for p in emb.paths], dtype=object)
    present = [v for v in dict.fromkeys(vals) if v != ""]
    if values is None:
        if len(present) != 2:
            raise UserError(f"column '{column}' holds {len(present)} values for the stored images "
                            f"({', '.join(map(str, present[:10]))}); name the two to compare with --group-values A B")
        values = present
    if len(values) != 2:
        raise UserError("give exactly two group values to compare")
    a, b = (np.flatnonzero(vals == v) for v in values)
    for v, ix in zip(values, (a, b)):
        if ix.size < 2:
            raise UserError(f"group '{v}' of column '{column}' matches {ix.size} stored image(s); it needs at least 2")
    return str(values[0]), a, str(values[1]), b


# ---------------------------------------------------------------------- the run
def run_morphospace(
    embeddings: Embeddings | str | Path,
    out: str | Path,
    protocol: str = "standard",
    seed: int = 0,
    *,
    k_neighbours: int = ol.DEFAULT_K,
    n_boot: int = 200,
    n_boot_std: int = 20,
    tsne_max_points: int | None = pj.TSNE_MAX_POINTS,
    rarefaction_max: int = 500,
    rarefaction_repeats: int = 20,
    compare: dict[str, Any] | None = None,
    n_permutations: int = 999,
    threads: int | None = 1,
    figures: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Projections, clustering, disparity, outliers and suspect labels of ``embeddings`` into ``out``.

    Parameters
    ----------
    embeddings : an :class:`Embeddings` or a store folder
    out : folder for the tables, figures and the ``projections.npz`` cache
    protocol : ``"paper"`` (the reference's clusterings) or ``"standard"`` (plus
        HDBSCAN with a size rule that scales, Ward, and stability)
    seed : seed of every random step (same inputs + seed = same numbers)
    k_neighbours : neighbours for the outlier and suspect-label scores
    n_boot, n_boot_std : bootstrap replicates (the std of pairwise distances needs a
        Gram matrix per replicate, so it uses the first ``n_boot_std``)
    tsne_max_points : t-SNE on a seeded subsample of this many images above it (None: all)
    rarefaction_max, rarefaction_repeats : largest subsample size and repeats per size
    compare : optional permutation test between two groups:
        ``{"classes": (list_a, list_b)}`` or ``{"table": csv, "column": name, "values": (a, b) | None}``
    threads : BLAS/OpenMP threads for the whole analysis (default 1: on a shared CPU,
        multi-threaded BLAS on many small matrices is several times slower); None = library default
    figures : write the figures (PNG and PDF)

    Returns
    -------
    dict with ``files`` (paths written), ``timings`` (stage -> seconds), ``tables``
    (name -> DataFrame: ``clustering``, ``morphology``, ``per_class``, ``rarefaction``,
    ``distance_histogram``, ``outliers``, ``suspect_labels``, ``disparity_test``),
    ``projections`` (see :func:`~palaeo_ssl.morphospace.projections.compute_projections`),
    ``clusters`` (``{"<pipeline> / <algorithm>": (N,) labels}``) and ``peak_rss_mb``.
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    emb = load_embeddings(embeddings)
    n = len(emb)
    if n < 5:
        raise UserError(f"the morphospace needs at least 5 images; this store has {n}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        x = dp.unit_rows(np.asarray(emb.features))
    except ValueError as exc:
        raise UserError(f"{exc}; remove that image from the store (re-extract) and try again") from None
    timings: dict[str, float] = {}
    rss: dict[str, float] = {}  # peak RSS (MiB) of the process after each stage
    files: list[Path] = []
    tables: dict[str, pd.DataFrame] = {}
    name = dataset_name(emb)
    labels = emb.labels if emb.has_labels else None
    stages = ["projections", "clustering", "disparity", "outliers"] + (["figures"] if figures else [])
    bar = _progress(len(stages), progress)
    t_all = time.perf_counter()

    with _limits(threads):
        # 1. projections (cached)
        bar.set_description("projections")
        t0 = time.perf_counter()
        proj_times: dict[str, float] = {}
        proj = pj.compute_projections(x, out, seed, tsne_max_points=tsne_max_points, timings=proj_times)
        for k, v in proj_times.items():
            timings[f"projection: {k}"] = v
        timings["projections"] = time.perf_counter() - t0
        rss["projections"] = report.peak_rss_mb()
        n_pca = pj.n_components_for(proj["pca_variance_ratio"])
        spaces = {cl.PIPELINE_PCA: proj["pca_scores"][:, :n_pca]}
        if "umap15" in proj:
            spaces[cl.PIPELINE_UMAP] = proj["umap15"]
        files.append(out / pj.CACHE_FILE)
        bar.update()

        # 2. clustering
        bar.set_description("clustering")
        t0 = time.perf_counter()
        clus_times: dict[str, float] = {}
        clus = cl.cluster_morphospace(spaces, x, labels, protocol=protocol, seed=seed, timings=clus_times)
        for k, v in clus_times.items():
            timings[f"clustering: {k}"] = v
        ctab = clus.table
        tables["clustering"] = ctab
        files += report.write_table(
            ctab, out / "clustering_metrics", columns=[c for c in TEX_CLUSTER_COLUMNS if c in ctab.columns],
            headers={"n_clusters": "Clusters", "Noise Fraction": "Noise", "Purity (excluding noise)": "Purity (no noise)",
                     "Stability (ARI)": "Stability"},
            bold={"ARI": "max", "AMI": "max"}, group_by="Pipeline", digits=3,
            caption=(f"Clustering of {name} ({n} images, {protocol} protocol). Silhouette (cosine) and "
                     f"Davies-Bouldin on one seeded subsample of {min(n, cl.SILHOUETTE_MAX_POINTS)} L2-normalised "
                     "feature vectors for every algorithm; purity counts noise as wrong, 'no noise' leaves it out"
                     + ("; stability: mean ARI between 5 seeded runs on 90% subsamples" if protocol == "standard" else "")
                     + "."))
        cluster_cols = {f"{p} / {a}": lab for (p, a), lab in clus.labels.items()}
        lab_df = pd.DataFrame({"index": np.arange(n), "path": emb.paths, **cluster_cols})
        files.append(report.write_csv(lab_df, out / "cluster_labels.csv"))
        timings["clustering"] = time.perf_counter() - t0
        rss["clustering"] = report.peak_rss_mb()
        bar.update()

        # 3. disparity
        bar.set_description("disparity")
        t0 = time.perf_counter()
        morph = dp.disparity_table(x, dataset=name, n_boot=n_boot, n_boot_gram=n_boot_std, seed=seed)
        tables["morphology"] = morph
        files.append(report.write_csv(morph, out / "morphology_report.csv"))
        files.append(_write_morphology_tex(morph, out / "morphology_report.tex", name))
        timings["disparity: bootstrap"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        groups: dict[str, np.ndarray] = {ALL_IMAGES: np.arange(n)}
        if labels is not None:
            for c, cname in enumerate(emb.class_names):
                idx = np.flatnonzero(emb.labels == c)
                if idx.size:
                    groups[cname] = idx
        rare = dp.rarefaction(x, groups, max_size=rarefaction_max, n_repeats=rarefaction_repeats, seed=seed)
        tables["rarefaction"] = rare
        files.append(report.write_csv(rare, out / "rarefaction.csv"))
        timings["disparity: rarefaction"] = time.perf_counter() - t1
        if labels is not None:
            t1 = time.perf_counter()
            per = dp.disparity_per_class(x, emb.labels, emb.class_names, n_boot=n_boot, n_boot_gram=n_boot_std,
                                         seed=seed, rarefied=rare)
            tables["per_class"] = per
            files.append(report.write_csv(per, out / "disparity_per_class.csv"))
            timings["disparity: per class"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        hist = dp.distance_histogram(x, labels, seed=seed)
        tables["distance_histogram"] = hist
        files.append(report.write_csv(hist, out / "distance_histogram.csv"))
        if compare:
            test = _disparity_test(emb, x, compare, n_permutations, seed)
            tables["disparity_test"] = test
            files.append(report.write_csv(test, out / "disparity_test.csv"))
        timings["disparity: histogram and test"] = time.perf_counter() - t1
        timings["disparity"] = time.perf_counter() - t0
        rss["disparity"] = report.peak_rss_mb()
        bar.update()

        # 4. outliers and suspect labels
        bar.set_description("outliers")
        t0 = time.perf_counter()
        scores = ol.neighbourhood_table(proj["knn_indices"], proj["knn_distances"], paths=emb.paths,
                                        labels=labels, class_names=emb.class_names, k=k_neighbours)
        outl = scores.sort_values("outlier_rank").reset_index(drop=True)
        tables["outliers"] = outl
        files.append(report.write_csv(outl, out / "outliers.csv"))
        sus = ol.suspect_labels(scores)
        tables["suspect_labels"] = sus
        files.append(report.write_csv(sus, out / "suspect_labels.csv"))
        timings["outliers"] = time.perf_counter() - t0
        rss["outliers"] = report.peak_rss_mb()
        bar.update()

        # 5. figures
        if figures:
            bar.set_description("figures")
            t0 = time.perf_counter()
            files += _write_figures(out, emb, proj, clus, hist, rare, outl, sus, name)
            timings["figures"] = time.perf_counter() - t0
            rss["figures"] = report.peak_rss_mb()
            bar.update()
    bar.close()
    timings["total"] = time.perf_counter() - t_all
    peak = report.peak_rss_mb()
    run_info = {
        "command": "morphospace", "protocol": protocol, "seed": seed, "dataset": name,
        "n_images": n, "n_features": int(x.shape[1]), "n_labelled": int((emb.labels >= 0).sum()),
        "n_classes": int(emb.n_classes), "pca_components_for_95pct": int(n_pca),
        "settings": {
            "umap_2d": pj.UMAP_2D, "umap_clustering": pj.UMAP_CLUSTER, "tsne": pj.TSNE_SETTINGS,
            "tsne_max_points": tsne_max_points, "tsne_points": int(proj.get("tsne_index", np.arange(0)).size),
            "knn": "exact" if n <= pj.EXACT_KNN_MAX else "NN-descent (pynndescent)",
            "k_neighbours": k_neighbours, "n_boot": n_boot, "n_boot_std": n_boot_std,
            "rarefaction_max": rarefaction_max, "rarefaction_repeats": rarefaction_repeats,
            "silhouette_points": int(min(n, cl.SILHOUETTE_MAX_POINTS)), "metric_space": cl.METRIC_SPACE,
            "hdbscan_max_points": cl.HDBSCAN_MAX_POINTS, "bgmm_max_points": cl.BGMM_MAX_POINTS,
            "ward_max_points": cl.WARD_MAX_POINTS, "stability_max_points": cl.STABILITY_MAX_POINTS,
            "threads": threads,
        },
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "peak_rss_mb": round(peak, 1),
        "peak_rss_mb_after_stage": {k: round(v, 1) for k, v in rss.items()},
        "versions": report.library_versions(),
    }
    files.append(report.write_json(out / "morphospace.json", run_info))
    return {"files": [Path(f) for f in files], "timings": timings, "tables": tables, "projections": proj,
            "clusters": cluster_cols, "peak_rss_mb": peak,
            "info": run_info}


#: the name the pipeline uses
run_morphospace_report = run_morphospace


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="morphospace", unit="stage", disable=not enabled)


def _disparity_test(emb: Embeddings, x: np.ndarray, compare: dict[str, Any], n_permutations: int, seed: int) -> pd.DataFrame:
    if "classes" in compare:
        ca, cb = compare["classes"]
        a, b = groups_from_classes(emb, ca, cb)
        name_a, name_b = "+".join(ca), "+".join(cb)
    else:
        name_a, a, name_b, b = groups_from_column(emb, compare["table"], compare["column"], compare.get("values"))
    if np.intersect1d(a, b).size:
        raise UserError("the two groups of the disparity test share images")
    if a.size < 2 or b.size < 2:
        raise UserError(f"each group of the disparity test needs at least 2 images (got {a.size} and {b.size})")
    res = dp.permutation_test(x, a, b, metric="mean_pairwise_distance", n_permutations=n_permutations, seed=seed)
    return pd.DataFrame([{"group_a": name_a, "group_b": name_b, **res}])


def _write_morphology_tex(morph: pd.DataFrame, path: Path, name: str) -> Path:
    row = morph.iloc[0]
    long = pd.DataFrame([
        {"Quantity": q.replace("_", " "), "Estimate": float(row[q]),
         "95% CI low": float(row.get(f"{q}_ci_low", np.nan)), "95% CI high": float(row.get(f"{q}_ci_high", np.nan))}
        for q in dp.DISPARITY_COLUMNS
    ])
    tex = report.latex_table(
        long, digits=4,
        caption=(f"Disparity of {name} ({int(row['n_samples'])} images, {int(row['n_features'])} features, cosine). "
                 f"Percentile bootstrap intervals ({int(row['n_bootstrap'])} replicates; "
                 f"{int(row['n_bootstrap_std'])} for the std of pairwise distances, which is computed exactly over all "
                 "pairs). For unit vectors the mean pairwise distance equals the variance sum exactly and the mean "
                 "centroid distance is a function of it. The effective rank has no bootstrap interval "
                 "(resampling duplicates images and lowers it); see the rarefaction."))
    report.atomic_write_text(path, tex)
    return path


def _write_figures(out: Path, emb: Embeddings, proj: dict, clus: cl.ClusteringResult, hist: pd.DataFrame,
                   rare: pd.DataFrame, outl: pd.DataFrame, sus: pd.DataFrame, name: str) -> list[Path]:
    from ..plots import morphospace as pm

    files: list[Path] = []
    groups = emb.labels
    names = emb.class_names
    evr = proj["pca_explained_variance_ratio"]
    files += pm.plot_projection(proj["pca"], groups, names, out / "pca", title=f"{name}: PCA",
                                axis_labels=(f"PC1 ({evr[0]:.1%} of variance)", f"PC2 ({evr[1]:.1%})" if len(evr) > 1 else "PC2"),
                                note=f"first two components explain {evr[:2].sum():.1%} of the variance")
    if "umap" in proj:
        files += pm.plot_projection(proj["umap"], groups, names, out / "umap", title=f"{name}: UMAP",
                                    axis_labels=("UMAP 1", "UMAP 2"), note="cosine, 30 neighbours, min_dist 0.1")
    if "tsne" in proj:
        m = int(proj["tsne_index"].size)
        note = f"cosine, perplexity {float(proj['tsne_perplexity']):g}"
        if m < len(emb):
            note += f"; t-SNE of a seeded random subsample of {m:,} of {len(emb):,} images"
        files += pm.plot_projection(proj["tsne"], groups, names, out / "tsne", title=f"{name}: t-SNE",
                                    axis_labels=("t-SNE 1", "t-SNE 2"), note=note)
    if "umap" in proj:
        algos = list(dict.fromkeys(a for (_, a) in clus.labels))
        for algo in algos:
            panels = {f"{p}: {algo}": lab for (p, a), lab in clus.labels.items() if a == algo}
            files += pm.plot_cluster_panels(proj["umap"], panels, out / f"umap_clusters_{slug(algo)}",
                                            title=f"{name}: {algo} clusters on the 2-D UMAP")
    if clus.silhouette_curves:
        chosen = {r["Pipeline"]: int(r["n_clusters"]) for r in clus.table.to_dict("records")
                  if r["Algorithm"] == cl.KMEANS_UNKNOWN}
        files += pm.plot_silhouette_search(clus.silhouette_curves, chosen, out / "silhouette_k")
    files += pm.plot_distance_histogram(hist, out / "dist_hist", title=f"{name}: pairwise cosine distances")
    files += pm.plot_rarefaction(rare, out / "rarefaction", overall=ALL_IMAGES)
    top = outl.head(CONTACT_SHEET_SIZE)
    files += pm.plot_contact_sheet(
        [emb.image_path(int(i)) for i in top["index"]],
        [f"#{r.outlier_rank} {Path(r.path).name}\n{r.class_name or 'unlabelled'}\nLOF {r.outlier_score:.2f}"
         for r in top.itertuples()],
        out / "outliers", title=f"{name}: the {len(top)} most outlying images (local outlier factor)")
    top = sus.head(CONTACT_SHEET_SIZE)
    files += pm.plot_contact_sheet(
        [emb.image_path(int(i)) for i in top["index"]],
        [f"#{r.rank} {Path(r.path).name}\nlabel: {r.class_name}\nneighbours: {r.neighbour_class} "
         f"({r.neighbour_class_share:.0%})" for r in top.itertuples()],
        out / "suspect_labels",
        title=f"{name}: the {len(top)} most suspect labels (label vs. majority of the nearest labelled images)",
        empty_message="no image's label disagrees with its neighbours" if emb.has_labels else "no labels")
    return files


# ---------------------------------------------------------------------- for the explorer
def explorer_inputs(embeddings: Embeddings | str | Path, morph_dir: str | Path, seed: int = 0,
                    k: int = ol.DEFAULT_K) -> dict[str, Any]:
    """What :func:`palaeo_ssl.explorer.write_explorer` needs, from a :func:`run_morphospace` folder.

    Returns ``coords`` (N, 2) 2-D UMAP, ``clusters`` ({"<pipeline> / <algorithm>": (N,)
    labels}), ``outlier_score`` (N,) LOF, ``suspect_score`` (N,) (NaN where unlabelled),
    ``neighbours`` (N, k + 1) (self first) and ``neighbour_sim`` (N, k + 1) cosine
    similarities, and ``axis_titles``. Reads the cache and CSVs (recomputing the UMAP
    only if the cache does not match these embeddings and ``seed``).
    """
    emb = load_embeddings(embeddings)
    morph_dir = Path(morph_dir)
    x = dp.unit_rows(np.asarray(emb.features))
    proj = pj.compute_projections(x, morph_dir, seed, which=("umap",))
    n = len(emb)
    clusters: dict[str, np.ndarray] = {}
    lab_path = morph_dir / "cluster_labels.csv"
    if lab_path.is_file():
        df = pd.read_csv(lab_path)
        if len(df) == n:
            for col in df.columns:
                if col not in ("index", "path"):
                    clusters[col] = df[col].to_numpy(dtype=np.int64)
    outlier = suspect = None
    out_path = morph_dir / "outliers.csv"
    if out_path.is_file():
        df = pd.read_csv(out_path)
        if len(df) == n:
            df = df.sort_values("index")
            outlier = df["outlier_score"].to_numpy(dtype=np.float64)
            suspect = pd.to_numeric(df["suspect_score"], errors="coerce").to_numpy(dtype=np.float64)
    kk = int(min(k + 1, proj["knn_indices"].shape[1]))
    return {
        "coords": proj["umap"],
        "clusters": clusters,
        "outlier_score": outlier,
        "suspect_score": suspect,
        "neighbours": proj["knn_indices"][:, :kk],
        "neighbour_sim": 1.0 - proj["knn_distances"][:, :kk],
        "axis_titles": ("UMAP 1", "UMAP 2"),
    }


# ---------------------------------------------------------------------- retrieval of a new image
def find_similar(
    embeddings: Embeddings | str | Path,
    image: str | Path,
    k: int = 10,
    *,
    out: str | Path | None = None,
    device: str = "auto",
    query_features: np.ndarray | None = None,
) -> dict[str, Any]:
    """The ``k`` stored specimens most similar to a new image.

    The image is embedded with the store's own model and settings
    (:func:`palaeo_ssl.extract.embed_like`) unless ``query_features`` (D,) are
    given. Returns ``{"table": DataFrame (rank, index, path, class_name,
    similarity), "query": (D,) features, "files": [...]}``; with ``out`` it
    also writes ``similar_<image name>.csv`` and a contact sheet
    ``similar_<image name>.png/.pdf`` (the query first).
    """
    if k < 1:
        raise UserError("-k must be at least 1")
    emb = load_embeddings(embeddings)
    image = Path(image)
    if query_features is None:
        if not image.is_file():
            raise UserError(f"no image at {image}")
        from ..extract import embed_like

        query_features = embed_like(emb.meta, [image], device=device)[0]
    q = np.asarray(query_features, dtype=np.float32).reshape(-1)
    if q.shape[0] != emb.dim:
        raise UserError(f"the new image's features have {q.shape[0]} dimensions but the store's have {emb.dim}; "
                        "the store's meta.json does not describe how its features were made")
    table = ol.similar_table(np.asarray(emb.features), q, paths=emb.paths,
                             labels=emb.labels if emb.has_labels else None, class_names=emb.class_names, k=k)
    files: list[Path] = []
    if out is not None:
        from ..plots import morphospace as pm

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"similar_{slug(image.stem) or 'image'}"
        files.append(report.write_csv(table, stem.with_suffix(".csv")))
        tiles = [image] + [emb.image_path(int(i)) for i in table["index"]]
        caps = [f"query\n{image.name}"] + [
            f"#{r.rank} {Path(r.path).name}\n{r.class_name or 'unlabelled'}\nsimilarity {r.similarity:.3f}"
            for r in table.itertuples()]
        files += pm.plot_contact_sheet(tiles, caps, stem, title=f"Stored specimens most similar to {image.name} (cosine)",
                                       ncols=min(6, len(tiles)))
    return {"table": table, "query": q, "files": files}
