"""The explorer's data payload: the JSON-able dict the page's scripts (app.js, labelling.js) read.

Keys (N points; every list is in point order):

- ``title``, ``axis_titles`` (2 str), ``webgl`` (bool: draw with ``scattergl``)
- ``x``, ``y``: N floats rounded to 5 decimals
- ``paths``: N str (the page shows the last part, ``/`` or ``\\`` separated, as the file name)
- ``labels``: N int (-1 = unlabelled); ``class_names``; ``class_colors``: one ``#rrggbb`` per class
- ``clusters``: one ``{name, values (N int, -1 = noise, others renumbered 0..K-1 in sorted order),
  names ("cluster <original label>"), colors}`` per clustering
- ``outlier``, ``suspect``: N floats (5 decimals, null = not scored) or null
- ``scores``: one ``{name, values (N floats, 5 significant digits, null = not scored), ascending}`` per
  score; ``ascending`` (names containing "rank"): the lowest values are the notable ones
- ``predicted``: N int (-1 = unassigned) or null
- ``neighbours``: (N, k) int (-1 = none) or null; ``neighbour_sim``: (N, k) floats (4 decimals, null for
  NaN) or null
- ``thumbs``: N ``data:image/jpeg;base64`` URLs or null (no image, or unreadable), or null on a folder
  page; ``thumb_size``: int; ``thumb_folder``: null, or on a folder page ``{url, per_folder, missing}``
  (point i's thumbnail is ``url/<i // per_folder>/<i>.jpg``; ``missing``: ``[start, end)`` ranges of
  points without one)
- ``labelling``: bool (show the labelling panel); ``data_root``: str or null (the downloaded labels'
  paths are ``data_root/path`` when given)
- ``parts``: null, or on a folder page where its sidecar scripts are (see :mod:`.folder`)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import ExplorerInputs
from .thumbnails import PER_FOLDER, thumbnail_data_urls

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
    labelling: bool = True,
    data_root: str | None = None,
    thumb_folder: tuple[str, np.ndarray] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The page's data for checked ``inputs`` (see the module docstring for its keys).

    Thumbnails are decoded here (in ``workers`` threads) and inlined when
    ``inputs.image_files`` is given, ``thumb_size`` is not 0 and ``thumb_folder``
    is None; ``thumb_folder`` = (URL of the folder, (N,) bool: which points have a
    thumbnail file there) for a folder page, whose thumbnails are written by
    :func:`.thumbnails.write_thumbnails`. ``webgl=None`` means above
    :data:`WEBGL_THRESHOLD` points.
    """
    n = inputs.n
    if thumb_folder is not None:
        thumbs = None
    elif inputs.image_files is not None and thumb_size:
        thumbs = thumbnail_data_urls(inputs.image_files, thumb_size, thumb_quality, workers, progress)
    else:
        thumbs = [None] * n
    return {
        "title": str(title),
        "axis_titles": [str(a) for a in axis_titles],
        "webgl": bool(n > WEBGL_THRESHOLD if webgl is None else webgl),
        "x": [round(float(v), 5) for v in inputs.coords[:, 0]],
        "y": [round(float(v), 5) for v in inputs.coords[:, 1]],
        "paths": inputs.paths,
        "labels": inputs.labels.tolist(),
        "class_names": inputs.class_names,
        "class_colors": hex_colors(len(inputs.class_names)),
        "clusters": [clustering(name, values) for name, values in inputs.clusters],
        "outlier": _rounded(inputs.outlier_score, 5),
        "suspect": _rounded(inputs.suspect_score, 5),
        "scores": [{"name": name, "values": _significant(values, 5), "ascending": "rank" in name.lower()}
                   for name, values in inputs.scores],
        "predicted": inputs.predicted.tolist() if inputs.predicted is not None else None,
        "neighbours": inputs.neighbours.tolist() if inputs.neighbours is not None else None,
        "neighbour_sim": ([_rounded(row, 4) for row in inputs.neighbour_sim]
                          if inputs.neighbour_sim is not None else None),
        "thumbs": thumbs,
        "thumb_size": int(thumb_size),
        "thumb_folder": None if thumb_folder is None else {
            "url": thumb_folder[0], "per_folder": PER_FOLDER, "missing": false_ranges(thumb_folder[1])},
        "labelling": bool(labelling),
        "data_root": None if data_root is None else str(data_root),
        "parts": None,
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


def _significant(a: np.ndarray, digits: int) -> list[float | None]:
    """Floats to ``digits`` significant digits (a score of any scale keeps its order), None for NaN or infinite."""
    return [None if not np.isfinite(v) else float(f"{v:.{digits}g}") for v in a]


def false_ranges(flags: np.ndarray) -> list[list[int]]:
    """``[[start, end), ...]``: the runs of False in a (N,) bool array."""
    f = np.concatenate([[True], np.asarray(flags, dtype=bool), [True]])
    edges = np.flatnonzero(np.diff(f.astype(np.int8)))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2])]
