"""Few-shot classification: k labelled images per class, many seeded episodes.

Every probe is evaluated on the same episodes (the reference code drew new,
unseeded episodes for each classifier). Episode e at k shots is drawn with
``numpy.random.default_rng([seed, k, e])``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..params import N_JOBS, POSITIVE_INT, SEED, Sequence as SequenceOf, validate_params
from ..protocol import DEFAULT_PROTOCOL, Protocol, ProtocolLike, get_protocol
from .classifiers import DISPLAY_NAMES, parse_probes
from .engine import RANKED, REFERENCE_FEW_SHOT, Task, estimate_cost, execute, summed_times
from .metrics import ALL_METRICS, METRICS, majority_baseline, nan_mean_std, t_interval
from .protocols import LabelledData, paired_differences, prepare, reference_knn_extras
from .splits import SHOTS, episode_rng, reference_episode, standard_episode

#: Order of the classifiers in the few-shot table (the reference lists kNN first).
FEW_SHOT_ORDER = ("knn", "logreg", "centroid")
N_QUERY = 15
#: constraints of the few-shot parameters (shared with the probe stage's config)
FEW_SHOT_PARAMS = {"shots": SequenceOf(POSITIVE_INT), "episodes": POSITIVE_INT, "seed": SEED,
                   "n_query": POSITIVE_INT, "n_jobs": [N_JOBS, None]}


@dataclass
class FewShotResult:
    """Everything one few-shot run produced.

    table : one row per shots value and classifier (``few_shot_cv_results.csv``).
    episodes : one row per episode and classifier (all metrics and sizes).
    support : {(shots, episode): support indices into the labelled images}.
    skipped : shots values or classes left out, and why.
    paired : paired differences between classifiers on the same episodes.
    """

    protocol: Protocol
    table: pd.DataFrame
    episodes: pd.DataFrame
    support: dict[tuple[int, int], np.ndarray]
    class_names: list[str]
    baseline: float
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)
    paired: pd.DataFrame | None = None
    timings: dict[str, float] = field(default_factory=dict)


def few_shot(emb, protocol: ProtocolLike = DEFAULT_PROTOCOL, shots: Sequence[int] = SHOTS, episodes: int = 50, seed: int = 0,
             probes: str | Sequence[str] | None = None, **options) -> pd.DataFrame:
    """Few-shot accuracy: the summary table (see :func:`run_few_shot`)."""
    return run_few_shot(emb, protocol=protocol, shots=shots, episodes=episodes, seed=seed, probes=probes,
                        **options).table


@validate_params(FEW_SHOT_PARAMS)
def run_few_shot(emb, protocol: ProtocolLike = DEFAULT_PROTOCOL, shots: Sequence[int] = SHOTS, episodes: int = 50, seed: int = 0,
                 probes: str | Sequence[str] | None = None, n_query: int = N_QUERY, n_jobs: int | None = -1,
                 progress: bool = False) -> FewShotResult:
    """Few-shot classification with ``shots`` labelled images per class, ``episodes`` episodes each.

    ``paper`` (the reference): support ``min(k, n_c - 1)`` images of every
    class, query all remaining images; kNN uses ``min(5, k)`` neighbours with
    uniform votes; metrics as the reference (top-k over the training classes'
    columns, specificity over the labels present); mean and std (ddof=0, as
    the reference's ``np.nanstd``) over episodes; columns as the reference's
    ``few_shot_cv_results.csv``.

    ``standard``: for each k, only classes with at least k + 1 images take
    part (the others are listed in ``excluded_classes``); support k images and
    a balanced query of up to ``n_query`` other images per class; mean, std
    (ddof=1) and a 95% t interval over episodes; paired comparisons per episode.
    """
    protocol = get_protocol(protocol)
    probes = parse_probes(probes, protocol)
    probes = tuple(p for p in FEW_SHOT_ORDER if p in probes)
    shots = tuple(int(k) for k in shots)
    data = prepare(emb)
    t0 = time.perf_counter()
    tasks, support, skipped, meta = _tasks(data, protocol, probes, shots, episodes, seed, n_query)
    t_split = time.perf_counter() - t0
    t1 = time.perf_counter()
    extras = (reference_knn_extras(data.X, n_jobs, candidates=False)
              if protocol.knn == "reference" and "knn" in probes else None)
    results = execute(tasks, data.features, data.y, n_jobs=n_jobs, progress=progress,
                      desc=f"{protocol.name} few-shot", extras=extras, rows=data.rows)
    t_fit = time.perf_counter() - t1
    t2 = time.perf_counter()
    rows = []
    for res in results:
        for r in res:
            row = {"few_shot_values": r["shots"], "episode": r["episode"], "classifier": DISPLAY_NAMES[r["probe"]]}
            row.update({m: r[m] for m in ALL_METRICS})
            row.update({"n_support": r["n_train"], "n_query": r["n_test"], "n_classes_trained": r["n_classes_trained"],
                        "n_iter": r["n_iter"]})
            rows.append(row)
    ep = pd.DataFrame(rows)
    names = [DISPLAY_NAMES[p] for p in probes]
    if protocol.reference_aggregation:
        table = aggregate_reference_few_shot(ep, shots, names)
        paired = None
    else:
        table = aggregate_standard_few_shot(ep, shots, names, meta)
        paired = paired_differences(ep, names, "few_shot_values", corrected=False, pair_keys=("episode",))
    timings = {"episodes": t_split, "fits (wall)": t_fit, "aggregation": time.perf_counter() - t2}
    timings.update({f"{k} (summed)": v for k, v in summed_times(results).items()})
    return FewShotResult(protocol=protocol, table=table, episodes=ep, support=support, class_names=data.class_names,
                         baseline=majority_baseline(data.y), skipped=skipped, paired=paired, timings=timings)


def _tasks(data: LabelledData, protocol: Protocol, probes, shots, episodes, seed, n_query):
    y = data.y
    d, c = data.dim, data.n_classes
    counts = np.bincount(y, minlength=c)
    tasks: list[Task] = []
    support: dict[tuple[int, int], np.ndarray] = {}
    skipped = []
    meta: dict[int, dict] = {}
    for k in shots:
        if protocol.few_shot_query == "rest":
            classes = np.arange(c)
        else:
            classes = np.flatnonzero(counts >= k + 1)
            excluded = np.flatnonzero(counts < k + 1)
            meta[k] = {"n_classes_used": len(classes),
                       "excluded_classes": ";".join(data.class_names[i] for i in excluded)}
            if len(excluded):
                skipped.append({"few_shot_values": k, "classes": meta[k]["excluded_classes"],
                                "reason": f"fewer than {k + 1} images"})
            if len(classes) < 2:
                skipped.append({"few_shot_values": k, "classes": "", "reason": "fewer than 2 classes take part"})
                continue
        for e in range(episodes):
            rng = episode_rng(seed, k, e)
            if protocol.few_shot_query == "rest":
                sup, query = reference_episode(y, k, rng)
                mode, n_eval = REFERENCE_FEW_SHOT, c
            else:
                sup, query = standard_episode(y, k, n_query, rng, classes)
                mode, n_eval = RANKED, len(classes)
            support[(k, e)] = sup
            for p in probes:
                tasks.append(Task(probe=p, protocol=protocol, subsets=[sup],
                                  keys=[{"shots": k, "episode": e}], test=query, metric_mode=mode,
                                  n_classes_eval=n_eval, seed=seed, shots=k,
                                  cost=estimate_cost(p, len(sup), len(query), d, c)))
    return tasks, support, pd.DataFrame(skipped, columns=["few_shot_values", "classes", "reason"]), meta


def aggregate_reference_few_shot(ep: pd.DataFrame, shots: Sequence[int], names: Sequence[str]) -> pd.DataFrame:
    """The reference's few-shot summary: nanmean and nanstd (ddof=0) over episodes, its column names."""
    rows = []
    for k in shots:
        for name in names:
            g = ep[(ep["few_shot_values"] == k) & (ep["classifier"] == name)] if len(ep) else ep
            row = {"few_shot_values": k, "classifier": name, "n_repeats_successful": int(len(g))}
            for m in METRICS:
                mean, std = nan_mean_std(g[m] if len(g) else [], ddof=0)
                if m.startswith("top"):
                    row[f"mean_{m}"], row[f"std_{m}"] = mean, std
                else:
                    row[m], row[f"{m}_std"] = mean, std
            rows.append(row)
    return pd.DataFrame(rows, columns=reference_few_shot_columns())


def reference_few_shot_columns() -> list[str]:
    """Columns of the reference's ``few_shot_cv_results.csv``, in order."""
    cols = ["few_shot_values", "classifier", "n_repeats_successful"]
    for m in METRICS:
        cols += [f"mean_{m}", f"std_{m}"] if m.startswith("top") else [m, f"{m}_std"]
    return cols


def aggregate_standard_few_shot(ep: pd.DataFrame, shots: Sequence[int], names: Sequence[str],
                                meta: dict[int, dict]) -> pd.DataFrame:
    """Standard few-shot summary: the reference's columns (std with ddof=1) plus kappa, 95% t intervals and coverage."""
    rows = []
    for k in shots:
        if k not in meta:
            continue
        for name in names:
            g = ep[(ep["few_shot_values"] == k) & (ep["classifier"] == name)]
            if g.empty:
                continue
            row = {"few_shot_values": k, "classifier": name, "n_repeats_successful": int(len(g))}
            cis = {}
            for m in ALL_METRICS:
                mean, std = nan_mean_std(g[m], ddof=1)
                if m.startswith("top"):
                    row[f"mean_{m}"], row[f"std_{m}"] = mean, std
                else:
                    row[m], row[f"{m}_std"] = mean, std
                cis[f"ci_low_{m}"], cis[f"ci_high_{m}"] = t_interval(g[m].to_numpy(dtype=np.float64))
            row.update(cis)
            row["n_classes_used"] = meta[k]["n_classes_used"]
            row["mean_n_query"] = float(g["n_query"].mean())
            row["excluded_classes"] = meta[k]["excluded_classes"]
            rows.append(row)
    cols = reference_few_shot_columns() + ["cohen_kappa", "cohen_kappa_std"]
    cols += [f"ci_{b}_{m}" for m in ALL_METRICS for b in ("low", "high")]
    cols += ["n_classes_used", "mean_n_query", "excluded_classes"]
    return pd.DataFrame(rows, columns=cols)
