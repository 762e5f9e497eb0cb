"""Which specimens to label next (``palaeo-ssl suggest``), on an embedding store.

:func:`suggest` picks ``budget`` unlabelled specimens with a strategy of
:mod:`palaeo_ssl.labels.strategies` and, when the store has labels, scores every
unlabelled specimen for novelty; :func:`write_suggestions` writes
``suggestions.csv``, the contact sheet ``suggestions.png``/``.pdf`` in rank
order, the template ``to_label.csv`` (see :mod:`palaeo_ssl.labels.template`)
and ``novelty.csv`` with its contact sheet.

    >>> result = suggest("results/run/embeddings", budget=200)   # doctest: +SKIP
    >>> write_suggestions(result, "to_label/")                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..embeddings import Embeddings, load_embeddings
from ..errors import UserError
from ..params import SEED, validate_params
from .novelty import NoveltyResult, compute_novelty, write_novelty
from .strategies import STRATEGIES, Selection, select


@dataclass
class Suggestions:
    """``table``: one row per suggestion in rank order (``rank``, ``path``, ``strategy``, ``reason``, then
    the numbers behind it: ``step``, ``cluster``, ``cluster_size``, ``cluster_labelled``, ``density``,
    ``margin``, ``best_guess``, ``second_guess``, ``distance_to_labelled``); ``index``: their rows in
    ``embeddings``; ``strategy``: the strategy used (``auto`` resolved); ``novelty``: the novelty of every
    unlabelled specimen (None when nothing is labelled); ``embeddings``: the store they come from."""

    table: pd.DataFrame
    index: np.ndarray
    strategy: str
    requested: str
    novelty: NoveltyResult | None
    embeddings: Embeddings
    seconds: float = 0.0


def _reason(row: Any, class_names: list[str]) -> str:
    parts = []
    if row.step == "typical":
        parts.append(f"most typical of cluster {row.cluster} ({row.cluster_size} specimens)")
    elif row.step == "coverage":
        parts.append(f"most typical left in cluster {row.cluster} ({row.cluster_size} specimens, "
                     f"{row.cluster_labelled} labelled)")
    elif row.step == "margin":
        parts.append(f"probe unsure: margin {row.margin:.3f} between {class_names[row.best_class]} and "
                     f"{class_names[row.second_class]} (cluster {row.cluster}, {row.cluster_size} specimens)")
    elif row.step == "farthest":
        parts.append("farthest from every labelled and earlier suggestion")
    else:
        parts.append("random draw")
    if np.isfinite(row.distance_to_labelled):
        parts.append(f"distance to nearest labelled {row.distance_to_labelled:.3f}")
    return "; ".join(parts)


def suggestions_table(emb: Embeddings, sel: Selection) -> pd.DataFrame:
    d = sel.details
    names = list(emb.class_names)
    table = pd.DataFrame({"rank": np.arange(1, len(sel.index) + 1), "path": [emb.paths[i] for i in sel.index],
                          "strategy": sel.strategy, "reason": [_reason(r, names) for r in d.itertuples()]})
    table = pd.concat([table, d.drop(columns=["best_class", "second_class"]).reset_index(drop=True)], axis=1)
    table["best_guess"] = [names[c] if c >= 0 else "" for c in d["best_class"]]
    table["second_guess"] = [names[c] if c >= 0 else "" for c in d["second_class"]]
    return table


@validate_params({"seed": SEED})
def suggest(embeddings: Embeddings | str | os.PathLike, budget: int, strategy: str = "auto", seed: int = 0,
            novelty: bool = True) -> Suggestions:
    """Pick ``budget`` unlabelled specimens of ``embeddings`` to label next.

    Parameters
    ----------
    embeddings : an embedding store (or an ``extract``/``run`` output folder), or :class:`Embeddings`.
    budget : how many specimens to suggest (at most the number of unlabelled ones).
    strategy : ``auto``, ``typical``, ``diverse``, ``uncertain`` or ``random``
        (see :mod:`palaeo_ssl.labels.strategies`).
    seed : seed of k-means, of the probe and of the random draws.
    novelty : also score every unlabelled specimen against the labelled ones (when there are any).
    """
    t = time.perf_counter()
    emb = load_embeddings(embeddings)
    if len(emb) == 0 or emb.dim == 0:
        raise UserError(f"the embeddings at {embeddings} hold no features; run 'palaeo-ssl extract' on the images first")
    sel = select(emb.features, emb.labels, budget, strategy, seed)
    nov = compute_novelty(emb) if novelty and emb.has_labels else None
    return Suggestions(table=suggestions_table(emb, sel), index=sel.index, strategy=sel.strategy,
                       requested=strategy, novelty=nov, embeddings=emb, seconds=time.perf_counter() - t)


def write_suggestions(result: Suggestions, out: str | os.PathLike) -> list[Path]:
    """``suggestions.csv``, ``suggestions.png``/``.pdf`` (rank order), ``to_label.csv`` and, with labels,
    ``novelty.csv`` and ``novelty.png``/``.pdf``, in ``out``. Returns the paths."""
    from ..report import write_csv
    from .sheets import contact_sheet
    from .template import write_template

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    emb = result.embeddings
    files = [write_csv(result.table, out / "suggestions.csv")]
    captions = [f"#{r.rank} {Path(r.path).name}\n{r.step}" + (f" c{r.cluster}" if r.cluster >= 0 else "")
                for r in result.table.itertuples()]
    files += contact_sheet(emb, result.index, captions, out / "suggestions",
                           title=f"Suggested for labelling ({result.strategy}), in rank order")
    files.append(write_template(emb, result.index, out))
    if result.novelty is not None:
        files += write_novelty(result.novelty, emb, out)
    return files


def run_suggest(embeddings: Embeddings | str | os.PathLike, budget: int, out: str | os.PathLike,
                strategy: str = "auto", seed: int = 0) -> dict[str, Any]:
    """:func:`suggest` then :func:`write_suggestions`, timed:
    ``{"result": Suggestions, "files": [...], "timings": {"suggest", "write", "total"}}``."""
    t0 = time.perf_counter()
    result = suggest(embeddings, budget, strategy=strategy, seed=seed)
    t1 = time.perf_counter()
    files = write_suggestions(result, out)
    t2 = time.perf_counter()
    return {"result": result, "files": files, "timings": {"suggest": t1 - t0, "write": t2 - t1, "total": t2 - t0}}


__all__ = ["STRATEGIES", "Suggestions", "run_suggest", "suggest", "suggestions_table", "write_suggestions"]
