"""Morphospace figures: projections, clusters, distance histogram, rarefaction and contact sheets.

Each function draws one figure from numbers computed in
:mod:`palaeo_ssl.morphospace` and writes ``stem.png`` and ``stem.pdf``
(:func:`palaeo_ssl.plots.save_figure`). Scatter points are rasterised inside
the PDF, so a 60,000-point figure stays small; axes, text and legend stay vector.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import class_colors, plt, save_figure

NOISE_COLOR = (0.72, 0.72, 0.72, 1.0)
#: contact sheets are drawn at this resolution, one thumbnail pixel per output pixel
SHEET_DPI = 150
#: legends list at most this many groups; beyond it the figure says how many groups there are
MAX_LEGEND = 60


def _marker_size(n: int) -> float:
    """Scatter marker area (pt²) that keeps 100 or 60,000 points readable."""
    return float(np.clip(3.0e4 / max(n, 1), 0.3, 25.0))


def _legend(ax, handles_labels: list[tuple[object, str]], title: str | None = None) -> None:
    if not handles_labels:
        return
    n = len(handles_labels)
    if n > MAX_LEGEND:
        ax.text(1.01, 1.0, f"{n} groups\n(too many to list)", transform=ax.transAxes, va="top", fontsize=7)
        return
    ncol = 1 if n <= 20 else math.ceil(n / 25)
    handles, labels = zip(*handles_labels)
    ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              fontsize=6 if n > 20 else 7, title_fontsize=7, ncol=ncol, markerscale=1.0,
              handletextpad=0.2, columnspacing=0.6, borderaxespad=0.0, labelspacing=0.25)


def _draw_groups(ax, coords: np.ndarray, groups: np.ndarray, names: Sequence[str], *,
                 noise_name: str = "noise / unlabelled", size: float | None = None) -> list[tuple[object, str]]:
    """Scatter ``coords`` (N, 2) coloured by ``groups`` (N,) (-1 grey, drawn first); legend entries."""
    coords = np.asarray(coords, dtype=np.float64)
    groups = np.asarray(groups)
    ok = np.isfinite(coords).all(axis=1)
    s = size if size is not None else _marker_size(int(ok.sum()))
    entries: list[tuple[object, str]] = []
    rest = ok & (groups < 0)
    if rest.any():
        h = ax.scatter(coords[rest, 0], coords[rest, 1], s=s, color=NOISE_COLOR, linewidths=0, rasterized=True)
        entries.append((h, f"{noise_name} ({int(rest.sum())})"))
    present = [g for g in range(len(names)) if (ok & (groups == g)).any()]
    colors = class_colors(max(len(names), 1))
    # draw in a seeded random order so no class is always on top
    order = np.random.default_rng(0).permutation(np.flatnonzero(ok & (groups >= 0)))
    if order.size:
        cols = np.asarray([colors[int(g) % len(colors)] for g in groups[order]])
        ax.scatter(coords[order, 0], coords[order, 1], s=s, c=cols, linewidths=0, rasterized=True)
    for g in present:
        h = ax.scatter([], [], s=12, color=colors[g % len(colors)], linewidths=0)
        entries.append((h, str(names[g])))
    return entries


def plot_projection(
    coords: np.ndarray,
    groups: np.ndarray,
    group_names: Sequence[str],
    stem: str | Path,
    *,
    title: str,
    axis_labels: tuple[str, str] = ("1", "2"),
    legend_title: str | None = "class",
    note: str | None = None,
    grey_name: str = "unlabelled",
) -> list[Path]:
    """A 2-D projection coloured by class (or cluster); -1 points in grey.

    ``coords`` (N, 2) (NaN rows are not drawn: e.g. images outside a t-SNE
    subsample), ``groups`` (N,) indices into ``group_names``; -1 points are
    listed as ``grey_name``. ``note`` is printed under the title (e.g. the
    explained variance or the subsample size).
    """
    fig, ax = plt.subplots(figsize=(7.2, 5.4))
    entries = _draw_groups(ax, coords, groups, group_names, noise_name=grey_name)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=9)
    ax.tick_params(labelsize=7)
    _legend(ax, entries, legend_title)
    fig.tight_layout()
    return save_figure(fig, stem, bbox_inches="tight")


def plot_cluster_panels(
    coords: np.ndarray,
    panels: Mapping[str, np.ndarray],
    stem: str | Path,
    *,
    title: str,
    axis_labels: tuple[str, str] = ("UMAP 1", "UMAP 2"),
) -> list[Path]:
    """One panel per clustering (``{panel title: (N,) labels, -1 noise}``) drawn on the same 2-D ``coords``."""
    k = max(1, len(panels))
    fig, axes = plt.subplots(1, k, figsize=(5.0 * k, 4.8), squeeze=False)
    for ax, (name, lab) in zip(axes[0], panels.items()):
        lab = np.asarray(lab)
        n_clusters = int(np.unique(lab[lab >= 0]).size)
        _draw_groups(ax, coords, lab, [f"cluster {c}" for c in range(int(lab.max(initial=-1)) + 1)], noise_name="noise")
        noise = float((lab < 0).mean()) if lab.size else 0.0
        ax.set_title(f"{name}\n{n_clusters} clusters, {noise:.0%} noise", fontsize=9)
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem, bbox_inches="tight")


def plot_distance_histogram(table: pd.DataFrame, stem: str | Path, *, title: str = "Pairwise cosine distances") -> list[Path]:
    """Histogram of pairwise cosine distances (a :func:`~palaeo_ssl.morphospace.disparity.distance_histogram` table).

    Shows all pairs and, when the table has them, within-class and between-class
    pairs as densities; the subsample size is stated in the title.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    left, right = table["bin_left"].to_numpy(), table["bin_right"].to_numpy()
    width = right - left
    centers = (left + right) / 2

    def density(counts: np.ndarray) -> np.ndarray:
        total = counts.sum()
        return counts / (total * width) if total > 0 else counts * 0.0

    ax.bar(centers, density(table["all"].to_numpy(float)), width=width, color="0.75", label="all pairs", align="center")
    for col, color in (("within_class", "tab:blue"), ("between_class", "tab:red")):
        if col in table and table[col].sum() > 0:
            ax.step(centers, density(table[col].to_numpy(float)), where="mid", color=color, lw=1.4,
                    label=col.replace("_", " ") + " pairs")
    n_points = table.attrs.get("n_points")
    mean = table.attrs.get("mean")
    sub = f"{n_points:,} images (seeded subsample)" if n_points else ""
    if mean is not None and np.isfinite(mean):
        ax.axvline(mean, color="k", lw=0.8, ls="--", label=f"mean {mean:.3f}")
    ax.set_xlabel("cosine distance (1 - cos)")
    ax.set_ylabel("density")
    ax.set_title(title + (f"\n{sub}" if sub else ""), fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return save_figure(fig, stem)


def plot_rarefaction(table: pd.DataFrame, stem: str | Path, *, overall: str = "all") -> list[Path]:
    """Disparity against subsample size, one panel per metric, one line (with its 95% band) per group.

    ``table`` is a :func:`~palaeo_ssl.morphospace.disparity.rarefaction` table; the
    group named ``overall`` is drawn in black.
    """
    metrics = list(dict.fromkeys(table["metric"]))
    groups = list(dict.fromkeys(table["group"]))
    others = [g for g in groups if g != overall]
    colors = class_colors(max(len(others), 1))
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5.2 * max(1, len(metrics)) + 1.6, 4.2), squeeze=False)
    entries: list[tuple[object, str]] = []
    for mi, (ax, metric) in enumerate(zip(axes[0], metrics)):
        for g in groups:
            sel = table[(table["group"] == g) & (table["metric"] == metric)].sort_values("n")
            if sel.empty:
                continue
            color = "k" if g == overall else colors[others.index(g) % len(colors)]
            lw = 1.8 if g == overall else 0.9
            (line,) = ax.plot(sel["n"], sel["mean"], color=color, lw=lw)
            ax.fill_between(sel["n"], sel["ci_low"], sel["ci_high"], color=color, alpha=0.12 if g != overall else 0.2, lw=0)
            if mi == 0:
                entries.append((line, str(g)))
        ax.set_xscale("log")
        ax.set_xlabel("images in subsample")
        ax.set_ylabel(metric.replace("_", " "))
        ax.tick_params(labelsize=7)
    common = table.attrs.get("common_n")
    if common:
        for ax in axes[0]:
            ax.axvline(common, color="0.4", lw=0.7, ls=":")
    fig.suptitle("Rarefaction: disparity of random subsamples (mean and 95% of repeats)"
                 + (f"; dotted line: common size {common}" if common else ""), fontsize=9)
    _legend(axes[0][-1], entries, "group")
    fig.tight_layout()
    return save_figure(fig, stem, bbox_inches="tight")


def _thumbnail(path: str | Path | None, size: int):
    """RGB thumbnail (PIL) of an image file, or None if it cannot be read."""
    from ..images import load_image

    if path is None:
        return None
    try:
        img = load_image(path)
        img.thumbnail((size, size))
        return img
    except Exception:
        return None


def plot_contact_sheet(
    image_paths: Sequence[str | Path | None],
    captions: Sequence[str],
    stem: str | Path,
    *,
    title: str,
    ncols: int = 5,
    thumb_px: int = 220,
    empty_message: str = "nothing to show",
) -> list[Path]:
    """A grid of image thumbnails with a caption above each.

    ``image_paths`` (absolute, or None) and ``captions`` have one entry per
    tile; a file that cannot be read is drawn as a grey tile saying so. The
    thumbnails (``thumb_px`` pixels, aspect kept) are composed into one picture
    drawn pixel for pixel at :data:`SHEET_DPI` (fast to write, one image in the
    PDF); the captions stay text.
    """
    n = len(image_paths)
    ncols = max(1, min(ncols, n)) if n else 1
    nrows = max(1, math.ceil(n / ncols))
    lines = max([str(c).count("\n") + 1 for c in captions] + [1])
    band = int(thumb_px * 0.09 * lines) + 8  # caption band above each tile, in pixels
    cell_h = thumb_px + band
    canvas = np.full((nrows * cell_h, ncols * thumb_px, 3), 255, dtype=np.uint8)
    unreadable = []
    for i, path in enumerate(image_paths):
        r, c = divmod(i, ncols)
        y0, x0 = r * cell_h + band, c * thumb_px
        pad = 4
        img = _thumbnail(path, thumb_px - 2 * pad)
        if img is None:
            canvas[y0 + pad:y0 + thumb_px - pad, x0 + pad:x0 + thumb_px - pad] = 217
            unreadable.append((x0 + thumb_px / 2, y0 + thumb_px / 2))
            continue
        arr = np.asarray(img)
        h, w = arr.shape[:2]
        oy, ox = y0 + (thumb_px - h) // 2, x0 + (thumb_px - w) // 2
        canvas[oy:oy + h, ox:ox + w] = arr[..., :3]
    width_in = canvas.shape[1] / SHEET_DPI
    body_in = canvas.shape[0] / SHEET_DPI
    fig = plt.figure(figsize=(width_in, body_in + 0.4))
    ax = fig.add_axes((0, 0, 1, body_in / (body_in + 0.4)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    fontsize = 5.5 if thumb_px >= 200 else 4.5
    for i, cap in enumerate(captions[:n]):
        r, c = divmod(i, ncols)
        ax.text(c * thumb_px + thumb_px / 2, r * cell_h + band - 3, str(cap), ha="center", va="bottom",
                fontsize=fontsize, linespacing=1.1)
    for x, y in unreadable:
        ax.text(x, y, "image not\nreadable", ha="center", va="center", fontsize=7, color="0.3")
    if n == 0:
        ax.text(canvas.shape[1] / 2, canvas.shape[0] / 2, empty_message, ha="center", va="center", fontsize=9)
    fig.suptitle(title, fontsize=8, y=0.995, va="top")
    return save_figure(fig, stem, dpi=SHEET_DPI)


def plot_silhouette_search(curves: Mapping[str, Mapping[int, float]], chosen: Mapping[str, int], stem: str | Path) -> list[Path]:
    """Silhouette against K for the KMeans (Unknown K) search, one line per clustering space."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for name, curve in curves.items():
        ks = sorted(curve)
        (line,) = ax.plot(ks, [curve[k] for k in ks], marker="o", ms=2.5, lw=1, label=name)
        if name in chosen:
            ax.axvline(chosen[name], color=line.get_color(), lw=0.7, ls="--")
    ax.set_xlabel("K (KMeans clusters)")
    ax.set_ylabel("silhouette (own space, subsample)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Choosing K by silhouette (dashed: chosen K)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, stem)
