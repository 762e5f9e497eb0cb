"""Specimens unlike any labelled class: distance of every unlabelled specimen to the labelled set.

The score is the cosine distance (1 - cosine similarity of the L2-normalised
features) to the nearest labelled specimen: large for possible new taxa,
damaged or contaminated specimens and imaging artefacts. The distance to the
nearest specimen of each class is given beside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..embeddings import Embeddings, l2_normalize
from ..errors import UserError
from .geometry import nearest, nearest_per_group

#: specimens shown on the novelty contact sheet
SHEET_SIZE = 25


def novelty_scores(features: np.ndarray, labels: np.ndarray, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine distances of every row to the labelled rows (``labels`` >= 0).

    Returns ``(score, nearest_index, per_class)``: (N,) distance to the nearest
    labelled row, (N,) that row's index, (N, n_classes) distance to the nearest
    row of each class (inf for a class without rows). Labelled rows are scored too
    (their nearest *other* labelled row is not excluded, so theirs is 0).
    """
    labels = np.asarray(labels, dtype=np.int64)
    lab = np.flatnonzero(labels >= 0)
    if not len(lab):
        raise UserError("novelty needs labelled specimens to compare with; label some first "
                        "('palaeo-ssl suggest' says which)")
    n_classes = int(labels.max() + 1) if n_classes is None else n_classes
    z = l2_normalize(np.asarray(features, dtype=np.float32))
    sim, arg = nearest(z, z[lab])
    per_class = 1.0 - nearest_per_group(z, z[lab], labels[lab], n_classes).astype(np.float64)
    return 1.0 - sim.astype(np.float64), lab[arg], per_class


@dataclass
class NoveltyResult:
    """``table``: one row per unlabelled specimen, most novel first: ``rank``, ``path``, ``novelty``
    (cosine distance to the nearest labelled specimen), ``nearest_class``, ``nearest_labelled``
    (its path) and ``distance_<class>`` for each class; ``index``: their rows in the embeddings."""

    table: pd.DataFrame
    index: np.ndarray

    def scores_for(self, n: int) -> np.ndarray:
        """(n,) novelty of each row of the embeddings, NaN for the labelled ones."""
        out = np.full(n, np.nan)
        out[self.index] = self.table["novelty"].to_numpy()
        return out


def compute_novelty(emb: Embeddings) -> NoveltyResult:
    """Novelty of every unlabelled specimen of ``emb`` against its labelled ones."""
    unl = np.flatnonzero(emb.labels < 0)
    if not len(unl):
        raise UserError("every specimen is labelled: there is nothing to score for novelty")
    score, near, per_class = novelty_scores(emb.features, emb.labels, emb.n_classes)
    order = unl[np.lexsort((unl, -score[unl]))]
    table = pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "path": [emb.paths[i] for i in order],
        "novelty": score[order],
        "nearest_class": [emb.class_names[emb.labels[near[i]]] for i in order],
        "nearest_labelled": [emb.paths[near[i]] for i in order],
    })
    for c, name in enumerate(emb.class_names):
        table[f"distance_{name}"] = per_class[order, c]
    return NoveltyResult(table=table, index=order)


def write_novelty(result: NoveltyResult, emb: Embeddings, out: str | os.PathLike) -> list[Path]:
    """``novelty.csv`` and the contact sheet ``novelty.png``/``.pdf`` of the :data:`SHEET_SIZE` most novel."""
    from ..report import write_csv
    from .sheets import contact_sheet

    out = Path(out)
    files = [write_csv(result.table, out / "novelty.csv")]
    top = result.table.head(SHEET_SIZE)
    captions = [f"#{r.rank} {Path(r.path).name}\ndistance {r.novelty:.3f} ({r.nearest_class})" for r in top.itertuples()]
    files += contact_sheet(emb, result.index[:SHEET_SIZE], captions, out / "novelty",
                           title="Unlike any labelled class: the most distant unlabelled specimens")
    return files
