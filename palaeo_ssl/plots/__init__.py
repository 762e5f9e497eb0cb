"""Figures. Every figure is written as PNG and PDF by :func:`save_figure`.

This package holds what every figure shares; the figures themselves live in
its modules (``plots.probes``, ``plots.morphospace``, ``plots.patches``), one
function per figure. Plot functions draw; they never compute
statistics (those come from probes / morphospace / patches).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

FIG_DPI = 200


def save_figure(fig: "plt.Figure", stem: str | Path, *, dpi: int = FIG_DPI, formats=("png", "pdf"), **kwargs) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` (by default), close it and return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
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
