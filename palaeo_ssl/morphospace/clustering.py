"""Clustering of the morphospace and its agreement with the labels.

Two clustering spaces, as in Rodgers (2025): ``PCA`` (the components that
explain 95% of the variance of the L2-normalised features, at most 50) and
``Exploratory UMAP`` (15-D, 30 neighbours, min_dist 0, cosine); see
:mod:`palaeo_ssl.morphospace.projections`.

``paper`` algorithms (the reference's set): KMeans with the known number of
classes K; KMeans with K chosen by the silhouette over 2..min(2K, 50) (on a
fixed seeded subsample of at most 5,000 images); a Bayesian Gaussian mixture
with min(2K, 50) components and weight concentration prior 0.1; HDBSCAN with
``min_cluster_size = max(5, 2% of N)``.

``standard`` adds HDBSCAN with a size rule that does not collapse to noise
(:func:`hdbscan_standard_params`), agglomerative Ward with the known K, and
a stability score per algorithm (:func:`stability`).

Metrics (:func:`clustering_scores`): ARI, AMI, NMI, V-measure (noise counted as
one more cluster), purity with noise counted as wrong (the reference's) and
purity over clustered images only, silhouette (cosine) and Davies–Bouldin
(Euclidean) on one seeded subsample of the L2-normalised features for every
algorithm and space, and, for comparison with the reference, both in the
algorithm's own clustering space.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from ..protocol import DEFAULT_PROTOCOL, ProtocolLike, get_protocol

log = logging.getLogger(__name__)

PIPELINE_PCA = "PCA"
PIPELINE_UMAP = "Exploratory UMAP"
KMEANS_KNOWN = "KMeans (Known K)"
KMEANS_UNKNOWN = "KMeans (Unknown K)"
BGMM = "Bayesian GMM"
HDBSCAN_PAPER = "HDBSCAN"
HDBSCAN_STANDARD = "HDBSCAN (standard)"
WARD = "Ward (Known K)"
PAPER_ALGORITHMS = (KMEANS_KNOWN, KMEANS_UNKNOWN, BGMM, HDBSCAN_PAPER)
STANDARD_ALGORITHMS = PAPER_ALGORITHMS + (HDBSCAN_STANDARD, WARD)
#: the silhouette / Davies–Bouldin space shared by every algorithm
METRIC_SPACE = "L2-normalised features (silhouette: cosine; Davies-Bouldin: Euclidean)"
SILHOUETTE_MAX_POINTS = 5000
#: Ward's merge tree needs O(n²) memory: fitted on a seeded subsample of at most this many images
WARD_MAX_POINTS = 10000
#: the Bayesian mixture (full covariances) is fitted on a seeded subsample of at most this many images
BGMM_MAX_POINTS = 10000
#: HDBSCAN (O(n²·d) in sklearn) is fitted on a seeded subsample of at most this many images
HDBSCAN_MAX_POINTS = 20000
#: stability runs use seeded subsamples of 90% of the images, at most this many
STABILITY_MAX_POINTS = 5000
STABILITY_FRACTION = 0.9
STABILITY_SEEDS = 5

METRIC_COLUMNS = [
    "Pipeline", "Algorithm", "n_clusters", "ARI", "AMI", "Purity", "Silhouette", "DaviesBouldin",
    "Noise Fraction", "Components Used",
    "NMI", "V-measure", "Purity (excluding noise)", "Silhouette (own space)", "DaviesBouldin (own space)",
    "Stability (ARI)", "n_fit", "Parameters",
]


# ---------------------------------------------------------------------- algorithms
def kmeans_labels(z: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """KMeans (k-means++, sklearn's default n_init) labels (N,) of the rows of ``z``."""
    from sklearn.cluster import KMeans

    k = int(max(1, min(k, z.shape[0])))
    return KMeans(n_clusters=k, random_state=seed, n_init="auto").fit_predict(z).astype(np.int64)


def select_k_by_silhouette(
    z: np.ndarray, k_max: int, seed: int = 0, max_points: int = SILHOUETTE_MAX_POINTS, k_min: int = 2
) -> tuple[int, dict[int, float]]:
    """K in ``k_min..k_max`` whose KMeans (fitted on all rows) has the best silhouette.

    The silhouette (Euclidean, in the space ``z``, as the reference) is computed
    on one fixed seeded subsample of at most ``max_points`` rows. Returns
    ``(best_k, {k: silhouette})``.
    """
    from sklearn.metrics import silhouette_score

    n = z.shape[0]
    sub = _subsample(n, max_points, seed)
    scores: dict[int, float] = {}
    for k in range(k_min, int(min(k_max, n - 1)) + 1):
        lab = kmeans_labels(z, k, seed)
        ls = lab[sub]
        scores[k] = float(silhouette_score(z[sub], ls)) if 1 < len(np.unique(ls)) < sub.size else float("nan")
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    best = max(finite, key=lambda k: (finite[k], -k)) if finite else k_min
    return int(best), scores


def bgmm_labels(z: np.ndarray, n_components: int, seed: int = 0, max_fit: int | None = BGMM_MAX_POINTS) -> np.ndarray:
    """Bayesian Gaussian mixture (full covariances, weight concentration prior 0.1) labels (N,).

    Fitted on a seeded subsample of at most ``max_fit`` rows when N is larger, then
    every row is assigned to its most probable component.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    n = z.shape[0]
    fit_idx = _subsample(n, max_fit, seed) if max_fit else np.arange(n)
    comps = int(max(1, min(n_components, fit_idx.size)))
    model = BayesianGaussianMixture(n_components=comps, weight_concentration_prior=0.1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(z[fit_idx].astype(np.float64))
    return model.predict(z.astype(np.float64)).astype(np.int64)


def hdbscan_paper_params(n: int) -> dict[str, int | None]:
    """The reference's rule: ``min_cluster_size = max(5, 2% of N)`` (min_samples defaults to it)."""
    return {"min_cluster_size": int(max(5, int(0.02 * n))), "min_samples": None}


def hdbscan_standard_params(n: int) -> dict[str, int | None]:
    """A rule that keeps HDBSCAN from labelling everything noise on large sets.

    ``min_cluster_size = max(5, ceil(√N / 2))`` and ``min_samples = 10``.
    With 2% of N a 59,244-image set needs 1,185 images per cluster (more than
    most of its classes hold) and min_samples, which defaults to the same
    value, smooths the density over 1,185 neighbours so that no cluster
    survives: everything becomes noise. The square root grows more slowly
    than N (123 images at 60,000, 71 at 20,000, 5 at 100), and a small fixed
    min_samples keeps the density estimate local.
    """
    return {"min_cluster_size": int(max(5, math.ceil(math.sqrt(n) / 2))), "min_samples": int(min(10, max(1, n - 1)))}


def hdbscan_labels(
    z: np.ndarray,
    rule: str = "standard",
    seed: int = 0,
    max_fit: int | None = HDBSCAN_MAX_POINTS,
) -> np.ndarray:
    """HDBSCAN (sklearn) labels (N,), -1 for noise.

    ``rule`` is ``"paper"`` (:func:`hdbscan_paper_params`) or ``"standard"``
    (:func:`hdbscan_standard_params`), applied to the number of images fitted.
    sklearn's HDBSCAN builds its tree in O(n²·d) time, so above ``max_fit`` rows
    it is fitted on a seeded subsample and every other row takes the label
    (or noise) of its nearest fitted row. Deterministic for a given seed.
    """
    from sklearn.cluster import HDBSCAN

    n = z.shape[0]
    fit_idx = _subsample(n, max_fit, seed) if max_fit else np.arange(n)
    m = fit_idx.size
    params = (hdbscan_paper_params if rule == "paper" else hdbscan_standard_params)(m)
    mcs = int(max(2, min(params["min_cluster_size"], m)))
    ms = params["min_samples"]
    ms = None if ms is None else int(max(1, min(ms, m - 1)))
    if ms is None and mcs > m - 1:
        ms = m - 1
    sub_labels = HDBSCAN(min_cluster_size=mcs, min_samples=ms, copy=True).fit_predict(z[fit_idx]).astype(np.int64)
    if m == n:
        return sub_labels
    from sklearn.neighbors import NearestNeighbors

    nearest = NearestNeighbors(n_neighbors=1).fit(z[fit_idx]).kneighbors(z, return_distance=False)[:, 0]
    labels = sub_labels[nearest]
    labels[fit_idx] = sub_labels
    return labels


def ward_labels(z: np.ndarray, k: int, seed: int = 0, max_fit: int | None = WARD_MAX_POINTS) -> np.ndarray:
    """Agglomerative Ward clustering into ``k`` clusters, labels (N,).

    Ward's merge tree needs an n x n distance matrix, so above ``max_fit`` rows it
    is built on a seeded subsample and every other row joins the nearest
    cluster centroid (Euclidean, the distance Ward minimises).
    """
    from sklearn.cluster import AgglomerativeClustering

    n = z.shape[0]
    fit_idx = _subsample(n, max_fit, seed) if max_fit else np.arange(n)
    k = int(max(1, min(k, fit_idx.size)))
    zf = z[fit_idx]
    sub_labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(zf)
    if fit_idx.size == n:
        return sub_labels.astype(np.int64)
    centroids = np.stack([zf[sub_labels == c].mean(axis=0) for c in range(k)])
    labels = _nearest_centroid(z, centroids)
    labels[fit_idx] = sub_labels
    return labels


def _nearest_centroid(z: np.ndarray, centroids: np.ndarray, block: int = 65536) -> np.ndarray:
    out = np.empty(z.shape[0], dtype=np.int64)
    c2 = (centroids**2).sum(axis=1)
    for start in range(0, z.shape[0], block):
        b = z[start:start + block]
        out[start:start + block] = np.argmin(c2[None, :] - 2.0 * b @ centroids.T, axis=1)
    return out


def _subsample(n: int, max_points: int | None, seed: int) -> np.ndarray:
    """Sorted seeded subsample of at most ``max_points`` of ``range(n)`` (all when n is small)."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_points), replace=False))


# ---------------------------------------------------------------------- metrics
def purity(y_true: np.ndarray, y_pred: np.ndarray, exclude_noise: bool = False) -> float:
    """Share of images in the majority class of their cluster.

    Noise (-1) counts as wrong (the reference's definition), or, with
    ``exclude_noise``, is left out of numerator and denominator.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    clustered = y_pred >= 0
    denom = int(clustered.sum()) if exclude_noise else y_true.size
    if denom == 0:
        return 0.0 if not exclude_noise else float("nan")
    hits = 0
    for c in np.unique(y_pred[clustered]):
        hits += int(np.bincount(y_true[y_pred == c]).max())
    return hits / denom


def clustering_scores(
    y_true: np.ndarray | None,
    y_pred: np.ndarray,
    *,
    eval_features: np.ndarray | None = None,
    eval_index: np.ndarray | None = None,
    own_space: np.ndarray | None = None,
) -> dict[str, float]:
    """Agreement with the labels and internal quality of one clustering.

    ``y_true`` (N,) labels (-1 = unlabelled; those images are left out of the
    external metrics), ``y_pred`` (N,) cluster labels (-1 = noise).
    ``eval_features`` (N, D) unit rows and ``eval_index`` (a seeded subsample)
    give ``Silhouette`` (cosine) and ``DaviesBouldin`` (Euclidean) over the
    clustered images of the subsample; ``own_space`` (N, d) gives the same two in
    the clustering space (``... (own space)``). Metrics that are undefined
    (fewer than two clusters) are NaN.
    """
    from sklearn import metrics as skm

    y_pred = np.asarray(y_pred)
    noise = y_pred < 0
    out: dict[str, float] = {
        "n_clusters": int(np.unique(y_pred[~noise]).size),
        "Noise Fraction": float(noise.mean()) if y_pred.size else float("nan"),
    }
    if y_true is not None and (np.asarray(y_true) >= 0).any():
        yt = np.asarray(y_true)
        lab = yt >= 0
        t, p = yt[lab], y_pred[lab]
        out["ARI"] = float(skm.adjusted_rand_score(t, p))
        out["AMI"] = float(skm.adjusted_mutual_info_score(t, p))
        out["NMI"] = float(skm.normalized_mutual_info_score(t, p))
        out["V-measure"] = float(skm.v_measure_score(t, p))
        out["Purity"] = float(purity(t, p))
        out["Purity (excluding noise)"] = float(purity(t, p, exclude_noise=True))
    else:
        for c in ("ARI", "AMI", "NMI", "V-measure", "Purity", "Purity (excluding noise)"):
            out[c] = float("nan")
    idx = np.arange(y_pred.size) if eval_index is None else np.asarray(eval_index)
    for space, metric, suffix in ((eval_features, "cosine", ""), (own_space, "euclidean", " (own space)")):
        sil = dbi = float("nan")
        if space is not None:
            keep = idx[y_pred[idx] >= 0]
            lp = y_pred[keep]
            k = np.unique(lp).size
            if 2 <= k < keep.size:
                xs = np.asarray(space[keep], dtype=np.float32)
                sil = float(skm.silhouette_score(xs, lp, metric=metric))
                dbi = float(skm.davies_bouldin_score(xs, lp))
        out["Silhouette" + suffix] = sil
        out["DaviesBouldin" + suffix] = dbi
    return out


def stability(
    fit: Callable[[np.ndarray, int], np.ndarray],
    z: np.ndarray,
    *,
    seed: int = 0,
    n_runs: int = STABILITY_SEEDS,
    fraction: float = STABILITY_FRACTION,
    max_points: int | None = STABILITY_MAX_POINTS,
) -> float:
    """Mean ARI between ``n_runs`` runs of a clustering, over the images each pair shares.

    Run r (seed ``seed + r``) fits ``fit(z_subset, seed + r) -> labels`` on a
    seeded random subsample of ``fraction`` of the rows (at most ``max_points``),
    so deterministic algorithms (HDBSCAN, Ward) are tested on perturbed data
    and stochastic ones on both. 1 = the same partition every time.
    """
    from sklearn.metrics import adjusted_rand_score

    n = z.shape[0]
    size = int(max(2, round(fraction * n)))
    if max_points:
        size = min(size, int(max_points))
    runs = []
    for r in range(n_runs):
        rng = np.random.default_rng(seed + 1000 + r)
        idx = np.sort(rng.choice(n, size=size, replace=False))
        lab = np.full(n, -2, dtype=np.int64)
        lab[idx] = fit(z[idx], seed + r)
        runs.append(lab)
    scores = []
    for i in range(n_runs):
        for j in range(i + 1, n_runs):
            both = (runs[i] != -2) & (runs[j] != -2)
            if both.sum() >= 2:
                scores.append(adjusted_rand_score(runs[i][both], runs[j][both]))
    return float(np.mean(scores)) if scores else float("nan")


# ---------------------------------------------------------------------- the whole set
@dataclass
class ClusteringResult:
    """Output of :func:`cluster_morphospace`.

    ``table``: one row per (pipeline, algorithm) with :data:`METRIC_COLUMNS`;
    ``labels``: ``{(pipeline, algorithm): (N,) int64 cluster labels, -1 = noise}``;
    ``silhouette_curves``: ``{pipeline: {k: silhouette}}`` of the K search;
    ``eval_index``: the seeded subsample the silhouette / Davies–Bouldin use.
    """

    table: pd.DataFrame
    labels: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    silhouette_curves: dict[str, dict[int, float]] = field(default_factory=dict)
    eval_index: np.ndarray | None = None


def cluster_morphospace(
    spaces: Mapping[str, np.ndarray],
    features: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    protocol: ProtocolLike = DEFAULT_PROTOCOL,
    seed: int = 0,
    n_classes: int | None = None,
    timings: dict[str, float] | None = None,
) -> ClusteringResult:
    """Run every clustering of ``protocol`` in every space and score it.

    ``spaces``: ``{pipeline name: (N, d) coordinates}`` (e.g. ``{"PCA": ...,
    "Exploratory UMAP": ...}``); ``features`` (N, D): the L2-normalised features
    for the common silhouette / Davies–Bouldin; ``labels`` (N,) with -1 for
    unlabelled (None: no external metrics). K is the number of classes present
    (``n_classes`` overrides it); without labels the known-K rows are left out
    and the K search and the mixture use 50 as the upper bound.
    """
    extended = get_protocol(protocol).extended_clustering
    from .disparity import unit_rows

    x = unit_rows(features)
    n = x.shape[0]
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    has_labels = y is not None and (y >= 0).any()
    k_true = n_classes if n_classes else (int(np.unique(y[y >= 0]).size) if has_labels else None)
    k_cap = min(2 * k_true, 50) if k_true else 50
    eval_index = _subsample(n, SILHOUETTE_MAX_POINTS, seed)
    algorithms = STANDARD_ALGORITHMS if extended else PAPER_ALGORITHMS
    times = timings if timings is not None else {}
    rows, out_labels, curves = [], {}, {}
    for pipeline, z in spaces.items():
        z = np.asarray(z, dtype=np.float32)
        for algo in algorithms:
            if algo in (KMEANS_KNOWN, WARD) and not k_true:
                continue
            t0 = time.perf_counter()
            params: dict[str, object]
            if algo == KMEANS_KNOWN:
                fit = lambda zz, s: kmeans_labels(zz, k_true, s)  # noqa: E731
                params = {"k": k_true}
            elif algo == KMEANS_UNKNOWN:
                chosen_k, curve = select_k_by_silhouette(z, k_cap, seed)
                curves[pipeline] = curve
                fit = lambda zz, s: kmeans_labels(zz, chosen_k, s)  # noqa: E731
                params = {"k_search": f"2..{k_cap}", "k": chosen_k}
            elif algo == BGMM:
                fit = lambda zz, s: bgmm_labels(zz, k_cap, s)  # noqa: E731
                params = {"n_components": k_cap, "weight_concentration_prior": 0.1,
                          "fit_on": int(min(n, BGMM_MAX_POINTS))}
            elif algo in (HDBSCAN_PAPER, HDBSCAN_STANDARD):
                rule = "paper" if algo == HDBSCAN_PAPER else "standard"
                fit = lambda zz, s, rule=rule: hdbscan_labels(zz, rule, s)  # noqa: E731
                n_fit = int(min(n, HDBSCAN_MAX_POINTS))
                params = {**(hdbscan_paper_params if rule == "paper" else hdbscan_standard_params)(n_fit), "fit_on": n_fit}
            else:  # WARD
                fit = lambda zz, s: ward_labels(zz, k_true, s)  # noqa: E731
                params = {"k": k_true, "fit_on": int(min(n, WARD_MAX_POINTS))}
            pred = fit(z, seed)
            elapsed = time.perf_counter() - t0
            scores = clustering_scores(y, pred, eval_features=x, eval_index=eval_index, own_space=z)
            stab = float("nan")
            if extended:
                t1 = time.perf_counter()
                stab = stability(fit, z, seed=seed)
                elapsed += time.perf_counter() - t1
            times[f"{pipeline} / {algo}"] = elapsed
            log.debug("  %s / %s: %d clusters, %.1f s", pipeline, algo, scores["n_clusters"], elapsed)
            row = {"Pipeline": pipeline, "Algorithm": algo, **scores, "Components Used": int(z.shape[1]),
                   "Stability (ARI)": stab, "n_fit": int(params.get("fit_on", n)),
                   "Parameters": "; ".join(f"{k}={'min_cluster_size' if v is None else v}" for k, v in params.items())}
            rows.append(row)
            out_labels[(pipeline, algo)] = pred
    table = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    if not extended:
        table = table.drop(columns=["Stability (ARI)"])
    return ClusteringResult(table=table, labels=out_labels, silhouette_curves=curves, eval_index=eval_index)
