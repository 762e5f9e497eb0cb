"""Reading identifications back as DATA: an EcoTaxa TSV, a Darwin Core Archive or a CSV of identifications.

:func:`read_exchange` reads any of them into :class:`~palaeo_ssl.exchange.model.Identifications`;
:func:`import_identifications` turns those into the images and labels every command embeds
(:class:`~palaeo_ssl.images.ImageList`), as :func:`palaeo_ssl.images.discover` does for every DATA:

* a person's identifications (EcoTaxa ``validated``, Darwin Core ``ValidatedByHuman`` or no status, a
  CSV ``label``) become labels; the machine's stay unlabelled unless ``accept_predicted`` (abstentions
  always do);
* when the file names a dataset that is still there (palaeo-ssl's exports do), the labels are added to
  that dataset as a filled ``to_label.csv`` adds its own: every image of the dataset is kept, an
  unlabelled one takes the file's label, a label the dataset already has is never overwritten (a
  different one is a conflict, logged and listed), and rows that are not images of the dataset are
  listed as skipped with the reason. The features already embedded for the dataset are reused;
* otherwise the file is the dataset: its images are found relative to the file, and the missing ones are
  listed (``skipped.csv`` of the extraction names them with the reason).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..images import ImageList, discover
from .model import Identifications

log = logging.getLogger(__name__)
_DEPTH = 20  # a file may name a dataset that is itself such a file, which names ...


def exchange_format(path: str | os.PathLike) -> str | None:
    """``ecotaxa``, ``dwca`` or ``csv`` for a file (or, for ``dwca``, a folder) in one of those formats of
    identifications; None for anything else (a plain manifest, an image folder)."""
    from .dwca import is_dwca
    from .ecotaxa import is_ecotaxa

    p = Path(path)
    if is_dwca(p):
        return "dwca"
    if not p.is_file():
        return None
    suffix = p.suffix.lower()
    if suffix in (".tsv", ".txt"):
        return "ecotaxa" if is_ecotaxa(p) else None
    if suffix == ".csv":
        from .table import is_table

        return "csv" if is_table(header_of_csv(p)) else None
    return None


def header_of_csv(path: Path) -> list[str]:
    import csv
    import io

    from .ecotaxa import decode

    with open(path, "rb") as fh:
        text = decode(fh.read(1 << 16))
    return [c.strip().lower() for c in next(csv.reader(io.StringIO(text)), [])]


def read_exchange(path: str | os.PathLike, fmt: str | None = None) -> Identifications:
    """The identifications of an EcoTaxa TSV, a Darwin Core Archive or a CSV of identifications."""
    from .dwca import read_dwca
    from .ecotaxa import read_ecotaxa
    from .table import read_table

    fmt = fmt or exchange_format(path)
    readers = {"ecotaxa": read_ecotaxa, "dwca": read_dwca, "csv": read_table}
    if fmt not in readers:
        raise UserError(f"{path} is not an EcoTaxa TSV, a Darwin Core Archive or a CSV of identifications")
    return readers[fmt](Path(path))


@dataclass
class ImportResult:
    """What reading identifications as DATA gave: ``images`` (to embed), ``dataset`` (the dataset the labels
    were added to, None when the file is the dataset), ``added`` (path, label) given to unlabelled images,
    ``agreed`` labels the dataset already had, ``conflicts`` (path, dataset's label, file's label: the
    dataset's kept), ``unknown`` rows that are no image of the dataset, ``missing`` rows whose image file is
    not there, ``predicted`` machine identifications left unlabelled (without ``accept_predicted``)."""

    images: ImageList
    dataset: Path | None
    added: list[tuple[str, str]] = field(default_factory=list)
    agreed: int = 0
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    predicted: int = 0


def _listing(items: list[str]) -> str:
    return "; ".join(items[:10]) + (f" ... and {len(items) - 10} more" if len(items) > 10 else "")


def _relative(f: str, root: str | Path) -> str | None:
    """``f`` relative to ``root`` (posix), or None when it is not below it."""
    try:
        rel = os.path.relpath(f, root)
    except ValueError:  # another drive
        return None
    return None if rel == os.pardir or rel.startswith(os.pardir + os.sep) else Path(rel).as_posix()


def _dataset_of(ids: Identifications, source: Path) -> Path | None:
    if not ids.dataset:
        return None
    d = Path(ids.dataset).expanduser()
    if not d.is_absolute():
        d = source.resolve().parent / d
    if not d.exists():
        log.info("%s names the dataset %s, which is not here: its images are looked for beside the file", source, d)
        return None
    if d.resolve() == source.resolve():
        return None
    return d


def import_identifications(ids: Identifications, source: str | os.PathLike, accept_predicted: bool = False,
                           _depth: int = 0) -> ImportResult:
    """The images and labels of identifications read from ``source`` (see the module docstring)."""
    source = Path(source)
    labels = ids.import_labels(accept_predicted)
    predicted = int(ids.assigned.sum()) if not accept_predicted else 0
    if predicted:
        log.info("%s: %d machine identification(s) left unlabelled; pass --accept-predicted to take them as labels",
                 source, predicted)
    dataset = _dataset_of(ids, source)
    if _depth > _DEPTH:
        raise UserError(f"{source}: the datasets it names lead round in a circle")
    if dataset is not None:
        result = _into_dataset(ids, labels, source, dataset, accept_predicted, _depth)
    else:
        result = _standalone(ids, labels, source)
    result.predicted = predicted
    return result


def _into_dataset(ids: Identifications, labels: np.ndarray, source: Path, dataset: Path, accept_predicted: bool,
                  depth: int) -> ImportResult:
    if exchange_format(dataset):
        base = import_identifications(read_exchange(dataset), dataset, accept_predicted, depth + 1).images
    else:
        base = discover(dataset)
    where = {r: i for i, r in enumerate(base.rel_paths)}
    root = str(base.root)
    names = sorted(set(base.class_names) | {l for l in labels if l})
    lookup = {c: i for i, c in enumerate(names)}
    new = np.asarray([lookup[base.class_names[l]] if l >= 0 else -1 for l in base.labels], dtype=np.int64)
    res = ImportResult(images=base, dataset=dataset)
    seen: set[int] = set()
    missing = []
    for key, f, lab in zip(ids.frame["path"].tolist(), ids.frame["file"].tolist(), labels.tolist()):
        i = where.get(key)
        if i is None and f:
            rel = _relative(f, root)
            i = where.get(rel) if rel is not None else where.get(Path(f).as_posix())
        if i is None:
            res.unknown.append(key or f)
            missing.append((key or f, f"not an image of the dataset {dataset} (listed in {source.name})"))
            continue
        if i in seen:
            continue
        seen.add(i)
        if not lab:
            continue
        if new[i] < 0:
            new[i] = lookup[lab]
            res.added.append((base.rel_paths[i], lab))
        elif names[new[i]] == lab:
            res.agreed += 1
        else:
            res.conflicts.append((base.rel_paths[i], names[new[i]], lab))
    if res.unknown and not seen:
        log.warning("%s: none of its %d rows is an image of the dataset %s it names; reading its images beside it "
                    "instead", source, len(ids), dataset)
        return _standalone(ids, labels, source)
    if res.unknown:
        log.warning("%s: %d row(s) are not images of the dataset %s and were left out (%s); they are listed in the "
                    "extraction's skipped.csv", source, len(res.unknown), dataset, _listing(res.unknown))
    if res.conflicts:
        log.warning("%s: %d label(s) differ from the dataset's and were not applied (%s); change them in the dataset "
                    "itself if the file is right", source, len(res.conflicts),
                    _listing([f"{r}: kept {a!r}, file says {b!r}" for r, a, b in res.conflicts]))
    log.info("%s: %d new label(s) added to %s (%d agree with the dataset's)", source, len(res.added), dataset,
             res.agreed)
    res.images = ImageList(root=base.root, files=list(base.files), rel_paths=list(base.rel_paths), labels=new,
                           class_names=names, specimens=base.specimens, layout=base.layout, name=base.name,
                           missing=list(base.missing) + missing, source=base.source)  # the dataset's store
    return res


def _standalone(ids: Identifications, labels: np.ndarray, source: Path) -> ImportResult:
    root = source.resolve().parent if source.is_file() else source.resolve()
    names = sorted({l for l in labels if l})
    lookup = {c: i for i, c in enumerate(names)}
    files, rel, out, specs, missing, seen = [], [], [], [], [], set()
    has_specimens = bool((ids.frame["specimen"] != "").any())
    for key, f, lab, spec in zip(ids.frame["path"].tolist(), ids.frame["file"].tolist(), labels.tolist(),
                                 ids.frame["specimen"].tolist()):
        r = (_relative(f, root) or Path(f).as_posix()) if f else ""
        if not f or not os.path.isfile(f):
            missing.append((r or key, f"image not found (listed in {source.name})"))
            continue
        if r in seen:
            continue
        seen.add(r)
        files.append(Path(f))
        rel.append(r)
        out.append(lookup[lab] if lab else -1)
        specs.append(spec)
    if not files:
        raise UserError(f"none of the {len(ids)} images listed in {source} was found: they are looked for at "
                        "img_file_name (EcoTaxa) or the media paths (Darwin Core) relative to the file, and in the "
                        "dataset the file names; put the images beside the file as they were exported")
    if missing:
        log.warning("%s: %d image(s) not found (%s); they are listed in the extraction's skipped.csv", source,
                    len(missing), _listing([m for m, _ in missing]))
    images = ImageList(root=root, files=files, rel_paths=rel, labels=np.asarray(out, dtype=np.int64),
                       class_names=names, specimens=specs if has_specimens else None, layout="manifest",
                       name=source.stem, missing=missing, source=source.resolve())
    added = [(r, names[l]) for r, l in zip(rel, out) if l >= 0]
    return ImportResult(images=images, dataset=None, added=added, missing=[m for m, _ in missing])


def read_data(path: str | os.PathLike, accept_predicted: bool = False) -> ImportResult:
    """Read an EcoTaxa TSV, a Darwin Core Archive or a CSV of identifications as DATA (see the module docstring)."""
    return import_identifications(read_exchange(path), path, accept_predicted)


__all__ = ["ImportResult", "exchange_format", "import_identifications", "read_data", "read_exchange"]
