"""The folder page: large sets open from disk as a page plus one folder beside it, loaded as shown.

For ``explorer.html`` the folder is ``explorer_files/`` (the name browsers give
a saved page's files):

- ``thumbnails/<i // 1000>/<i>.jpg``: one JPEG per specimen, an ``<img>`` that
  loads when its tooltip, card or neighbour entry is shown;
- ``data/specimens.js``: the per-specimen data the first drawing does not need
  (paths, clusterings, scores, predicted classes, which thumbnails are
  missing), loaded by a ``<script src>`` before the page's script;
- ``data/neighbours_<c>.js``: the nearest neighbours of :data:`NEIGHBOUR_CHUNK`
  specimens each, added to the page when a specimen of that chunk is selected.

The page itself holds the plotting library and, per specimen, only what the
first drawing needs: its two coordinates and its label (about 20 bytes). Data
files are scripts because a page opened from disk (``file://``) may not fetch
files; each pushes a part onto ``window.palaeoExplorerParts`` (see app.js). The
page's Content-Security-Policy admits its own inline scripts by hash and
scripts and images of its own origin (``'self'``), nothing else.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .render import safe_json

#: specimens per nearest-neighbour file of a folder page
NEIGHBOUR_CHUNK = 20_000
#: the scripts a folder page writes into ``data/``
_DATA_FILE = re.compile(r"^(specimens|neighbours_\d+)\.js$")


def companion_folder(page: str | Path) -> Path:
    """The folder beside a folder page: ``explorer.html`` -> ``explorer_files/``."""
    page = Path(page)
    return page.with_name(page.stem + "_files")


def folder_url(page: str | Path) -> str:
    """The companion folder's URL relative to the page (percent-encoded)."""
    return quote(companion_folder(page).name)


def made_by_an_explorer(folder: str | Path) -> bool:
    """Whether ``folder`` holds only what :func:`~palaeo_ssl.explorer.write_explorer` writes into a companion
    folder: ``thumbnails/<number>/`` folders and ``data/`` scripts of the names a page writes (hidden and
    system files, such as a file browser's ``.DS_Store``, aside)."""
    from ..images import is_hidden

    def entries(path: Path) -> list:
        return [e for e in os.scandir(path) if not is_hidden(e.name)]

    folder = Path(folder)
    try:
        top = entries(folder)
        if not {e.name for e in top} <= {"thumbnails", "data"} or not all(e.is_dir() for e in top):
            return False
        if (folder / "thumbnails").is_dir() and not all(
                e.is_dir() and e.name.isdigit() for e in entries(folder / "thumbnails")):
            return False
        if (folder / "data").is_dir() and not all(
                e.is_file() and _DATA_FILE.match(e.name) for e in entries(folder / "data")):
            return False
    except OSError:
        return False
    return True


def clear_companion(page: str | Path) -> None:
    """Remove what an earlier folder page wrote beside ``page`` (its ``thumbnails/`` and ``data/``).

    Only a folder an explorer wrote (:func:`made_by_an_explorer`) is touched: a ``<page>_files`` folder of
    something else (a page saved by a browser, say) raises :class:`~palaeo_ssl.errors.UserError` before
    anything is removed or written."""
    from ..errors import UserError

    folder = companion_folder(page)
    if not folder.is_dir():
        return
    if not made_by_an_explorer(folder):
        raise UserError(f"{folder} holds files that no explorer page wrote; they are left as they are. Move that "
                        f"folder, or write the explorer under another name than {Path(page).name}")
    for sub in ("thumbnails", "data"):
        if (folder / sub).is_dir():
            shutil.rmtree(folder / sub)
    try:
        folder.rmdir()  # when nothing else (a hidden file) is left in it
    except OSError:
        pass


def part_script(part: dict[str, Any]) -> str:
    """A sidecar script that hands ``part`` to the page (JSON, which is also JavaScript)."""
    return "(window.palaeoExplorerParts = window.palaeoExplorerParts || []).push(" + safe_json(part) + ");\n"


#: the per-specimen entries of the payload that go to ``data/specimens.js`` (key paths; ``*`` = each item)
SPECIMEN_KEYS = (("paths",), ("outlier",), ("suspect",), ("predicted",), ("clusters", "*", "values"),
                 ("scores", "*", "values"), ("thumb_folder", "missing"))


def split_payload(payload: dict[str, Any], url: str,
                  chunk: int = NEIGHBOUR_CHUNK) -> tuple[dict[str, Any], dict[str, str]]:
    """(the page's payload, {file name under ``data/``: script text}) for a folder page.

    The page's payload keeps the small entries and x, y and labels; the others
    are set to null there and moved into the sidecar scripts. ``url`` is the
    companion folder's URL relative to the page.
    """
    page = dict(payload)
    page["clusters"] = [dict(c) for c in payload["clusters"]]
    page["scores"] = [dict(s) for s in payload["scores"]]
    if payload["thumb_folder"] is not None:
        page["thumb_folder"] = dict(payload["thumb_folder"])
    moved = []
    for key in SPECIMEN_KEYS:
        for path in _expand(page, key):
            parent = page
            for k in path[:-1]:
                parent = parent[k]
            if parent[path[-1]] is not None:
                moved.append([list(path), parent[path[-1]]])
                parent[path[-1]] = None
    files = {"specimens.js": part_script({"set": moved})}
    parts: dict[str, Any] = {"folder": url, "specimens": f"{url}/data/specimens.js"}
    nb, sim = payload["neighbours"], payload["neighbour_sim"]
    if nb is not None:
        names = []
        for c, start in enumerate(range(0, len(nb), chunk)):
            name = f"neighbours_{c}.js"
            files[name] = part_script({"rows": start, "neighbours": nb[start:start + chunk],
                                       "neighbour_sim": sim[start:start + chunk] if sim is not None else None})
            names.append(f"{url}/data/{name}")
        parts["neighbours"] = {"size": chunk, "files": names, "sim": sim is not None}
        page["neighbours"] = page["neighbour_sim"] = None
    page["parts"] = parts
    return page, files


def _expand(payload: dict[str, Any], key: tuple) -> list[tuple]:
    """The concrete key paths of ``key`` in ``payload`` (``*`` over a list's items; absent entries skipped)."""
    paths: list[tuple] = [()]
    for k in key:
        nxt = []
        for p in paths:
            obj = payload
            for part in p:
                obj = obj[part]
            if obj is None:
                continue
            if k == "*":
                nxt.extend(p + (j,) for j in range(len(obj)))
            elif k in obj:
                nxt.append(p + (k,))
        paths = nxt
    return paths


def write_parts(folder: Path, files: dict[str, str]) -> list[Path]:
    """Write the sidecar scripts into ``folder/data``; returns their paths."""
    from ..embeddings import atomic_write_text

    (folder / "data").mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in files.items():
        atomic_write_text(folder / "data" / name, text)
        out.append(folder / "data" / name)
    return out
