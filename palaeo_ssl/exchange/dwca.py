"""Darwin Core Archives: an occurrence core with the Simple Multimedia extension, ``meta.xml`` and ``eml.xml``.

What this module follows:

* the Darwin Core text guide (dwc.tdwg.org/text): ``meta.xml`` declares the core and each extension
  (``rowType``, file, ``encoding``, ``fieldsTerminatedBy``, ``linesTerminatedBy``, ``fieldsEnclosedBy``,
  ``ignoreHeaderLines``), the core's ``id`` column and each extension's ``coreid`` column, and one
  ``field`` per column with its term's URI; the archive names its metadata file (``metadata="eml.xml"``);
* Darwin Core terms (dwc.tdwg.org/terms): ``occurrenceID``, ``basisOfRecord`` (``FossilSpecimen`` by
  default), ``catalogNumber`` (the specimen), ``scientificName``, ``identificationQualifier``,
  ``identifiedBy``, ``dateIdentified`` (ISO 8601), ``identificationRemarks``,
  ``identificationVerificationStatus``, ``associatedMedia``, ``dynamicProperties`` (key:value pairs as
  JSON, as the term recommends) and the higher ranks ``kingdom`` ... ``subgenus``;
* GBIF's Simple Multimedia extension (rs.gbif.org/terms/1.0/Multimedia: ``type``, ``format``,
  ``identifier``, ``title``) and GBIF's metadata profile of EML 2.1.1 for ``eml.xml`` (title, creator,
  pubDate, language, abstract, contact, methods; anything else under ``additionalMetadata``);
* for ``identificationVerificationStatus``, the two values EcoTaxa's own Darwin Core export uses for
  image identifications following OBIS (``PredictedByMachine``, ``ValidatedByHuman``;
  ecotaxa_back ``py/formats/DarwinCore/models.py``).

A machine identification under the abstention threshold keeps its best guess as ``scientificName`` with
the qualifier ``cf.``; ``identifiedBy`` names palaeo-ssl, the model and the probe; the probability and the
best guess are in ``dynamicProperties`` (``{"probability": ..., "bestGuess": ...}``). The data files are
UTF-8 CSV with ``"`` around values that need it, which keeps any text exactly; python-dwca-reader reads
them back (this module reads archives with it too). ``occurrenceID`` is the image's path within its
dataset; before publishing to GBIF, edit the creator and contact in ``eml.xml`` (the IPT lets you).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import mimetypes
import os
import re
import uuid
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import numpy as np
import pandas as pd

from ..errors import UserError
from .model import HUMAN, MACHINE, NONE, Identifications, check_names, iso_time, safe_name

log = logging.getLogger(__name__)

DWC = "http://rs.tdwg.org/dwc/terms/"
DC = "http://purl.org/dc/terms/"
OCCURRENCE = DWC + "Occurrence"
MULTIMEDIA = "http://rs.gbif.org/terms/1.0/Multimedia"
AUDUBON = "http://rs.tdwg.org/ac/terms/Multimedia"
ACCESS_URI = "http://rs.tdwg.org/ac/terms/accessURI"
PREDICTED = "PredictedByMachine"
VALIDATED = "ValidatedByHuman"
UNCERTAIN = "cf."
#: basisOfRecord values of Darwin Core
BASES = ("FossilSpecimen", "PreservedSpecimen", "MaterialSample", "LivingSpecimen", "MachineObservation",
         "HumanObservation", "MaterialCitation", "Occurrence")
#: the higher ranks Darwin Core has a term for, coarsest first (a taxonomy's other ranks are left out)
RANKS = ("kingdom", "phylum", "class", "order", "superfamily", "family", "subfamily", "tribe", "subtribe", "genus",
         "subgenus")
CORE_TERMS = ("basisOfRecord", "catalogNumber", "scientificName", "identificationQualifier", "identifiedBy",
              "dateIdentified", "identificationRemarks", "identificationVerificationStatus", "associatedMedia",
              "dynamicProperties")
_XML_BAD = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def archive_name(ids: Identifications) -> str:
    return f"{safe_name(ids.name)}_dwca.zip"


def _csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    return buf.getvalue()


def _text(value) -> str:
    return _XML_BAD.sub("\ufffd", str(value))


def _fmt(p: float) -> str:
    return f"{p:.3f}"


def _remarks(status: str, label: str, guess: str, p: float, threshold: float | None) -> str:
    has_p = not math.isnan(p)
    if status == MACHINE and label:
        return (f"palaeo-ssl prediction, probability {_fmt(p)}" if has_p else "palaeo-ssl prediction") + (
            f" (threshold {_fmt(threshold)})" if threshold is not None else "")
    if status == MACHINE:
        return (f"palaeo-ssl abstained: best guess under the threshold {_fmt(threshold)}" if threshold is not None
                else "palaeo-ssl abstained") + (f", probability {_fmt(p)}" if has_p else "")
    if status == HUMAN and guess:
        return f"identified by a person; palaeo-ssl's best guess had probability {_fmt(p)}" if has_p else \
            "identified by a person"
    return "identified by a person" if status == HUMAN else ""


def occurrence_rows(ids: Identifications, media: list[str], basis_of_record: str) -> tuple[list[str], list[list[str]]]:
    """(terms, rows) of the occurrence core: one occurrence per image, ``media`` its identifier."""
    f = ids.frame
    ranks: list[str] = []
    lookup: dict[str, dict[str, str]] = {}
    if ids.taxonomy is not None:
        known = {r.lower(): r for r in ids.taxonomy.rank_names}
        ranks = [r for r in RANKS if r in known and r != "class"]
        skipped = sorted(set(known) - set(RANKS))
        if skipped:
            log.info("taxonomy rank(s) %s have no Darwin Core term and are left out of the archive",
                     ", ".join(skipped))
        lookup = {r: dict(zip(ids.taxonomy.class_names, ids.taxonomy.ranks[known[r]])) for r in ranks}
    who = ids.identified_by()
    terms = ["occurrenceID", *CORE_TERMS, *ranks]
    rows = []
    for path, status, label, guess, p, specimen, m in zip(f["path"], f["status"], f["label"], f["best_guess"],
                                                          f["probability"], f["specimen"], media):
        machine = status == MACHINE
        name = label or (guess if machine else "")
        extra = {}
        if not math.isnan(p):
            extra["probability"] = float(p)
        if guess:
            extra["bestGuess"] = guess
        row = [path, basis_of_record, specimen, name, UNCERTAIN if machine and not label and guess else "",
               who if machine else "", (ids.identified or "") if machine else "",
               _remarks(status, label, guess, p, ids.threshold),
               PREDICTED if machine else (VALIDATED if status == HUMAN else ""), m,
               json.dumps(extra, ensure_ascii=False) if extra else ""]
        cls = label or guess
        row += [lookup[r].get(cls, "") for r in ranks]
        rows.append(row)
    return terms, rows


def meta_xml(core_terms: list[str]) -> str:
    """``meta.xml`` of an archive with ``occurrence.csv`` (``core_terms``, the id first) and ``multimedia.csv``."""
    ET.register_namespace("", "http://rs.tdwg.org/dwc/text/")
    ns = "{http://rs.tdwg.org/dwc/text/}"
    root = ET.Element(ns + "archive", {"metadata": "eml.xml"})
    layout = {"encoding": "UTF-8", "fieldsTerminatedBy": ",", "linesTerminatedBy": "\\n", "fieldsEnclosedBy": '"',
              "ignoreHeaderLines": "1"}
    core = ET.SubElement(root, ns + "core", {**layout, "rowType": OCCURRENCE})
    ET.SubElement(ET.SubElement(core, ns + "files"), ns + "location").text = "occurrence.csv"
    ET.SubElement(core, ns + "id", {"index": "0"})
    for i, t in enumerate(core_terms):
        ET.SubElement(core, ns + "field", {"index": str(i), "term": DWC + t})
    ext = ET.SubElement(root, ns + "extension", {**layout, "rowType": MULTIMEDIA})
    ET.SubElement(ET.SubElement(ext, ns + "files"), ns + "location").text = "multimedia.csv"
    ET.SubElement(ext, ns + "coreid", {"index": "0"})
    for i, t in enumerate(("type", "format", "identifier", "title"), start=1):
        ET.SubElement(ext, ns + "field", {"index": str(i), "term": DC + t})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def eml_xml(ids: Identifications, title: str, basis_of_record: str) -> str:
    """A minimal ``eml.xml`` (GBIF metadata profile): title, creator, date, abstract, contact, the protocol under
    methods, and palaeo-ssl's own record (model, probe, threshold, dataset) under additionalMetadata."""
    from .. import __version__

    eml_ns = "eml://ecoinformatics.org/eml-2.1.1"
    ET.register_namespace("eml", eml_ns)
    key = f"palaeo-ssl:{ids.dataset or ids.name}:{ids.identified or ''}"
    root = ET.Element(f"{{{eml_ns}}}eml", {"packageId": str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
                                            "system": "palaeo-ssl", "scope": "system",
                                            "{http://www.w3.org/XML/1998/namespace}lang": "eng"})
    ds = ET.SubElement(root, "dataset")
    ET.SubElement(ds, "title").text = _text(title)
    ET.SubElement(ET.SubElement(ds, "creator"), "organizationName").text = "palaeo-ssl export (edit before publishing)"
    ET.SubElement(ds, "pubDate").text = iso_time()[:10]
    ET.SubElement(ds, "language").text = "eng"
    c = ids.counts()
    ET.SubElement(ET.SubElement(ds, "abstract"), "para").text = _text(
        f"Identifications of {len(ids)} images of {ids.name} ({basis_of_record}): {c['human']} by a person, "
        f"{c['machine']} by palaeo-ssl, {c['abstained']} left as a best guess (cf.) under palaeo-ssl's threshold.")
    ET.SubElement(ET.SubElement(ds, "contact"), "organizationName").text = "palaeo-ssl export (edit before publishing)"
    protocol = "Identifications made by people (the labels of the images), exported by palaeo-ssl."
    if c["machine"] or c["abstained"]:
        protocol = (f"Images embedded with the frozen model {ids.model or '(not recorded)'} and classified by "
                    f"{ids.identified_by()}, a probe trained on labelled images"
                    + (f", with calibrated probabilities and abstention under {_fmt(ids.threshold)}: a best guess "
                       "under it is qualified 'cf.'" if ids.threshold is not None else "")
                    + ". identificationVerificationStatus is PredictedByMachine for palaeo-ssl's identifications "
                      "and ValidatedByHuman for a person's.")
    if ids.random_weights:
        protocol += " The model had random weights: its identifications say nothing about the fossils."
    step = ET.SubElement(ET.SubElement(ds, "methods"), "methodStep")
    ET.SubElement(ET.SubElement(step, "description"), "para").text = _text(protocol)
    own = ET.SubElement(ET.SubElement(ET.SubElement(root, "additionalMetadata"), "metadata"), "palaeoSsl")
    for tag, value in (("software", f"palaeo-ssl {__version__}"), ("model", ids.model), ("probe", ids.probe),
                       ("threshold", None if ids.threshold is None else repr(float(ids.threshold))),
                       ("identified", ids.identified), ("randomWeights", "yes" if ids.random_weights else None),
                       ("dataset", ids.dataset), ("dataRoot", None if ids.root is None else str(ids.root))):
        if value:
            ET.SubElement(own, tag).text = _text(value)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_dwca(ids: Identifications, out: str | os.PathLike, *, images: bool = True, link_images: bool = False,
               media_base_url: str | None = None, basis_of_record: str = "FossilSpecimen", title: str | None = None,
               progress: bool = True) -> list[Path]:
    """Write ``out/<name>_dwca.zip`` (occurrence.csv, multimedia.csv, meta.xml, eml.xml) with the images
    copied into ``out/images`` (``link_images``: linked there; ``images`` False: referred to where they are);
    multimedia identifiers are those paths, relative to ``out``, or URLs under ``media_base_url``.
    Rows whose image is missing (copy, link) keep their occurrence without media. Returns the archive's path."""
    from .media import image_mode, place_images, report_missing

    if basis_of_record not in BASES:
        raise UserError(f"basisOfRecord {basis_of_record!r} is not a Darwin Core value; use one of {', '.join(BASES)}")
    check_names(ids.class_names())
    check_names(set(ids.frame["specimen"]), "specimen name")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = place_images(ids, out, image_mode(images, link_images), progress)
    report_missing(ids, names, "archive's media")
    base = media_base_url.rstrip("/") + "/" if media_base_url else None
    media = [("" if n is None else (base + quote(n) if base else n)) for n in names]
    terms, rows = occurrence_rows(ids, media, basis_of_record)
    mm = [["coreid", "type", "format", "identifier", "title"]]
    for path, m, n in zip(ids.frame["path"], media, names):
        if m:
            mm.append([path, "StillImage", mimetypes.guess_type(n)[0] or "", m, os.path.basename(n)])
    title = title or f"{ids.name}: identifications by palaeo-ssl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.xml", meta_xml(terms))
        z.writestr("eml.xml", eml_xml(ids, title, basis_of_record))
        z.writestr("occurrence.csv", _csv([terms] + rows))
        z.writestr("multimedia.csv", _csv(mm))
    target = out / archive_name(ids)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:  # the user's umask, then a rename: a reader never sees half an archive
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return [target]


# ---------------------------------------------------------------------- reading
def is_dwca(path: Path) -> bool:
    """True for a ``.zip`` file or a folder holding ``meta.xml`` (a Darwin Core Archive, or meant as one)."""
    path = Path(path)
    return (path.is_file() and path.suffix.lower() == ".zip") or (path.is_dir() and (path / "meta.xml").is_file())


def _locate(folders: list[Path], ref: str, key: str, root: Path | None) -> str:
    """The local file a media identifier refers to: a path relative to one of ``folders`` (a URL: its path's
    trailing parts), else ``root/key`` in the dataset, else the first candidate (missing)."""
    if not ref:
        candidates = []
    elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", ref):
        parts = [p for p in unquote(urlparse(ref).path).split("/") if p]
        candidates = [str(fo / "/".join(parts[i:])) for i in range(len(parts)) for fo in folders]
    else:
        candidates = [ref] if os.path.isabs(ref) else [str(fo / ref) for fo in folders]
    for c in candidates:
        if os.path.isfile(c):
            return os.path.abspath(c)
    if key and root is not None:
        alt = key if os.path.isabs(key) else os.path.join(root, key)
        if os.path.isfile(alt):
            return alt
    return os.path.abspath(candidates[0]) if candidates and not re.match(r"^\w+://", ref) else ""


def _own_metadata(reader) -> dict[str, str]:
    node = reader.metadata.find("additionalMetadata/metadata/palaeoSsl") if reader.metadata is not None else None
    return {} if node is None else {child.tag: (child.text or "") for child in node}


def _media(reader) -> dict[str, list[str]]:
    """Core id -> media identifiers, from a Simple Multimedia or an Audubon Core extension."""
    found: dict[str, list[str]] = {}
    for ext in reader.extension_files:
        d = ext.file_descriptor
        term = DC + "identifier" if d.type == MULTIMEDIA else (ACCESS_URI if d.type == AUDUBON else None)
        if term is None or term not in d.terms:
            continue
        for coreid, ref in ext.iter_terms(["coreid", term]):
            if ref.strip():
                found.setdefault(coreid, []).append(ref.strip())
    return found


def read_dwca(path: str | os.PathLike) -> Identifications:
    """The identifications of a Darwin Core Archive (a ``.zip`` or its unpacked folder), read with
    python-dwca-reader.

    ``PredictedByMachine`` identifications are the machine's (qualified ``cf.``: an abstention); any other
    one with a ``scientificName`` is a person's, unless qualified ``cf.``, ``aff.`` or with a ``?`` (then it
    is no label). Each image of an occurrence (the multimedia extension, else ``associatedMedia``) is a row;
    images are found relative to the archive's folder, else in the dataset it names.
    """
    from dwca.exceptions import InvalidArchive, NotADataFile
    from dwca.read import DwCAReader

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            reader = DwCAReader(str(path))
    except (InvalidArchive, NotADataFile, OSError, ET.ParseError, KeyError, AttributeError, ValueError) as exc:
        raise UserError(f"{path} is not a Darwin Core Archive that can be read ({type(exc).__name__}: {exc}); "
                        "an archive needs meta.xml and its data files (an EcoTaxa export zip: unzip it and pass "
                        "its .tsv)") from None
    with reader:
        d = reader.core_file.file_descriptor
        if d.type != OCCURRENCE:
            raise UserError(f"{path}: the archive's core is {d.type}, not occurrences ({OCCURRENCE})")
        present = [t for t in (*CORE_TERMS, "occurrenceID") if DWC + t in d.terms]
        values = {t: [] for t in present}
        ids_col = []
        for row in reader.core_file.iter_terms(["id", *(DWC + t for t in present)]):
            ids_col.append(row[0])
            for t, v in zip(present, row[1:]):
                values[t].append(v)
        media = _media(reader)
        own = _own_metadata(reader)
    return _identifications(path, ids_col, values, media, own)


def _identifications(path: Path, core_ids: list[str], values: dict[str, list[str]], media: dict[str, list[str]],
                     own: dict[str, str]) -> Identifications:
    n = len(core_ids)

    def col(term: str) -> list[str]:
        return [v.strip() for v in values.get(term, [""] * n)]

    key_col = col("occurrenceID") if "occurrenceID" in values else [c.strip() for c in core_ids]
    root = Path(own["dataRoot"]) if own.get("dataRoot") else None
    folders = [path, path.parent] if path.is_dir() else [path.parent]  # an unpacked archive: inside it first
    rows = []
    for i, (core_id, key, name, qual, verif, spec, assoc, dyn) in enumerate(zip(
            core_ids, key_col, col("scientificName"), col("identificationQualifier"),
            col("identificationVerificationStatus"), col("catalogNumber"), col("associatedMedia"),
            col("dynamicProperties"))):
        try:
            extra = json.loads(dyn) if dyn else {}
            extra = extra if isinstance(extra, dict) else {}
        except ValueError:
            extra = {}
        machine = verif.replace(" ", "").lower() == PREDICTED.lower()
        doubtful = bool(qual) and (qual.lower() in ("cf.", "cf", "aff.", "aff") or "?" in qual)
        if not name:
            status, label = (MACHINE if machine and extra.get("bestGuess") else NONE), ""
        elif machine:
            status, label = MACHINE, ("" if doubtful else name)
        else:
            status, label = (NONE, "") if doubtful else (HUMAN, name)
        guess = str(extra.get("bestGuess", name if machine else ""))
        p = extra.get("probability")
        refs = media.get(core_id) or [r.strip() for r in assoc.split("|") if r.strip()] or [""]
        for ref in refs:
            rows.append((key if len(refs) == 1 else "", _locate(folders, ref, key, root), label, status,
                         float(p) if isinstance(p, (int, float)) else np.nan, guess, spec, ref))
    frame = pd.DataFrame(rows, columns=["path", "file", "label", "status", "probability", "best_guess",
                                        "specimen", "ref"])
    dup = frame["path"].duplicated(keep=False) & (frame["path"] != "")
    frame.loc[dup, "path"] = ""
    frame["path"] = np.where(frame["path"] != "", frame["path"], frame["ref"])
    threshold = pd.to_numeric(pd.Series([own.get("threshold")]), errors="coerce").iloc[0]
    name = path.stem[:-5] if path.stem.endswith("_dwca") else path.stem
    return Identifications(frame.drop(columns="ref"), name=name, root=root, dataset=own.get("dataset") or None,
                           model=own.get("model") or None, probe=own.get("probe") or None,
                           threshold=None if pd.isna(threshold) else float(threshold),
                           identified=own.get("identified") or None, source=str(path),
                           random_weights=own.get("randomWeights") == "yes")


__all__ = ["BASES", "PREDICTED", "RANKS", "UNCERTAIN", "VALIDATED", "archive_name", "eml_xml", "is_dwca", "meta_xml",
           "occurrence_rows", "read_dwca", "write_dwca"]
