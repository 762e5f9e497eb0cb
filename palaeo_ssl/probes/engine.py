"""Runs probe fits as independent tasks, in this process or in parallel worker processes.

A :class:`Task` is one probe fitted on one or more (nested) training sets and
evaluated on one fixed test set. Tasks are independent, so they run in any
order and in parallel; results come back in task order, so the numbers do not
depend on ``n_jobs``. Every task runs with the BLAS thread pool limited to one
thread: the matrices of a probe fit are too small for threaded BLAS to pay
off (on the 2-core development machine a logistic-regression fit with two
BLAS threads was 3-15x slower, ``benchmarks/probe_speed.py``), and threaded
BLAS sums in an order that depends on the thread count, which would make the
numbers depend on the machine. Parallelism comes from running tasks in
``n_jobs`` processes instead (in this process if they cannot start).

No copy of the features: a task reads only the rows it needs (its training
set, its test set in blocks of rows) from the feature matrix, which may be a
memory-mapped store holding unlabelled rows too (``rows`` maps the labelled
images to store rows). Workers open the store's own ``features.npy``
memory-mapped; only features held in memory and not backed by a file are
written once per run to a temporary ``.npy`` for them.
"""

from __future__ import annotations

import logging
import mmap
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs

from ..embeddings import l2_normalize
from ..compute import compute_context, limit_worker_blas, usable_cpus
from ..params import ParameterError
from ..protocol import Protocol
from .classifiers import (
    REFERENCE_K,
    STANDARD_K,
    TEMPERATURE,
    KNNProbe,
    knn_proba_normalized,
    fit_quietly,
    make_probe,
    n_iterations,
    rank_labels,
    rank_votes,
    weighted_knn_scores,
)
from .metrics import ranked_split_metrics, reference_split_metrics
from .neighbours import MIN_SHARED_SIDE, candidate_votes, shared_distances_apply

log = logging.getLogger(__name__)

#: metric_mode values: how a task's predictions become metrics
REFERENCE_CV = "reference_cv"          # reference code, cross-validation (specificity over training classes)
REFERENCE_FEW_SHOT = "reference_few_shot"  # reference code, few-shot (specificity over present labels)
RANKED = "ranked"                      # this package's protocol (rankings, ties never by class index)

#: test rows predicted at once (this package's protocol), so no task holds its whole test fold
#: as features, normalised features and scores at the same time; smaller test sets go in one block
TEST_BLOCK = 1024
#: similarity entries (test rows x training rows) of one kNN block
KNN_BLOCK_ENTRIES = 2**22


@dataclass
class Task:
    """One probe, fitted on each of ``subsets`` (training indices) and tested on ``test``.

    ``keys[i]`` identifies subset i in the results (e.g. fraction, repeat, fold).
    ``keep_predictions`` keeps the test predictions of the last subset (for a confusion matrix).
    A subset equal to the one before it (fractions above a size limit) is not fitted again.
    """

    probe: str
    protocol: Protocol
    subsets: list[np.ndarray]
    keys: list[dict[str, Any]]
    test: np.ndarray
    metric_mode: str
    n_classes_eval: int
    seed: int = 0
    shots: int | None = None
    keep_predictions: bool = False
    cost: float = field(default=0.0)
    #: torch device of the standard logistic regression and kNN (None: numpy/scipy)
    device: str | None = None


def estimate_cost(probe: str, n_train: int, n_test: int, dim: int, n_classes: int) -> float:
    """Rough relative cost, used only to start the largest tasks first."""
    if probe == "logreg":
        return 50.0 * n_train * dim * n_classes
    return float(n_test) * n_train * dim + n_train * dim


def _reference_knn(task: Task, train: np.ndarray, y_train: np.ndarray, classes: np.ndarray,
                   extras: dict[str, np.ndarray]) -> np.ndarray:
    """The reference kNN's probabilities from the shared double-normalised features (and candidates)."""
    z = extras["Z"]
    k = REFERENCE_K if task.shots is None else min(REFERENCE_K, task.shots)
    k = max(1, min(k, len(train)))
    pos = np.searchsorted(classes, y_train)
    test = task.test
    if (task.metric_mode == REFERENCE_CV and "cand_idx" in extras
            and shared_distances_apply(len(test), len(train), z.shape[1])):
        proba, resolved = candidate_votes(np.asarray(extras["cand_idx"][test]), np.asarray(extras["cand_dist"][test]),
                                          train, pos, z.shape[0], len(classes), k)
        if resolved.all():
            return proba
        # the undetermined rows, padded with others to a block the blocked BLAS kernel computes
        # exactly as in the whole fold's product
        bad = np.flatnonzero(~resolved)
        block = max(len(bad), 2 * MIN_SHARED_SIDE)
        if block <= len(test) // 4 and shared_distances_apply(block, len(train), z.shape[1]):
            rows = np.union1d(bad, np.flatnonzero(resolved)[: block - len(bad)])
            sub = knn_proba_normalized(np.asarray(z[test[rows]]), np.asarray(z[train]), pos, len(classes), k)
            proba[bad] = sub[np.searchsorted(rows, bad)]
            return proba
    return knn_proba_normalized(np.asarray(z[test]), np.asarray(z[train]), pos, len(classes), k)


def take_rows(X: np.ndarray, rows: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    """Feature rows ``idx`` of the labelled images (rows ``rows[idx]`` of ``X``; ``rows`` None: ``idx``),
    read as a float32 array; only these rows are read from a memory-mapped ``X``."""
    return np.asarray(X[idx if rows is None else rows[idx]], dtype=np.float32)


def row_blocks(n_test: int, block: int) -> list[slice]:
    """Slices of ``n_test`` rows in near-equal blocks of at most about ``block`` rows (one block when smaller)."""
    n_blocks = max(1, -(-n_test // max(1, block)))
    edges = np.linspace(0, n_test, n_blocks + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def knn_block_rows(n_train: int) -> int:
    """Test rows per block of a kNN similarity product against ``n_train`` training rows."""
    return int(min(TEST_BLOCK, max(256, KNN_BLOCK_ENTRIES // max(n_train, 1))))


def _ranking(model, task: Task, X, rows, seed: int) -> np.ndarray:
    """Ranked labels of the test rows, read and scored block by block.

    Scores are row-wise, so a block's rows score as in one product; the DINO
    kNN's seeded tie-break runs once over all rows, as in :meth:`KNNProbe.rank`.
    """
    test = task.test
    if isinstance(model, KNNProbe) and model.weights == "similarity":
        parts = [model.scores(take_rows(X, rows, test[b])) for b in row_blocks(len(test), knn_block_rows(
            len(model._pos)))]
        votes = np.concatenate([p[0] for p in parts])
        sums = np.concatenate([p[1] for p in parts])
        return model.classes_[rank_votes(votes, sums, seed)]
    return np.concatenate([rank_labels(model, take_rows(X, rows, test[b])) for b in row_blocks(len(test), TEST_BLOCK)])


def _shared_knn_votes(task: Task, X, rows, y) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], float]:
    """DINO kNN votes of each nested training subset of one fold from one similarity product
    (test rows in blocks against the union of the subsets). Returns [(classes, votes, sums)], seconds."""
    t0 = time.perf_counter()
    full = np.unique(np.concatenate(task.subsets))
    z_full = l2_normalize(take_rows(X, rows, full))
    per_subset = []
    for train in task.subsets:
        classes = np.unique(y[train])
        per_subset.append((np.searchsorted(full, train), np.searchsorted(classes, y[train]), classes, [], []))
    for b in row_blocks(len(task.test), knn_block_rows(len(full))):
        sim = l2_normalize(take_rows(X, rows, task.test[b])) @ z_full.T
        for cols, pos, classes, votes, sums in per_subset:
            v, s = weighted_knn_scores(sim[:, cols], pos, len(classes), STANDARD_K, TEMPERATURE)
            votes.append(v)
            sums.append(s)
    out = [(classes, np.concatenate(votes), np.concatenate(sums)) for _, _, classes, votes, sums in per_subset]
    return out, time.perf_counter() - t0


def run_task(task: Task, X: np.ndarray, y: np.ndarray, extras: dict[str, np.ndarray] | None = None,
             rows: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Fit and evaluate ``task`` on features ``X`` and labels ``y`` (N,). Returns one dict per subset.

    ``X`` is (N, D), or (M, D) with M >= N when ``rows`` (N,) says which of
    its rows the N labelled images are (e.g. a memory-mapped store that also
    holds unlabelled images); only the rows the task uses are read.
    ``extras`` may hold ``Z`` (the double-normalised features) and the
    candidate lists ``cand_idx``/``cand_dist`` of :mod:`.neighbours`, which the
    reference kNN uses instead of normalising and multiplying per task.
    """
    extras = extras or {}
    out = []
    y_test = y[task.test]
    reference_knn = task.probe == "knn" and task.protocol.knn == "reference" and "Z" in extras
    # this package's protocol reads the test rows block by block; the reference reads them at once
    x_test = None if reference_knn or task.metric_mode == RANKED else take_rows(X, rows, task.test)
    shared = None
    if task.probe == "knn" and task.protocol.knn == "dino" and len(task.subsets) > 1 and task.device is None:
        # nested subsets of one training fold: one similarity product for all of them
        shared = _shared_knn_votes(task, X, rows, y)
    previous = None
    for i, (key, train) in enumerate(zip(task.keys, task.subsets)):
        keep = task.keep_predictions and i == len(task.subsets) - 1  # predictions of the last subset only
        if previous is not None and np.array_equal(previous[0], train):
            # the same training images as the subset before (fractions above the size limit): same numbers
            row = {k: v for k, v in previous[1].items() if k not in ("_y_true", "_pred")}
            row.update(key)
            row.update({"_time_fit": 0.0, "_time_predict": 0.0, "_time_metrics": 0.0})
            if keep:
                row["_y_true"], row["_pred"] = y_test, previous[2]
            out.append(row)
            continue
        t0 = time.perf_counter()
        y_train = y[train]
        classes = np.unique(y_train)
        n_iter = None
        if shared is not None:
            _, votes, sums = shared[0][i]
            t_sim = shared[1]
            ranking = classes[rank_votes(votes, sums, task.seed)]
            t_fit = t_sim / len(task.subsets)
            t_pred = time.perf_counter() - t0
            proba = None
        elif reference_knn:
            proba = _reference_knn(task, train, y_train, classes, extras)
            t_fit = 0.0
            t_pred = time.perf_counter() - t0
        else:
            model = make_probe(task.probe, task.protocol, y_train, seed=task.seed, shots=task.shots,
                               device=task.device)
            fit_quietly(model, take_rows(X, rows, train), y_train)
            n_iter = n_iterations(model)
            t_fit = time.perf_counter() - t0
            t1 = time.perf_counter()
            if task.metric_mode == RANKED:
                ranking = _ranking(model, task, X, rows, task.seed)
                proba = None
            else:
                proba = model.predict_proba(x_test)
            t_pred = time.perf_counter() - t1
        t2 = time.perf_counter()
        if task.metric_mode == RANKED:
            metrics, y_pred = ranked_split_metrics(y_test, ranking, task.n_classes_eval)
        else:
            spec = "classes" if task.metric_mode == REFERENCE_CV else "present"
            metrics, y_pred = reference_split_metrics(y_test, proba, classes, specificity=spec)
        t_metrics = time.perf_counter() - t2
        row = dict(key)
        row.update(metrics)
        row.update({
            "probe": task.probe,
            "n_train": int(len(train)),
            "n_test": int(len(task.test)),
            "n_classes_trained": int(len(classes)),
            "classes_trained": classes,
            "n_iter": n_iter,
            "_time_fit": t_fit,
            "_time_predict": t_pred,
            "_time_metrics": t_metrics,
        })
        if keep:
            row["_y_true"] = y_test
            row["_pred"] = y_pred
        out.append(row)
        previous = (train, row, y_pred)
    return out


def file_backing(X: np.ndarray) -> dict[str, Any] | None:
    """Where ``X`` lies on disk, when it is a whole memory-mapped file (e.g. a store's ``features.npy``
    opened with ``mmap_mode="r"``): ``{"filename", "dtype", "shape", "offset"}``; None otherwise."""
    if not isinstance(X, np.ndarray) or not X.flags.c_contiguous:
        return None
    base = X
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    if base is None or not getattr(base, "filename", None) or not isinstance(base.base, mmap.mmap):
        return None
    if base.shape != X.shape or base.dtype != X.dtype or base.ctypes.data != X.ctypes.data:
        return None  # a part of a mapped file: it is not where X starts
    return {"filename": str(base.filename), "dtype": X.dtype.str, "shape": tuple(X.shape), "offset": int(base.offset)}


def _open_features(source: dict[str, Any]) -> np.ndarray:
    if "npy" in source:
        return np.load(source["npy"], mmap_mode="r")
    return np.memmap(source["filename"], dtype=np.dtype(source["dtype"]), mode="r", offset=source["offset"],
                     shape=source["shape"])


def _run_from_files(x_source: dict[str, Any], y_path: str, rows_path: str | None, task: Task,
                    extra_paths: dict[str, str] | None = None) -> list[dict[str, Any]]:
    # memory-mapped per task (opening is cheap), so no worker keeps a run's data once it is done
    extras = {k: np.load(p, mmap_mode="r") for k, p in (extra_paths or {}).items()}
    limit_worker_blas()
    rows = None if rows_path is None else np.load(rows_path)
    return run_task(task, _open_features(x_source), np.load(y_path), extras, rows=rows)


def resolve_n_jobs(n_jobs: int | None) -> int:
    """``None`` or -1: every CPU this process may use; otherwise at least 1 (joblib's meaning; 0 is an error)."""
    if n_jobs == 0:
        raise ParameterError("n_jobs", "{name} (worker processes) must be -1 for every CPU or a positive count, not 0")
    if n_jobs is None or n_jobs == -1:
        return usable_cpus()
    return max(1, effective_n_jobs(n_jobs))


def execute(tasks: list[Task], X: np.ndarray, y: np.ndarray, n_jobs: int | None = -1,
            progress: bool = False, desc: str = "probes",
            extras: dict[str, np.ndarray] | None = None, rows: np.ndarray | None = None
            ) -> list[list[dict[str, Any]]]:
    """Run ``tasks`` and return their results in task order.

    ``n_jobs`` worker processes (-1: all CPUs); 1 runs in this process. Each
    task uses one BLAS thread. The largest tasks are started first. ``rows``:
    as in :func:`run_task`. Workers open a memory-mapped ``X`` from its own
    file; ``X`` held in memory and ``extras`` (arrays shared by all tasks)
    reach them as a temporary memory-mapped ``.npy``.
    """
    extras = extras or {}
    if not tasks:
        return []
    n_jobs = min(resolve_n_jobs(n_jobs), len(tasks))
    if any(t.device is not None and str(t.device).startswith("cuda") for t in tasks):
        n_jobs = 1  # one process drives the GPU; worker processes would each hold a CUDA context
    bar = _progress(len(tasks), desc, progress)
    try:
        if n_jobs == 1:
            results = []
            with compute_context(blas=1):
                for t in tasks:
                    results.append(run_task(t, X, y, extras, rows=rows))
                    bar.update(1)
            return results
        try:
            return _execute_parallel(tasks, X, y, n_jobs, bar, extras, rows)
        except (OSError, ImportError, RuntimeError) as exc:  # e.g. no worker processes allowed here
            log.warning("probe workers could not run (%s); continuing in this process", exc)
            bar.close()
            return execute(tasks, X, y, n_jobs=1, progress=progress, desc=desc, extras=extras, rows=rows)
    finally:
        bar.close()


def _execute_parallel(tasks, X, y, n_jobs, bar, extras, rows=None):
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i].cost)
    results: list[Any] = [None] * len(tasks)
    with tempfile.TemporaryDirectory(prefix="palaeo-ssl-probes-") as tmp:
        x_source = file_backing(X)
        if x_source is None:  # features in memory only: one copy on disk for the workers
            x_source = {"npy": str(Path(tmp) / "X.npy")}
            np.save(x_source["npy"], np.ascontiguousarray(X))
        y_path = str(Path(tmp) / "y.npy")
        np.save(y_path, np.asarray(y))
        rows_path = None
        if rows is not None:
            rows_path = str(Path(tmp) / "rows.npy")
            np.save(rows_path, np.asarray(rows))
        extra_paths = {}
        for name, arr in extras.items():
            extra_paths[name] = str(Path(tmp) / f"{name}.npy")
            np.save(extra_paths[name], np.ascontiguousarray(arr))
        gen = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator", batch_size=1,
                       pre_dispatch="2*n_jobs")(delayed(_run_from_files)(x_source, y_path, rows_path, tasks[i],
                                                                         extra_paths)
                                                for i in order)
        for i, res in zip(order, gen):
            results[i] = res
            bar.update(1)
    return results


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="fit", leave=False, disable=not enabled)


def summed_times(results: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Seconds spent per probe and stage, summed over tasks (CPU time of the workers, not wall time)."""
    out: dict[str, float] = {}
    for rows in results:
        for r in rows:
            p = r["probe"]
            out[f"{p} fit"] = out.get(f"{p} fit", 0.0) + r["_time_fit"]
            out[f"{p} predict"] = out.get(f"{p} predict", 0.0) + r["_time_predict"]
            out["metrics"] = out.get("metrics", 0.0) + r["_time_metrics"]
    return out
