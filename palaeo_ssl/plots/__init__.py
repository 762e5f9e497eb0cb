"""Figures. Every figure is written as PNG and PDF by :func:`save_figure`.

This package holds what every figure shares; the figures themselves live in
its modules (``plots.probes``, ``plots.morphospace``, ``plots.patches``), one
function per figure. Plot functions draw; they never compute
statistics (those come from probes / morphospace / patches).

Inside ``with figure_notice(text):`` every figure :func:`save_figure` writes carries
``text`` in red above its top edge (a run on random weights stamps
``palaeo_ssl.backbone.RANDOM_WEIGHTS_NOTICE`` this way).
"""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

FIG_DPI = 200
NOTICE_COLOR = "#c00000"

_NOTICES: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("palaeo_ssl_figure_notices", default=())


@contextlib.contextmanager
def figure_notice(text: str | None):
    """Stamp ``text`` on every figure saved by :func:`save_figure` inside the block.

    Nested blocks add their texts (each text once); ``None`` or ``""`` adds nothing, so
    ``with figure_notice(NOTICE if random_weights else None):`` reads naturally.
    Context-local (a ``contextvars.ContextVar``): other threads and tasks are not affected.
    """
    current = _NOTICES.get()
    token = _NOTICES.set(current + (text,) if text and text not in current else current)
    try:
        yield
    finally:
        _NOTICES.reset(token)


def active_notices() -> tuple[str, ...]:
    """The texts :func:`save_figure` stamps right now (empty outside :func:`figure_notice`)."""
    return _NOTICES.get()


def _stamp(fig: "plt.Figure", notices: tuple[str, ...]) -> None:
    """Write the notices in red just above the figure's top edge (saving with a tight box keeps them)."""
    fig.text(0.5, 1.0, " | ".join(notices), ha="center", va="bottom", color=NOTICE_COLOR, fontsize=11,
             fontweight="bold", gid="palaeo_ssl_notice")


def save_figure(fig: "plt.Figure", stem: str | Path, *, dpi: int = FIG_DPI, formats=("png", "pdf"), **kwargs) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` (by default), close it and return the paths.

    Inside :func:`figure_notice` the figure first gets the notice above its top edge, and is
    saved with ``bbox_inches="tight"`` so that the notice is inside the picture.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    notices = active_notices()
    if notices:
        _stamp(fig, notices)
        kwargs["bbox_inches"] = "tight"
    paths = []
    for ext in formats:
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=dpi, **kwargs)
        paths.append(path)
    plt.close(fig)
    return paths


def class_colors(n: int):
    """n distinguishable colours (tab10/tab20 for small n, a sampled colormap beyond)."""
    import numpy as np

    if n <= 10:
        cmap = plt.get_cmap("tab10")
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = plt.get_cmap("tab20")
        return [cmap(i) for i in range(n)]
    cmap = plt.get_cmap("turbo")
    return [cmap(x) for x in np.linspace(0.02, 0.98, n)]
