"""A set of identifications: what every format of :mod:`palaeo_ssl.exchange` writes and reads.

One row per image (:data:`COLUMNS`):

``path``
    the image's path within its dataset (relative to :attr:`Identifications.root`, posix
    separators; absolute for an image outside it): the key an import matches against the
    dataset's images.
``file``
    where the image file is (absolute), or "" when unknown.
``label``
    the identification of record, or "" for none.
``status``
    who made it: :data:`HUMAN` (a person labelled or validated it), :data:`MACHINE` (palaeo-ssl's
    prediction; with an empty ``label`` the prediction abstained: its probability was under the
    threshold) or :data:`NONE` (no identification at all).
``probability``
    the machine's (calibrated, when abstaining) probability of ``best_guess``; NaN without a prediction.
``best_guess``
    the machine's most probable class ("" without a prediction); beside a human label it keeps what
    the machine said.
``specimen``
    the specimen (group) the image belongs to, or "".

Beside the rows: the dataset they come from (``dataset``, the DATA that lists these images, and
``root``), the model and probe that predicted, the abstention threshold, when the machine
identified (ISO 8601), and the higher ranks of the classes (a :class:`~palaeo_ssl.taxonomy.Taxonomy`).

Class names travel exactly through every format except for leading or trailing whitespace, which
EcoTaxa, spreadsheets and palaeo-ssl's manifests strip: :func:`check_names` refuses such names
before anything is written.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..errors import UserError

HUMAN = "human"
MACHINE = "machine"
NONE = ""
STATUSES = (HUMAN, MACHINE, NONE)
COLUMNS = ["path", "file", "label", "status", "probability", "best_guess", "specimen"]
_TEXT = [c for c in COLUMNS if c != "probability"]


@dataclass
class Identifications:
    """Identifications of a set of images (see the module docstring for the columns of ``frame``).

    name : a short name of the dataset (file names of exports are made from it)
    root : the folder ``frame.path`` is relative to, when known
    dataset : the DATA (folder, manifest, ...) that lists these images, when known: an import
        adds its labels to that dataset when it is still there
    model, probe : what made the machine identifications (model id; logreg, knn, centroid)
    threshold : the abstention threshold on ``probability`` (None: the predictions did not abstain)
    identified : when the machine identified, ISO 8601 (None: unknown)
    taxonomy : higher ranks of the classes (None: none given)
    source : what the identifications were read from
    random_weights : the model had random weights: its predictions say nothing about fossils
    """

    frame: pd.DataFrame
    name: str = "dataset"
    root: Path | None = None
    dataset: str | None = None
    model: str | None = None
    probe: str | None = None
    threshold: float | None = None
    identified: str | None = None
    taxonomy: Any = None
    source: str = ""
    random_weights: bool = False

    def __post_init__(self) -> None:
        f = self.frame.copy() if self.frame is not None else pd.DataFrame()
        n = len(f)
        for c in _TEXT:
            f[c] = f[c].fillna("").astype(str) if c in f else pd.Series([""] * n, index=f.index, dtype=object)
        f["probability"] = (pd.to_numeric(f["probability"], errors="coerce").astype(float) if "probability" in f
                            else np.full(n, np.nan))
        bad = sorted(set(f["status"]) - set(STATUSES))
        if bad:
            raise ValueError(f"unknown status value(s) {bad}; use {HUMAN!r}, {MACHINE!r} or ''")
        if ((f["status"] == NONE) & (f["label"] != "")).any():
            raise ValueError("a label needs a status (human or machine)")
        self.frame = f[COLUMNS].reset_index(drop=True)
        self.root = Path(self.root) if self.root is not None else None

    def __len__(self) -> int:
        return len(self.frame)

    # ------------------------------------------------------------------ views
    @property
    def human(self) -> np.ndarray:
        """Rows a person identified."""
        return (self.frame["status"] == HUMAN).to_numpy()

    @property
    def assigned(self) -> np.ndarray:
        """Rows the machine identified with a class (at or over the threshold)."""
        f = self.frame
        return ((f["status"] == MACHINE) & (f["label"] != "")).to_numpy()

    @property
    def abstained(self) -> np.ndarray:
        """Rows the machine left unassigned (under the threshold), keeping a best guess."""
        f = self.frame
        return ((f["status"] == MACHINE) & (f["label"] == "")).to_numpy()

    def counts(self) -> dict[str, int]:
        """Rows by kind: ``human``, ``machine`` (assigned), ``abstained``, ``none``."""
        h, a, b = self.human, self.assigned, self.abstained
        return {"human": int(h.sum()), "machine": int(a.sum()), "abstained": int(b.sum()),
                "none": int(len(self) - h.sum() - a.sum() - b.sum())}

    def class_names(self) -> list[str]:
        """Every class named in a label or a best guess, sorted."""
        f = self.frame
        return sorted((set(f["label"]) | set(f["best_guess"])) - {""})

    def import_labels(self, accept_predicted: bool = False) -> np.ndarray:
        """The label each row gives its image on import: a human label, or the machine's assigned class
        when ``accept_predicted``; "" otherwise (abstentions are never accepted)."""
        keep = self.human | (self.assigned if accept_predicted else False)
        return np.where(keep, self.frame["label"].to_numpy(dtype=object), "")

    def identified_by(self) -> str:
        """Who made the machine identifications: ``palaeo-ssl VERSION (model M, P probe)``."""
        from .. import __version__

        parts = [f"model {self.model}" if self.model else "", f"{self.probe} probe" if self.probe else "",
                 "random weights: not an identification" if self.random_weights else ""]
        inner = ", ".join(p for p in parts if p)
        return f"palaeo-ssl {__version__}" + (f" ({inner})" if inner else "")

    def with_frame(self, frame: pd.DataFrame) -> "Identifications":
        """A copy with another ``frame`` (same metadata)."""
        return replace(self, frame=frame)


def check_names(names: Iterable[str], what: str = "class name") -> None:
    """Refuse names that cannot travel exactly: empty, or with leading or trailing whitespace (which
    EcoTaxa, spreadsheets and palaeo-ssl's manifests strip). Tabs, newlines, quotes, commas, markup and
    any other character inside a name are kept exactly by every format."""
    bad = sorted({n for n in names if n and n != n.strip()})
    if bad:
        shown = ", ".join(repr(n) for n in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise UserError(f"{len(bad)} {what}(s) start or end with whitespace ({shown}), which EcoTaxa, spreadsheets "
                        "and palaeo-ssl's manifests strip, so they would come back as other names; rename them "
                        "(the class folder, or the label in the manifest) and export again")


def iso_time(seconds: float | None = None) -> str:
    """ISO 8601 local date-time with its UTC offset (now, or the epoch time ``seconds``)."""
    t = _dt.datetime.now().astimezone() if seconds is None else _dt.datetime.fromtimestamp(seconds).astimezone()
    return t.replace(microsecond=0).isoformat()


def file_time(path: str | os.PathLike) -> str:
    """When ``path`` was last written, ISO 8601 (:func:`iso_time`)."""
    return iso_time(Path(path).stat().st_mtime)


def safe_name(name: str, default: str = "dataset") -> str:
    """``name`` reduced to letters, digits, ``.``, ``_`` and ``-`` (for file names of exports)."""
    out = "".join(c if (c.isascii() and (c.isalnum() or c in "._-")) else "_" for c in str(name)).strip("._")
    return out[:80] or default


def join_root(root: Path | None, paths: Iterable[str]) -> list[str]:
    """Absolute file of each dataset path (``root / path``; an absolute path as it is; "" without a root)."""
    out = []
    for p in paths:
        if p and os.path.isabs(p):
            out.append(p)
        elif root is not None and p:
            out.append(os.path.join(str(root), p))
        else:
            out.append("")
    return out


__all__ = ["COLUMNS", "HUMAN", "MACHINE", "NONE", "STATUSES", "Identifications", "check_names", "file_time",
           "iso_time", "join_root", "safe_name"]
