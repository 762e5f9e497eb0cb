"""Which unlabelled specimens to label next, on arrays: the strategies behind ``palaeo-ssl suggest``.

``typical``
    k-means on the L2-normalised features with as many clusters as the budget
    (with labels: labelled + budget clusters, at most :data:`MAX_CLUSTERS`);
    clusters are visited holding the fewest labelled or already picked
    specimens first, larger first among equals, and each gives its most typical
    unlabelled specimen (density: mean cosine similarity to its nearest
    neighbours inside the cluster). Without labels this is one pick per cluster.
``diverse``
    greedy k-centre: each pick is the unlabelled specimen farthest (cosine)
    from every labelled and already picked one (coverage of the space).
``uncertain``
    with labels of at least two classes: the clusters that hold no labelled
    specimen first (their most typical member, largest cluster first; at most
    :data:`COVERAGE_SHARE` of the batch), then the specimens where the
    standard logistic regression fitted on the labels is least sure (smallest
    margin between its two best classes), at most one per cluster per round, so
    that a batch is not made of near-duplicates. With fewer classes it is ``typical``.
``random``
    a seeded uniform draw.
``auto``
    ``typical`` without labels, ``uncertain`` with labels of two or more classes,
    else ``typical``.

:func:`select` returns exactly ``budget`` distinct unlabelled row indices in
pick order with the numbers behind each pick; same inputs and seed, same picks.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..embeddings import l2_normalize
from ..errors import UserError
from .geometry import density, nearest

STRATEGIES = ("auto", "typical", "diverse", "uncertain", "random")
#: the most k-means clusters a selection uses (labelled + budget, capped here and at N)
MAX_CLUSTERS = 2000
#: above this many rows k-means runs as :func:`lloyd` (plain BLAS, k-means++ seeds from a sample)
FULL_KMEANS_MAX_ROWS = 5_000
DENSITY_NEIGHBOURS = 20
#: the largest share of an ``uncertain`` batch given to clusters without a labelled specimen
COVERAGE_SHARE = 0.5


@dataclass
class Selection:
    """Picks of one strategy: ``index`` (budget,) row indices in pick order, ``strategy`` the strategy
    used (``auto`` resolved), and ``details``, one row per pick: ``step`` (which rule picked it:
    ``typical``, ``coverage``, ``margin``, ``farthest``, ``random``), ``cluster`` and ``cluster_size``
    (-1/0 when no clustering), ``cluster_labelled`` (labelled specimens in that cluster),
    ``density``, ``margin`` (probability of the best minus the second class; NaN when no probe),
    ``best_class`` and ``second_class`` (class indices, -1 when no probe) and
    ``distance_to_labelled`` (cosine distance to the nearest labelled specimen; NaN without labels)."""

    index: np.ndarray
    strategy: str
    details: pd.DataFrame


def resolve_strategy(strategy: str, labels: np.ndarray) -> str:
    """The strategy ``auto`` stands for given ``labels`` (-1 unlabelled); others pass through."""
    if strategy not in STRATEGIES:
        from ..params import ParameterError, shown

        raise ParameterError("strategy", "unknown {name} " + shown(strategy) + f"; choose one of "
                                         f"{', '.join(STRATEGIES)}")
    n_classes = len(np.unique(labels[labels >= 0]))
    if strategy == "auto":
        return "uncertain" if n_classes >= 2 else "typical"
    if strategy == "uncertain" and n_classes < 2:
        return "typical"
    return strategy


def cluster(z: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """(N,) k-means cluster of each L2-normalised row, seeded: scikit-learn's ``KMeans`` (3 starts) up to
    :data:`FULL_KMEANS_MAX_ROWS` rows, :func:`lloyd` above."""
    n = z.shape[0]
    k = int(min(k, n))
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    if n <= FULL_KMEANS_MAX_ROWS:
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(z).astype(np.int64)
    return lloyd(z, k, seed)


def _assign(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Nearest centre of each row (squared Euclidean), in row blocks: argmax of z.c - |c|^2 / 2."""
    half = 0.5 * np.einsum("ij,ij->i", centres, centres)
    out = np.empty(z.shape[0], dtype=np.int64)
    step = max(1, (64 * 2**20) // (4 * centres.shape[0]))
    for a in range(0, z.shape[0], step):
        out[a:a + step] = np.argmax(z[a:a + step] @ centres.T - half, axis=1)
    return out


def lloyd(z: np.ndarray, k: int, seed: int = 0, max_iter: int = 25, sample: int = 5_000, tol: float = 1e-4) -> np.ndarray:
    """k-means for many rows in plain BLAS: k-means++ seeds from a seeded sample of ``sample`` rows
    (at least 5 per cluster; the seeding costs k x sample distances, the iterations k x N each),
    then Lloyd iterations on every row (assignments in row blocks, centre sums as one sparse
    product), stopping when no centre moves more than ``tol``. Memory: the features plus a
    block of distances; no N x N or N x k matrix. An emptied cluster is reseeded with the row
    farthest from its centre. Returns (N,) labels."""
    from scipy import sparse
    from sklearn.cluster import kmeans_plusplus

    n = z.shape[0]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(n, max(sample, 5 * k)), replace=False))
    centres, _ = kmeans_plusplus(np.ascontiguousarray(z[rows]), k, random_state=seed)
    centres = centres.astype(np.float32)
    labels = _assign(z, centres)
    for _ in range(max_iter):
        counts = np.bincount(labels, minlength=k)
        onehot = sparse.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n))
        sums = np.asarray(onehot @ z, dtype=np.float32)
        new = centres.copy()
        full = counts > 0
        new[full] = sums[full] / counts[full, None]
        empty = np.flatnonzero(~full)
        if len(empty):  # reseed emptied clusters at the worst-fitted rows
            fit = np.empty(n, dtype=np.float32)
            for a in range(0, n, 65536):
                fit[a:a + 65536] = np.einsum("ij,ij->i", z[a:a + 65536], centres[labels[a:a + 65536]])
            new[empty] = z[np.argsort(fit, kind="stable")[:len(empty)]]
        shift = float(np.max(np.linalg.norm(new - centres, axis=1)))
        centres = new
        labels = _assign(z, centres)
        if shift <= tol:
            break
    return labels


def _cluster_count(n: int, budget: int, n_labelled: int) -> int:
    return int(min(n, budget + n_labelled, max(budget, MAX_CLUSTERS)))


def _densities(z: np.ndarray, cl: np.ndarray, seed: int) -> np.ndarray:
    """(N,) typicality of every row within its cluster."""
    rng = np.random.default_rng(seed)
    out = np.zeros(z.shape[0], dtype=np.float32)
    order = np.argsort(cl, kind="stable")
    ids, starts = np.unique(cl[order], return_index=True)
    for members in np.split(order, starts[1:]):
        out[members] = density(z, members, k=DENSITY_NEIGHBOURS, rng=rng)
    return out


def _cover(cl: np.ndarray, dens: np.ndarray, candidates: np.ndarray, start_counts: np.ndarray, n: int,
           only_empty: bool = False) -> list[int]:
    """Up to ``n`` candidates, one at a time from the cluster holding the fewest labelled or picked
    specimens (larger clusters first among equals), each its cluster's most typical candidate left.
    ``only_empty``: stop once no cluster without a labelled or picked specimen is left."""
    k = len(start_counts)
    sizes = np.bincount(cl, minlength=k)
    cand = np.flatnonzero(candidates)
    order = cand[np.lexsort((cand, -dens[cand], cl[cand]))]  # by cluster, most typical first
    bounds = np.searchsorted(cl[order], np.arange(k + 1))
    pointer = bounds[:-1].copy()
    heap = [(int(start_counts[c]), -int(sizes[c]), int(c)) for c in range(k) if bounds[c] < bounds[c + 1]]
    heapq.heapify(heap)
    picks: list[int] = []
    while heap and len(picks) < n:
        count, neg_size, c = heapq.heappop(heap)
        if only_empty and count > 0:
            break
        picks.append(int(order[pointer[c]]))
        pointer[c] += 1
        if pointer[c] < bounds[c + 1]:
            heapq.heappush(heap, (count + 1, neg_size, c))
    return picks


def _farthest(z: np.ndarray, candidates: np.ndarray, labelled: np.ndarray, n: int, seed: int) -> tuple[list[int], list[float]]:
    """Greedy k-centre: ``n`` candidates, each farthest from the labelled and those already picked."""
    sim, _ = nearest(z, z[labelled])  # -inf without labels
    sim = sim.astype(np.float32)
    sim[~candidates] = np.inf
    picks: list[int] = []
    dists: list[float] = []
    if not labelled.any():  # no reference yet: a seeded random start
        first = int(np.random.default_rng(seed).choice(np.flatnonzero(candidates)))
        picks.append(first)
        dists.append(np.nan)
        sim = np.maximum(sim, z @ z[first])
        sim[first] = np.inf
    while len(picks) < n:
        i = int(np.argmin(sim))
        picks.append(i)
        dists.append(float(1.0 - sim[i]))
        sim = np.maximum(sim, z @ z[i])
        sim[i] = np.inf
    return picks, dists


def probe_margins(features: np.ndarray, labels: np.ndarray, rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """(len(rows), 3): margin (best minus second probability), best and second class index, from the
    standard logistic regression fitted on every labelled row of ``features``."""
    from ..probes import make_probe
    from ..probes.classifiers import fit_quietly

    lab = labels >= 0
    X = np.asarray(features[lab], dtype=np.float32)
    y = labels[lab]
    model = make_probe("logreg", "standard", y, seed=seed)
    fit_quietly(model, X, y)
    out = np.empty((len(rows), 3), dtype=np.float64)
    step = 8192
    classes = np.asarray(model.classes_)
    for a in range(0, len(rows), step):
        p = model.predict_proba(np.asarray(features[rows[a:a + step]], dtype=np.float32))
        top = np.argsort(-p, axis=1, kind="stable")[:, :2]
        r = np.arange(p.shape[0])
        out[a:a + step, 0] = p[r, top[:, 0]] - p[r, top[:, 1]]
        out[a:a + step, 1] = classes[top[:, 0]]
        out[a:a + step, 2] = classes[top[:, 1]]
    return out


def _by_margin(cl: np.ndarray, margin: np.ndarray, candidates: np.ndarray, taken: set[int], n: int) -> list[int]:
    """``n`` candidates by smallest margin, at most one more per cluster in each round."""
    rows = np.array([i for i in np.flatnonzero(candidates) if i not in taken], dtype=np.int64)
    rows = rows[np.lexsort((rows, margin[rows]))]
    picks: list[int] = []
    while len(picks) < n and len(rows):
        _, first = np.unique(cl[rows], return_index=True)
        chosen = np.sort(first)[: n - len(picks)]  # in margin order
        picks.extend(int(r) for r in rows[chosen])
        rows = np.delete(rows, chosen)
    return picks


def check_budget(budget: int, n_unlabelled: int) -> None:
    from ..params import ParameterError, shown

    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ParameterError("budget", "{name} must be an integer >= 1, not " + shown(budget))
    if n_unlabelled == 0:
        raise UserError("every specimen is labelled already: there is nothing left to suggest")
    if budget > n_unlabelled:
        raise ParameterError("budget", f"{{name}} {budget} is larger than the {n_unlabelled} unlabelled specimens; "
                                       f"ask for {n_unlabelled} or fewer")


def select(features: np.ndarray, labels: np.ndarray, budget: int, strategy: str = "auto", seed: int = 0) -> Selection:
    """Pick ``budget`` unlabelled rows of ``features`` (N, D) to label next (``labels`` (N,), -1 unlabelled).

    See the module docstring for the strategies. Raises :class:`~palaeo_ssl.params.ParameterError`
    (``budget``) when the budget exceeds the unlabelled rows.
    """
    labels = np.asarray(labels, dtype=np.int64)
    labelled = labels >= 0
    candidates = ~labelled
    check_budget(budget, int(candidates.sum()))
    used = resolve_strategy(strategy, labels)
    z = l2_normalize(np.asarray(features, dtype=np.float32))
    n = z.shape[0]
    cl = np.full(n, -1, dtype=np.int64)
    dens = np.full(n, np.nan, dtype=np.float32)
    margin = np.full((n, 3), np.nan)
    steps: dict[int, str] = {}
    if used == "random":
        picks = [int(i) for i in np.random.default_rng(seed).choice(np.flatnonzero(candidates), budget, replace=False)]
        steps = {i: "random" for i in picks}
    elif used == "diverse":
        picks, _ = _farthest(z, candidates, labelled, budget, seed)
        steps = {i: "farthest" for i in picks}
    else:
        k = _cluster_count(n, budget, int(labelled.sum()))
        cl = cluster(z, k, seed)
        dens = _densities(z, cl, seed)
        start = np.bincount(cl[labelled], minlength=k) if labelled.any() else np.zeros(k, dtype=np.int64)
        if used == "typical":
            picks = _cover(cl, dens, candidates, start, budget)
            steps = {i: ("coverage" if labelled.any() else "typical") for i in picks}
        else:  # uncertain
            picks = _cover(cl, dens, candidates, start, int(np.ceil(COVERAGE_SHARE * budget)), only_empty=True)
            steps = {i: "coverage" for i in picks}
            rows = np.flatnonzero(candidates)
            margin[rows] = probe_margins(features, labels, rows, seed)
            more = _by_margin(cl, margin[:, 0], candidates, set(picks), budget - len(picks))
            picks += more
            steps.update({i: "margin" for i in more})
    idx = np.asarray(picks, dtype=np.int64)
    if len(idx) != budget or len(np.unique(idx)) != budget or labelled[idx].any():  # pragma: no cover - invariant
        raise RuntimeError(f"selection error: {len(idx)} picks for a budget of {budget}")
    k_sizes = np.bincount(cl[cl >= 0]) if (cl >= 0).any() else np.zeros(0, dtype=np.int64)
    k_lab = np.bincount(cl[labelled & (cl >= 0)], minlength=len(k_sizes)) if len(k_sizes) else k_sizes
    dist = np.full(budget, np.nan)
    if labelled.any():
        sim, _ = nearest(z[idx], z[labelled])
        dist = 1.0 - sim.astype(np.float64)
    c = cl[idx]
    details = pd.DataFrame({
        "step": [steps[i] for i in idx],
        "cluster": c,
        "cluster_size": np.where(c >= 0, k_sizes[np.maximum(c, 0)] if len(k_sizes) else 0, 0),
        "cluster_labelled": np.where(c >= 0, k_lab[np.maximum(c, 0)] if len(k_sizes) else 0, 0),
        "density": dens[idx].astype(np.float64),
        "margin": margin[idx, 0],
        "best_class": np.nan_to_num(margin[idx, 1], nan=-1).astype(np.int64),
        "second_class": np.nan_to_num(margin[idx, 2], nan=-1).astype(np.int64),
        "distance_to_labelled": dist,
    })
    return Selection(index=idx, strategy=used, details=details)
