"""The interactive morphospace explorer: an HTML page that opens from disk with no server.

:func:`write_explorer` writes a page that needs no server and no internet.
Points can be coloured by class, predicted class, each clustering, outlier and
suspect-label score and any other score (a drop-down switch); hovering a point
shows its thumbnail, file name, label and scores; clicking a point (or a
neighbour in the list) lists its nearest neighbours with thumbnails and cosine
similarities and rings them on the plot. The labelling panel assigns existing
or new class names to a clicked specimen or a lasso/box selection, undoes, and
downloads every label as a ``path,label`` CSV manifest. An optional notice
(e.g. for runs with random weights) is shown as a banner in the header.

Two layouts, switched by the number of specimens (``single_file``):

- up to :data:`SINGLE_FILE_MAX` specimens, **one file** (plotly.js, the data and
  the JPEG thumbnails inlined as ``data:`` URLs): about 4.8 MB plus 3-5 kB per
  specimen with 96 px thumbnails, at most 11-15 MB, small enough to e-mail;
- above it, **the page and a folder beside it** (``explorer.html`` +
  ``explorer_files/``, see :mod:`.folder`): the page holds plotly.js and about
  20 bytes per specimen (coordinates and label); thumbnails are files loaded
  when shown, the rest of the data lives in sidecar scripts. Move or e-mail the
  page together with its folder.

The package: :mod:`.checks` (input validation), :mod:`.thumbnails`,
:mod:`.payload` (the JSON data the page reads), :mod:`.folder` (the folder
layout), :mod:`.render` (fills ``page.html`` with ``style.css``, the data,
plotly.js, ``app.js`` and ``labelling.js``).

Safety: every user string (file names, class, clustering and score names, the
title, the notice) reaches the page either HTML-escaped, or inside a JSON block
in which ``<``, ``>``, ``&`` and the JavaScript line separators are
``\\uXXXX``-escaped (so ``</script>`` cannot end it), and the page's scripts
only ever put those strings, and the class names typed in the labelling panel,
into the DOM as text (``textContent``) or into plotly as entity-encoded text. A
Content-Security-Policy admits only the page's own inline scripts (by SHA-256
hash), ``data:`` images and, on a folder page, the scripts and images beside
it, so inline event handlers and network requests are refused by the browser
as well.

Drawing: SVG ``scatter`` up to :data:`WEBGL_THRESHOLD` points (reliable hover
and crisp export), WebGL ``scattergl`` above it (fast for hundreds of thousands).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..embeddings import atomic_write_text
from .checks import check_inputs
from .folder import clear_companion, companion_folder, folder_url, split_payload, write_parts
from .payload import WEBGL_THRESHOLD, build_payload
from .render import render_page
from .thumbnails import thumbnail_data_url, thumbnail_data_urls, write_thumbnails

__all__ = ["SINGLE_FILE_MAX", "WEBGL_THRESHOLD", "companion_folder", "thumbnail_data_url", "thumbnail_data_urls",
           "write_explorer"]

#: Up to this many specimens the explorer is one self-contained file; above it, a page and a folder beside it.
SINGLE_FILE_MAX = 2000


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
    scores: Mapping[str, np.ndarray] | None = None,
    predicted: np.ndarray | None = None,
    labelling: bool = True,
    data_root: str | os.PathLike | None = None,
    single_file: bool | None = None,
    progress: bool = False,
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
    scores : {name: (N,) float} continuous colourings (e.g. "suggestion rank", "confidence", "novelty"),
        NaN = not scored; each is shown on hover and is a "Score: <name>" colouring. A score whose name
        contains "rank" is drawn with its lowest values on top (rank 1 first) and a reversed colour scale
    predicted : (N,) int, a predicted class per point, index into ``class_names``, -1 = unassigned;
        a "Predicted class" colouring
    labelling : show the labelling panel (assign class names to clicked or lasso-selected specimens,
        undo, download the labels as a ``path,label`` CSV manifest)
    data_root : the dataset's folder (``paths`` are relative to it); the downloaded CSV then lists
        absolute paths ``data_root/path``, so it can be used from wherever it is saved. None: the
        CSV lists ``paths`` as given
    single_file : True: one self-contained file; False: the page plus the folder ``<name>_files``
        beside it (thumbnails as files, the bulky data in sidecar scripts); None (default): one file
        up to :data:`SINGLE_FILE_MAX` points
    progress : show a progress bar while thumbnails are made

    Writing a page replaces what an earlier folder page of the same name wrote in ``<name>_files``.
    Raises ValueError when the arrays disagree in length or hold invalid values (before any
    thumbnail is decoded or anything is written).
    """
    inputs = check_inputs(
        coords, paths=paths, class_names=class_names, labels=labels, image_files=image_files, clusters=clusters,
        outlier_score=outlier_score, suspect_score=suspect_score, neighbours=neighbours, neighbour_sim=neighbour_sim,
        scores=scores, predicted=predicted,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    one_file = inputs.n <= SINGLE_FILE_MAX if single_file is None else bool(single_file)
    common = dict(title=title, axis_titles=axis_titles, webgl=webgl, thumb_size=thumb_size,
                  thumb_quality=thumb_quality, workers=workers, labelling=labelling,
                  data_root=None if data_root is None else os.fspath(data_root), progress=progress)
    clear_companion(out)
    if one_file:
        payload = build_payload(inputs, **common)
    else:
        folder, url = companion_folder(out), folder_url(out)
        thumbs = None
        if inputs.image_files is not None and thumb_size:
            has = write_thumbnails(inputs.image_files, folder / "thumbnails", thumb_size, thumb_quality, workers,
                                   progress)
            thumbs = (f"{url}/thumbnails", has)
        payload = build_payload(inputs, **common, thumb_folder=thumbs)
        if thumbs is None:
            payload["thumbs"] = None  # no thumbnails at all: nothing per specimen in the page
        payload, files = split_payload(payload, url)
        write_parts(folder, files)
    atomic_write_text(out, render_page(payload, notice=notice))
    return out
