"""Downscaled JPEG thumbnails as ``data:`` URLs, the only images the explorer page holds."""

from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence


def thumbnail_data_url(path: str | os.PathLike, size: int = 96, quality: int = 70) -> str | None:
    """A ``data:image/jpeg;base64,...`` URL of the image at ``path`` downscaled to fit ``size`` x ``size`` pixels.

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
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_data_urls(files: Sequence[str | os.PathLike | None], size: int = 96, quality: int = 70,
                        workers: int | None = None) -> list[str | None]:
    """:func:`thumbnail_data_url` for each file (None entries stay None), decoded in a thread pool, in order."""
    workers = workers or min(8, os.cpu_count() or 1)

    def one(f):
        return None if f is None else thumbnail_data_url(f, size, quality)

    if workers <= 1 or len(files) < 8:
        return [one(f) for f in files]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, files))
