"""The morphospace stage: compute, write, and a thin runner that times both.

:func:`compute_morphospace` computes the projections (cached in
``projections.npz``), the clusterings, the disparity with its intervals,
rarefaction and distance histogram, the outlier and suspect-label scores, and
returns them as a :class:`MorphospaceResult`; :func:`write_morphospace` writes
every table and figure; :func:`run_morphospace` (the ``palaeo-ssl morphospace``
command) does both. :func:`explorer_inputs` turns a result into what the
explorer needs, in memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import report
from ..compute import compute_context
from ..embeddings import Embeddings, load_embeddings
from ..errors import UserError
from ..params import POSITIVE_INT, SEED, ParameterError, check, check_all, literal, shown
from ..protocol import DEFAULT_PROTOCOL, ProtocolLike, get_protocol
from ..taxonomy import TAXONOMY_PARAM, load_taxonomy, rank_labels
from . import clustering as cl
from . import disparity as dp
from . import outliers as ol
from . import projections as pj

log = logging.getLogger(__name__)

CONTACT_SHEET_SIZE = 25
#: the rarefaction group of the whole set
ALL_IMAGES = "all images"
#: columns of clustering_metrics.tex (all columns are in the CSV)
TEX_CLUSTER_COLUMNS = ["Pipeline", "Algorithm", "n_clusters", "ARI", "AMI", "Purity", "Purity (excluding noise)",
                       "Silhouette", "DaviesBouldin", "Noise Fraction", "Stability (ARI)"]
#: scikit-learn's chunk size for pairwise distances (MiB); its default (1024) made t-SNE's
#: neighbour search on 20,000 images add 1.7 GB to the peak memory
WORKING_MEMORY_MB = 128


def slug(text: str) -> str:
    """File-name form of an algorithm name: ``"KMeans (Known K)"`` -> ``"kmeans_known_k"``."""
    out = "".join(ch.lower() if ch.isalnum() else "_" for ch in text)
    return "_".join(p for p in out.split("_") if p)


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
            raise ParameterError("values", "column " + shown(column) + f" holds {len(present)} values for the "
                                           "stored images (" + literal(", ".join(map(str, present[:10])))
                                           + "); name the two to compare ({name} A B)")
        values = present
    if len(values) != 2:
        raise UserError("give exactly two group values to compare")
    a, b = (np.flatnonzero(vals == v) for v in values)
    for v, ix in zip(values, (a, b)):
        if ix.size < 2:
            raise UserError(f"group '{v}' of column '{column}' matches {ix.size} stored image(s); it needs at least 2")
    return str(values[0]), a, str(values[1]), b


# ---------------------------------------------------------------------- the stage
#: constraints of the morphospace parameters
MORPHOSPACE_PARAMS = {
    "seed": SEED,
    "k_neighbours": POSITIVE_INT,
    "n_boot": POSITIVE_INT,
    "n_boot_std": POSITIVE_INT,
    "tsne_max_points": [POSITIVE_INT, None],
    "rarefaction_max": POSITIVE_INT,
    "rarefaction_repeats": POSITIVE_INT,
    "n_permutations": POSITIVE_INT,
    "taxonomy": TAXONOMY_PARAM,
}


@dataclass(frozen=True)
class MorphospaceConfig:
    """Every option that changes the numbers of the morphospace stage; ``asdict()`` is its cache key.

    protocol : ``"paper"`` (the reference's clusterings) or ``"standard"`` (plus HDBSCAN
        with a size rule that scales, Ward, and stability); a name or a ``Protocol`` (kept as its name)
    seed : seed of every random step (same inputs + seed = same numbers)
    k_neighbours : neighbours for the outlier and suspect-label scores
    n_boot, n_boot_std : bootstrap replicates (the std of pairwise distances needs a
        Gram matrix per replicate, so it uses the first ``n_boot_std``)
    tsne_max_points : t-SNE on a seeded subsample of this many images above it (None: all)
    rarefaction_max, rarefaction_repeats : largest subsample size and repeats per size
    compare : optional permutation test between two groups:
        ``{"classes": (list_a, list_b)}`` or ``{"table": csv, "column": name, "values": (a, b) | None}``
    n_permutations : permutations of that test
    taxonomy : CSV of higher ranks (``class,genus,...``) for the projections coloured by rank;
        None: the genus from the first word of the class names
    """

    protocol: str = DEFAULT_PROTOCOL
    seed: int = 0
    k_neighbours: int = ol.DEFAULT_K
    n_boot: int = 200
    n_boot_std: int = 20
    tsne_max_points: int | None = pj.TSNE_MAX_POINTS
    rarefaction_max: int = 500
    rarefaction_repeats: int = 20
    compare: Mapping[str, Any] | None = None
    n_permutations: int = 999
    taxonomy: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "protocol", get_protocol(self.protocol).name)
        if self.taxonomy is not None:
            object.__setattr__(self, "taxonomy", str(self.taxonomy))
        check_all({k: getattr(self, k) for k in MORPHOSPACE_PARAMS}, MORPHOSPACE_PARAMS)


@dataclass
class MorphospaceResult:
    """What the morphospace stage computed for one set of embeddings.

    ``projections``: see :func:`~palaeo_ssl.morphospace.projections.compute_projections`;
    ``clustering``: the :class:`~palaeo_ssl.morphospace.clustering.ClusteringResult`;
    ``clusters``: ``{"<pipeline> / <algorithm>": (N,) labels}``; ``tables``: name ->
    DataFrame (``clustering``, ``morphology``, ``per_class``, ``rarefaction``,
    ``distance_histogram``, ``outliers``, ``suspect_labels``, ``disparity_test``);
    ``info``: the run record (``morphospace.json``); ``files``: filled by the writer.
    """

    config: MorphospaceConfig
    embeddings: Embeddings
    name: str
    projections: dict[str, np.ndarray]
    clustering: cl.ClusteringResult
    clusters: dict[str, np.ndarray]
    tables: dict[str, pd.DataFrame]
    info: dict[str, Any]
    timings: dict[str, float]
    files: list[Path] = field(default_factory=list)

    @property
    def peak_rss_mb(self) -> float:
        return float(self.info.get("peak_rss_mb", 0.0))


#: the options of :class:`MorphospaceConfig` that the protocol-independent work does not depend on
PROTOCOL_ONLY_OPTIONS = ("protocol", "taxonomy")


def shared_settings(config: MorphospaceConfig) -> dict[str, Any]:
    """The options that the work shared by every protocol depends on: all but the protocol (and the
    taxonomy, which only colours figures)."""
    return {k: v for k, v in asdict(config).items() if k not in PROTOCOL_ONLY_OPTIONS}


@dataclass
class SharedMorphospace:
    """The morphospace work that does not depend on the protocol, computed once for a run's protocols:
    the L2-normalised rows, the projections (``projections``, cached), the clustering spaces (``spaces``:
    the PCA components for 95% of the variance and the 15-D UMAP; ``n_pca``), the disparity with its
    bootstrap intervals, rarefaction, per-class disparity, the distance histogram and the permutation test,
    and the outlier and suspect-label scores (``tables``), with their ``timings`` (seconds) and the peak
    memory after each step (``rss``). ``settings`` (:func:`shared_settings`) and ``embeddings`` say what it
    was computed for; :func:`compute_morphospace` refuses it for anything else."""

    embeddings: Embeddings
    settings: dict[str, Any]
    x: Any
    projections: dict[str, np.ndarray]
    spaces: dict[str, np.ndarray]
    n_pca: int
    tables: dict[str, pd.DataFrame]
    timings: dict[str, float]
    rss: dict[str, float]

    def check_fits(self, emb: Embeddings, config: MorphospaceConfig) -> None:
        """Raise ValueError unless this shared work was computed for ``emb`` and ``config``'s shared options."""
        if self.settings != shared_settings(config):
            raise ValueError("the shared morphospace work was computed with other options "
                             f"({self.settings} vs {shared_settings(config)})")
        if emb is not self.embeddings and emb.identity() != self.embeddings.identity():
            raise ValueError("the shared morphospace work was computed for other embeddings")


def compute_shared_morphospace(embeddings: Embeddings | str | Path,
                               config: MorphospaceConfig = MorphospaceConfig(), *,
                               cache: str | Path | None = None, threads: int | None = 1,
                               progress: bool = False) -> SharedMorphospace:
    """The protocol-independent part of :func:`compute_morphospace` (see :class:`SharedMorphospace`), to be
    handed to it for every protocol (``shared=``) so that projections, disparity, bootstrap and outliers are
    computed once. ``cache``, ``threads`` and ``progress`` as :func:`compute_morphospace`."""
    check("threads", threads, [POSITIVE_INT, None])
    emb = load_embeddings(embeddings)
    bar = _progress(3, progress)
    try:
        return _compute_shared(emb, config, cache, threads, bar)
    finally:
        bar.close()


def _compute_shared(emb: Embeddings, config: MorphospaceConfig, cache, threads: int | None, bar) -> SharedMorphospace:
    n = len(emb)
    if n < 5:
        raise UserError(f"the morphospace needs at least 5 images; this store has {n}")
    try:
        x = dp.unit_rows(np.asarray(emb.features))
    except ValueError as exc:
        raise UserError(f"{exc}; remove that image from the store (re-extract) and try again") from None
    labels = emb.labels if emb.has_labels else None
    if config.compare:
        comparison_groups(emb, config.compare)  # a misspelt group fails now, not after the projections
    timings: dict[str, float] = {}
    rss: dict[str, float] = {}
    with compute_context(blas=threads, working_memory_mb=WORKING_MEMORY_MB):
        bar.set_description("projections")
        proj, spaces, n_pca = _projections(x, emb, config, cache, timings)
        rss["projections"] = report.peak_rss_mb()
        bar.update()
        bar.set_description("disparity")
        tables = _disparity(x, emb, config, timings)
        rss["disparity"] = report.peak_rss_mb()
        bar.update()
        bar.set_description("outliers")
        t0 = time.perf_counter()
        tables.update(_neighbourhood(proj, emb, labels, config.k_neighbours))
        timings["outliers"] = time.perf_counter() - t0
        rss["outliers"] = report.peak_rss_mb()
        bar.update()
    return SharedMorphospace(embeddings=emb, settings=shared_settings(config), x=x, projections=proj, spaces=spaces,
                             n_pca=n_pca, tables=tables, timings=timings, rss=rss)


def compute_morphospace(embeddings: Embeddings | str | Path, config: MorphospaceConfig = MorphospaceConfig(), *,
                        cache: str | Path | None = None, threads: int | None = 1,
                        progress: bool = False, shared: SharedMorphospace | None = None) -> MorphospaceResult:
    """Projections, clustering, disparity, outliers and suspect labels of ``embeddings``; nothing is written
    except the projection cache (``cache/projections.npz``, when ``cache`` is given).

    threads : BLAS/OpenMP threads for the whole analysis (default 1: on a shared CPU,
        multi-threaded BLAS on many small matrices is several times slower); None = library default
    shared : the protocol-independent work (:func:`compute_shared_morphospace`) when it was computed already,
        e.g. for another protocol of the same run: only the clustering is computed here then. It must
        have been computed for these embeddings and these options (but the protocol): ValueError otherwise.
    """
    check("threads", threads, [POSITIVE_INT, None])
    emb = load_embeddings(embeddings)
    if config.taxonomy is not None and emb.has_labels:
        load_taxonomy(emb.class_names, config.taxonomy)  # a bad taxonomy file fails now, not at the figures
    bar = _progress(4 if shared is None else 1, progress)
    t_all = time.perf_counter()
    handed = shared is not None
    if shared is None:
        shared = _compute_shared(emb, config, cache, threads, bar)
    else:
        shared.check_fits(emb, config)
    x, proj, labels = shared.x, shared.projections, (emb.labels if emb.has_labels else None)
    timings, rss = dict(shared.timings), dict(shared.rss)
    with compute_context(blas=threads, working_memory_mb=WORKING_MEMORY_MB):
        bar.set_description("clustering")
        t0 = time.perf_counter()
        clus_times: dict[str, float] = {}
        clus = cl.cluster_morphospace(shared.spaces, x, labels, protocol=config.protocol, seed=config.seed,
                                      timings=clus_times)
        timings.update({f"clustering: {k}": v for k, v in clus_times.items()})
        timings["clustering"] = time.perf_counter() - t0
        rss["clustering"] = report.peak_rss_mb()
        bar.update()
    bar.close()
    tables = {"clustering": clus.table, **shared.tables}
    timings["compute"] = time.perf_counter() - t_all
    name = dataset_name(emb)
    info = _run_info(emb, x, name, config, proj, shared.n_pca, threads, rss)
    if handed:  # the shared steps' timings are those of their one computation, not of this call
        info["shared_work"] = ("projections, disparity (with bootstrap), outliers and suspect labels computed once "
                               "for every protocol of this run; 'compute' is the clustering only")
    return MorphospaceResult(config=config, embeddings=emb, name=name, projections=proj, clustering=clus,
                             clusters={f"{p} / {a}": lab for (p, a), lab in clus.labels.items()}, tables=tables,
                             info=info, timings=timings)


def _projections(x: np.ndarray, emb: Embeddings, config: MorphospaceConfig, cache, timings: dict[str, float]):
    t0 = time.perf_counter()
    proj_times: dict[str, float] = {}
    proj = pj.compute_projections(x, cache, config.seed, tsne_max_points=config.tsne_max_points,
                                  timings=proj_times, identity=emb.identity())
    timings.update({f"projection: {k}": v for k, v in proj_times.items()})
    timings["projections"] = time.perf_counter() - t0
    n_pca = pj.n_components_for(proj["pca_variance_ratio"])
    spaces = {cl.PIPELINE_PCA: proj["pca_scores"][:, :n_pca]}
    if "umap15" in proj:
        spaces[cl.PIPELINE_UMAP] = proj["umap15"]
    return proj, spaces, n_pca


def _disparity(x: np.ndarray, emb: Embeddings, config: MorphospaceConfig,
               timings: dict[str, float]) -> dict[str, pd.DataFrame]:
    """Disparity with intervals, rarefaction, per class, the distance histogram and the permutation test."""
    c, n, labels = config, x.shape[0], (emb.labels if emb.has_labels else None)
    out: dict[str, pd.DataFrame] = {}
    t0 = time.perf_counter()
    out["morphology"] = dp.disparity_table(x, dataset=dataset_name(emb), n_boot=c.n_boot, n_boot_gram=c.n_boot_std,
                                           seed=c.seed)
    timings["disparity: bootstrap"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    groups: dict[str, np.ndarray] = {ALL_IMAGES: np.arange(n)}
    if labels is not None:
        for k, cname in enumerate(emb.class_names):
            idx = np.flatnonzero(emb.labels == k)
            if idx.size:
                groups[cname] = idx
    out["rarefaction"] = dp.rarefaction(x, groups, max_size=c.rarefaction_max, n_repeats=c.rarefaction_repeats,
                                        seed=c.seed)
    timings["disparity: rarefaction"] = time.perf_counter() - t1
    if labels is not None:
        t1 = time.perf_counter()
        out["per_class"] = dp.disparity_per_class(x, emb.labels, emb.class_names, n_boot=c.n_boot,
                                                  n_boot_gram=c.n_boot_std, seed=c.seed, rarefied=out["rarefaction"])
        timings["disparity: per class"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    out["distance_histogram"] = dp.distance_histogram(x, labels, seed=c.seed)
    if c.compare:
        out["disparity_test"] = _disparity_test(x, comparison_groups(emb, c.compare), c.n_permutations, c.seed)
    timings["disparity: histogram and test"] = time.perf_counter() - t1
    timings["disparity"] = time.perf_counter() - t0
    return out


def _neighbourhood(proj: dict, emb: Embeddings, labels, k: int) -> dict[str, pd.DataFrame]:
    scores = ol.neighbourhood_table(proj["knn_indices"], proj["knn_distances"], paths=emb.paths,
                                    labels=labels, class_names=emb.class_names, k=k)
    return {"outliers": scores.sort_values("outlier_rank").reset_index(drop=True),
            "suspect_labels": ol.suspect_labels(scores)}


def _run_info(emb: Embeddings, x: np.ndarray, name: str, c: MorphospaceConfig, proj: dict, n_pca: int,
              threads: int | None, rss: dict[str, float]) -> dict[str, Any]:
    n = x.shape[0]
    return {
        "command": "morphospace", "protocol": c.protocol, "seed": c.seed, "dataset": name,
        "n_images": n, "n_features": int(x.shape[1]), "n_labelled": int((emb.labels >= 0).sum()),
        "n_classes": int(emb.n_classes), "pca_components_for_95pct": int(n_pca),
        "settings": {
            "umap_2d": pj.UMAP_2D, "umap_clustering": pj.UMAP_CLUSTER, "tsne": pj.TSNE_SETTINGS,
            "tsne_max_points": c.tsne_max_points, "tsne_points": int(proj.get("tsne_index", np.arange(0)).size),
            "knn": "exact" if n <= pj.EXACT_KNN_MAX else "NN-descent (pynndescent)",
            "knn_recall": (None if "knn_recall" not in proj else
                           {"recall_at_30": round(float(proj["knn_recall"]), 4),
                            "sample": int(min(n, pj.KNN_RECALL_SAMPLE)),
                            "against": "exact cosine search on a seeded sample of the images"}),
            "k_neighbours": c.k_neighbours, "n_boot": c.n_boot, "n_boot_std": c.n_boot_std,
            "rarefaction_max": c.rarefaction_max, "rarefaction_repeats": c.rarefaction_repeats,
            "silhouette_points": int(min(n, cl.SILHOUETTE_MAX_POINTS)), "metric_space": cl.METRIC_SPACE,
            "hdbscan_max_points": cl.HDBSCAN_MAX_POINTS, "bgmm_max_points": cl.BGMM_MAX_POINTS,
            "ward_max_points": cl.WARD_MAX_POINTS, "stability_max_points": cl.STABILITY_MAX_POINTS,
            "threads": threads,
        },
        "peak_rss_mb_after_stage": {k: round(v, 1) for k, v in rss.items()},
        "versions": report.library_versions(),
    }


def write_morphospace(result: MorphospaceResult, out: str | Path, *, figures: bool = True,
                      progress: bool = False) -> list[Path]:
    """Every table (CSV, LaTeX), the figures (with ``figures``; a progress bar with ``progress``) and
    ``morphospace.json`` into ``out``."""
    t_write = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    r, t = result, result.tables
    files: list[Path] = [out / pj.CACHE_FILE] if (out / pj.CACHE_FILE).is_file() else []
    files += _write_clustering_table(t["clustering"], out, r.name, len(r.embeddings), r.config.protocol)
    lab_df = pd.DataFrame({"index": np.arange(len(r.embeddings)), "path": r.embeddings.paths, **r.clusters})
    files.append(report.write_csv(lab_df, out / "cluster_labels.csv"))
    files.append(report.write_csv(t["morphology"], out / "morphology_report.csv"))
    files.append(_write_morphology_tex(t["morphology"], out / "morphology_report.tex", r.name))
    for key, fname in (("rarefaction", "rarefaction.csv"), ("per_class", "disparity_per_class.csv"),
                       ("distance_histogram", "distance_histogram.csv"), ("disparity_test", "disparity_test.csv"),
                       ("outliers", "outliers.csv"), ("suspect_labels", "suspect_labels.csv")):
        if key in t:
            files.append(report.write_csv(t[key], out / fname))
    if figures:
        t0 = time.perf_counter()
        bar = _progress(1, progress)
        bar.set_description("morphospace figures")
        files += _write_figures(out, r.embeddings, r.projections, r.clustering, t["distance_histogram"],
                                t["rarefaction"], t["outliers"], t["suspect_labels"], r.name,
                                taxonomy=r.config.taxonomy)
        bar.update()
        bar.close()
        r.timings["figures"] = time.perf_counter() - t0
    r.timings["writing"] = time.perf_counter() - t_write
    r.timings["total"] = r.timings.get("compute", 0.0) + r.timings["writing"]
    info = {**r.info, "timings_s": {k: round(v, 3) for k, v in r.timings.items()},
            "peak_rss_mb": round(report.peak_rss_mb(), 1)}
    r.info = info
    files.append(report.write_json(out / "morphospace.json", info))
    r.files = [Path(f) for f in files]
    return r.files


def _write_clustering_table(ctab: pd.DataFrame, out: Path, name: str, n: int, protocol: str) -> list[Path]:
    caption = (f"Clustering of {name} ({n} images, {protocol} protocol). Silhouette (cosine) and "
               f"Davies-Bouldin on one seeded subsample of {min(n, cl.SILHOUETTE_MAX_POINTS)} L2-normalised "
               "feature vectors for every algorithm; purity counts noise as wrong, 'no noise' leaves it out"
               + get_protocol(protocol).clustering_caption + ".")
    return report.write_table(
        ctab, out / "clustering_metrics", columns=[c for c in TEX_CLUSTER_COLUMNS if c in ctab.columns],
        headers={"n_clusters": "Clusters", "Noise Fraction": "Noise", "Purity (excluding noise)": "Purity (no noise)",
                 "Stability (ARI)": "Stability"},
        bold={"ARI": "max", "AMI": "max"}, group_by="Pipeline", digits=3, caption=caption)


def run_morphospace(
    embeddings: Embeddings | str | Path,
    out: str | Path,
    protocol: ProtocolLike = DEFAULT_PROTOCOL,
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
    taxonomy: str | Path | None = None,
) -> MorphospaceResult:
    """Projections, clustering, disparity, outliers and suspect labels of ``embeddings`` into ``out``.

    The options are those of :class:`MorphospaceConfig` (checked there; errors name
    the parameter), ``threads`` as :func:`compute_morphospace`, ``figures`` as
    :func:`write_morphospace`. Returns the :class:`MorphospaceResult` with ``files``
    and ``timings`` (per step, ``compute``, ``figures``, ``writing`` and ``total``, in
    seconds; ``morphospace.json`` records the same).
    """
    config = MorphospaceConfig(protocol=protocol, seed=seed, k_neighbours=k_neighbours,
                               n_boot=n_boot, n_boot_std=n_boot_std, tsne_max_points=tsne_max_points,
                               rarefaction_max=rarefaction_max, rarefaction_repeats=rarefaction_repeats,
                               compare=compare, n_permutations=n_permutations, taxonomy=taxonomy)
    result = compute_morphospace(embeddings, config, cache=out, threads=threads, progress=progress)
    write_morphospace(result, out, figures=figures, progress=progress)  # adds "writing", "figures" and "total" to the timings
    return result


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="morphospace", unit="stage", disable=not enabled)


def comparison_groups(emb: Embeddings, compare: Mapping[str, Any]) -> tuple[str, np.ndarray, str, np.ndarray]:
    """The two groups of a disparity test (``MorphospaceConfig.compare``): ``(name_a, rows_a, name_b, rows_b)``.

    Checked before anything is computed, so a misspelt class fails at once.
    """
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
    return name_a, a, name_b, b


def _disparity_test(x: np.ndarray, groups: tuple[str, np.ndarray, str, np.ndarray], n_permutations: int,
                    seed: int) -> pd.DataFrame:
    name_a, a, name_b, b = groups
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
                   rare: pd.DataFrame, outl: pd.DataFrame, sus: pd.DataFrame, name: str,
                   taxonomy: str | None = None) -> list[Path]:
    from ..plots import morphospace as pm

    files: list[Path] = []
    groups = emb.labels
    names = emb.class_names
    evr = proj["pca_explained_variance_ratio"]
    pca_axes = (f"PC1 ({evr[0]:.1%} of variance)", f"PC2 ({evr[1]:.1%})" if len(evr) > 1 else "PC2")
    files += pm.plot_projection(proj["pca"], groups, names, out / "pca", title=f"{name}: PCA", axis_labels=pca_axes,
                                note=f"first two components explain {evr[:2].sum():.1%} of the variance")
    if "umap" in proj:
        files += pm.plot_projection(proj["umap"], groups, names, out / "umap", title=f"{name}: UMAP",
                                    axis_labels=("UMAP 1", "UMAP 2"), note="cosine, 30 neighbours, min_dist 0.1")
    if emb.has_labels:  # the same projections coloured by each higher rank that groups classes (genus by default)
        tax = load_taxonomy(names, taxonomy)
        for rank in [r for r in tax.rank_names if tax.is_informative(r)]:
            lab, groups_r = rank_labels(groups, tax, rank)
            note = f"coloured by {rank} ({len(groups_r)} groups; from {tax.source})"
            files += pm.plot_projection(proj["pca"], lab, groups_r, out / f"pca_{rank}", title=f"{name}: PCA",
                                        axis_labels=pca_axes, legend_title=rank, note=note)
            if "umap" in proj:
                files += pm.plot_projection(proj["umap"], lab, groups_r, out / f"umap_{rank}", title=f"{name}: UMAP",
                                            axis_labels=("UMAP 1", "UMAP 2"), legend_title=rank, note=note)
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
def explorer_inputs(result: MorphospaceResult, k: int = ol.DEFAULT_K) -> dict[str, Any]:
    """What :func:`palaeo_ssl.explorer.write_explorer` needs, from a :class:`MorphospaceResult` in memory.

    Returns ``coords`` (N, 2) 2-D UMAP, ``clusters`` ({"<pipeline> / <algorithm>": (N,)
    labels}), ``outlier_score`` (N,) LOF, ``suspect_score`` (N,) (NaN where unlabelled),
    ``neighbours`` (N, k + 1) (self first) and ``neighbour_sim`` (N, k + 1) cosine
    similarities, and ``axis_titles``.
    """
    proj = result.projections
    scores = result.tables["outliers"].sort_values("index")
    kk = int(min(k + 1, proj["knn_indices"].shape[1]))
    return {
        "coords": proj["umap"],
        "clusters": {k_: np.asarray(v, dtype=np.int64) for k_, v in result.clusters.items()},
        "outlier_score": scores["outlier_score"].to_numpy(dtype=np.float64),
        "suspect_score": pd.to_numeric(scores["suspect_score"], errors="coerce").to_numpy(dtype=np.float64),
        "neighbours": proj["knn_indices"][:, :kk],
        "neighbour_sim": 1.0 - proj["knn_distances"][:, :kk],
        "axis_titles": ("UMAP 1", "UMAP 2"),
    }


def explorer_inputs_from_folder(embeddings: Embeddings | str | Path, morph_dir: str | Path, seed: int = 0,
                                k: int = ol.DEFAULT_K, cache: str | Path | None = None) -> dict[str, Any]:
    """:func:`explorer_inputs` from what an earlier :func:`run_morphospace` wrote into ``morph_dir``.

    For a run that reuses its morphospace stage from disk: reads the projection
    cache (in ``cache``, default ``morph_dir``; recomputing the UMAP only if it does not
    match these embeddings and ``seed``), ``cluster_labels.csv`` and ``outliers.csv``.
    """
    emb = load_embeddings(embeddings)
    morph_dir = Path(morph_dir)
    x = dp.unit_rows(np.asarray(emb.features))
    proj = pj.compute_projections(x, morph_dir if cache is None else cache, seed, which=("pca", "umap"),
                                  identity=emb.identity())
    n = len(emb)
    clusters: dict[str, np.ndarray] = {}
    lab_path = morph_dir / "cluster_labels.csv"
    if lab_path.is_file():
        df = pd.read_csv(lab_path)
        if len(df) == n:
            clusters = {c: df[c].to_numpy(dtype=np.int64) for c in df.columns if c not in ("index", "path")}
    outlier = suspect = None
    out_path = morph_dir / "outliers.csv"
    if out_path.is_file():
        df = pd.read_csv(out_path)
        if len(df) == n:
            df = df.sort_values("index")
            outlier = df["outlier_score"].to_numpy(dtype=np.float64)
            suspect = pd.to_numeric(df["suspect_score"], errors="coerce").to_numpy(dtype=np.float64)
    kk = int(min(k + 1, proj["knn_indices"].shape[1]))
    return {"coords": proj["umap"], "clusters": clusters, "outlier_score": outlier, "suspect_score": suspect,
            "neighbours": proj["knn_indices"][:, :kk], "neighbour_sim": 1.0 - proj["knn_distances"][:, :kk],
            "axis_titles": ("UMAP 1", "UMAP 2")}
