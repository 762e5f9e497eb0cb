"""Plain CSV: the manifest every command reads (``path,label[,specimen]``) plus the prediction columns.

``path`` is the image's absolute path (where known), ``label`` only a person's label, so the file is a
plain manifest to any tool; beside them ``status`` (``human``, ``machine`` or empty),
``predicted_class`` (the machine's class, empty when it abstained), ``probability``, ``best_guess`` and
``dataset`` (the DATA the images belong to, as in ``to_label.csv``). Values are quoted the standard way
(RFC 4180), so any text in a name survives; a label typed into ``label`` by a colleague is a person's
identification.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..cache import atomic_write_text
from ..errors import UserError
from .model import HUMAN, MACHINE, NONE, Identifications, check_names, safe_name

#: the columns that mark a CSV as palaeo-ssl's identifications (not a plain manifest)
MARKERS = ("status", "predicted_class", "best_guess")


def table_name(ids: Identifications) -> str:
    return f"{safe_name(ids.name)}_identifications.csv"


def identifications_table(ids: Identifications) -> pd.DataFrame:
    """The CSV's rows: path, label, [specimen], status, predicted_class, probability, best_guess, dataset."""
    f = ids.frame
    human, assigned = ids.human, ids.assigned
    out = pd.DataFrame({"path": np.where(f["file"] != "", f["file"], f["path"]),
                        "label": np.where(human, f["label"], "")})
    if (f["specimen"] != "").any():
        out["specimen"] = f["specimen"]
    out["status"] = f["status"]
    out["predicted_class"] = np.where(assigned, f["label"], "")
    out["probability"] = ["" if math.isnan(p) else repr(float(p)) for p in f["probability"]]
    out["best_guess"] = f["best_guess"]
    out["dataset"] = ids.dataset or ""
    return out


def write_table(ids: Identifications, out: str | os.PathLike) -> list[Path]:
    """Write ``out/<name>_identifications.csv``; returns its path."""
    check_names(ids.class_names())
    check_names(set(ids.frame["specimen"]), "specimen name")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / table_name(ids)
    atomic_write_text(target, identifications_table(ids).to_csv(index=False, lineterminator="\n"))
    return [target]


def is_table(columns) -> bool:
    """True when a CSV's (lower-case) columns are those of palaeo-ssl's identifications."""
    return "path" in columns and all(m in columns for m in MARKERS)


def read_table(path: str | os.PathLike) -> Identifications:
    """The identifications of a CSV written by :func:`write_table` (and perhaps edited since): a ``label`` is a
    person's; ``predicted_class`` the machine's; ``status`` machine without a class, an abstention. Paths
    are relative to the file's folder (absolute ones as they are)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    df.columns = [c.strip().lower() for c in df.columns]
    if not is_table(df.columns):
        raise UserError(f"{path} is not a table of identifications: it needs columns path, {', '.join(MARKERS)}")
    folder = path.resolve().parent
    paths = df["path"].str.strip()
    files = [p if os.path.isabs(p) else (str(folder / p) if p else "") for p in paths]
    label, predicted = df["label"].str.strip() if "label" in df else "", df["predicted_class"].str.strip()
    state = df["status"].str.strip().str.lower()
    guess = df["best_guess"].str.strip()
    status = np.where(label != "", HUMAN, np.where((predicted != "") | ((state == MACHINE) & (guess != "")),
                                                    MACHINE, NONE))
    frame = pd.DataFrame({"path": paths, "file": files, "label": np.where(label != "", label, predicted),
                          "status": status, "probability": pd.to_numeric(df["probability"], errors="coerce"),
                          "best_guess": np.where((status == MACHINE) & (guess == ""), predicted, guess),
                          "specimen": df["specimen"].str.strip() if "specimen" in df else ""})
    dataset = next((d.strip() for d in df.get("dataset", []) if d.strip()), None)
    name = path.stem[:-len("_identifications")] if path.stem.endswith("_identifications") else path.stem
    return Identifications(frame, name=name, dataset=dataset, source=str(path))


__all__ = ["MARKERS", "identifications_table", "is_table", "read_table", "table_name", "write_table"]
