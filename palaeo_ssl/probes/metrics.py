"""Classification metrics of one evaluation split and their aggregation over splits.

An *evaluation split* is one cross-validation fold or one few-shot episode.
Every metric here is computed from one confusion matrix (``numpy.bincount``),
which is much cheaper than calling scikit-learn's metric functions one by one,
and equals them to floating-point rounding (the tests check this against
``sklearn.metrics``). Where scikit-learn and the reference protocol of
Rodgers (2025) differ in a detail, the docstring of the function says which
one it follows.

Metric names (the ``METRICS`` tuple) are the column stems of the reference
tables: ``top1_accuracy``, ``top2_accuracy``, ``top3_accuracy``, ``f1_macro``,
``f1_weighted``, ``precision_macro``, ``recall_macro``, ``specificity_macro``,
``balanced_accuracy``; ``cohen_kappa`` is added by this package. All are
fractions in [0, 1] (kappa in [-1, 1]).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

#: Metrics of the reference tables, in their column order.
METRICS = (
    "top1_accuracy",
    "top2_accuracy",
    "top3_accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "specificity_macro",
    "balanced_accuracy",
)
#: Metrics of this package's tables (the reference's plus Cohen's kappa).
ALL_METRICS = METRICS + ("cohen_kappa",)
TOPK = (1, 2, 3)


# ---------------------------------------------------------------------- confusion matrices
def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confusion matrix (L, L) int64 over sorted ``labels``: rows true, columns predicted.

    Samples whose true or predicted label is not in ``labels`` are left out, as
    ``sklearn.metrics.confusion_matrix(labels=...)`` does.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    it = np.searchsorted(labels, y_true).clip(0, n - 1)
    ip = np.searchsorted(labels, y_pred).clip(0, n - 1)
    ok = (labels[it] == y_true) & (labels[ip] == y_pred)
    flat = it[ok] * n + ip[ok]
    return np.bincount(flat, minlength=n * n).reshape(n, n).astype(np.int64)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix (rows true).

    Zero divisions give 0, as scikit-learn's ``zero_division=0``; F1 is
    ``2 tp / (n_true + n_pred)`` as in scikit-learn.
    """
    cm = np.asarray(cm)
    tp = np.diag(cm).astype(np.float64)
    pred_sum = cm.sum(axis=0).astype(np.float64)
    true_sum = cm.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_sum > 0, tp / pred_sum, 0.0)
        recall = np.where(true_sum > 0, tp / true_sum, 0.0)
        denom = true_sum + pred_sum
        f1 = np.where(denom > 0, 2.0 * tp / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": true_sum.astype(np.int64),
            "n_predicted": pred_sum.astype(np.int64)}


def specificity_macro(cm: np.ndarray) -> float:
    """Mean over classes of TN / (TN + FP); classes with TN + FP = 0 are left out."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.size == 0:
        return float("nan")
    total = cm.sum()
    row = cm.sum(axis=1)
    col = cm.sum(axis=0)
    diag = np.diag(cm)
    tn = total - (row + col - diag)
    fp = col - diag
    denom = tn + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        spec = np.where(denom > 0, tn / denom, np.nan)
    if np.all(np.isnan(spec)):
        return float("nan")
    return float(np.nanmean(spec))


def cohen_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa from a confusion matrix (unweighted), as ``sklearn.metrics.cohen_kappa_score``."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n == 0:
        return float("nan")
    po = np.trace(cm) / n
    pe = float(cm.sum(axis=1) @ cm.sum(axis=0)) / (n * n)
    if pe == 1.0:
        return float("nan")
    return float((po - pe) / (1.0 - pe))


def label_metrics(y_true: np.ndarray, y_pred: np.ndarray, specificity_labels: np.ndarray | None = None) -> dict:
    """Metrics of hard predictions, with scikit-learn's label conventions.

    F1, precision and recall (``zero_division=0``) are macro/weighted averages
    over the labels present in ``y_true`` or ``y_pred`` (scikit-learn's default);
    balanced accuracy is the mean recall over the labels present in ``y_true``;
    Cohen's kappa as scikit-learn. ``specificity_macro`` is computed on the
    confusion matrix over ``specificity_labels`` (default: the present labels);
    the reference protocol passes the classifier's training classes in
    cross-validation and the present labels in few-shot.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    present = np.union1d(y_true, y_pred)
    cm = confusion_counts(y_true, y_pred, present)
    s = per_class_scores(cm)
    support = s["support"].astype(np.float64)
    out = {
        "f1_macro": float(np.mean(s["f1"])),
        "f1_weighted": float(np.average(s["f1"], weights=support)) if support.sum() > 0 else 0.0,
        "precision_macro": float(np.mean(s["precision"])),
        "recall_macro": float(np.mean(s["recall"])),
    }
    if specificity_labels is None:
        out["specificity_macro"] = specificity_macro(cm)
    else:
        out["specificity_macro"] = specificity_macro(confusion_counts(y_true, y_pred, np.asarray(specificity_labels)))
    has_true = support > 0
    out["balanced_accuracy"] = float(np.mean(np.diag(cm)[has_true] / support[has_true])) if has_true.any() else float("nan")
    out["cohen_kappa"] = cohen_kappa(cm)
    return out


# ---------------------------------------------------------------------- top-k accuracy
def reference_topk(y_true: np.ndarray, proba: np.ndarray, k: int, classes: np.ndarray) -> float:
    """Top-k accuracy exactly as the reference code computes it.

    NaN when ``k >= proba.shape[1]``; images whose class is not among
    ``classes`` (the classifier's training classes) are left out; the top k
    columns come from ``numpy.argpartition(proba, -k)``, so ties between equal
    probabilities are resolved as numpy's introselect resolves them.
    """
    n_classes = proba.shape[1]
    if k >= n_classes:
        return float("nan")
    classes = np.asarray(classes)
    pos = np.searchsorted(classes, y_true).clip(0, len(classes) - 1)
    valid = classes[pos] == y_true
    if not valid.any():
        return float("nan")
    top = np.argpartition(proba, -k, axis=1)[:, -k:]
    correct = np.any(top[valid] == pos[valid][:, None], axis=1)
    return float(np.mean(correct))


def reference_topk_many(y_true: np.ndarray, proba: np.ndarray, ks: Sequence[int],
                        classes: np.ndarray) -> dict[int, float]:
    """:func:`reference_topk` for several k at once, with the same values and less work.

    An image whose class has ``g`` strictly larger and ``t`` equal other
    probabilities is in the top k for certain when ``g + t < k`` and out for
    certain when ``g >= k``; only the rows in between (ties across the k-th
    place) depend on how ``argpartition`` orders equal values, and only those
    rows are partitioned (row by row, as in the whole matrix).
    """
    n_classes = proba.shape[1]
    out = {int(k): float("nan") for k in ks}
    ks = [int(k) for k in ks if k < n_classes]
    classes = np.asarray(classes)
    pos = np.searchsorted(classes, y_true).clip(0, len(classes) - 1)
    valid = classes[pos] == y_true
    if not ks or not valid.any():
        return out
    pv = proba[valid]
    if not np.isfinite(pv).all():
        out.update({k: reference_topk(y_true, proba, k, classes) for k in ks})
        return out
    pos = pos[valid]
    own = pv[np.arange(len(pos)), pos][:, None]
    greater = np.count_nonzero(pv > own, axis=1)
    ties = np.count_nonzero(pv == own, axis=1) - 1
    for k in ks:
        correct = greater + ties < k
        unsure = np.flatnonzero((greater < k) & ~correct)
        if unsure.size:
            top = np.argpartition(pv[unsure], -k, axis=1)[:, -k:]
            correct[unsure] = np.any(top == pos[unsure][:, None], axis=1)
        out[k] = float(np.mean(correct))
    return out


def ranked_topk(y_true: np.ndarray, ranking: np.ndarray, k: int, n_classes: int) -> float:
    """Top-k accuracy from a ranking (n, C') of class labels, best first.

    NaN when ``k >= n_classes`` (the number of classes of the dataset or
    episode). An image counts as correct when its class is among the first k
    ranked labels; a class the probe never saw is never correct.
    """
    if k >= n_classes:
        return float("nan")
    kk = min(k, ranking.shape[1])
    return float(np.mean(np.any(ranking[:, :kk] == np.asarray(y_true)[:, None], axis=1)))


# ---------------------------------------------------------------------- one split
def reference_split_metrics(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray,
                            specificity: str = "classes") -> tuple[dict, np.ndarray]:
    """Metrics of one split as the reference protocol computes them.

    Parameters
    ----------
    y_true : (n,) int labels of the test images.
    proba : (n, C') class probabilities, columns ordered as ``classes``.
    classes : (C',) sorted labels the classifier was trained on.
    specificity : ``"classes"`` (confusion matrix over ``classes``, the
        reference's cross-validation) or ``"present"`` (over the labels present
        in the split, the reference's few-shot code).

    Returns (metrics dict, y_pred) where ``y_pred = classes[argmax(proba)]``
    (ties to the lowest column, as the reference).
    """
    classes = np.asarray(classes)
    y_pred = classes[np.argmax(proba, axis=1)]
    out = {f"top{k}_accuracy": v for k, v in reference_topk_many(y_true, proba, TOPK, classes).items()}
    out.update(label_metrics(y_true, y_pred, classes if specificity == "classes" else None))
    return out, y_pred


def ranked_split_metrics(y_true: np.ndarray, ranking: np.ndarray, n_classes: int) -> tuple[dict, np.ndarray]:
    """Metrics of one split from a ranking (n, C') of labels, best first (this package's protocol).

    ``y_pred`` is the first column; top-k is NaN where ``k >= n_classes``.
    """
    y_pred = ranking[:, 0]
    out = {f"top{k}_accuracy": ranked_topk(y_true, ranking, k, n_classes) for k in TOPK}
    out.update(label_metrics(y_true, y_pred))
    return out, y_pred


def majority_baseline(y: np.ndarray) -> float:
    """Accuracy of always predicting the most common class (fraction in [0, 1])."""
    y = np.asarray(y)
    y = y[y >= 0]
    if y.size == 0:
        return float("nan")
    return float(np.bincount(y).max() / y.size)


# ---------------------------------------------------------------------- aggregation
def t_interval(values: Sequence[float], level: float = 0.95, correction: float = 0.0) -> tuple[float, float]:
    """Two-sided t interval for the mean of ``values`` (NaNs dropped).

    ``correction`` is the Nadeau & Bengio (2003) term for resampled splits
    that share training images: the variance of the mean becomes
    ``(1/J + correction) * s^2`` with ``correction = n_test / n_train``
    (0 for independent values). Returns (nan, nan) with fewer than 2 values.
    """
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    j = v.size
    if j < 2:
        return float("nan"), float("nan")
    mean = float(v.mean())
    var = float(v.var(ddof=1))
    se = math.sqrt((1.0 / j + correction) * var)
    if se == 0.0:
        return mean, mean
    q = float(stats.t.ppf(0.5 + level / 2.0, df=j - 1))
    return mean - q * se, mean + q * se


def t_test_pvalue(values: Sequence[float], correction: float = 0.0) -> float:
    """Two-sided p-value of mean(values) = 0 with the same variance as :func:`t_interval`."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    j = v.size
    if j < 2:
        return float("nan")
    var = float(v.var(ddof=1))
    se = math.sqrt((1.0 / j + correction) * var)
    if se == 0.0:
        return 1.0 if v.mean() == 0 else 0.0
    t = float(v.mean()) / se
    return float(2.0 * stats.t.sf(abs(t), df=j - 1))


def nan_mean_std(values: Iterable[float], ddof: int) -> tuple[float, float]:
    """(nanmean, nanstd with ``ddof``) without warnings; NaN when nothing is left."""
    v = np.asarray(list(values), dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    std = float(v.std(ddof=ddof)) if v.size > ddof else float("nan")
    return float(v.mean()), std


def summarise(frame: pd.DataFrame, by: list[str], metrics: Sequence[str], repeat_col: str, correction_col: str,
              level: float = 0.95) -> pd.DataFrame:
    """Mean, std and a 95% interval of each metric over the rows (split scores) of each group.

    The std (ddof=1) is over the per-repeat means (``repeat_col``); the
    interval is the corrected resampled t interval over all rows, with the
    correction n_test / n_train of column ``correction_col`` averaged per group.
    Columns: ``mean_<m>``, ``std_<m>``, ``ci_low_<m>``, ``ci_high_<m>``.
    """
    rows = []
    for key, g in frame.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        corr = float(g[correction_col].mean())
        for m in metrics:
            vals = g[m].to_numpy(dtype=np.float64)
            per_rep = g.groupby(repeat_col, sort=True)[m].mean().to_numpy(dtype=np.float64)
            mean, _ = nan_mean_std(vals, ddof=1)
            _, std = nan_mean_std(per_rep, ddof=1)
            lo, hi = t_interval(vals, level=level, correction=corr)
            row[f"mean_{m}"] = mean
            row[f"std_{m}"] = std
            row[f"ci_low_{m}"] = lo
            row[f"ci_high_{m}"] = hi
        rows.append(row)
    return pd.DataFrame(rows)
