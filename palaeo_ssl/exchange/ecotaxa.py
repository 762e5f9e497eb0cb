"""EcoTaxa: an import folder (``ecotaxa_<name>.tsv`` and the images beside it), and reading EcoTaxa's TSVs.

What this module follows, from EcoTaxa's own source (github.com/ecotaxa/ecotaxa_back) and the example
files of its R package ecotaxar (``inst/extdata/import.tsv``, ``inst/extdata/export.tsv``):

* EcoTaxa imports every file named ``ecotaxa*.tsv`` (or ``.txt``) in the uploaded folder or zip
  (``py/BO/Bundle.py``, ``TSV_FILTERS``); images are found at ``img_file_name``, relative to the TSV's
  folder, sub-folders allowed (``TSVFile.path_for_image``).
* The first line names the columns ``<table>_<field>`` (``object_``, ``img_``, ``sample_``, ``acq_``,
  ``process_``); the second line gives each column's type, ``[t]`` text or ``[f]`` number
  (``TSVFile.validate_structure``). ``object_id`` is mandatory; ``object_annotation_category`` and
  ``object_annotation_status`` (``predicted``, ``validated``, ``dubious``; empty for "to be classified")
  carry the identification, a status needing a category and a category a status
  (``TSVFile.validate_content``); ``object_annotation_date`` is ``YYYYMMDD`` and
  ``object_annotation_time`` ``HHMMSS``. Any other ``object_<name>`` column becomes a free field of
  the project, numeric for ``[f]`` (``BO/Mappings.py``). EcoTaxa keeps no imported score for a
  prediction (``TSVFile.do_import``), so the probability goes in a free numeric column.
* EcoTaxa reads the file with Python's ``csv`` module, tab-separated with ``"`` as the quote character,
  as UTF-8 when it starts with a byte-order mark and as Latin-1 otherwise (``TSVFile.open``), and strips
  spaces around every value (``TSVHelpers.clean_value``). It writes its exports the same way
  (``API_operations/exports/ForProject.py``: ``csv.DictWriter``, tab, ``"``, ``QUOTE_NONNUMERIC``,
  UTF-8 with a byte-order mark, the type line only in backups), with ``object_annotation_hierarchy``
  and the person and date of each annotation; statuses are ``predicted``, ``validated``, ``dubious``
  (and ``discarded``).

So the encoding is that of Python's csv module on both sides, and it is reversible: a value holding a
tab, a newline, a quote or anything else is written between quotes, inner quotes doubled, and EcoTaxa
reads it back whole. This module writes exactly that (UTF-8 with a byte-order mark, quotes where needed),
and reads with the same dialect (UTF-8 when the file decodes as such, else Latin-1), stripping values as
EcoTaxa does; :func:`~palaeo_ssl.exchange.model.check_names` refuses the only names that would not
survive, those with whitespace at either end.

palaeo-ssl writes one object per image: ``object_id`` is the image's path within its dataset (the key an
import matches), ``img_file_name`` the image beside the TSV; predictions as ``predicted`` with the
probability in ``object_palaeo_ssl_probability`` [f], human labels as ``validated``, abstentions with no
category and the best guess in ``object_palaeo_ssl_best_guess`` [t] (its probability beside it). The
process table says what made them: ``process_software``, ``process_model``, ``process_probe``,
``process_threshold``, ``process_identified`` (and ``process_random_weights``), and where the images
came from: ``process_dataset`` and ``process_data_root``. EcoTaxa matches categories against its own taxonomy and asks, on import, to map
the names it does not know.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..cache import atomic_write_text
from ..errors import UserError
from .model import HUMAN, MACHINE, NONE, Identifications, check_names, safe_name

log = logging.getLogger(__name__)

PREFIX = "ecotaxa_"
PROBABILITY = "object_palaeo_ssl_probability"
BEST_GUESS = "object_palaeo_ssl_best_guess"
SPECIMEN = "object_palaeo_ssl_specimen"
#: the process fields palaeo-ssl writes, by the Identifications attribute they hold
PROCESS = {"process_model": "model", "process_probe": "probe", "process_threshold": "threshold",
           "process_identified": "identified", "process_random_weights": "random_weights",
           "process_dataset": "dataset", "process_data_root": "root"}
STATUS_OUT = {HUMAN: "validated", MACHINE: "predicted"}
_TYPE = re.compile(r"^\[[tf]\]$")
#: the dialect of EcoTaxa's reader and writer (TSVFile.open, ForProject.create_tsv)
DIALECT = {"delimiter": "\t", "quotechar": '"', "lineterminator": "\n"}


def tsv_name(ids: Identifications) -> str:
    """``ecotaxa_<name>.tsv``: EcoTaxa imports the files whose name starts with ``ecotaxa``."""
    return f"{PREFIX}{safe_name(ids.name)}.tsv"


def _number(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def ecotaxa_table(ids: Identifications, image_names: list[str]) -> tuple[list[str], list[str], list[list[str]]]:
    """(columns, types, rows) of the import TSV for ``ids`` with its images at ``image_names`` (relative
    to the TSV, posix)."""
    from .. import __version__

    f = ids.frame
    status = f["status"].to_numpy(dtype=object)
    label = f["label"].to_numpy(dtype=object)
    identified = (ids.identified or "").replace("-", "").replace(":", "")
    day, clock = (identified[:8], identified[9:15]) if len(identified) >= 15 else ("", "")
    machine = (status == MACHINE) & (label != "")
    cols = ["img_file_name", "object_id", "object_annotation_category", "object_annotation_status",
            "object_annotation_date", "object_annotation_time", PROBABILITY, BEST_GUESS]
    types = ["[t]", "[t]", "[t]", "[t]", "[t]", "[t]", "[f]", "[t]"]
    table = [image_names, f["path"].tolist(), label.tolist(),
             [STATUS_OUT.get(s, "") if l else "" for s, l in zip(status, label)],
             np.where(machine, day, "").tolist(), np.where(machine, clock, "").tolist(),
             [_number(p) for p in f["probability"].tolist()], f["best_guess"].tolist()]
    if (f["specimen"] != "").any():
        cols.append(SPECIMEN), types.append("[t]"), table.append(f["specimen"].tolist())
    process = {"process_software": f"palaeo-ssl {__version__}"}
    for col, attr in PROCESS.items():
        value = getattr(ids, attr)
        if attr == "random_weights":
            value = "yes" if value else None
        if value is not None and value != "":
            process[col] = _number(value) if attr == "threshold" else str(value)
    cols += ["process_id", *process]
    types += ["[t]"] * (len(process) + 1)
    table += [["palaeo-ssl"] * len(f)] + [[v] * len(f) for v in process.values()]
    return cols, types, [list(r) for r in zip(*table)]


def write_ecotaxa(ids: Identifications, out: str | os.PathLike, *, images: bool = True, link_images: bool = False,
                  progress: bool = True) -> list[Path]:
    """Write an EcoTaxa import folder: ``out/ecotaxa_<name>.tsv`` and the images, copied into ``out/images``
    (``link_images``: linked there; ``images`` False: none written, the TSV refers to them where they are).
    Rows whose image is missing are left out (listed in a warning). Returns the TSV's path."""
    from .media import image_mode, place_images, report_missing

    check_names(ids.class_names())
    check_names(set(ids.frame["specimen"]), "specimen name")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = place_images(ids, out, image_mode(images, link_images), progress)
    report_missing(ids, names, "EcoTaxa folder")
    keep = [n is not None for n in names]
    kept = ids.with_frame(ids.frame[keep])
    cols, types, rows = ecotaxa_table(kept, [n for n in names if n is not None])
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, **DIALECT)
    w.writerow(cols)
    w.writerow(types)
    w.writerows(rows)
    target = out / tsv_name(ids)
    atomic_write_text(target, "\ufeff" + buf.getvalue())  # the byte-order mark makes EcoTaxa read UTF-8
    return [target]


# ---------------------------------------------------------------------- reading
def decode(data: bytes) -> str:
    """The text of a TSV: UTF-8 after a byte-order mark; else UTF-8 when it decodes as such, else Latin-1
    (EcoTaxa itself reads a file without the mark as Latin-1)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def header_of(path: Path) -> list[str]:
    """The cleaned column names of a TSV's first line (as EcoTaxa cleans them: stripped, lower case)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    text = decode(head)
    first = next(csv.reader(io.StringIO(text), delimiter="\t", quotechar='"'), [])
    return [c.strip(" \t").lower() for c in first]


def is_ecotaxa(path: Path) -> bool:
    """True for a TSV in EcoTaxa's format (its header has ``img_file_name`` or ``object_id``)."""
    cols = header_of(path)
    return "img_file_name" in cols or "object_id" in cols


def locate(folder: Path, name: str, key: str, root: Path | None) -> str:
    """The image of a row: ``name`` relative to ``folder`` where it exists, else ``root/key`` where that
    exists, else ``folder/name`` (missing)."""
    beside = os.path.join(folder, name) if name else ""
    if beside and os.path.isfile(beside):
        return os.path.abspath(beside)
    if key and root is not None:
        alt = key if os.path.isabs(key) else os.path.join(root, key)
        if os.path.isfile(alt):
            return alt
    return os.path.abspath(beside) if beside else ""


def read_ecotaxa(path: str | os.PathLike) -> Identifications:
    """The identifications of an EcoTaxa TSV: palaeo-ssl's import files and EcoTaxa's exports.

    ``validated`` rows are human identifications, ``predicted`` ones the machine's (with palaeo-ssl's
    probability and best guess where the file has them); ``dubious``, ``discarded`` and empty ones none
    (an empty one keeping palaeo-ssl's best guess is an abstention). Images are found at
    ``img_file_name`` beside the file, else in the dataset the file names (``process_dataset``).
    """
    path = Path(path)
    try:
        text = decode(path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"'))
    if not rows:
        raise UserError(f"{path} is empty: an EcoTaxa TSV needs a header line and one line per object")
    cols = [c.strip(" \t").lower() for c in rows[0]]
    body = rows[1:]
    if body and all(_TYPE.match(v.strip()) or not v.strip() for v in body[0]) and any(v.strip() for v in body[0]):
        body = body[1:]  # the type line
    width = len(cols)
    bad = [i + 2 for i, r in enumerate(body) if len(r) > width and any(v.strip() for v in r[width:])]
    if bad:
        raise UserError(f"{path}: line(s) {', '.join(map(str, bad[:10]))} have more values than the header has "
                        "columns (an unquoted tab inside a value?); quote such values or remove the tab")
    frame = pd.DataFrame([r[:width] + [""] * (width - len(r)) for r in body], columns=cols, dtype=object)
    frame = frame.loc[:, ~frame.columns.duplicated()]
    if "img_file_name" not in frame and "object_id" not in frame:
        raise UserError(f"{path} is not an EcoTaxa TSV: it needs an img_file_name or object_id column")

    def col(name: str) -> pd.Series:
        return frame[name].fillna("").str.strip() if name in frame else pd.Series([""] * len(frame), dtype=object)

    meta = {attr: meta_value(col(c)) for c, attr in PROCESS.items()}
    root = Path(meta["root"]) if meta.get("root") else None
    names, ids = col("img_file_name"), col("object_id")
    dup = ids.duplicated(keep=False) & (ids != "")
    keys = ids.where(~dup & (ids != ""), "")  # several images of one object: matched by their files
    folder = path.parent
    files = [locate(folder, n, k, root) for n, k in zip(names, keys)]
    category, state = col("object_annotation_category"), col("object_annotation_status").str.lower()
    guess = col(BEST_GUESS)
    status = np.where(state == "validated", HUMAN, np.where(state == "predicted", MACHINE, NONE))
    label = np.where(np.isin(status, [HUMAN, MACHINE]) & (category != ""), category, "")
    status = np.where((status != NONE) & (label == ""), NONE, status)
    status = np.where((state == "") & (guess != "") & (label == ""), MACHINE, status)  # an abstention
    guess = np.where((status == MACHINE) & (guess == ""), label, guess)
    out = pd.DataFrame({"path": np.where(keys != "", keys, names), "file": files, "label": label,
                        "status": status, "probability": pd.to_numeric(col(PROBABILITY), errors="coerce"),
                        "best_guess": guess, "specimen": col(SPECIMEN)})
    threshold = pd.to_numeric(pd.Series([meta.get("threshold")]), errors="coerce").iloc[0]
    name = path.stem[len(PREFIX):] if path.stem.lower().startswith(PREFIX) else path.stem
    return Identifications(out, name=name or path.stem, root=root, dataset=meta.get("dataset"),
                           model=meta.get("model"), probe=meta.get("probe"),
                           threshold=None if pd.isna(threshold) else float(threshold),
                           identified=meta.get("identified"), source=str(path),
                           random_weights=meta.get("random_weights") == "yes")


def meta_value(values: pd.Series) -> str | None:
    """The first non-empty value of a column (process fields repeat on every row)."""
    return next((v for v in values if v), None)


__all__ = ["BEST_GUESS", "PREFIX", "PROBABILITY", "SPECIMEN", "decode", "ecotaxa_table", "header_of", "is_ecotaxa",
           "locate", "read_ecotaxa", "tsv_name", "write_ecotaxa"]
