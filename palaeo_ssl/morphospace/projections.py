"""Projections of L2-normalised embeddings, computed once per output folder.

* ``pca``: the first 2 principal components (and the share of variance they explain);
* ``umap``: 2-D UMAP, cosine, 30 neighbours, min_dist 0.1;
* ``tsne``: 2-D t-SNE, cosine, perplexity 20 (on a seeded subsample above
  :data:`TSNE_MAX_POINTS` images, see :func:`tsne_projection`);
* the two clustering spaces of the reference: ``PCA`` (the components that
  explain 95% of the variance, at most 50) and ``Exploratory UMAP`` (15-D,
  30 neighbours, min_dist 0, cosine).

Both UMAPs share one cosine k-nearest-neighbour graph (:func:`knn_graph`),
which the outlier and suspect-label scores reuse. Everything is cached in
``projections.npz`` in the output folder, keyed by the identity of the
embeddings (:meth:`~palaeo_ssl.embeddings.Embeddings.identity`: their features
and the rows held), the number of rows, the settings, the seed and the code
version (:func:`palaeo_ssl.cache.code_version`), so a later step (or a re-run)
reuses it instead of recomputing; an entry whose arrays do not have one row per
image is never returned, whatever its key.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..cache import array_digest, atomic_save_npz, code_version, key_hash
from .disparity import unit_rows
from .rows import UnitRows, similarities, weighted_gram

log = logging.getLogger(__name__)

CACHE_FILE = "projections.npz"
UMAP_2D = dict(n_components=2, n_neighbors=30, min_dist=0.1, metric="cosine")
UMAP_CLUSTER = dict(n_components=15, n_neighbors=30, min_dist=0.0, metric="cosine")
TSNE_SETTINGS = dict(n_components=2, perplexity=20.0, metric="cosine")
PCA_VARIANCE = 0.95
PCA_MAX_COMPONENTS = 50
#: below this many images UMAP computes its own distances from the rows (its small-data path)
UMAP_SMALL_DATA = 4096
#: images whose NN-descent neighbours are checked against exact search (the recall in the run record)
KNN_RECALL_SAMPLE = 1000
#: exact brute-force neighbours up to this many images, NN-descent (pynndescent) above
EXACT_KNN_MAX = 20000
#: t-SNE runs on a seeded subsample of this many images on larger sets (sklearn's
#: Barnes-Hut t-SNE needs ~1 s per iteration at 60,000 points on 2 cores)
TSNE_MAX_POINTS = 20000
#: neighbours kept in the cached graph (self + 30)
KNN_K = 30


# ---------------------------------------------------------------------- cache
def features_digest(features: np.ndarray) -> str:
    """SHA-256 of the shape, dtype and bytes of ``features`` (hex, 16 chars; of the stored rows for :class:`UnitRows`)."""
    return array_digest(features.raw if isinstance(features, UnitRows) else features)


def cache_key(digest: str, name: str, settings: Mapping[str, Any], seed: int | None, n_rows: int | None = None) -> str:
    """Key of one cached projection: the embeddings' identity (or features digest), the number of rows,
    name, settings, seed and the code version (:func:`palaeo_ssl.cache.code_version`, as every cache)."""
    return key_hash({"features": digest, "rows": n_rows, "name": name, "settings": dict(settings), "seed": seed,
                     "code": code_version()}, length=24)


#: the arrays of each cached entry that hold one row per image (checked against the images before reuse)
ROW_ARRAYS = {"pca": ("scores",), "knn": ("indices", "distances"), "umap": ("coords",), "umap15": ("coords",),
              "tsne": ("coords",)}


class ProjectionCache:
    """Arrays cached in ``folder/projections.npz`` (no caching when ``folder`` is None).

    Each entry ``name`` holds arrays ``name:<array>`` and its key ``name:__key__``;
    an entry is reused only when its key matches. The file is rewritten
    atomically after each new entry, so an interrupted run keeps what it finished.
    """

    def __init__(self, folder: str | os.PathLike | None):
        self.path = Path(folder) / CACHE_FILE if folder is not None else None
        self._data: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.is_file():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    self._data = {k: z[k] for k in z.files}
            except Exception as exc:  # damaged cache: recompute
                log.warning("ignoring damaged projection cache %s (%s)", self.path, exc)
                self._data = {}

    def get(self, name: str, key: str, n_rows: int | None = None) -> dict[str, np.ndarray] | None:
        """The arrays of entry ``name`` when its key is ``key`` and (with ``n_rows``) each of its per-image
        arrays (:data:`ROW_ARRAYS`) has ``n_rows`` rows; else None (recompute)."""
        stored = self._data.get(f"{name}:__key__")
        if stored is None or str(stored) != key:
            return None
        prefix = f"{name}:"
        hit = {k[len(prefix):]: v for k, v in self._data.items() if k.startswith(prefix) and not k.endswith("__key__")}
        if n_rows is not None:
            for array in ROW_ARRAYS.get(name, ()):
                if array not in hit or hit[array].ndim < 1 or hit[array].shape[0] != n_rows:
                    log.warning("ignoring the cached %s in %s: it does not hold one row per image", name, self.path)
                    return None
            if name == "knn" and hit["indices"].size and int(hit["indices"].max()) >= n_rows:
                return None
        return hit

    def put(self, name: str, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        prefix = f"{name}:"
        self._data = {k: v for k, v in self._data.items() if not k.startswith(prefix)}
        for k, v in arrays.items():
            self._data[prefix + k] = np.asarray(v)
        self._data[prefix + "__key__"] = np.asarray(key)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save_npz(self.path, self._data)


# ---------------------------------------------------------------------- neighbours
def knn_graph(features: np.ndarray, k: int = KNN_K, *, seed: int = 0, exact: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine k-nearest-neighbour graph of the rows of ``features`` (N, D).

    Returns ``(indices, distances)``, both (N, k + 1): column 0 is the image
    itself (distance 0), then its k nearest other images by cosine distance
    (``1 - cos``), nearest first; ties are broken by row index. Exact
    (blocked matrix products) when ``exact`` or N <= :data:`EXACT_KNN_MAX`,
    else NN-descent (pynndescent, seeded; ~98% recall on 60,000 x 1,024).
    ``k`` is capped at N - 1.
    """
    x = unit_rows(features)
    n = x.shape[0]
    k = int(min(k, n - 1))
    if k < 1:
        raise ValueError("a neighbour graph needs at least 2 images")
    if exact is None:
        exact = n <= EXACT_KNN_MAX
    if exact:
        return _knn_exact(x, k)
    return _knn_nndescent(x, k, seed)


#: similarities held at once by the exact neighbour search (block rows x N): 2^20 floats, 4 MB
KNN_BLOCK_CELLS = 1 << 20


def _knn_exact(x: np.ndarray, k: int, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    block = block or int(np.clip(KNN_BLOCK_CELLS // max(n, 1), 16, 1024))
    idx = np.empty((n, k + 1), dtype=np.int64)
    dist = np.empty((n, k + 1), dtype=np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = similarities(x, x[start:stop])
        rows = np.arange(stop - start)
        sims[rows, np.arange(start, stop)] = np.inf  # self first
        part = np.argpartition(-sims, k, axis=1)[:, : k + 1]
        psims = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -psims), axis=1)
        idx[start:stop] = np.take_along_axis(part, order, axis=1)
        d = 1.0 - np.take_along_axis(psims, order, axis=1)
        d[:, 0] = 0.0
        dist[start:stop] = np.maximum(d, 0.0)
    return idx, dist


def _knn_nndescent(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from pynndescent import NNDescent

    data = x.raw if isinstance(x, UnitRows) else x  # cosine: NN-descent normalises its own working copy
    index = NNDescent(data, metric="cosine", n_neighbors=k + 1, random_state=seed, n_jobs=1, low_memory=True, verbose=False)
    ind, dist = index.neighbor_graph
    ind = np.asarray(ind, dtype=np.int64)
    dist = np.asarray(dist, dtype=np.float32)
    n = x.shape[0]
    out_i = np.empty((n, k + 1), dtype=np.int64)
    out_d = np.empty((n, k + 1), dtype=np.float32)
    redo = []
    for i in range(n):  # make sure the image itself is column 0 (duplicates can displace it)
        row, drow = ind[i], dist[i]
        keep = (row != i) & (row >= 0)
        others, dothers = row[keep][:k], drow[keep][:k]
        if others.size < k:  # NN-descent left this row incomplete
            redo.append(i)
            continue
        out_i[i, 0], out_d[i, 0] = i, 0.0
        out_i[i, 1:], out_d[i, 1:] = others, np.maximum(dothers, 0.0)
    if redo:  # exact search for the few incomplete rows
        redo_idx = np.asarray(redo)
        sims = similarities(x, x[redo_idx])
        sims[np.arange(redo_idx.size), redo_idx] = np.inf
        order = np.lexsort((np.broadcast_to(np.arange(n), sims.shape), -sims), axis=1)[:, : k + 1]
        out_i[redo_idx] = order
        d = 1.0 - np.take_along_axis(sims, order, axis=1)
        d[:, 0] = 0.0
        out_d[redo_idx] = np.maximum(d, 0.0)
    return out_i, out_d


def knn_recall(features, indices: np.ndarray, sample: int = KNN_RECALL_SAMPLE, seed: int = 0) -> float:
    """Recall of a neighbour graph against exact search, on a seeded sample of ``sample`` images.

    ``indices`` (N, k + 1) with the image itself in column 0 (:func:`knn_graph`).
    The recall is the share of each sampled image's k exact nearest other images
    (cosine) that the graph lists, averaged over the sample; ties at the k-th
    distance count as found when the graph holds an image at that distance.
    """
    x = unit_rows(features)
    n = x.shape[0]
    k = indices.shape[1] - 1
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    found = 0
    for start in range(0, rows.size, 64):
        r = rows[start:start + 64]
        q = x[r]
        sims = similarities(x, q)
        sims[np.arange(r.size), r] = -np.inf  # not itself
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
        got = np.take_along_axis(sims, indices[r, 1:], axis=1)
        found += int((got >= kth[:, None] - 1e-6).sum())
    return float(found / (rows.size * k))


# ---------------------------------------------------------------------- projections
def pca_projection(features: np.ndarray, n_components: int = PCA_MAX_COMPONENTS, seed: int = 0) -> dict[str, np.ndarray]:
    """PCA of the L2-normalised rows.

    Returns ``scores`` (N, c) float32 with c = min(n_components, N, D) and
    ``explained_variance_ratio`` (c,), each component's share of the total variance.
    """
    from sklearn.decomposition import PCA

    x = unit_rows(features)
    n, d = x.shape
    c = int(min(n_components, n, d))
    if n < d:  # few rows: an in-memory copy of at most D rows is small
        pca = PCA(n_components=c, svd_solver="full", random_state=seed)
        scores = pca.fit_transform(x[:]).astype(np.float32)
        return {"scores": scores, "explained_variance_ratio": pca.explained_variance_ratio_.astype(np.float64)}
    return _pca_blocked(x, c)


def _pca_blocked(x, c: int) -> dict[str, np.ndarray]:
    """PCA from the D x D covariance accumulated block by block (scikit-learn's ``covariance_eigh``
    solver and sign convention: the largest entry of each component positive), scores block by block."""
    n = x.shape[0]
    mean = x.sum(axis=0, dtype=np.float64) / n
    g, _ = weighted_gram(x, None, center=mean.astype(np.float32))
    evals, evecs = np.linalg.eigh(g / max(n - 1, 1))
    order = np.argsort(evals)[::-1]
    evals = np.clip(evals[order], 0.0, None)
    comps = evecs[:, order[:c]].T
    big = np.argmax(np.abs(comps), axis=1)
    comps *= np.sign(comps[np.arange(c), big])[:, None]
    scores = (x @ comps.T.astype(np.float32)) - (mean @ comps.T).astype(np.float32)
    total = float(evals.sum())
    ratio = evals[:c] / total if total > 0 else np.zeros(c)
    return {"scores": np.asarray(scores, dtype=np.float32), "explained_variance_ratio": ratio.astype(np.float64)}


def n_components_for(explained_variance_ratio: np.ndarray, variance: float = PCA_VARIANCE, cap: int = PCA_MAX_COMPONENTS) -> int:
    """Smallest number of leading components whose cumulative share reaches ``variance``, capped."""
    cum = np.cumsum(np.asarray(explained_variance_ratio))
    hit = int(np.searchsorted(cum, variance - 1e-12) + 1)
    return int(max(1, min(hit, cap, len(cum))))


def umap_projection(
    features: np.ndarray,
    *,
    n_components: int = 2,
    n_neighbors: int = 30,
    min_dist: float = 0.1,
    seed: int = 0,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
    n_epochs: int | None = None,
    standin: np.ndarray | None = None,
) -> np.ndarray:
    """UMAP (cosine) of the L2-normalised rows; (N, n_components) float32.

    ``knn`` is a graph from :func:`knn_graph` (self in column 0); it is computed
    when not given. ``n_neighbors`` is capped at N - 1. Seeded (single-threaded).
    ``standin`` (N, c), e.g. PCA scores: with a precomputed graph UMAP reads the
    data only to place disconnected components, and indexes it as a whole several
    times; above :data:`UMAP_SMALL_DATA` images it is given ``standin`` instead of
    the features, so that none of those copies is of the features.
    """
    import umap

    x = unit_rows(features)
    n = x.shape[0]
    nn = int(min(n_neighbors, n - 1))
    if knn is None or knn[0].shape[1] < nn:
        knn = knn_graph(x, nn, seed=seed)
    ind, dist = knn[0][:, :nn], knn[1][:, :nn]
    if standin is not None and n >= UMAP_SMALL_DATA:
        data = np.ascontiguousarray(standin, dtype=np.float32)
    else:  # UMAP's small-data path computes its own distances from the rows (fewer than 4,096)
        data = x[:] if isinstance(x, UnitRows) else x
    reducer = umap.UMAP(
        n_components=n_components, n_neighbors=nn, min_dist=min_dist, metric="cosine",
        random_state=seed, n_epochs=n_epochs, init="spectral" if n > n_components + 1 else "random",
        precomputed_knn=(ind, dist, None),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*Graph is not fully connected.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        emb = reducer.fit_transform(data)
    return np.asarray(emb, dtype=np.float32)


def tsne_projection(
    features: np.ndarray,
    *,
    perplexity: float = 20.0,
    seed: int = 0,
    max_points: int | None = TSNE_MAX_POINTS,
    n_jobs: int | None = None,
) -> dict[str, np.ndarray]:
    """t-SNE (cosine, Barnes-Hut, PCA initialisation) of the L2-normalised rows.

    Above ``max_points`` images, t-SNE runs on a seeded random subsample of
    ``max_points`` images (sklearn's Barnes-Hut t-SNE is too slow for 60,000
    points in minutes); the others get NaN coordinates. Returns ``coords``
    (N, 2) float32 and ``index`` (the rows embedded). Perplexity is capped at
    (n - 1) / 3.
    """
    from sklearn.manifold import TSNE

    x = unit_rows(features)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    if max_points is not None and n > max_points:
        index = np.sort(rng.choice(n, size=max_points, replace=False))
    else:
        index = np.arange(n)
    sub = x[index]
    perp = float(min(perplexity, max(1.0, (sub.shape[0] - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perp, metric="cosine", init="pca", random_state=seed,
                n_jobs=n_jobs, method="barnes_hut")
    coords = np.full((n, 2), np.nan, dtype=np.float32)
    coords[index] = tsne.fit_transform(sub).astype(np.float32)
    return {"coords": coords, "index": index.astype(np.int64), "perplexity": np.asarray(perp)}


# ---------------------------------------------------------------------- all at once
def compute_projections(
    features: np.ndarray,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    which: tuple[str, ...] = ("pca", "umap", "tsne", "umap15"),
    tsne_max_points: int | None = TSNE_MAX_POINTS,
    knn_exact: bool | None = None,
    timings: dict[str, float] | None = None,
    identity: str | None = None,
) -> dict[str, np.ndarray]:
    """Every projection of the L2-normalised ``features`` (N, D), cached in ``out/projections.npz``.

    Returns a dict of arrays:

    ``pca`` (N, 2), ``pca_explained_variance_ratio`` (2,); ``pca_scores`` (N, c) and
    ``pca_variance_ratio`` (c,) with c <= 50 (the first components, for the PCA
    clustering space: use the first :func:`n_components_for` of them);
    ``knn_indices`` / ``knn_distances`` (N, 31) (self first, cosine distance);
    ``umap`` (N, 2); ``umap15`` (N, 15) (the "Exploratory UMAP" clustering space);
    ``tsne`` (N, 2) with NaN rows for images outside ``tsne_index`` (t-SNE subsample).

    ``which`` picks among ``pca``, ``umap``, ``umap15``, ``tsne``. Seeded:
    the same features, settings and seed give identical arrays, read back from
    the cache when ``out`` was used before. ``timings`` (if given) receives the
    seconds each stage took (0 for a cache hit is not recorded). ``identity``
    keys the cache (:meth:`~palaeo_ssl.embeddings.Embeddings.identity` of the
    embeddings ``features`` come from); by default the digest of ``features``.
    """
    import time

    x = unit_rows(features)
    n = x.shape[0]
    digest = identity or features_digest(x)
    cache = ProjectionCache(out)
    res: dict[str, np.ndarray] = {}
    times = timings if timings is not None else {}

    def run(name: str, settings: Mapping[str, Any], sd: int | None, fn: Callable[[], Mapping[str, np.ndarray]]):
        key = cache_key(digest, name, settings, sd, n)
        hit = cache.get(name, key, n_rows=n)
        if hit is None:
            log.debug("computing %s (%d images)", name, n)
            t0 = time.perf_counter()
            hit = {k: np.asarray(v) for k, v in fn().items()}
            cache.put(name, key, hit)
            times[name] = time.perf_counter() - t0
        return hit

    if "pca" in which:
        pca = run("pca", {"max_components": PCA_MAX_COMPONENTS}, None, lambda: pca_projection(x, seed=seed))
        res["pca_scores"] = pca["scores"]
        res["pca_variance_ratio"] = pca["explained_variance_ratio"]
        res["pca"] = pca["scores"][:, :2]
        res["pca_explained_variance_ratio"] = pca["explained_variance_ratio"][:2]

    if any(w in which for w in ("umap", "umap15")) and n >= 3:
        exact = knn_exact if knn_exact is not None else n <= EXACT_KNN_MAX
        def _knn():
            ind, dist = knn_graph(x, KNN_K, seed=seed, exact=exact)
            out = {"indices": ind, "distances": dist}
            if not exact:
                out["recall"] = np.asarray(knn_recall(x, ind, seed=seed))
            return out

        knn = run("knn", {"k": KNN_K, "exact": exact, "recall_sample": None if exact else KNN_RECALL_SAMPLE},
                  None if exact else seed, _knn)
        res["knn_indices"], res["knn_distances"] = knn["indices"], knn["distances"]
        if "recall" in knn:
            res["knn_recall"] = knn["recall"]
        graph = (knn["indices"], knn["distances"])
        standin = res["pca_scores"] if "pca_scores" in res else None
        if "umap" in which:
            res["umap"] = run("umap", {**UMAP_2D, "standin": "pca" if standin is not None else None}, seed,
                              lambda: {"coords": umap_projection(
                                  x, n_components=2, n_neighbors=UMAP_2D["n_neighbors"], min_dist=UMAP_2D["min_dist"],
                                  seed=seed, knn=graph, standin=standin)})["coords"]
        if "umap15" in which:
            nc = int(min(UMAP_CLUSTER["n_components"], max(2, n - 2)))
            res["umap15"] = run("umap15", {**UMAP_CLUSTER, "n_components": nc,
                                           "standin": "pca" if standin is not None else None}, seed,
                                lambda: {"coords": umap_projection(
                                    x, n_components=nc, n_neighbors=UMAP_CLUSTER["n_neighbors"],
                                    min_dist=UMAP_CLUSTER["min_dist"], seed=seed, knn=graph, standin=standin)})["coords"]
    if "tsne" in which and n >= 5:
        t = run("tsne", {**TSNE_SETTINGS, "max_points": tsne_max_points}, seed,
                lambda: tsne_projection(x, perplexity=TSNE_SETTINGS["perplexity"], seed=seed, max_points=tsne_max_points))
        res["tsne"], res["tsne_index"] = t["coords"], t["index"]
        res["tsne_perplexity"] = t["perplexity"]
    return res
