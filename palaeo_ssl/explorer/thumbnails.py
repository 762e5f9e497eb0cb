"""Downscaled JPEG thumbnails: inlined as ``data:`` URLs (one-file pages) or written as files (folder pages)."""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

#: thumbnails per sub-folder of a folder page's ``thumbnails/`` (point i is ``thumbnails/<i // 1000>/<i>.jpg``)
PER_FOLDER = 1000


def thumbnail_jpeg(path: str | os.PathLike, size: int = 96, quality: int = 70) -> bytes | None:
    """JPEG bytes of the image at ``path`` downscaled to fit ``size`` x ``size`` pixels (aspect kept).

    Decodes with :func:`palaeo_ssl.images.load_image` (EXIF orientation, any
    mode -> RGB, JPEG draft decoding). Returns None for a file that cannot be
    read, so one bad image never breaks the page.
    """
    from PIL import Image

    from ..images import load_image

    try:
        img = load_image(path, draft_size=size)
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
    except Exception:  # noqa: BLE001 - unreadable files just get no thumbnail
        return None
    return buf.getvalue()


def thumbnail_data_url(path: str | os.PathLike, size: int = 96, quality: int = 70) -> str | None:
    """:func:`thumbnail_jpeg` as a ``data:image/jpeg;base64,...`` URL (None for a file that cannot be read)."""
    data = thumbnail_jpeg(path, size, quality)
    return None if data is None else "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _map(fn, files: Sequence, workers: int | None, progress: bool, desc: str) -> list:
    """``fn`` over ``files`` in a thread pool (in order), with a progress bar when ``progress``."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(files) < 8:
        it = map(fn, files)
        pool = None
    else:
        pool = ThreadPoolExecutor(max_workers=workers)
        it = pool.map(fn, files)
    try:
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(files), desc=desc, unit="img")
        return list(it)
    finally:
        if pool is not None:
            pool.shutdown()


def thumbnail_data_urls(files: Sequence[str | os.PathLike | None], size: int = 96, quality: int = 70,
                        workers: int | None = None, progress: bool = False) -> list[str | None]:
    """:func:`thumbnail_data_url` for each file (None entries stay None), decoded in a thread pool, in order.

    A file listed more than once is decoded once.
    """
    distinct = list(dict.fromkeys(os.fspath(f) for f in files if f is not None))
    urls = dict(zip(distinct, _map(lambda f: thumbnail_data_url(f, size, quality), distinct, workers, progress,
                                   "thumbnails")))
    return [None if f is None else urls[os.fspath(f)] for f in files]


def thumbnail_relpath(i: int) -> str:
    """Where point ``i``'s thumbnail lies inside a folder page's ``thumbnails/`` folder (posix)."""
    return f"{i // PER_FOLDER}/{i}.jpg"


def write_thumbnails(files: Sequence[str | os.PathLike | None], folder: str | os.PathLike, size: int = 96,
                     quality: int = 70, workers: int | None = None, progress: bool = False) -> np.ndarray:
    """Write each file's thumbnail to ``folder/<i // 1000>/<i>.jpg``; return (N,) bool: which points have one.

    None entries and unreadable files get no thumbnail (False). A file listed
    more than once is decoded once. Only one thumbnail is held in memory per
    worker, so this scales to any number of images.
    """
    folder = Path(folder)
    for sub in range((len(files) + PER_FOLDER - 1) // PER_FOLDER):
        (folder / str(sub)).mkdir(parents=True, exist_ok=True)
    first: dict[str, int] = {}  # each distinct file's first point: the others copy its thumbnail
    for i, f in enumerate(files):
        if f is not None:
            first.setdefault(os.fspath(f), i)
    todo = sorted(first.values())

    def one(i: int) -> bool:
        data = thumbnail_jpeg(files[i], size, quality)
        if data is not None:
            (folder / thumbnail_relpath(i)).write_bytes(data)
        return data is not None

    ok = np.zeros(len(files), dtype=bool)
    ok[todo] = _map(one, todo, workers, progress, "thumbnails")
    for i, f in enumerate(files):  # repeats of a file: the bytes of its first point's thumbnail
        if f is not None and first[os.fspath(f)] != i and ok[first[os.fspath(f)]]:
            (folder / thumbnail_relpath(i)).write_bytes((folder / thumbnail_relpath(first[os.fspath(f)])).read_bytes())
            ok[i] = True
    return ok
