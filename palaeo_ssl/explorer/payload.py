"""The explorer's data payload: the JSON-able dict the page's script (app.js) reads.

Keys (N points; every list is in point order):

- ``title``, ``axis_titles`` (2 str), ``webgl`` (bool: draw with ``scattergl``)
- ``x``, ``y``: N floats rounded to 5 decimals
- ``paths``: N str; ``names``: the last part of each path (``/`` or ``\\`` separated)
- ``labels``: N int (-1 = unlabelled); ``class_names``; ``class_colors``: one ``#rrggbb`` per class
- ``clusters``: one ``{name, values (N int, -1 = noise, others renumbered 0..K-1 in sorted order),
  names ("cluster <original label>"), colors}`` per clustering
- ``outlier``, ``suspect``: N floats (5 decimals, null = not scored) or null
- ``neighbours``: (N, k) int (-1 = none) or null; ``neighbour_sim``: (N, k) floats (4 decimals, null for
  NaN) or null
- ``thumbs``: N ``data:image/jpeg;base64`` URLs or null (no image, or unreadable); ``thumb_size``: int
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import ExplorerInputs
from .thumbnails import thumbnail_data_urls

#: Above this many points the explorer draws with WebGL (``scattergl``) instead of SVG.
WEBGL_THRESHOLD = 2500


def build_payload(
    inputs: ExplorerInputs,
    *,
    title: str = "Morphospace explorer",
    axis_titles: tuple[str, str] = ("UMAP 1", "UMAP 2"),
    webgl: bool | None = None,
    thumb_size: int = 96,
    thumb_quality: int = 70,
    workers: int | None = None,
) -> dict[str, Any]:
    """The page's data for checked ``inputs`` (see the module docstring for its keys).

    Thumbnails are decoded here (in ``workers`` threads) when ``inputs.image_files``
    is given and ``thumb_size`` is not 0; ``webgl=None`` means above
    :data:`WEBGL_THRESHOLD` points.
    """
    n = inputs.n
    thumbs = (thumbnail_data_urls(inputs.image_files, thumb_size, thumb_quality, workers)
              if inputs.image_files is not None and thumb_size else [None] * n)
    return {
        "title": str(title),
        "axis_titles": [str(a) for a in axis_titles],
        "webgl": bool(n > WEBGL_THRESHOLD if webgl is None else webgl),
        "x": [round(float(v), 5) for v in inputs.coords[:, 0]],
        "y": [round(float(v), 5) for v in inputs.coords[:, 1]],
        "paths": inputs.paths,
        "names": [p.replace("\\", "/").rsplit("/", 1)[-1] for p in inputs.paths],
        "labels": inputs.labels.tolist(),
        "class_names": inputs.class_names,
        "class_colors": hex_colors(len(inputs.class_names)),
        "clusters": [clustering(name, values) for name, values in inputs.clusters],
        "outlier": _rounded(inputs.outlier_score, 5),
        "suspect": _rounded(inputs.suspect_score, 5),
        "neighbours": inputs.neighbours.tolist() if inputs.neighbours is not None else None,
        "neighbour_sim": ([_rounded(row, 4) for row in inputs.neighbour_sim]
                          if inputs.neighbour_sim is not None else None),
        "thumbs": thumbs,
        "thumb_size": int(thumb_size),
    }


def hex_colors(n: int) -> list[str]:
    """The project's ``n`` class colours (:func:`palaeo_ssl.plots.class_colors`) as ``#rrggbb``."""
    from matplotlib.colors import to_hex

    from ..plots import class_colors

    return [to_hex(c) for c in class_colors(n)]


def clustering(name: str, values: np.ndarray) -> dict[str, Any]:
    """One clustering's entry: (N,) int labels (-1 = noise) renumbered 0..K-1, with names and colours."""
    uniq = sorted(int(u) for u in np.unique(values) if u >= 0)
    lookup = {u: k for k, u in enumerate(uniq)}
    return {
        "name": name,
        "values": [lookup.get(int(x), -1) for x in values],
        "names": [f"cluster {u}" for u in uniq],
        "colors": hex_colors(len(uniq)),
    }


def _rounded(a: np.ndarray | None, digits: int) -> list[float | None] | None:
    """Floats rounded to ``digits``, None for NaN or infinite values; None stays None."""
    if a is None:
        return None
    return [None if not np.isfinite(v) else round(float(v), digits) for v in a]
