"""The interactive morphospace explorer: one self-contained HTML file.

:func:`write_explorer` writes a page that opens from disk with no server and no
internet: plotly's JavaScript, the data and downscaled JPEG thumbnails are all
inlined. Points can be coloured by class, by each clustering, by outlier score
or by suspect-label score (a drop-down switch); hovering a point shows its
thumbnail, file name, label and scores; clicking a point (or a neighbour in the
list) lists its nearest neighbours with thumbnails and cosine similarities and
rings them on the plot. An optional notice (e.g. for runs with random weights)
is shown as a banner in the header.

The package: :mod:`.checks` (input validation), :mod:`.thumbnails`,
:mod:`.payload` (the JSON data the page reads), :mod:`.render` (fills
``page.html`` with ``style.css``, the data, plotly.js and ``app.js``).

Safety: every user string (file names, class and clustering names, the title,
the notice) reaches the page either HTML-escaped, or inside a JSON block in
which ``<``, ``>``, ``&`` and the JavaScript line separators are
``\\uXXXX``-escaped (so ``</script>`` cannot end it), and the page's script
only ever puts those strings into the DOM as text (``textContent``) or into
plotly as entity-encoded text. A Content-Security-Policy admits only the page's
own two scripts (by SHA-256 hash) and ``data:`` images, so inline event
handlers and network requests are refused by the browser as well.

Drawing: SVG ``scatter`` up to :data:`WEBGL_THRESHOLD` points (reliable hover
and crisp export), WebGL ``scattergl`` above it (fast for tens of thousands).

Size: plotly.js is ~4.8 MB; each 96 px JPEG thumbnail (quality 70) adds about
3-5 kB (base64), so 20,000 specimens make a page of roughly 70-100 MB. Pass
``thumb_size=64`` or ``image_files=None`` for very large datasets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..embeddings import atomic_write_text
from .checks import check_inputs
from .payload import WEBGL_THRESHOLD, build_payload
from .render import render_page
from .thumbnails import thumbnail_data_url, thumbnail_data_urls

__all__ = ["WEBGL_THRESHOLD", "thumbnail_data_url", "thumbnail_data_urls", "write_explorer"]


def write_explorer(
    path: str | os.PathLike,
    coords: np.ndarray,
    *,
    paths: Sequence[str],
    class_names: Sequence[str],
    labels: np.ndarray,
    image_files: Sequence[str | os.PathLike | None] | None = None,
    clusters: Mapping[str, np.ndarray] | None = None,
    outlier_score: np.ndarray | None = None,
    suspect_score: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
    neighbour_sim: np.ndarray | None = None,
    title: str = "Morphospace explorer",
    thumb_size: int = 96,
    thumb_quality: int = 70,
    axis_titles: tuple[str, str] = ("UMAP 1", "UMAP 2"),
    webgl: bool | None = None,
    workers: int | None = None,
    notice: str | None = None,
) -> Path:
    """Write the interactive explorer to ``path`` (an ``.html`` file) and return it.

    Parameters
    ----------
    coords : (N, 2) float, the 2-D projection (e.g. UMAP), finite
    paths : N str, each specimen's path relative to the data root (shown; its last part is the file name)
    class_names : the name of each label value
    labels : (N,) int, index into ``class_names``; -1 = unlabelled
    image_files : N absolute image paths (None entries allowed) for the thumbnails, or None for no thumbnails
    clusters : {clustering name: (N,) int cluster labels, -1 = noise}, each becomes a colouring
    outlier_score : (N,) float, higher = more outlying (NaN = not scored)
    suspect_score : (N,) float, how likely the label is wrong (NaN = not scored)
    neighbours : (N, k) int, indices of each point's nearest neighbours, nearest first (-1 = none);
        a point's own index is skipped when listed
    neighbour_sim : (N, k) float, the similarity (e.g. cosine) of each neighbour
    title : page title
    thumb_size : thumbnail side in pixels (fit within a square, aspect kept); thumb_quality: JPEG quality
    axis_titles : the two axis titles
    webgl : draw with WebGL; default: only above :data:`WEBGL_THRESHOLD` points
    workers : threads decoding thumbnails (default: up to 8)
    notice : text shown as a prominent banner in the page's header (e.g. "random weights: a pipeline
        check, not a result"); plain text, never interpreted as HTML. None or "": no banner

    Raises ValueError when the arrays disagree in length or hold invalid values (before any
    thumbnail is decoded or anything is written).
    """
    inputs = check_inputs(
        coords, paths=paths, class_names=class_names, labels=labels, image_files=image_files, clusters=clusters,
        outlier_score=outlier_score, suspect_score=suspect_score, neighbours=neighbours, neighbour_sim=neighbour_sim,
    )
    payload = build_payload(inputs, title=title, axis_titles=axis_titles, webgl=webgl, thumb_size=thumb_size,
                            thumb_quality=thumb_quality, workers=workers)
    page = render_page(payload, notice=notice)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return out
