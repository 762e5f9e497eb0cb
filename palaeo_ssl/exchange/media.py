"""The images of an export: copied or linked into its folder, or referred to where they are."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path, PurePosixPath

from ..errors import UserError
from .model import Identifications

log = logging.getLogger(__name__)

#: how an export carries its images: ``copy`` into OUT/images, ``link`` (symbolic links there), ``none``
#: (paths relative to OUT pointing at the images where they are)
IMAGE_MODES = ("copy", "link", "none")
IMAGES_DIR = "images"


def image_mode(images: bool = True, link_images: bool = False) -> str:
    """The mode of the public options: ``images`` False writes none, else ``link_images`` links, else copies."""
    return "none" if not images else ("link" if link_images else "copy")


def placed_name(path: str) -> str:
    """Where an image of dataset path ``path`` goes inside an export folder: ``images/<path>`` (posix; an
    absolute path keeps its parts below the root, and ``..`` parts are renamed)."""
    p = PurePosixPath(path.replace("\\", "/"))
    parts = [("__" if part == ".." else part) for part in p.parts if part not in ("/", "")]
    if p.is_absolute() or (parts and parts[0].endswith(":")):  # /abs/x.png, C:/abs/x.png
        parts = ["_root"] + [part.rstrip(":") for part in parts]
    return "/".join([IMAGES_DIR, *parts])


def _same_file(src: str, dest: Path) -> bool:
    try:
        a, b = os.stat(src), dest.stat()
    except OSError:
        return False
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def _link(src: str, dest: Path) -> None:
    if dest.is_symlink() and os.readlink(dest) == src:
        return
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    try:
        os.symlink(src, dest)
    except OSError:
        try:
            os.link(src, dest)  # Windows without the right to make symbolic links: a hard link
        except OSError as exc:
            raise UserError(f"cannot link {dest} to {src} ({exc}); export with the images copied instead "
                            "(leave out --link-images)") from None


def place_images(ids: Identifications, out: Path, mode: str = "copy", progress: bool = True) -> list[str | None]:
    """Give every row's image a path relative to ``out`` (posix), placing the file as ``mode`` says.

    ``copy``: copied to ``out/images/<path>`` (an identical copy already there is kept); ``link``: a
    symbolic link there (a hard link where symbolic ones cannot be made); ``none``: nothing is written,
    the path leads from ``out`` to the image where it is. Returns None for a row whose image file is
    missing (``copy``, ``link``) or unknown.
    """
    from tqdm.auto import tqdm

    if mode not in IMAGE_MODES:
        raise ValueError(f"images must be one of {IMAGE_MODES}, not {mode!r}")
    out = Path(out)
    files = ids.frame["file"].tolist()
    if mode == "none":
        base = os.path.abspath(out)
        return [Path(os.path.relpath(f, base)).as_posix() if f else None for f in files]
    names: list[str | None] = []
    made: set[Path] = set()
    for f, path in tqdm(zip(files, ids.frame["path"].tolist()), total=len(files), unit="img",
                        desc=f"{'copying' if mode == 'copy' else 'linking'} images", disable=not progress,
                        dynamic_ncols=True):
        if not f or not os.path.isfile(f):
            names.append(None)
            continue
        name = placed_name(path or os.path.basename(f))
        dest = out / name
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        if mode == "copy":
            if dest.is_symlink():
                dest.unlink()
            if not _same_file(f, dest):
                shutil.copy2(f, dest)
        else:
            _link(os.path.abspath(f), dest)
        names.append(name)
    return names


def report_missing(ids: Identifications, names: list[str | None], what: str) -> None:
    """Log the rows left out of an export because their image file is missing; none found is an error."""
    gone = [p for p, n in zip(ids.frame["path"], names) if n is None]
    if gone and len(gone) == len(names):
        raise UserError(f"none of the {len(names)} images of {ids.source or ids.name} was found (the first: "
                        f"{ids.frame['file'].iloc[0] or gone[0]}): put them back where they were, or export with "
                        "--no-images")
    if gone:
        shown = "; ".join(gone[:10]) + (" ..." if len(gone) > 10 else "")
        log.warning("%d image(s) not found, left out of the %s (%s): put them back, or export with --no-images "
                    "to refer to them where they should be", len(gone), what, shown)


__all__ = ["IMAGES_DIR", "IMAGE_MODES", "image_mode", "place_images", "placed_name", "report_missing"]
