"""Disparity of a set of embeddings without an N x N distance matrix.

All distances are cosine distances, ``1 - cos(x_i, x_j)``, between
L2-normalised feature vectors (rows of unit length). Two identities make
every summary O(N·D) or O(N·D²) instead of O(N²·D) time and O(N²) memory:

* **mean vector**: for unit rows with sum ``s = Σ x_i`` the sum of the
  similarities over ordered pairs i ≠ j is ``|s|² - N``, so the mean pairwise
  cosine distance is ``N / (N - 1) · (1 - |s/N|²)``. It equals the sum of the
  per-feature variances (ddof = 1) exactly, and the mean distance to the
  centroid is ``1 - |s/N|``: three of the reference's disparity figures are
  one quantity, reported for comparison only.
* **Gram**: the sum of squared similarities over pairs is
  ``‖XᵀX‖²_F - Σ |x_i|⁴`` (``XᵀX`` is D x D), which gives the *exact*
  standard deviation of the pairwise distances.

The effective rank is the exponential of the Shannon entropy of the
eigenvalues of the Ledoit–Wolf shrunk covariance (Roy & Vetterli 2007),
computed from the smaller of the two Gram matrices (n x n or D x D) with the
shrinkage of :func:`sklearn.covariance.ledoit_wolf_shrinkage`.

Uncertainty: percentile bootstrap intervals (resampling images with
replacement), rarefaction curves (disparity of subsamples of fixed size
drawn without replacement) and a permutation test between two groups.
Every random step takes a ``seed``.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..compute import one_blas_thread
from .rows import UnitRows, row_norms, weighted_gram

#: quantities of :func:`disparity_summary`, in the order of the reference's ``morphology_report.csv``
DISPARITY_COLUMNS = (
    "mean_pairwise_distance",
    "std_pairwise_distance",
    "mean_centroid_distance",
    "std_centroid_distance",
    "variance_sum",
    "effective_rank",
)
#: quantities that only need the mean vector and one product per image (O(N·D))
LINEAR_COLUMNS = ("mean_pairwise_distance", "mean_centroid_distance", "std_centroid_distance", "variance_sum")
#: quantities that need a Gram matrix (O(N·D²) or O(N²·D), whichever is smaller)
GRAM_COLUMNS = ("std_pairwise_distance", "effective_rank")
#: quantities with a bootstrap interval (the effective rank has none: see :func:`bootstrap_disparity`)
BOOTSTRAPPED_COLUMNS = ("mean_pairwise_distance", "std_pairwise_distance", "mean_centroid_distance", "std_centroid_distance", "variance_sum")
STD_METHOD = "exact over all pairs (Gram identity, no N x N matrix)"
RAREFACTION_METRICS = ("mean_pairwise_distance", "effective_rank")
_CHUNK = 8192
#: distances held at once by :func:`distance_histogram` (a block of rows x the subsample): 2^18
HIST_BLOCK_CELLS = 1 << 18


# ---------------------------------------------------------------------- helpers
def unit_rows(features: np.ndarray) -> np.ndarray | UnitRows:
    """The L2-normalised rows of ``features`` (N, D), without a normalised copy; ValueError on a zero row.

    Rows that are already float32 and of unit length are returned as they are;
    anything else (e.g. a store's memory-mapped features) comes back as a
    :class:`~palaeo_ssl.morphospace.rows.UnitRows`, which normalises rows block by
    block when they are read, so the analyses never hold a second (N, D) array.
    """
    if isinstance(features, UnitRows):
        return features
    x = features if isinstance(features, np.ndarray) else np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (N x D), got shape {x.shape}")
    if x.dtype == np.float32 and x.flags.c_contiguous and x.flags.writeable and not isinstance(x, np.memmap):
        norms = row_norms(x)
        if x.shape[0] and float(norms.min()) == 0.0:
            return UnitRows(x, norms)  # raises, naming the row
        if x.shape[0] == 0 or np.abs(norms - 1.0).max() < 1e-6:
            return x
        return UnitRows(x, norms)
    return UnitRows(x)


def _wsum(x, w: np.ndarray) -> np.ndarray:
    """``Σ_i w_i x_i`` (D,) float64 for an array or :class:`UnitRows`."""
    if isinstance(x, UnitRows):
        return x.__rmatmul__(w)
    return (np.asarray(w, dtype=np.float32) @ x).astype(np.float64)


def _counts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicities (n,) of a bootstrap resample of n items."""
    return np.bincount(rng.integers(0, n, size=n), minlength=n)


def _linear_stats(x: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    """O(N·D) summaries of unit rows ``x`` (N, D), row i counted ``w[i]`` times.

    With weights (a bootstrap resample), pairs of two copies of the same image
    are left out of the pairwise mean, as they are not pairs of specimens.
    """
    if w is None:
        n = float(x.shape[0])
        s = x.sum(axis=0, dtype=np.float64)
        sum_w2 = n
    else:  # rows of weight 0 add nothing: no subset of x is copied
        w = np.asarray(w, dtype=np.float64)
        n = float(w.sum())
        s = _wsum(x, w)
        sum_w2 = float((w * w).sum())
    if n < 2 or n * n - sum_w2 <= 0:
        return {c: float("nan") for c in LINEAR_COLUMNS}
    # Σ_{i≠j} w_i w_j s_ij = |Σ w x|² - Σ w² |x|²  (|x| = 1)
    mpd = 1.0 - (float(s @ s) - sum_w2) / (n * n - sum_w2)
    m = s / n
    norm_m = float(np.sqrt(max(float(m @ m), 0.0)))
    if norm_m > 0:
        d = 1.0 - (x @ (m / norm_m).astype(np.float32)).astype(np.float64)
        if w is None:
            cd_mean, cd_std = float(d.mean()), float(d.std())
        else:
            cd_mean = float((w * d).sum() / n)
            cd_std = float(np.sqrt(max((w * d * d).sum() / n - cd_mean**2, 0.0)))
    else:  # centroid at the origin: the cosine distance to it is undefined
        cd_mean = cd_std = float("nan")
    return {
        "mean_pairwise_distance": float(mpd),
        "mean_centroid_distance": cd_mean,
        "std_centroid_distance": cd_std,
        # Σ var(ddof=1) of distinct unit rows is identical to their mean pairwise distance
        "variance_sum": float(mpd),
    }


def _lw_effective_rank(eigs: np.ndarray, n: float, p: int, fourth: float) -> float:
    """Effective rank of the Ledoit–Wolf shrunk covariance.

    ``eigs``: the non-zero eigenvalues of the empirical covariance (ddof = 0) of
    n observations in p dimensions; ``fourth``: Σ |x_k - mean|⁴ over observations.
    Same shrinkage as :func:`sklearn.covariance.ledoit_wolf_shrinkage`, whose
    sums are Frobenius norms and traces that the smaller Gram matrix gives.
    """
    eigs = np.clip(np.asarray(eigs, dtype=np.float64), 0.0, None)
    trace = float(eigs.sum())
    if trace <= 0:
        return float("nan")
    mu = trace / p
    delta_ = float((eigs**2).sum())  # ‖S‖²_F
    beta = (fourth / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace + p * mu**2) / p
    beta = min(beta, delta)
    shrink = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrink) * eigs + shrink * mu
    n_zero = p - eigs.size  # eigenvalues of S that the small Gram matrix does not list (all 0)
    total = float(shrunk.sum()) + n_zero * shrink * mu
    prob = shrunk / total
    ent = -float(np.sum(prob[prob > 0] * np.log(prob[prob > 0])))
    if n_zero and shrink > 0:
        pz = shrink * mu / total
        ent -= n_zero * pz * np.log(pz)
    return float(np.exp(ent))


def _gram(a: np.ndarray) -> np.ndarray:
    """The smaller Gram matrix of ``a`` (n, p): a aᵀ if n <= p else aᵀ a, in float64."""
    if a.shape[0] <= a.shape[1]:
        return (a @ a.T).astype(np.float64)
    g = np.zeros((a.shape[1], a.shape[1]))
    for start in range(0, a.shape[0], _CHUNK):
        b = a[start:start + _CHUNK]
        g += (b.T @ b).astype(np.float64)
    return g


def _pairwise_std(x: np.ndarray, w: np.ndarray | None = None) -> float:
    """Exact standard deviation (ddof = 0) of the cosine distances over pairs of unit rows.

    With weights, pairs of two copies of one image are left out (see :func:`_linear_stats`).
    """
    w = np.ones(x.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    n = float(w.sum())
    sum_w2 = float((w * w).sum())
    n_pairs = n * n - sum_w2
    if n < 2 or n_pairs <= 0:
        return float("nan")
    s = _wsum(x, w)
    keep = np.flatnonzero(w > 0)
    if keep.size <= x.shape[1]:  # few rows: the small n x n Gram matrix of the rows drawn
        g = _gram(x[keep] * np.sqrt(w[keep]).astype(np.float32)[:, None])  # ‖Xᵀ W X‖_F = ‖W½ X Xᵀ W½‖_F
    else:  # Xᵀ W X (D x D), block by block
        g = weighted_gram(x, w)[0]
    # Σ_{i≠j} w_i w_j s_ij = |s|² - Σ w²;  Σ_{i≠j} w_i w_j s_ij² = ‖Xᵀ W X‖²_F - Σ w²  (|x| = 1)
    s1 = (float(s @ s) - sum_w2) / n_pairs
    s2 = (float((g * g).sum()) - sum_w2) / n_pairs
    return float(np.sqrt(max(s2 - s1 * s1, 0.0)))  # the variance of 1 - s is that of s


def _effective_rank(x: np.ndarray) -> float:
    """Ledoit–Wolf effective rank of the rows of ``x`` (n, p), from the smaller Gram matrix."""
    n, p = x.shape
    if n < 2:
        return float("nan")
    mean = (x.sum(axis=0, dtype=np.float64) / n).astype(np.float32)
    if n <= p:  # few rows: centre them (a copy of at most D rows)
        xc = x[:] - mean
        fourth = float((np.einsum("ij,ij->i", xc, xc, dtype=np.float64) ** 2).sum())
        eigs = np.linalg.eigvalsh(_gram(xc)) / n
    else:  # the centred D x D Gram matrix and fourth moments, block by block
        g, fourth = weighted_gram(x, None, center=mean)
        eigs = np.linalg.eigvalsh(g) / n
    return _lw_effective_rank(eigs, float(n), p, fourth)


def _gram_stats(x: np.ndarray) -> dict[str, float]:
    """Exact std of pairwise cosine distances and Ledoit–Wolf effective rank of unit rows ``x``."""
    return {"std_pairwise_distance": _pairwise_std(x), "effective_rank": _effective_rank(x)}


# ---------------------------------------------------------------------- point estimates
def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean cosine distance over all pairs i < j of the N rows, in O(N·D).

    Equals ``scipy.spatial.distance.pdist(features, "cosine").mean()``.
    """
    return _linear_stats(unit_rows(features))["mean_pairwise_distance"]


def pairwise_distance_std(features: np.ndarray) -> float:
    """Exact standard deviation (ddof = 0) of the cosine distances over all pairs i < j, in O(N·D²).

    Equals ``scipy.spatial.distance.pdist(features, "cosine").std()``.
    """
    return _pairwise_std(unit_rows(features))


def effective_rank(features: np.ndarray) -> float:
    """exp(entropy) of the eigenvalues of the Ledoit–Wolf covariance of the L2-normalised rows."""
    return _effective_rank(unit_rows(features))


def disparity_summary(features: np.ndarray) -> dict[str, float]:
    """The six disparity quantities of the reference's ``morphology_report.csv``.

    ``features`` (N, D) are L2-normalised here. Returns a dict with
    ``mean_pairwise_distance`` (mean cosine distance over pairs), ``std_pairwise_distance``
    (its standard deviation over pairs, ddof = 0, exact), ``mean_centroid_distance`` and
    ``std_centroid_distance`` (cosine distance of each image to the mean vector; std with
    ddof = 0), ``variance_sum`` (Σ per-feature variance, ddof = 1; identical to the mean
    pairwise distance for unit rows) and ``effective_rank`` (dimensionless, 1..D).
    """
    x = unit_rows(features)
    out = _linear_stats(x)
    out.update(_gram_stats(x))
    return {c: out[c] for c in DISPARITY_COLUMNS}


def bootstrap_disparity(
    features: np.ndarray,
    n_boot: int = 200,
    n_boot_gram: int = 50,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Percentile bootstrap intervals of :func:`disparity_summary`.

    Images are resampled with replacement; pairs of two copies of one image are
    not counted as pairs. The O(N·D) quantities use ``n_boot`` replicates;
    ``std_pairwise_distance`` (a Gram matrix per replicate) uses the first
    ``n_boot_gram`` of the same resamples. ``effective_rank`` gets no bootstrap
    interval (NaN): a resample holds only ~63% distinct images, which lowers the
    rank, so the bootstrap distribution sits below the estimate (e.g. 3,000
    random vectors in 256-D: estimate 256.0, bootstrap interval [250, 251]).
    Its dependence on sample size is shown by :func:`rarefaction` instead.

    Returns one row per quantity: ``quantity, estimate, ci_low, ci_high, n_boot``.
    """
    x = unit_rows(features)
    est = disparity_summary(x)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    reps: dict[str, list[float]] = {c: [] for c in DISPARITY_COLUMNS}
    if n >= 2:
        with one_blas_thread(n <= 4 * x.shape[1]):
            for b in range(max(n_boot, n_boot_gram)):
                w = _counts(n, rng)
                if b < n_boot:
                    for k, v in _linear_stats(x, w).items():
                        reps[k].append(v)
                if b < n_boot_gram:
                    reps["std_pairwise_distance"].append(_pairwise_std(x, w))
    alpha = (1.0 - confidence) / 2.0
    rows = []
    for c in DISPARITY_COLUMNS:
        vals = np.asarray(reps[c], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        lo, hi = (np.quantile(vals, [alpha, 1 - alpha]) if vals.size else (np.nan, np.nan))
        rows.append({"quantity": c, "estimate": est[c], "ci_low": float(lo), "ci_high": float(hi), "n_boot": int(vals.size)})
    return pd.DataFrame(rows)


def _with_intervals(est_rows: pd.DataFrame) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in est_rows.itertuples(index=False):
        out[row.quantity] = row.estimate
    for row in est_rows.itertuples(index=False):
        if row.quantity in BOOTSTRAPPED_COLUMNS:
            out[f"{row.quantity}_ci_low"] = row.ci_low
            out[f"{row.quantity}_ci_high"] = row.ci_high
    return out


def disparity_table(
    features: np.ndarray,
    *,
    dataset: str = "",
    n_pca_used: float | None = None,
    n_boot: int = 200,
    n_boot_gram: int = 50,
    seed: int = 0,
) -> pd.DataFrame:
    """One-row morphology report: the reference's columns, then 95% intervals and the method.

    Columns: ``Dataset, n_samples, n_features, n_pca_used, metric`` and the six
    :data:`DISPARITY_COLUMNS` as in the reference's ``morphology_report.csv``; then
    ``<quantity>_ci_low`` / ``_ci_high`` for each of :data:`BOOTSTRAPPED_COLUMNS`,
    ``n_bootstrap``, ``n_bootstrap_std`` and ``std_pairwise_method``.
    """
    x = unit_rows(features)
    boot = bootstrap_disparity(x, n_boot=n_boot, n_boot_gram=n_boot_gram, seed=seed)
    row: dict[str, object] = {
        "Dataset": dataset,
        "n_samples": int(x.shape[0]),
        "n_features": int(x.shape[1]),
        "n_pca_used": n_pca_used if n_pca_used is not None else np.nan,
        "metric": "cosine",
    }
    row.update(_with_intervals(boot))
    row["n_bootstrap"] = int(n_boot)
    row["n_bootstrap_std"] = int(n_boot_gram)
    row["std_pairwise_method"] = STD_METHOD
    return pd.DataFrame([row])


def disparity_per_class(
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    n_boot: int = 200,
    n_boot_gram: int = 50,
    seed: int = 0,
    rarefied: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Disparity of each class with bootstrap 95% intervals.

    ``labels`` (N,) index ``class_names``; -1 (unlabelled) rows are ignored.
    Returns one row per class with ``class, label, n_samples``, the six
    :data:`DISPARITY_COLUMNS` with ``_ci_low``/``_ci_high`` (for
    :data:`BOOTSTRAPPED_COLUMNS`), and, when a
    rarefaction table is given, ``rarefied_n`` with the mean pairwise distance
    and effective rank of random subsamples of that common size
    (``rarefied_mean_pairwise_distance``, ``rarefied_effective_rank``) so classes
    of different size can be compared.
    """
    x = unit_rows(features)
    labels = np.asarray(labels)
    rows = []
    common_n = None
    if rarefied is not None and len(rarefied):
        common_n = int(rarefied.attrs.get("common_n", 0)) or None
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            continue
        boot = bootstrap_disparity(x[idx], n_boot=n_boot, n_boot_gram=n_boot_gram, seed=seed + 7919 * (c + 1))
        row: dict[str, object] = {"class": name, "label": c, "n_samples": int(idx.size)}
        row.update(_with_intervals(boot))
        if common_n is not None:
            row["rarefied_n"] = common_n
            for metric in RAREFACTION_METRICS:
                sel = rarefied[(rarefied["group"] == name) & (rarefied["n"] == common_n) & (rarefied["metric"] == metric)]
                row[f"rarefied_{metric}"] = float(sel["mean"].iloc[0]) if len(sel) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------- rarefaction
_METRIC_FUNCS = {
    "mean_pairwise_distance": lambda x: _linear_stats(x)["mean_pairwise_distance"],
    "std_pairwise_distance": _pairwise_std,
    "effective_rank": _effective_rank,
}


def rarefaction_sizes(n_max: int, n_min: int = 5, n_points: int = 10, include: Iterable[int] = ()) -> list[int]:
    """Geometric grid of subsample sizes from ``n_min`` to ``n_max`` (ints, sorted, unique)."""
    if n_max < 2:
        return []
    lo = min(max(2, n_min), n_max)
    grid = np.unique(np.round(np.geomspace(lo, n_max, num=max(2, n_points))).astype(int))
    extra = [int(i) for i in include if 2 <= int(i) <= n_max]
    return sorted(set(grid.tolist()) | set(extra))


def rarefaction(
    features: np.ndarray,
    groups: Mapping[str, np.ndarray],
    *,
    max_size: int = 500,
    n_points: int = 10,
    n_repeats: int = 20,
    metrics: Sequence[str] = RAREFACTION_METRICS,
    seed: int = 0,
    common_n: int | None = None,
) -> pd.DataFrame:
    """Disparity against subsample size for each group.

    For every group (name -> row indices into ``features``) and every size n in a
    geometric grid up to ``min(group size, max_size)``, ``n_repeats`` seeded
    subsamples of n images are drawn without replacement. Returns a long table
    ``group, n, metric, mean, ci_low, ci_high, n_repeats, group_size`` (2.5% and
    97.5% quantiles over repeats; a group's full size appears as a single
    deterministic value when it is within the grid). ``common_n`` (default: the
    smallest group size, capped by ``max_size``) is always in the grid, so all
    groups can be compared at that size; it is kept in ``table.attrs["common_n"]``.
    """
    unknown = [m for m in metrics if m not in _METRIC_FUNCS]
    if unknown:
        raise ValueError(f"unknown rarefaction metric(s) {unknown}; choose from {sorted(_METRIC_FUNCS)}")
    x = unit_rows(features)
    sizes_of = {g: len(np.asarray(ix)) for g, ix in groups.items()}
    valid = {g: s for g, s in sizes_of.items() if s >= 2}
    if common_n is None and valid:
        common_n = min(min(valid.values()), max_size)
    rng = np.random.default_rng(seed)
    rows = []
    for gi, (g, ix) in enumerate(groups.items()):
        ix = np.asarray(ix)
        if ix.size < 2:
            continue
        top = min(ix.size, max_size)
        for n in rarefaction_sizes(top, n_points=n_points, include=[common_n] if common_n else []):
            reps = n_repeats if n < ix.size else 1
            vals: dict[str, list[float]] = {m: [] for m in metrics}
            with one_blas_thread(n <= 2 * x.shape[1]):
                for _ in range(reps):
                    sub = x[np.sort(rng.choice(ix, size=n, replace=False))] if n < ix.size else x[ix]
                    for m in metrics:
                        vals[m].append(_METRIC_FUNCS[m](sub))
            for m in metrics:
                v = np.asarray(vals[m], dtype=np.float64)
                rows.append({
                    "group": g, "n": int(n), "metric": m, "mean": float(v.mean()),
                    "ci_low": float(np.quantile(v, 0.025)), "ci_high": float(np.quantile(v, 0.975)),
                    "n_repeats": int(v.size), "group_size": int(ix.size),
                })
    table = pd.DataFrame(rows, columns=["group", "n", "metric", "mean", "ci_low", "ci_high", "n_repeats", "group_size"])
    table.attrs["common_n"] = int(common_n) if common_n else 0
    return table


# ---------------------------------------------------------------------- permutation test
def permutation_test(
    features: np.ndarray,
    group_a: np.ndarray,
    group_b: np.ndarray,
    *,
    metric: str = "mean_pairwise_distance",
    n_permutations: int = 999,
    seed: int = 0,
) -> dict[str, float]:
    """Permutation test of the difference in disparity between two groups of images.

    ``group_a`` and ``group_b`` are row indices (or boolean masks) into
    ``features``; they must not overlap. The statistic is ``disparity(A) -
    disparity(B)`` for ``metric`` (``mean_pairwise_distance`` in O(N·D) per
    permutation, ``std_pairwise_distance`` or ``effective_rank``, each a Gram
    matrix per permutation); group memberships are shuffled
    ``n_permutations`` times (group sizes kept). The two-sided p-value is
    ``(1 + #{|T_perm| >= |T_obs|}) / (1 + n_permutations)``.
    Returns ``n_a, n_b, disparity_a, disparity_b, difference, p_value, n_permutations, metric``.
    """
    x = unit_rows(features)
    a = _as_index(group_a, x.shape[0])
    b = _as_index(group_b, x.shape[0])
    if np.intersect1d(a, b).size:
        raise ValueError("the two groups share images; a permutation test needs disjoint groups")
    if a.size < 2 or b.size < 2:
        raise ValueError(f"each group needs at least 2 images (got {a.size} and {b.size})")
    if metric not in _METRIC_FUNCS:
        raise ValueError(f"metric must be one of {sorted(_METRIC_FUNCS)}, not {metric!r}")
    pooled = np.concatenate([a, b])
    xp = x[pooled]
    na = a.size

    if metric == "mean_pairwise_distance":
        total = xp.sum(axis=0, dtype=np.float64)

        def stat(order: np.ndarray) -> tuple[float, float]:
            sa = xp[order[:na]].sum(axis=0, dtype=np.float64)
            sb = total - sa
            nb = xp.shape[0] - na
            da = na / (na - 1.0) * (1.0 - float(sa @ sa) / na**2)
            db = nb / (nb - 1.0) * (1.0 - float(sb @ sb) / nb**2)
            return da, db
    else:
        func = _METRIC_FUNCS[metric]

        def stat(order: np.ndarray) -> tuple[float, float]:
            return func(xp[order[:na]]), func(xp[order[na:]])

    ident = np.arange(xp.shape[0])
    da, db = stat(ident)
    observed = da - db
    rng = np.random.default_rng(seed)
    exceed = 0
    with one_blas_thread(xp.shape[0] <= 4 * x.shape[1]):
        for _ in range(n_permutations):
            pa, pb = stat(rng.permutation(xp.shape[0]))
            if abs(pa - pb) >= abs(observed) - 1e-12:
                exceed += 1
    return {
        "metric": metric,
        "n_a": int(na),
        "n_b": int(b.size),
        "disparity_a": float(da),
        "disparity_b": float(db),
        "difference": float(observed),
        "p_value": (1.0 + exceed) / (1.0 + n_permutations),
        "n_permutations": int(n_permutations),
    }


def _as_index(group: np.ndarray, n: int) -> np.ndarray:
    g = np.asarray(group)
    if g.dtype == bool:
        if g.shape[0] != n:
            raise ValueError(f"a boolean group mask needs {n} entries, got {g.shape[0]}")
        return np.flatnonzero(g)
    return np.unique(g.astype(np.int64))


# ---------------------------------------------------------------------- histogram
def distance_histogram(
    features: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    max_points: int = 5000,
    bins: int = 60,
    seed: int = 0,
) -> pd.DataFrame:
    """Histogram of pairwise cosine distances on a seeded subsample of at most ``max_points`` images.

    Returns one row per bin: ``bin_left, bin_right, all`` and, when ``labels``
    (N,) are given, ``within_class`` and ``between_class`` counts (pairs with an
    unlabelled image count only in ``all``). ``table.attrs`` holds
    ``n_points`` (the subsample size) and ``mean`` (the subsample's mean distance).
    """
    x = unit_rows(features)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=max_points, replace=False)) if n > max_points else np.arange(n)
    xs = np.asarray(x[idx], dtype=np.float32)
    lab = None if labels is None else np.asarray(labels)[idx]
    m = idx.size
    step = int(max(1, HIST_BLOCK_CELLS // max(m, 1)))

    def pairs():  # (distances, same class, both labelled) of the pairs i < j, a block of rows at a time
        for i0 in range(0, m, step):
            i1 = min(m, i0 + step)
            d = 1.0 - (xs[i0:i1] @ xs[i0:].T).astype(np.float64)
            upper = np.arange(i0, m)[None, :] > np.arange(i0, i1)[:, None]
            dv = np.clip(d[upper], 0.0, None)
            if lab is None:
                yield dv, None, None
            else:
                li, lj = np.broadcast_arrays(lab[i0:i1, None], lab[None, i0:])
                li, lj = li[upper], lj[upper]
                both = (li >= 0) & (lj >= 0)
                yield dv, both & (li == lj), both

    hi, total, count = 1e-6, 0.0, 0
    for dv, _, _ in pairs():
        if dv.size:
            hi = max(hi, float(dv.max()))
            total += float(dv.sum())
            count += dv.size
    edges = np.linspace(0.0, hi, bins + 1)
    counts = {k: np.zeros(bins, dtype=np.int64) for k in ("all", "within_class", "between_class")}
    for dv, same, both in pairs():
        counts["all"] += np.histogram(dv, edges)[0]
        if same is not None:
            counts["within_class"] += np.histogram(dv[same], edges)[0]
            counts["between_class"] += np.histogram(dv[both & ~same], edges)[0]
    table = pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], "all": counts["all"]})
    if labels is not None:
        table["within_class"] = counts["within_class"]
        table["between_class"] = counts["between_class"]
    table.attrs["n_points"] = int(idx.size)
    table.attrs["mean"] = total / count if count else float("nan")
    return table
