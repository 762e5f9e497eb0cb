"""The labelling stage of a run: suggestions, novelty and calibrated predictions with abstention for the
unlabelled specimens of a store that mixes labelled and unlabelled ones (or has no labels at all).

:func:`compute_labels` returns a :class:`LabelsResult`; :func:`write_labels` writes it;
:func:`explorer_columns` turns it into the explorer's colourings.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..embeddings import Embeddings
from ..errors import UserError
from ..params import POSITIVE_INT, SEED, FRACTION, check_all
from .suggest import Suggestions, suggest, write_suggestions

log = logging.getLogger(__name__)

#: constraints of :class:`LabelsConfig`
LABELS_PARAMS = {"budget": POSITIVE_INT, "seed": SEED, "target_accuracy": FRACTION}


@dataclass(frozen=True)
class LabelsConfig:
    """Every option that changes the numbers of the labelling stage; ``asdict()`` is its cache key.

    ``budget``: suggestions (capped at the unlabelled specimens); ``strategy``: see
    :mod:`palaeo_ssl.labels.strategies`; ``target_accuracy`` and ``calibration``: of the
    calibrated predictions (see :mod:`palaeo_ssl.labels.calibration`).
    """

    budget: int = 24
    strategy: str = "auto"
    seed: int = 0
    target_accuracy: float = 0.95
    calibration: str = "temperature"

    def __post_init__(self):
        check_all({k: getattr(self, k) for k in LABELS_PARAMS}, LABELS_PARAMS)


@dataclass
class LabelsResult:
    """``suggestions`` (with novelty when labels exist), ``classified``: the calibrated predictions of the
    unlabelled specimens with abstention (a :class:`~palaeo_ssl.probes.predictions.ClassifyResult`;
    None without labels of two classes), ``explorer``: :func:`explorer_columns` of both, and timings."""

    suggestions: Suggestions
    classified: Any
    explorer: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def has_unlabelled(emb: Embeddings) -> bool:
    """True when ``emb`` holds unlabelled specimens (the labelling stage has something to do)."""
    return bool(len(emb) and (emb.labels < 0).any())


def compute_labels(emb: Embeddings, config: LabelsConfig = LabelsConfig()) -> LabelsResult:
    """Suggestions, novelty and calibrated predictions for the unlabelled specimens of ``emb``."""
    from ..probes.predictions import classify

    t0 = time.perf_counter()
    n_unl = int((emb.labels < 0).sum())
    sugg = suggest(emb, min(config.budget, n_unl), strategy=config.strategy, seed=config.seed)
    t1 = time.perf_counter()
    classified = None
    if len(np.unique(emb.labels[emb.labels >= 0])) >= 2:
        try:
            classified = classify(emb.subset(emb.labels < 0), emb, probe="logreg", protocol="standard",
                                  seed=config.seed, target_accuracy=config.target_accuracy,
                                  calibration=config.calibration, progress=False)
        except UserError as exc:  # e.g. one labelled image per class: nothing to calibrate on
            log.warning("calibrated predictions skipped: %s", exc)
    t2 = time.perf_counter()
    cols = explorer_columns(emb, sugg, classified)
    return LabelsResult(suggestions=sugg, classified=classified, explorer=cols,
                        timings={"suggest": t1 - t0, "classify": t2 - t1, "total": time.perf_counter() - t0})


def write_labels(result: LabelsResult, out: str | os.PathLike) -> list[Path]:
    """Suggestions, template and novelty (:func:`write_suggestions`) and, with labels, ``predictions.csv``,
    ``risk_coverage.csv``/``.png`` and ``calibration.json`` in ``out``."""
    from ..probes.predictions import write_predictions

    files = write_suggestions(result.suggestions, out)
    if result.classified is not None:
        files += write_predictions(result.classified, out)
    return files


def explorer_columns(emb: Embeddings, suggestions: Suggestions | None = None, classified: Any = None) -> dict[str, Any]:
    """The explorer's colourings from the labelling results, one value per specimen of ``emb``.

    Returns ``{"scores": {"suggestion rank": (N,) float (1 = label first), "confidence": (N,) calibrated
    probability of the best class, "novelty": (N,) cosine distance to the nearest labelled specimen},
    "predicted": (N,) int}``. A score is NaN where it does not apply (labelled specimens, specimens
    not suggested); ``predicted`` is the index into ``emb.class_names`` of each unlabelled specimen's
    assigned class, -1 for labelled specimens and for predictions left unassigned. Scores that the
    results do not hold (no labels: no confidence or novelty) are left out.
    """
    n = len(emb)
    scores: dict[str, np.ndarray] = {}
    predicted = np.full(n, -1, dtype=np.int64)
    if suggestions is not None:
        rank = np.full(n, np.nan)
        rank[suggestions.index] = suggestions.table["rank"].to_numpy(dtype=float)
        scores["suggestion rank"] = rank
        if suggestions.novelty is not None:
            scores["novelty"] = suggestions.novelty.scores_for(n)
    if classified is not None:
        frame = classified.predictions
        where = {p: i for i, p in enumerate(emb.paths)}
        rows = np.asarray([where.get(p, -1) for p in frame["path"]], dtype=np.int64)
        ok = rows >= 0
        conf = np.full(n, np.nan)
        conf[rows[ok]] = frame["probability"].to_numpy(dtype=float)[ok]
        scores["confidence"] = conf
        lookup = {c: i for i, c in enumerate(emb.class_names)}
        predicted[rows[ok]] = [lookup.get(c, -1) for c in frame["predicted_class"].to_numpy()[ok]]
    return {"scores": scores, "predicted": predicted}


def explorer_columns_from_folder(emb: Embeddings, folder: str | os.PathLike) -> dict[str, Any] | None:
    """:func:`explorer_columns` from what :func:`write_labels` wrote into ``folder`` (a run that reuses its
    labelling stage from disk): ``suggestions.csv``, ``novelty.csv`` and ``predictions.csv``, matched to
    ``emb`` by path. None when ``folder`` holds no ``suggestions.csv``."""
    folder = Path(folder)
    if not (folder / "suggestions.csv").is_file():
        return None
    n = len(emb)
    where = {p: i for i, p in enumerate(emb.paths)}

    def rows_of(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray([where.get(p, -1) for p in frame["path"].astype(str)], dtype=np.int64)
        return rows, rows >= 0

    scores: dict[str, np.ndarray] = {}
    predicted = np.full(n, -1, dtype=np.int64)
    sug = pd.read_csv(folder / "suggestions.csv")
    rows, ok = rows_of(sug)
    scores["suggestion rank"] = np.full(n, np.nan)
    scores["suggestion rank"][rows[ok]] = sug["rank"].to_numpy(dtype=float)[ok]
    if (folder / "novelty.csv").is_file():
        nov = pd.read_csv(folder / "novelty.csv")
        rows, ok = rows_of(nov)
        scores["novelty"] = np.full(n, np.nan)
        scores["novelty"][rows[ok]] = nov["novelty"].to_numpy(dtype=float)[ok]
    if (folder / "predictions.csv").is_file():
        pred = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
        rows, ok = rows_of(pred)
        scores["confidence"] = np.full(n, np.nan)
        scores["confidence"][rows[ok]] = pd.to_numeric(pred["probability"], errors="coerce").to_numpy(dtype=float)[ok]
        lookup = {c: i for i, c in enumerate(emb.class_names)}
        predicted[rows[ok]] = [lookup.get(c, -1) for c in pred["predicted_class"].astype(str).to_numpy()[ok]]
    return {"scores": scores, "predicted": predicted}
