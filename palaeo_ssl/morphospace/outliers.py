"""Per-image neighbourhood scores: outliers, suspect labels and retrieval.

All neighbourhoods are cosine neighbourhoods of the L2-normalised features,
read from the k-nearest-neighbour graph of
:func:`palaeo_ssl.morphospace.projections.knn_graph` (self in column 0).

* outlier score: the local outlier factor (LOF, sklearn, k = 10) - how much
  sparser an image's neighbourhood is than its neighbours' (≈1 inside a
  cluster, larger for outliers) - and the mean cosine distance to the k
  nearest images;
* suspect labels: among the k nearest *labelled* images, the share with
  another label, their majority class (ties broken by summed similarity,
  never by class index) and its share; ``suspect_score`` is the
  similarity-weighted share of neighbours with another label (0..1);
* retrieval: the nearest stored images to new feature vectors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .disparity import unit_rows

DEFAULT_K = 10
OUTLIER_COLUMNS = [
    "index", "path", "label", "class_name", "outlier_score", "outlier_rank", "knn_distance",
    "n_labelled_neighbours", "other_label_fraction", "neighbour_class", "neighbour_class_share",
    "suspect_score", "label_disagrees",
]
SUSPECT_COLUMNS = [
    "rank", "index", "path", "class_name", "neighbour_class", "neighbour_class_share",
    "other_label_fraction", "suspect_score", "n_labelled_neighbours", "outlier_score",
]


def _neighbours(knn_indices: np.ndarray, knn_distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns 1..k (the k nearest other images) of a graph with self in column 0."""
    ind = np.asarray(knn_indices)
    dist = np.asarray(knn_distances, dtype=np.float64)
    k = int(min(k, ind.shape[1] - 1))
    if k < 1:
        raise ValueError("the neighbour graph has no neighbours besides the images themselves")
    return ind[:, 1:k + 1], dist[:, 1:k + 1]


def local_outlier_factor(knn_indices: np.ndarray, knn_distances: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """LOF (N,) of every image from its k nearest neighbours (sklearn's ``LocalOutlierFactor``).

    Equals ``-LocalOutlierFactor(n_neighbors=k, metric="cosine").fit(X).negative_outlier_factor_``
    when the graph is exact.
    """
    from scipy.sparse import csr_matrix
    from sklearn.neighbors import LocalOutlierFactor

    ind, dist = _neighbours(knn_indices, knn_distances, k)
    n, kk = ind.shape
    # sklearn wants each image itself plus its k neighbours in the graph; neighbours at
    # distance 0 (duplicates) get a tiny positive distance so the sparse graph keeps them
    cols = np.concatenate([np.arange(n)[:, None], ind], axis=1)
    data = np.concatenate([np.zeros((n, 1)), np.maximum(dist, 1e-12)], axis=1)
    graph = csr_matrix((data.ravel(), cols.ravel(), np.arange(0, n * (kk + 1) + 1, kk + 1)), shape=(n, n))
    lof = LocalOutlierFactor(n_neighbors=kk, metric="precomputed")
    lof.fit(graph)
    return -lof.negative_outlier_factor_


def neighbour_label_scores(
    knn_indices: np.ndarray,
    knn_distances: np.ndarray,
    labels: np.ndarray,
    k: int = DEFAULT_K,
) -> dict[str, np.ndarray]:
    """How well each image's label agrees with its k nearest labelled neighbours.

    ``labels`` (N,) with -1 for unlabelled images (they are never counted as
    neighbours' votes; their own scores describe their neighbourhood only).
    Returns arrays (N,): ``n_labelled_neighbours``, ``other_label_fraction`` (share
    of labelled neighbours whose label differs from the image's; NaN for an
    unlabelled image or one without labelled neighbours), ``neighbour_class``
    (majority label among them, ties to the larger summed similarity; -1 if none),
    ``neighbour_class_share`` and ``suspect_score`` (similarity-weighted share of
    votes for other labels, 0..1).
    """
    ind, dist = _neighbours(knn_indices, knn_distances, k)
    y = np.asarray(labels, dtype=np.int64)
    n = ind.shape[0]
    nl = ind >= 0
    ny = np.where(nl, y[np.where(nl, ind, 0)], -1)
    valid = ny >= 0
    sim = np.clip(1.0 - dist, 0.0, None) * valid
    n_lab = valid.sum(axis=1)
    own = y[:, None]
    same = valid & (ny == own)
    with np.errstate(invalid="ignore", divide="ignore"):
        other_frac = np.where((y >= 0) & (n_lab > 0), 1.0 - same.sum(axis=1) / np.maximum(n_lab, 1), np.nan)
        wsum = sim.sum(axis=1)
        suspect = np.where((y >= 0) & (wsum > 0), 1.0 - (sim * same).sum(axis=1) / np.where(wsum > 0, wsum, 1.0), np.nan)
        suspect = np.where((y >= 0) & (n_lab > 0) & (wsum == 0), other_frac, suspect)
    maj = np.full(n, -1, dtype=np.int64)
    share = np.full(n, np.nan)
    n_cls = int(max(y.max(initial=-1), ny.max(initial=-1)) + 1)
    if n_cls > 0:
        counts = np.zeros((n, n_cls))
        sims = np.zeros((n, n_cls))
        rows = np.repeat(np.arange(n), ind.shape[1])
        vflat = valid.ravel()
        np.add.at(counts, (rows[vflat], ny.ravel()[vflat]), 1.0)
        np.add.at(sims, (rows[vflat], ny.ravel()[vflat]), sim.ravel()[vflat])
        # majority by count, ties by summed similarity (a tiny fraction of it), never by class index
        best = np.argmax(counts + sims / (ind.shape[1] + 1.0) * 1e-3, axis=1)
        has = n_lab > 0
        maj[has] = best[has]
        share[has] = counts[has, best[has]] / n_lab[has]
    return {
        "n_labelled_neighbours": n_lab.astype(np.int64),
        "other_label_fraction": other_frac,
        "neighbour_class": maj,
        "neighbour_class_share": share,
        "suspect_score": suspect,
    }


def neighbourhood_table(
    knn_indices: np.ndarray,
    knn_distances: np.ndarray,
    *,
    paths: list[str],
    labels: np.ndarray | None = None,
    class_names: list[str] | None = None,
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """Per-image outlier and label-agreement scores (one row per image, in store order).

    Columns :data:`OUTLIER_COLUMNS`: ``index`` (row in the store), ``path`` (as in
    the store's index), ``label`` / ``class_name``, ``outlier_score`` (LOF),
    ``outlier_rank`` (1 = most outlying), ``knn_distance`` (mean cosine distance to
    the k nearest images) and, where labels exist, the columns of
    :func:`neighbour_label_scores` (``neighbour_class`` as a class name) and
    ``label_disagrees`` (the neighbours' majority class is not the image's label).
    """
    n = len(paths)
    ind, dist = _neighbours(knn_indices, knn_distances, k)
    lof = local_outlier_factor(knn_indices, knn_distances, k)
    order = np.lexsort((np.arange(n), -lof))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    names = list(class_names or [])
    y = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)

    def name(c: int) -> str:
        return names[c] if 0 <= c < len(names) else ("" if c < 0 else str(c))

    table = pd.DataFrame({
        "index": np.arange(n),
        "path": list(paths),
        "label": y,
        "class_name": [name(int(c)) for c in y],
        "outlier_score": lof,
        "outlier_rank": rank,
        "knn_distance": dist.mean(axis=1),
    })
    if (y >= 0).any():
        s = neighbour_label_scores(knn_indices, knn_distances, y, k)
        table["n_labelled_neighbours"] = s["n_labelled_neighbours"]
        table["other_label_fraction"] = s["other_label_fraction"]
        table["neighbour_class"] = [name(int(c)) for c in s["neighbour_class"]]
        table["neighbour_class_share"] = s["neighbour_class_share"]
        table["suspect_score"] = s["suspect_score"]
        table["label_disagrees"] = (y >= 0) & (s["neighbour_class"] >= 0) & (s["neighbour_class"] != y)
    else:
        table["n_labelled_neighbours"] = 0
        for c in ("other_label_fraction", "neighbour_class_share", "suspect_score"):
            table[c] = np.nan
        table["neighbour_class"] = ""
        table["label_disagrees"] = False
    return table[OUTLIER_COLUMNS]


def suspect_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Images whose label disagrees with their neighbourhood, most suspect first.

    ``table`` is a :func:`neighbourhood_table`. Keeps images whose neighbours'
    majority class differs from their label, ordered by ``suspect_score``,
    then ``neighbour_class_share`` (both descending), then store order.
    Columns :data:`SUSPECT_COLUMNS` (``rank`` 1 = most suspect).
    """
    sus = table[table["label_disagrees"].astype(bool)].copy()
    sus = sus.sort_values(["suspect_score", "neighbour_class_share", "index"], ascending=[False, False, True], kind="mergesort")
    sus.insert(0, "rank", np.arange(1, len(sus) + 1))
    return sus[SUSPECT_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------------- retrieval
def nearest_neighbours(
    features: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    *,
    block: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` stored images most similar to each query, by cosine similarity.

    ``features`` (N, D) stored vectors, ``queries`` (M, D). Returns
    ``(indices (M, k) int64, similarities (M, k) float32)``, most similar first,
    ties broken by store order (so a query that is a stored vector finds itself
    first unless an identical vector comes earlier). Exact; memory O(M·block).
    """
    x = unit_rows(features)
    q = unit_rows(np.atleast_2d(queries))
    n = x.shape[0]
    k = int(min(k, n))
    best_s = np.full((q.shape[0], 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    for start in range(0, n, block):
        s = q @ x[start:start + block].T
        i = np.broadcast_to(np.arange(start, start + s.shape[1]), s.shape)
        cs = np.concatenate([best_s, s], axis=1)
        ci = np.concatenate([best_i, i], axis=1)
        order = np.lexsort((ci, -cs), axis=1)[:, :k]
        best_s = np.take_along_axis(cs, order, axis=1)
        best_i = np.take_along_axis(ci, order, axis=1)
    return best_i, best_s.astype(np.float32)


def similar_table(
    features: np.ndarray,
    query: np.ndarray,
    *,
    paths: list[str],
    labels: np.ndarray | None = None,
    class_names: list[str] | None = None,
    k: int = 10,
) -> pd.DataFrame:
    """The ``k`` stored images nearest to one query vector (D,) as a table.

    Columns ``rank`` (1 = most similar), ``index`` (row in the store), ``path``
    (as in the store's index), ``class_name`` (empty when unlabelled) and
    ``similarity`` (cosine, -1..1).
    """
    idx, sim = nearest_neighbours(features, np.asarray(query).reshape(1, -1), k)
    names = list(class_names or [])
    y = np.full(len(paths), -1) if labels is None else np.asarray(labels)
    rows = []
    for r, (i, s) in enumerate(zip(idx[0], sim[0]), start=1):
        c = int(y[i])
        rows.append({"rank": r, "index": int(i), "path": paths[i],
                     "class_name": names[c] if 0 <= c < len(names) else "", "similarity": float(s)})
    return pd.DataFrame(rows, columns=["rank", "index", "path", "class_name", "similarity"])
