"""Figures of the probe results: accuracy against data used, few-shot accuracy, confusion matrix.

Each function draws a figure from tables computed by :mod:`palaeo_ssl.probes`
and returns it; :func:`palaeo_ssl.plots.save_figure` writes PNG and PDF.
Accuracies are fractions in the tables and percentages on the axes.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import class_colors

_MARKERS = ("o", "s", "D", "^", "v", "p")


def _errors(group: pd.DataFrame, mean_col: str, metric: str) -> np.ndarray:
    """(2, n) error-bar lengths in %: the 95% interval when the table has one, else the std."""
    lo, hi = f"ci_low_{metric}", f"ci_high_{metric}"
    mean = group[mean_col].to_numpy(dtype=float)
    if lo in group and hi in group and group[lo].notna().any():
        return 100 * np.vstack([mean - group[lo].to_numpy(dtype=float), group[hi].to_numpy(dtype=float) - mean])
    std = group[f"std_{metric}"].to_numpy(dtype=float)
    return 100 * np.vstack([std, std])


def _reference_lines(ax, baseline: float | None, literature: float | None) -> None:
    if literature is not None and np.isfinite(literature):
        ax.axhline(100 * literature, color="#c0392b", linestyle="--", linewidth=1.4, label="Best in literature")
    if baseline is not None and np.isfinite(baseline):
        ax.axhline(100 * baseline, color="0.45", linestyle="-.", linewidth=1.4, label="Majority class")


def _finish(ax, xlabel: str, metric: str, baseline: float | None, literature: float | None,
            title: str | None) -> None:
    """Reference lines, axis labels, the 0-100% y range, grid, legend and title of an accuracy figure."""
    _reference_lines(ax, baseline, literature)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{_label(metric)} (%)")
    ax.set_ylim(0, 101)
    ax.grid(True, linestyle="--", alpha=0.5)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)


def _curves(ax, table: pd.DataFrame, x_col: str, x_scale: float, metric: str, log_x: bool = False) -> None:
    """One error-bar line per classifier; lines are dodged sideways a little so the bars stay apart."""
    mean_col = f"mean_{metric}"
    names = list(dict.fromkeys(table["classifier"]))
    colors = class_colors(max(len(names), 3))
    for i, name in enumerate(names):
        g = table[table["classifier"] == name].sort_values(x_col)
        err = np.nan_to_num(_errors(g, mean_col, metric))
        shift = i - (len(names) - 1) / 2
        x = g[x_col].to_numpy(dtype=float) * x_scale
        x = x * 1.04 ** shift if log_x else x + 0.9 * shift
        ax.errorbar(x, 100 * g[mean_col].to_numpy(dtype=float), yerr=err,
                    marker=_MARKERS[i % len(_MARKERS)], capsize=3, linewidth=1.6, color=colors[i], label=name)


def accuracy_with_data(table: pd.DataFrame, *, baseline: float | None = None, literature: float | None = None,
                       metric: str = "top1_accuracy", title: str | None = None) -> plt.Figure:
    """Top-1 accuracy (%) against the share of data used (%), one line per classifier.

    ``table`` is a ``classification_cv_results`` table; error bars are its
    95% interval when present (standard protocol), else ± std. ``baseline``
    (majority-class accuracy) and ``literature`` (best published top-1) are
    fractions drawn as horizontal lines.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    _curves(ax, table, "train_fraction", 100.0, metric)
    ax.set_xlim(0, 105)
    _finish(ax, "Data used (%)", metric, baseline, literature, title)
    return fig


def few_shot_accuracy(table: pd.DataFrame, *, baseline: float | None = None, literature: float | None = None,
                      metric: str = "top1_accuracy", title: str | None = None) -> plt.Figure:
    """Top-1 accuracy (%) against labelled images per class, one line per classifier (log x axis)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    _curves(ax, table, "few_shot_values", 1.0, metric, log_x=True)
    shots = sorted({int(v) for v in table["few_shot_values"]}) if len(table) else []
    if shots:
        ax.set_xscale("log")
        ax.set_xticks(shots)
        ax.set_xticklabels([str(s) for s in shots])
        ax.minorticks_off()
    _finish(ax, "Labelled images per class", metric, baseline, literature, title)
    return fig


def confusion_matrix(counts: np.ndarray, class_names: Sequence[str], *, title: str | None = None,
                     max_annotated: int = 30, max_label_chars: int = 28, max_labels: int = 90,
                     xlabel: str = "Predicted class", ylabel: str = "True class") -> plt.Figure:
    """Row-normalised confusion matrix (% of each true class), readable up to ~60 classes.

    The figure grows with the number of classes and the tick labels shrink
    (names longer than ``max_label_chars`` are shortened); cells are annotated
    with their percentage only up to ``max_annotated`` classes, where the text fits.
    Above ``max_labels`` classes only every k-th class is named (k the smallest
    step that keeps at most ``max_labels`` names), so the names never overlap.
    """
    counts = np.asarray(counts, dtype=float)
    n = counts.shape[0]
    rows = counts.sum(axis=1, keepdims=True)
    pct = 100 * np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    side = float(np.clip(0.22 * n + 3.0, 5.0, 18.0))
    cell_pt = 72.0 * 0.75 * side / max(n, 1)  # height of one cell in points (the axes take ~75% of the figure)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label="% of true class")
    names = [s if len(s) <= max_label_chars else s[: max_label_chars - 1] + "…" for s in map(str, class_names)]
    step = max(1, int(np.ceil(n / max_labels)))
    fontsize = float(np.clip(0.55 * cell_pt * step, 5.0, 10.0))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels([names[i] for i in ticks], rotation=90, fontsize=fontsize)
    ax.set_yticklabels([names[i] for i in ticks], fontsize=fontsize)
    ax.set_xlabel(xlabel if step == 1 else f"{xlabel} (every {step}th named)")
    ax.set_ylabel(ylabel)
    if n <= max_annotated:
        ann = float(np.clip(0.35 * cell_pt, 5.0, 11.0))
        for i in range(n):
            for j in range(n):
                if counts[i, j] > 0:
                    ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=ann,
                            color="white" if pct[i, j] > 55 else "black")
    if title:
        ax.set_title(title)
    return fig


def confused_pairs(pairs: pd.DataFrame, examples: dict[str, str] | None = None, *, n: int = 12,
                   title: str | None = None, thumb_px: int = 96) -> plt.Figure:
    """The ``n`` most-confused pairs of a :func:`~palaeo_ssl.probes.confusions.most_confused_pairs` table.

    One row per pair, largest first: a bar of the count (test images of the true
    class predicted as the other) labelled ``true -> predicted``, with the count and
    the share of the true class; with ``examples`` (class name -> image file), an
    example image of each of the two classes on the left of its bar.
    """
    from ..images import load_image

    top = pairs.head(n)
    k = len(top)
    examples = examples or {}
    thumbs = any(c in examples for c in [*top["true_class"], *top["predicted_class"]])
    height = max(2.0, 0.75 * k + 1.2) if thumbs else max(2.0, 0.38 * k + 1.2)
    fig = plt.figure(figsize=(9.5 if thumbs else 8.0, height), layout="constrained")
    gs = fig.add_gridspec(max(k, 1), 3 if thumbs else 1, width_ratios=[1, 1, 8] if thumbs else [1])
    ax = fig.add_subplot(gs[:, -1])
    y = np.arange(k)
    counts = top["count"].to_numpy(dtype=float)
    ax.barh(y, counts, color="#2b6ca3")
    for yi, (c, s) in enumerate(zip(counts, top["share_of_true"].to_numpy(dtype=float))):
        ax.text(c, yi, f" {int(c)} ({100 * s:.0f}%)", va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{t} \u2192 {p}" for t, p in zip(top["true_class"], top["predicted_class"])], fontsize=8)
    ax.set_ylim(k - 0.5, -0.5)  # largest on top; one bar per grid row, beside its thumbnails
    ax.set_xlabel("Test images of the true class predicted as the other (count)")
    ax.set_xlim(0, max(1.0, counts.max(initial=0)) * 1.25)
    if thumbs:
        for row, (t, p) in enumerate(zip(top["true_class"], top["predicted_class"])):
            for col, name in enumerate((t, p)):
                tax = fig.add_subplot(gs[row, col])
                tax.set_axis_off()
                if name in examples:
                    try:
                        img = load_image(examples[name])
                        img.thumbnail((thumb_px, thumb_px))
                        tax.imshow(np.asarray(img))
                    except Exception:  # noqa: BLE001  (a thumbnail that cannot be read is left blank)
                        pass
                if row == 0:
                    tax.set_title("true" if col == 0 else "predicted", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def _label(metric: str) -> str:
    return {"top1_accuracy": "Top-1 accuracy", "balanced_accuracy": "Balanced accuracy"}.get(
        metric, metric.replace("_", " ").capitalize())
