"""Find images (class folders, flat folder, CSV manifest) and decode them robustly.

Images are recognised by their content, not their extension: every visible file
is offered to Pillow, and the ones it cannot read are *skipped with a reason*
(never a crash). Hidden and system files (``.DS_Store``, ``._*``, ``Thumbs.db``,
``@eaDir``, anything starting with a dot) are ignored silently.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError

log = logging.getLogger(__name__)

SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "@eadir", "__macosx", "$recycle.bin", "icon\r"}
MANIFEST_SUFFIXES = {".csv", ".tsv"}


def is_hidden(name: str) -> bool:
    """Hidden or system file/folder that is skipped silently."""
    return name.startswith(".") or name.lower() in SYSTEM_NAMES  # "." covers "._*" too


# ---------------------------------------------------------------------- discovery
@dataclass
class ImageList:
    """What discovery found.

    ``files``: absolute paths; ``rel_paths``: relative to ``root`` (posix
    separators); ``labels``: int, -1 where unlabelled; ``class_names``: sorted;
    ``specimens``: list or None; ``layout``: ``"classes"``, ``"flat"`` or ``"manifest"``;
    ``missing``: manifest rows whose file does not exist, as (rel_path, reason);
    ``source``: what was discovered, resolved: the folder, or the CSV manifest (for a filled labelling
    template: the dataset it adds labels to); the collection's identity in the embedding store's key
    (None: the root).
    """

    root: Path
    files: list[Path]
    rel_paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    specimens: list[str] | None
    layout: str
    name: str
    missing: list[tuple[str, str]] = field(default_factory=list)
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def collection(self) -> str:
        """The collection's identity: the resolved folder or manifest the images were discovered from."""
        return str(self.source if self.source is not None else self.root)


def _walk_files(folder: Path) -> list[Path]:
    """Visible files below ``folder``, sorted, hidden/system files and folders pruned."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]  # prunes the walk; the order comes below
        out.extend(Path(dirpath) / f for f in filenames if not is_hidden(f))
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def discover(data: str | os.PathLike, *, accept_predicted: bool = False) -> ImageList:
    """List the images of a dataset.

    ``data`` is one of:

    * a folder of class sub-folders: the label of an image is its top-level folder
      (deeper sub-folders belong to their top-level class); classes are sorted by
      name. Files lying directly in the root are kept, unlabelled (-1).
    * a flat folder of images (no sub-folders): unlabelled, labels -1.
    * a CSV manifest with columns ``path,label`` and optionally ``specimen``; paths
      are relative to the manifest's folder (absolute paths are accepted); an empty
      label means unlabelled.
    * a filled labelling template (``to_label.csv`` of ``palaeo-ssl suggest``: a manifest
      with a ``dataset`` column): the dataset it names with the template's labels
      added; see :func:`merge_template`.
    * identifications exchanged with other tools (:mod:`palaeo_ssl.exchange`): an EcoTaxa TSV (palaeo-ssl's
      import folders and EcoTaxa's exports), a Darwin Core Archive (``.zip`` or its unpacked folder) or
      a CSV of identifications written by ``palaeo-ssl export``: a person's identifications are labels,
      the machine's too when ``accept_predicted``; images are found relative to the file, and the labels
      are added to the dataset the file names when it is still there (as for a labelling template;
      rows that are no image of it, and missing images, are listed in ``missing``).

    Order is deterministic (sorted). Raises :class:`UserError` for a missing or
    empty folder.
    """
    p = Path(data).expanduser()
    if not p.exists():
        raise UserError(f"{p} does not exist: pass a folder of images (one sub-folder per class, or flat) or a CSV manifest")
    from .exchange.merge import exchange_format  # the readers of other tools' formats (they build on this module)

    if exchange_format(p):
        from .exchange.merge import read_data

        return read_data(p, accept_predicted=accept_predicted).images
    if p.is_file():
        if p.suffix.lower() in MANIFEST_SUFFIXES:
            return _discover_manifest(p)
        raise UserError(f"{p} is a file; pass a folder of images, a CSV manifest with columns path,label[,specimen], "
                        "an EcoTaxa TSV or a Darwin Core Archive (.zip)")
    root = p.resolve()
    try:
        entries = sorted(e for e in os.listdir(root) if not is_hidden(e))
    except PermissionError as exc:
        raise UserError(f"cannot read folder {root}: permission denied") from exc
    subdirs = [e for e in entries if (root / e).is_dir()]
    class_names: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    if subdirs:
        layout = "classes"
        for e in entries:
            if (root / e).is_file():
                files.append(root / e)
                labels.append(-1)
        for cls in subdirs:
            found = _walk_files(root / cls)
            if not found:
                continue
            class_names.append(cls)
            files.extend(found)
            labels.extend([len(class_names) - 1] * len(found))
    else:
        layout = "flat"
        files = [root / e for e in entries if (root / e).is_file()]
        labels = [-1] * len(files)
    if not files:
        raise UserError(
            f"no files found in {root}: put images in it (one sub-folder per class, or all in one folder), "
            "or pass a CSV manifest"
        )
    rel = [f.relative_to(root).as_posix() for f in files]
    return ImageList(root=root, files=files, rel_paths=rel, labels=np.asarray(labels, dtype=np.int64),
                     class_names=class_names, specimens=None, layout=layout, name=root.name, source=root)


def _discover_manifest(path: Path) -> ImageList:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise UserError(f"cannot read manifest {path}: {exc}") from exc
    df.columns = [c.strip().lower() for c in df.columns]
    if TEMPLATE_DATASET_COLUMN in df.columns and (df[TEMPLATE_DATASET_COLUMN].str.strip() != "").any():
        return merge_template(path, frame=df).images
    if "path" not in df.columns:
        raise UserError(f"manifest {path} needs a 'path' column (columns found: {', '.join(df.columns)}); "
                        "expected columns path,label and optionally specimen")
    if df.empty:
        raise UserError(f"manifest {path} has no rows")
    root = path.resolve().parent
    labels_raw = df["label"].str.strip() if "label" in df.columns else pd.Series([""] * len(df))
    class_names = sorted({l for l in labels_raw if l})
    lookup = {c: i for i, c in enumerate(class_names)}
    specimens = df["specimen"].astype(str).str.strip().tolist() if "specimen" in df.columns else None
    files, rel, labels, specs, missing = [], [], [], [], []
    seen: set[str] = set()
    for i, raw in enumerate(df["path"].astype(str).str.strip()):
        if not raw:
            continue
        f = Path(raw).expanduser()
        f = f if f.is_absolute() else (root / f)
        try:
            r = f.resolve().relative_to(root).as_posix()
        except ValueError:
            r = f.resolve().as_posix()
        if r in seen:
            log.warning("manifest lists %s twice; keeping the first row", r)
            continue
        seen.add(r)
        if not f.is_file():
            missing.append((r, "file not found (listed in the manifest)"))
            continue
        files.append(f)
        rel.append(r)
        labels.append(lookup.get(labels_raw.iloc[i], -1))
        if specimens is not None:
            specs.append(specimens[i])
    if not files and not missing:
        raise UserError(f"manifest {path} lists no files")
    return ImageList(root=root, files=files, rel_paths=rel, labels=np.asarray(labels, dtype=np.int64),
                     class_names=class_names, specimens=specs if specimens is not None else None,
                     layout="manifest", name=path.stem, missing=missing, source=path.resolve())


# ---------------------------------------------------------------------- labelling templates
#: the column of a labelling template that names the dataset its labels are added to
TEMPLATE_DATASET_COLUMN = "dataset"
_TEMPLATE_DEPTH = 20  # a template may name a filled template of an earlier round, which names ...


@dataclass
class TemplateMerge:
    """A filled template read against its dataset: ``images`` (the dataset with the new labels),
    ``dataset`` (the dataset it names), ``added`` (path, label) pairs given to unlabelled images,
    ``agreed`` the number of rows repeating a label the dataset already has, and ``conflicts``
    (path, dataset's label, template's label) where they differ: the dataset's label is kept."""

    images: ImageList
    dataset: Path
    added: list[tuple[str, str]]
    agreed: int
    conflicts: list[tuple[str, str, str]]


def _relative_to(raw: str, root: Path, template_dir: Path) -> str:
    f = Path(raw).expanduser()
    f = f if f.is_absolute() else template_dir / f
    for candidate in (f, f.resolve()):
        try:
            return candidate.relative_to(root).as_posix()
        except ValueError:
            continue
    return f.resolve().as_posix()


def merge_template(path: str | os.PathLike, frame: pd.DataFrame | None = None, _depth: int = 0) -> TemplateMerge:
    """Read a filled labelling template (``path,label,dataset``) into the dataset it names.

    Every image of the dataset is kept in its order; a template row with a label
    gives it to an image the dataset has unlabelled; a label the dataset already
    has is never overwritten: a different one is a conflict, logged and returned
    in :attr:`TemplateMerge.conflicts`. New class names are added (all names sorted).
    Raises :class:`UserError` when the dataset is gone, when the template names
    several datasets, or when a path is not an image of the dataset.
    """
    path = Path(path)
    if frame is None:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.columns = [c.strip().lower() for c in frame.columns]
    if "path" not in frame.columns:
        raise UserError(f"labelling template {path} needs a 'path' column (columns found: {', '.join(frame.columns)})")
    named = sorted({d.strip() for d in frame[TEMPLATE_DATASET_COLUMN] if d.strip()})
    if len(named) != 1:
        raise UserError(f"labelling template {path} names {len(named)} datasets in its '{TEMPLATE_DATASET_COLUMN}' "
                        f"column ({', '.join(named)}); fill one template per dataset")
    dataset = Path(named[0]).expanduser()
    if not dataset.is_absolute():
        dataset = path.resolve().parent / dataset
    if not dataset.exists():
        raise UserError(f"labelling template {path} adds labels to the dataset {dataset}, which does not exist any "
                        f"more; put it back, or write its new location in the '{TEMPLATE_DATASET_COLUMN}' column")
    if _depth > _TEMPLATE_DEPTH:
        raise UserError(f"labelling template {path}: its '{TEMPLATE_DATASET_COLUMN}' column leads round in a circle")
    if dataset.suffix.lower() in MANIFEST_SUFFIXES and dataset.is_file():
        sep = "\t" if dataset.suffix.lower() == ".tsv" else ","
        head = pd.read_csv(dataset, sep=sep, dtype=str, keep_default_na=False, nrows=1)
        if TEMPLATE_DATASET_COLUMN in [c.strip().lower() for c in head.columns]:
            base = merge_template(dataset, _depth=_depth + 1).images
        else:
            base = discover(dataset)
    else:
        base = discover(dataset)
    labels_raw = frame["label"].astype(str).str.strip() if "label" in frame.columns else pd.Series([""] * len(frame))
    where = {r: i for i, r in enumerate(base.rel_paths)}
    rows = [(_relative_to(str(raw).strip(), base.root, path.resolve().parent), lab)
            for raw, lab in zip(frame["path"], labels_raw) if str(raw).strip()]
    unknown = [r for r, _ in rows if r not in where]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" ... and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise UserError(f"labelling template {path}: {len(unknown)} path(s) are not images of its dataset {dataset} "
                        f"({shown}); remove those rows, or add the images to the dataset and embed it again")
    names = sorted(set(base.class_names) | {lab for _, lab in rows if lab})
    lookup = {c: i for i, c in enumerate(names)}
    labels = np.asarray([lookup[base.class_names[l]] if l >= 0 else -1 for l in base.labels], dtype=np.int64)
    added, conflicts, agreed = [], [], 0
    for rel, lab in rows:
        if not lab:
            continue
        i = where[rel]
        if labels[i] < 0:
            labels[i] = lookup[lab]
            added.append((rel, lab))
        elif names[labels[i]] == lab:
            agreed += 1
        else:
            conflicts.append((rel, names[labels[i]], lab))
    if conflicts:
        listing = "; ".join(f"{r}: kept {old!r}, template says {new!r}" for r, old, new in conflicts[:10])
        log.warning("labelling template %s: %d label(s) differ from the dataset's and were not applied (%s%s); "
                    "change them in the dataset itself if the template is right", path, len(conflicts), listing,
                    " ..." if len(conflicts) > 10 else "")
    log.info("labelling template %s: %d new label(s) added to %s", path, len(added), dataset)
    images = ImageList(root=base.root, files=list(base.files), rel_paths=list(base.rel_paths), labels=labels,
                       class_names=names, specimens=base.specimens, layout="manifest", name=base.name,
                       missing=list(base.missing), source=base.source)
    return TemplateMerge(images=images, dataset=dataset, added=added, agreed=agreed, conflicts=conflicts)


# ---------------------------------------------------------------------- decoding
class ImageReadError(Exception):
    """An image that cannot be used; ``str(exc)`` is the reason written to skipped.csv."""


def parse_color(value: str | Sequence[int] | None) -> tuple[int, int, int]:
    """``"black"``, ``"white"``, ``"grey"``, ``"#rrggbb"`` or ``"r,g,b"`` -> (r, g, b)."""
    if value is None:
        return (0, 0, 0)
    if not isinstance(value, str):
        vals = tuple(int(v) for v in value)
        if len(vals) != 3 or not all(0 <= x <= 255 for x in vals):
            raise UserError(f"a colour needs 3 values from 0 to 255, got {value!r}")
        return vals  # type: ignore[return-value]
    named = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "gray": (128, 128, 128)}
    v = value.strip().lower()
    if v in named:
        return named[v]
    try:
        if v.startswith("#") and len(v) == 7:
            return tuple(int(v[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        parts = [int(x) for x in v.split(",")]
        if len(parts) == 3 and all(0 <= x <= 255 for x in parts):
            return tuple(parts)  # type: ignore[return-value]
    except ValueError:
        pass
    raise UserError(f"cannot read colour {value!r}: use black, white, grey, #rrggbb or r,g,b (0-255)")


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale an integer/float array to 0..255 by its actual finite range (not clipped)."""
    a = arr.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    a = np.where(finite, a, lo)
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.clip(np.round((a - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit, 32-bit integer and float images are scaled by their actual range;
    transparency (RGBA, LA, PA, palette with transparency) is composited on
    ``background``; CMYK and other colour spaces are converted.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F") or mode.startswith("I;"):
        arr = _scale_to_uint8(np.asarray(img))
        if arr.ndim == 3:  # multi-channel high bit depth
            arr = arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2)
            return Image.fromarray(np.ascontiguousarray(arr), "RGB")
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "L" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        canvas = Image.new("RGB", img.size, tuple(background))
        canvas.paste(img, mask=img.getchannel("A"))
        return canvas
    return img.convert("RGB")


def load_image(path: str | os.PathLike, background: tuple[int, int, int] = (0, 0, 0),
               draft_size: int | None = None) -> Image.Image:
    """Decode one image file to an 8-bit RGB ``PIL.Image``, exactly once.

    EXIF orientation is applied; multi-page files give their first page; large
    JPEGs are decoded in draft mode (DCT scaling) when ``draft_size`` is given
    and the image is at least twice that size on both sides. Pillow's
    decompression-bomb guard stays on.

    Raises :class:`ImageReadError` with a short, user-readable reason for files
    that cannot be used (empty, truncated, not an image, permission denied,
    over the pixel limit).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except PermissionError:
        raise ImageReadError("permission denied (cannot stat the file)") from None
    if size == 0:
        raise ImageReadError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if draft_size and im.format == "JPEG":
                    w, h = im.size
                    if min(w, h) >= 2 * draft_size:
                        im.draft("RGB", (draft_size, draft_size))
                im.seek(0)
                im.load()
                img = ImageOps.exif_transpose(im)
                if img is im:
                    img = im.copy()
    except PermissionError:
        raise ImageReadError("permission denied (cannot read the file)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(
            f"over Pillow's pixel limit ({Image.MAX_IMAGE_PIXELS} pixels): {exc}. If you trust this file, "
            "raise PIL.Image.MAX_IMAGE_PIXELS or downscale it"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError("not an image (Pillow cannot identify the format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            msg = "truncated image file"
        raise ImageReadError(f"cannot decode: {msg}") from None
    except Exception as exc:  # decoders raise a wide range of errors on corrupt data
        raise ImageReadError(f"cannot decode: {type(exc).__name__}: {exc}") from None
    try:
        return to_rgb(img, background)
    except Exception as exc:
        raise ImageReadError(f"cannot convert mode {img.mode} to RGB: {exc}") from None


def pad_to_square(img: Image.Image, background: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Pad ``img`` to a square canvas of ``background``, centred, keeping its aspect ratio."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), tuple(background))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def skipped_frame(rows: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """``skipped.csv`` table: one row per unusable file (path relative to the data root, reason)."""
    return pd.DataFrame(list(rows), columns=["path", "reason"])
