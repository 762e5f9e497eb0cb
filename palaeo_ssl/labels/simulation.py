"""How many labels a strategy saves, simulated on data whose labels are known.

The labels are hidden; a strategy asks for ``budget`` specimens, their labels
are revealed, the standard logistic regression is fitted on them (plus those
known from the start) and scored by top-1 accuracy on every remaining
specimen. Repeated over seeds, the table gives each strategy's accuracy
against the number of labels with an interval. ``benchmarks/label_budget.py``
runs it on scikit-learn's digits; notebook 01 on a labelled dataset of one's own.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .strategies import select


def probe_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray, seed: int = 0) -> float:
    """Top-1 accuracy on every row outside ``train`` of the standard logistic regression fitted on ``train``."""
    from ..probes import make_probe
    from ..probes.classifiers import fit_quietly

    X = np.asarray(features, dtype=np.float32)
    rest = np.setdiff1d(np.arange(len(labels)), train)
    model = make_probe("logreg", "standard", labels[train], seed=seed)
    fit_quietly(model, X[train], labels[train])
    pred = np.asarray(model.classes_)[np.argmax(model.predict_proba(X[rest]), axis=1)]
    return float((pred == labels[rest]).mean())


def known_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` random specimens of each class (all of a smaller class), seeded."""
    rng = np.random.default_rng(seed)
    out = [rng.choice(np.flatnonzero(labels == c), min(per_class, int((labels == c).sum())), replace=False)
           for c in np.unique(labels)]
    return np.sort(np.concatenate(out))


def simulate_label_budget(features: np.ndarray, labels: np.ndarray, budgets: Sequence[int],
                          strategies: Sequence[str] = ("typical", "random"), seeds: Iterable[int] = range(10),
                          known_per_class_start: int = 0, progress: bool = False) -> pd.DataFrame:
    """Accuracy of the standard probe against the number of labels a strategy asked for.

    ``labels`` (N,) are all known; with ``known_per_class_start`` > 0 that many random
    specimens per class (seeded) are labelled from the start. Returns one row per strategy,
    budget and seed: ``strategy``, ``budget`` (labels asked for), ``n_labels`` (with the
    known ones), ``seed``, ``accuracy``.
    """
    from tqdm.auto import tqdm

    labels = np.asarray(labels, dtype=np.int64)
    seeds = list(seeds)
    rows = []
    jobs = [(s, b, st) for s in seeds for b in budgets for st in strategies]
    for seed, budget, strategy in tqdm(jobs, disable=not progress, desc="label budget"):
        start = known_per_class(labels, known_per_class_start, seed) if known_per_class_start else np.zeros(0, int)
        visible = np.full(len(labels), -1, dtype=np.int64)
        visible[start] = labels[start]
        picks = select(features, visible, int(budget), strategy, seed).index
        train = np.concatenate([start, picks])
        rows.append({"strategy": strategy, "budget": int(budget), "n_labels": len(train), "seed": seed,
                     "accuracy": probe_accuracy(features, labels, train, seed)})
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, baseline: str = "random") -> pd.DataFrame:
    """Mean accuracy with a 95% t-interval per strategy and budget, and the paired difference from
    ``baseline`` (same seeds) with its interval: ``strategy``, ``budget``, ``n_labels``, ``seeds``,
    ``mean``, ``low``, ``high``, ``diff``, ``diff_low``, ``diff_high``."""
    from scipy import stats

    def interval(v: np.ndarray) -> tuple[float, float, float]:
        m = float(np.mean(v))
        if len(v) < 2 or np.std(v) == 0:
            return m, m, m
        h = float(stats.t.ppf(0.975, len(v) - 1) * np.std(v, ddof=1) / np.sqrt(len(v)))
        return m, m - h, m + h

    base = table[table.strategy == baseline].set_index(["budget", "seed"])["accuracy"]
    out = []
    for (strategy, budget), g in table.groupby(["strategy", "budget"], sort=False):
        m, lo, hi = interval(g["accuracy"].to_numpy())
        row = {"strategy": strategy, "budget": budget, "n_labels": int(g["n_labels"].iloc[0]), "seeds": len(g),
               "mean": m, "low": lo, "high": hi, "diff": np.nan, "diff_low": np.nan, "diff_high": np.nan}
        if len(base):
            paired = g.set_index(["budget", "seed"])["accuracy"] - base
            paired = paired.dropna().to_numpy()
            if len(paired):
                row["diff"], row["diff_low"], row["diff_high"] = interval(paired)
        out.append(row)
    return pd.DataFrame(out)


def plot_label_budget(panels: dict[str, pd.DataFrame], stem) -> list:
    """One panel per summary (:func:`summarise`): accuracy (mean and 95% interval) against labels, per strategy."""
    from ..plots import plt, save_figure

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    colours = {"typical": "C0", "uncertain": "C1", "auto": "C1", "diverse": "C2", "random": "0.4"}
    for ax, (title, s) in zip(axes[0], panels.items()):
        for strategy, g in s.groupby("strategy", sort=False):
            g = g.sort_values("n_labels")
            c = colours.get(strategy, None)
            ax.plot(g["n_labels"], g["mean"], marker="o", ms=3, color=c, label=strategy,
                    ls="--" if strategy == "random" else "-")
            ax.fill_between(g["n_labels"], g["low"], g["high"], color=c, alpha=0.18, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("labelled specimens")
        ax.set_ylabel("top-1 accuracy on the rest")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, stem)
