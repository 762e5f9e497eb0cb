"""Higher taxonomic ranks of the classes: from a taxonomy CSV, or from ``Genus_species`` names.

A :class:`Taxonomy` maps each class name to its name at one or more higher
ranks (``genus``, ``family``, ...). It comes from

* a CSV with a ``class`` column and one column per rank (``class,genus,family``;
  every class of the store must have a row, extra rows are ignored), or
* by default, the first word of each class name, split at ``_``, a space, ``-``
  or ``.`` (``Albaillella_sp1`` -> genus ``Albaillella``). Genus names are
  compared case-insensitively (``Albaillella_x`` and ``albaillella_y`` are one
  genus, shown with the spelling used most, ties to the first in sorted
  order); the tables say that the genus was taken from the class names.

:func:`rank_labels` turns class labels into labels at a rank, which is what
accuracy at each rank and the genus-level confusion matrix are computed from.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import UserError
from .params import Kind

#: the constraint of a ``taxonomy`` parameter: a CSV path (or None for the class names)
TAXONOMY_PARAM = [Kind((str, os.PathLike), "a path to a CSV file (class,genus,...)"), None]

CLASS_RANK = "class"
GENUS = "genus"
#: where the default genus comes from, as the tables state it
FROM_NAMES = "first word of the class names (case-insensitive)"
_SEPARATOR = re.compile(r"[_\s\-.]+")


@dataclass(frozen=True)
class Taxonomy:
    """Higher ranks of an ordered list of classes.

    class_names : the classes, in label order
    ranks : rank name -> tuple of the group name of each class (same order)
    source : where the ranks come from (a CSV path, or :data:`FROM_NAMES`)
    """

    class_names: tuple[str, ...]
    ranks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = FROM_NAMES

    @property
    def rank_names(self) -> list[str]:
        """The higher ranks, finest first (as in the CSV, or ``["genus"]``)."""
        return list(self.ranks)

    def groups(self, rank: str) -> list[str]:
        """The distinct group names at ``rank``, sorted case-insensitively."""
        return sorted(set(self._rank(rank)), key=lambda s: (s.lower(), s))

    def _rank(self, rank: str) -> tuple[str, ...]:
        if rank == CLASS_RANK:
            return self.class_names
        if rank not in self.ranks:
            raise UserError(f"no rank '{rank}' in the taxonomy (it has: {', '.join(self.rank_names) or 'none'})")
        return self.ranks[rank]

    def mapping(self, rank: str) -> tuple[np.ndarray, list[str]]:
        """``(codes, groups)``: ``codes[c]`` is the index into ``groups`` of class ``c`` at ``rank``."""
        names = self._rank(rank)
        groups = self.groups(rank)
        pos = {g: i for i, g in enumerate(groups)}
        return np.array([pos[g] for g in names], dtype=np.int64), groups

    def is_informative(self, rank: str) -> bool:
        """True when ``rank`` groups at least two classes together and has at least two groups."""
        n = len(set(self._rank(rank)))
        return 2 <= n < len(self.class_names)


def genus_of(name: str) -> str:
    """The first word of a class name (``"Albaillella_sp1"`` -> ``"Albaillella"``); the name when it has one word."""
    parts = [p for p in _SEPARATOR.split(str(name).strip()) if p]
    return parts[0] if parts else str(name)


def from_class_names(class_names: Sequence[str]) -> Taxonomy:
    """Genus from the first word of each class name, compared case-insensitively.

    All spellings of one genus (``Albaillella``, ``albaillella``) are shown as the
    spelling most classes use (ties: the first in sorted order).
    """
    names = [str(c) for c in class_names]
    words = [genus_of(c) for c in names]
    spellings: dict[str, Counter] = {}
    for w in words:
        spellings.setdefault(w.lower(), Counter())[w] += 1
    shown = {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, c in spellings.items()}
    return Taxonomy(tuple(names), {GENUS: tuple(shown[w.lower()] for w in words)}, FROM_NAMES)


def read_taxonomy(path: str | Path, class_names: Sequence[str]) -> Taxonomy:
    """Ranks from a CSV with a ``class`` column and one column per higher rank.

    Class names are matched exactly first, then case-insensitively; every class
    of ``class_names`` needs a row (the error lists the missing ones). Empty
    cells are an error too: a class needs a group at every rank.
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the taxonomy table {path}: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    lower = {c.lower(): c for c in df.columns}
    if CLASS_RANK not in lower:
        raise UserError(f"{path} needs a 'class' column and one column per higher rank "
                        f"(e.g. class,genus,family); it has: {', '.join(df.columns)}")
    cls_col = lower[CLASS_RANK]
    rank_cols = [c for c in df.columns if c != cls_col]
    if not rank_cols:
        raise UserError(f"{path} has no rank column beside 'class' (e.g. genus, family)")
    exact = {str(r[cls_col]).strip(): r for _, r in df.iterrows()}
    folded = {k.lower(): r for k, r in exact.items()}
    rows, missing = [], []
    for c in class_names:
        row = exact.get(str(c), folded.get(str(c).lower()))
        if row is None:
            missing.append(str(c))
        rows.append(row)
    if missing:
        raise UserError(f"{len(missing)} class(es) have no row in {path}: {', '.join(missing[:10])}"
                        f"{' ...' if len(missing) > 10 else ''}; add them (class,{','.join(rank_cols)})")
    ranks: dict[str, tuple[str, ...]] = {}
    for col in rank_cols:
        vals = tuple(str(r[col]).strip() for r in rows)
        empty = [c for c, v in zip(class_names, vals) if not v]
        if empty:
            raise UserError(f"column '{col}' of {path} is empty for {', '.join(map(str, empty[:10]))}; "
                            "give every class a group at every rank")
        ranks[col.lower()] = vals
    return Taxonomy(tuple(str(c) for c in class_names), ranks, str(path))


def load_taxonomy(class_names: Sequence[str], path: str | Path | None = None) -> Taxonomy:
    """The taxonomy of ``class_names``: from ``path`` when given, else from the class names."""
    return read_taxonomy(path, class_names) if path is not None else from_class_names(class_names)


def rank_labels(labels: np.ndarray, taxonomy: Taxonomy, rank: str) -> tuple[np.ndarray, list[str]]:
    """Labels at ``rank`` for class labels (-1 stays -1); returns ``(labels, group names)``."""
    codes, groups = taxonomy.mapping(rank)
    y = np.asarray(labels, dtype=np.int64)
    out = np.full(y.shape, -1, dtype=np.int64)
    ok = y >= 0
    out[ok] = codes[y[ok]]
    return out, groups


def collapse_confusion(counts: np.ndarray, taxonomy: Taxonomy, rank: str) -> tuple[np.ndarray, list[str]]:
    """A class confusion matrix (C, C) summed into groups at ``rank``: (G, G) and the group names."""
    codes, groups = taxonomy.mapping(rank)
    g = len(groups)
    onehot = np.zeros((len(codes), g), dtype=np.int64)
    onehot[np.arange(len(codes)), codes] = 1
    counts = np.asarray(counts, dtype=np.int64)
    return onehot.T @ counts @ onehot, groups


__all__ = ["TAXONOMY_PARAM", "Taxonomy", "CLASS_RANK", "GENUS", "FROM_NAMES", "genus_of", "from_class_names", "read_taxonomy",
           "load_taxonomy", "rank_labels", "collapse_confusion"]
