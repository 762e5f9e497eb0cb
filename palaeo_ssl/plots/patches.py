"""Figures of what the model sees in one specimen (data from :mod:`palaeo_ssl.patches`).

Patch-level maps are drawn with nearest-neighbour interpolation over the
photograph in its own pixel coordinates (``extent``), so every patch is a
crisp square aligned with the specimen; nothing is squashed to a square.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from . import plt, save_figure
from ..patches.analysis import Correspondence, luminance
from ..patches.specimen import BARE_MAX_SIDE, SpecimenView

DISPLAY_MAX_SIDE = 1200
ATTENTION_CMAP = "inferno"
SIMILARITY_CMAP = "RdBu_r"


# ---------------------------------------------------------------------- helpers (drawing only)
def save_bare_image(array: np.ndarray, stem: str | Path) -> list[Path]:
    """Write ``array`` ((H, W) or (H, W, 3) uint8) pixel for pixel as ``stem.png`` and ``stem.pdf``.

    No axes, titles or margins: the picture can be laid over the photograph.
    The PDF page holds the same pixels at 72 dpi.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(array))
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    img.save(paths[0], format="PNG")
    img.convert("RGB").save(paths[1], format="PDF", resolution=72.0)
    return paths


def _display(view: SpecimenView) -> tuple[np.ndarray, np.ndarray]:
    """The photograph as drawn under the panels (long side at most ``DISPLAY_MAX_SIDE``): colour and luminance.

    Computed once per figure and view, not once per panel.
    """
    photo = view.photo(DISPLAY_MAX_SIDE)
    return photo, luminance(photo)


def _panel_size(image_size: tuple[int, int], area: float = 10.0) -> tuple[float, float]:
    w, h = image_size
    pw = min(6.0, max(1.2, math.sqrt(area * w / h)))
    ph = min(6.0, max(1.2, math.sqrt(area * h / w)))
    return pw, ph


def _axes(n: int, image_size: tuple[int, int], ncols: int | None = None, extra_w: float = 0.9,
          max_width: float = 15.0):
    """``n`` panels of one image in a grid of ``ncols`` columns, the figure at most ``max_width`` inches wide."""
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    pw, ph = _panel_size(image_size)
    if ncols * (pw + extra_w) > max_width:
        s = (max_width / ncols - extra_w) / pw
        pw, ph = pw * s, ph * s
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * (pw + extra_w), nrows * (ph + 0.5)),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def _row_axes(sizes: list[tuple[int, int]], nrows: int = 1, height: float = 4.0, max_width: float = 15.0,
              extra_w: float = 1.0):
    """One column per image, widths in proportion to each image's aspect ratio (no squashing)."""
    ratios = [w / h for w, h in sizes]
    height = min(height, max_width / sum(ratios))
    fig, axes = plt.subplots(nrows, len(sizes), figsize=(max(3.0, height * sum(ratios) + extra_w), nrows * (height + 0.6)),
                             width_ratios=ratios, squeeze=False, layout="constrained")
    return fig, axes


def _wrap(text: str, ax) -> str:
    import textwrap

    width_in = ax.get_position().width * ax.figure.get_figwidth()
    return "\n".join(textwrap.wrap(text, max(14, int(width_in * 13)), break_long_words=True))


def _photo(ax, view: SpecimenView, img: np.ndarray, title: str | None = None):
    """Draw ``img`` from :func:`_display` (colour, or (H, W) luminance in grey) over ``view``'s pixel extent."""
    w, h = view.image_size
    if img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, extent=(0, w, h, 0))
    else:
        ax.imshow(img, extent=(0, w, h, 0))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(_wrap(title, ax), fontsize=9)


def _grid_image(ax, view: SpecimenView, grid: np.ndarray, **kwargs):
    w, h = view.image_size
    return ax.imshow(grid, extent=(0, w, h, 0), interpolation="nearest", **kwargs)


def _contour(ax, view: SpecimenView, mask: np.ndarray, color="cyan"):
    """Outline of a patch mask, drawn along patch edges."""
    w, h = view.image_size
    gh, gw = mask.shape
    m = np.pad(np.asarray(mask, bool), 1)
    xs = np.linspace(0, w, gw + 1)
    ys = np.linspace(0, h, gh + 1)
    segs = []
    for r in range(gh):
        for c in range(gw):
            if not m[r + 1, c + 1]:
                continue
            if not m[r, c + 1]:
                segs.append([(xs[c], ys[r]), (xs[c + 1], ys[r])])
            if not m[r + 2, c + 1]:
                segs.append([(xs[c], ys[r + 1]), (xs[c + 1], ys[r + 1])])
            if not m[r + 1, c]:
                segs.append([(xs[c], ys[r]), (xs[c], ys[r + 1])])
            if not m[r + 1, c + 2]:
                segs.append([(xs[c + 1], ys[r]), (xs[c + 1], ys[r + 1])])
    if segs:
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segs, colors=color, linewidths=1.0))


def _title(view: SpecimenView) -> str:
    h, w = view.grid
    return f"{view.name} ({view.image_size[0]}x{view.image_size[1]} px, {h}x{w} patches)"


# ---------------------------------------------------------------------- figures
def plot_overlay(view: SpecimenView) -> "plt.Figure":
    """Photograph | PCA colours over the greyed photograph with the foreground outline | foreground score."""
    fig, axes = _axes(3, view.image_size)
    photo, grey = _display(view)
    _photo(axes[0], view, photo, title=_title(view))
    _photo(axes[1], view, grey, title="PCA colours of the foreground")
    rgba = np.concatenate([view.colours, np.where(view.foreground.mask, 230, 0).astype(np.uint8)[..., None]], axis=-1)
    _grid_image(axes[1], view, rgba)
    _contour(axes[1], view, view.foreground.mask)
    fg = view.foreground
    _photo(axes[2], view, grey, title=f"foreground score (PC1, {fg.method} cut {fg.threshold:.2f})")
    im = _grid_image(axes[2], view, fg.score, cmap="viridis", vmin=0, vmax=1, alpha=0.75)
    _contour(axes[2], view, fg.mask)
    fig.colorbar(im, ax=axes[2], fraction=0.05, pad=0.02, label="foreground score")
    return fig


def plot_attention_cls(view: SpecimenView) -> "plt.Figure":
    """Last-layer attention of the CLS token and of each register to the patches, mean over heads."""
    att = view.tokens.attention
    if att is None:
        raise ValueError("this view was computed without attention (view_specimen(..., attention=True))")
    maps = [("CLS", att.cls_mean)] + [(f"register {i + 1}", m) for i, m in enumerate(att.register_mean)]
    fig, axes = _axes(len(maps), view.image_size, ncols=min(len(maps), 5))
    grey = _display(view)[1]
    for ax, (label, grid) in zip(axes, maps):
        _photo(ax, view, grey, title=f"{label} -> patches (mean of {att.num_heads} heads)")
        im = _grid_image(ax, view, grid, cmap=ATTENTION_CMAP, alpha=0.8, vmin=float(grid.min()),
                         vmax=max(float(grid.max()), float(grid.min()) + 1e-12))
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="attention weight")
    fig.suptitle(view.name, fontsize=10)
    return fig


def plot_attention_heads(view: SpecimenView) -> "plt.Figure":
    """CLS-to-patch attention of every head of the last layer, on one shared colour scale."""
    att = view.tokens.attention
    if att is None:
        raise ValueError("this view was computed without attention (view_specimen(..., attention=True))")
    heads = att.cls_heads
    ncols = min(att.num_heads, max(1, math.ceil(math.sqrt(att.num_heads * view.image_size[1] / view.image_size[0]))))
    fig, axes = _axes(att.num_heads, view.image_size, ncols=ncols, extra_w=0.2)
    vmin, vmax = float(heads.min()), max(float(heads.max()), float(heads.min()) + 1e-12)
    im = None
    grey = _display(view)[1]
    for i, ax in enumerate(axes):
        _photo(ax, view, grey, title=f"head {i + 1}")
        im = _grid_image(ax, view, heads[i], cmap=ATTENTION_CMAP, alpha=0.8, vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=list(axes), fraction=0.05, pad=0.02, label="CLS attention weight (shared scale)")
    fig.suptitle(f"{view.name}: last-layer CLS attention per head", fontsize=10)
    return fig


def plot_shared_basis(views: list[SpecimenView], colours: list[np.ndarray]) -> "plt.Figure":
    """Photographs (top) and their PCA colours in one shared basis (bottom): same colour, same feature."""
    fig, axes = _row_axes([v.image_size for v in views], nrows=2, height=3.0, extra_w=0.3)
    for j, (view, rgb) in enumerate(zip(views, colours)):
        photo, grey = _display(view)
        _photo(axes[0, j], view, photo, title=view.name)
        _photo(axes[1, j], view, grey, title="shared-basis colours")
        rgba = np.concatenate([rgb, np.where(view.foreground.mask, 255, 0).astype(np.uint8)[..., None]], axis=-1)
        _grid_image(axes[1, j], view, rgba)
    return fig


def plot_correspondence(view: SpecimenView, corr: Correspondence, other: SpecimenView | None = None) -> "plt.Figure":
    """Cosine similarity of every patch to the query patch (marked), and in ``other`` with its best match."""
    fig, axes = _row_axes([view.image_size] + ([] if other is None else [other.image_size]))
    axes = axes[0]
    qx, qy = corr.query_xy
    _photo(axes[0], view, _display(view)[1], title=f"{view.name}: similarity to the marked patch")
    im = _grid_image(axes[0], view, corr.within, cmap=SIMILARITY_CMAP, vmin=-1, vmax=1, alpha=0.7)
    axes[0].plot([qx], [qy], marker="+", color="lime", markersize=14, mew=2)
    if other is not None and corr.across is not None:
        _photo(axes[1], other, _display(other)[1],
               title=f"{other.name}: best match {corr.best_similarity:.2f}")
        im = _grid_image(axes[1], other, corr.across, cmap=SIMILARITY_CMAP, vmin=-1, vmax=1, alpha=0.7)
        bx, by = corr.best_xy
        ow, oh = other.image_size
        gh, gw = other.grid
        axes[1].add_patch(plt.Rectangle((bx - ow / gw / 2, by - oh / gh / 2), ow / gw, oh / gh,
                                        fill=False, edgecolor="lime", linewidth=2))
        from matplotlib.patches import ConnectionPatch

        fig.add_artist(ConnectionPatch(xyA=(qx, qy), coordsA=axes[0].transData, xyB=(bx, by),
                                       coordsB=axes[1].transData, color="lime", linewidth=1, alpha=0.8))
    fig.colorbar(im, ax=list(axes), fraction=0.05, pad=0.02, label="cosine similarity")
    return fig


# ---------------------------------------------------------------------- all figures of one specimen
def write_specimen_figures(view: SpecimenView, out: str | Path, *, background: str = "black",
                           basis: tuple[list[SpecimenView], list[np.ndarray]] | None = None,
                           corr: Correspondence | None = None, other: SpecimenView | None = None,
                           max_side: int = BARE_MAX_SIDE) -> dict[str, list[Path]]:
    """Write every figure of one specimen into ``out`` as PNG and PDF; returns {name: [png, pdf]}.

    Always: ``pca_rgb`` and ``foreground`` (bare pictures at the photograph's
    pixel size, long side capped at ``max_side``), ``overlay``, and, when the view
    has attention, ``attention_cls`` and ``attention_heads``. With ``basis``
    (views, colours from :func:`palaeo_ssl.patches.shared_basis`):
    ``pca_shared_basis``; with ``corr``: ``correspondence``.
    """
    out = Path(out)
    files = {
        "pca_rgb": save_bare_image(view.pca_picture(background, max_side=max_side), out / "pca_rgb"),
        "foreground": save_bare_image(view.mask_picture(max_side), out / "foreground"),
        "overlay": save_figure(plot_overlay(view), out / "overlay"),
    }
    if view.tokens.attention is not None:
        files["attention_cls"] = save_figure(plot_attention_cls(view), out / "attention_cls")
        files["attention_heads"] = save_figure(plot_attention_heads(view), out / "attention_heads")
    if basis is not None:
        files["pca_shared_basis"] = save_figure(plot_shared_basis(*basis), out / "pca_shared_basis")
    if corr is not None:
        files["correspondence"] = save_figure(plot_correspondence(view, corr, other), out / "correspondence")
    return files
