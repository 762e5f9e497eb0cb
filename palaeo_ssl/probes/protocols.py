"""Cross-validated classification: the reference protocol and this package's standard one.

``paper`` reproduces Rodgers (2025) exactly (see :func:`cross_validate`):
same subsamples, folds, classifiers, metrics and aggregation, so a run can be
diffed against the published ``classification_cv_results.csv``. ``standard``
is the protocol a reviewer expects: repeated stratified (grouped) K-fold, a
learning curve on nested subsets of each training fold with the test fold
fixed, no silently dropped folds, intervals, and paired comparisons.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..embeddings import Embeddings, load_embeddings
from ..errors import UserError
from ..params import FRACTION, N_JOBS, POSITIVE_INT, SEED, Interval, Kind, Options, Sequence as SequenceOf, \
    validate_params
from ..protocol import DEFAULT_PROTOCOL, Protocol, ProtocolLike, get_protocol
from ..params import ParameterError
from .classifiers import DISPLAY_NAMES, parse_probes, resolve_device
from .engine import REFERENCE_CV, RANKED, Task, estimate_cost, execute, resolve_n_jobs, summed_times, take_rows
from .neighbours import candidate_lists, candidates_apply, double_normalize
from .metrics import ALL_METRICS, METRICS, confusion_counts, majority_baseline, per_class_scores, summarise, \
    t_interval, t_test_pvalue
from .splits import (
    FRACTIONS,
    fraction_is_feasible,
    reference_folds,
    reference_subsample,
    standard_splits,
)


#: constraints of the cross-validation parameters (shared with the probe stage's config)
CV_PARAMS = {
    "seed": SEED,
    "fractions": SequenceOf(FRACTION),
    "n_repeats": [POSITIVE_INT, None],
    "n_splits": [Interval(int, 2, None), None],
    "n_jobs": [N_JOBS, None],
}


# ---------------------------------------------------------------------- data
@dataclass
class LabelledData:
    """The labelled images of an :class:`Embeddings`, with labels renumbered 0..C-1, without copying features.

    features : (M, D) the embeddings' own features (memory-mapped for a store), every image;
    rows : (N,) which rows of ``features`` are the N labelled images (None: all M, in order);
    y : (N,) int64; class_names : C names (classes with at least one labelled
    image, in the store's order); groups : (N,) specimen ids or None.
    :meth:`take` reads labelled rows; :attr:`X` is the (N, D) matrix itself.
    """

    features: np.ndarray
    rows: np.ndarray | None
    y: np.ndarray
    class_names: list[str]
    groups: np.ndarray | None
    paths: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def take(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), D) float32 features of labelled images ``idx``; reads only those rows."""
        return take_rows(self.features, self.rows, np.asarray(idx))

    @property
    def X(self) -> np.ndarray:
        """(N, D) float32 features of the labelled images: ``features`` itself when every image is
        labelled, else a copy of the labelled rows (the probes' protocols read rows with :meth:`take`)."""
        if self.rows is None:
            return np.asarray(self.features, dtype=np.float32)
        return self.take(np.arange(len(self.y)))


def prepare(emb: Embeddings | Any, min_classes: int = 2) -> LabelledData:
    """Labelled images of ``emb`` (anything :func:`load_embeddings` accepts) as arrays."""
    emb = load_embeddings(emb)
    if not emb.has_labels:
        raise UserError("these embeddings have no labels; probes need images sorted into class folders "
                        "or a manifest with a label column")
    labelled = emb.labels >= 0
    rows = None if labelled.all() else np.flatnonzero(labelled)  # the features stay where they are
    pick = (lambda seq: list(seq)) if rows is None else (lambda seq: [seq[i] for i in rows])
    present, y = np.unique(emb.labels if rows is None else emb.labels[rows], return_inverse=True)
    if len(present) < min_classes:
        raise UserError(f"only {len(present)} class has labelled images; probes need at least {min_classes}")
    groups = None
    specimens = None if emb.specimens is None else pick(emb.specimens)
    if specimens is not None and any(s not in ("", "nan", "None") for s in specimens):
        # an image without a specimen id is a specimen of its own
        groups = np.asarray([s if s not in ("", "nan", "None") else f"\0image {i}"
                             for i, s in enumerate(specimens)], dtype=object)
    return LabelledData(features=emb.features, rows=rows, y=y.astype(np.int64),
                        class_names=[emb.class_names[i] for i in present], groups=groups, paths=pick(emb.paths))


def reference_knn_extras(X: np.ndarray, n_jobs: int | None, candidates: bool) -> dict[str, np.ndarray]:
    """Arrays shared by the reference kNN tasks: the double-normalised features and, for
    cross-validation on sets large enough, every image's nearest-neighbour candidates
    (see :mod:`palaeo_ssl.probes.neighbours`).

    These are (N, D) arrays beside the features, unlike the standard protocol's probes, which
    read rows from the store: the reference's numbers come from one whole-matrix normalisation
    and blocked products that the candidate lists reproduce bit for bit, and the paper protocol
    exists to reproduce the reference's published tables, not to scale."""
    z = double_normalize(X)
    extras = {"Z": z}
    if candidates and candidates_apply(z.shape[0], z.shape[1]):
        extras["cand_idx"], extras["cand_dist"] = candidate_lists(z, n_jobs=resolve_n_jobs(n_jobs))
    return extras


# ---------------------------------------------------------------------- results
@dataclass
class CVResult:
    """Everything one cross-validation run produced.

    table : the summary (one row per fraction and classifier), as written to
        ``classification_cv_results.csv``.
    folds : one row per evaluated split and classifier (all metrics, sizes,
        classes trained on, logistic-regression iterations).
    confusion : {classifier name: (C, C) int64 counts}, summed over the test
        folds of repeat 0 at the largest fraction (rows true, columns predicted).
    per_class : precision/recall/F1/support per classifier and class from ``confusion``.
    paired : paired differences between classifiers on identical splits (standard only).
    skipped : what was skipped and why (fractions, repeats, folds).
    timings : wall seconds of the stages and summed worker seconds per probe.
    subsample : the training-size limit and how many fits it cut (standard only).
    """

    protocol: Protocol
    table: pd.DataFrame
    folds: pd.DataFrame
    confusion: dict[str, np.ndarray]
    per_class: pd.DataFrame
    class_names: list[str]
    baseline: float
    paired: pd.DataFrame | None = None
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)
    timings: dict[str, float] = field(default_factory=dict)
    #: standard protocol: the training-size limit and what it did (None for paper)
    subsample: dict | None = None
    #: where the standard logistic regression and kNN ran: "numpy" or a torch device
    device: str = "numpy"


def _confusions(results: list[list[dict]], n_classes: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    labels = np.arange(n_classes)
    for rows in results:
        for r in rows:
            if "_pred" not in r:
                continue
            name = DISPLAY_NAMES[r["probe"]]
            cm = out.setdefault(name, np.zeros((n_classes, n_classes), dtype=np.int64))
            cm += confusion_counts(r["_y_true"], r["_pred"], labels)
    return out


def per_class_table(confusion: dict[str, np.ndarray], class_names: Sequence[str]) -> pd.DataFrame:
    """Per-class precision, recall, F1, support and predicted count for each classifier."""
    frames = []
    for name, cm in confusion.items():
        s = per_class_scores(cm)
        frames.append(pd.DataFrame({
            "classifier": name,
            "class_name": list(class_names),
            "precision": s["precision"],
            "recall": s["recall"],
            "f1": s["f1"],
            "support": s["support"],
            "n_predicted": s["n_predicted"],
        }))
    cols = ["classifier", "class_name", "precision", "recall", "f1", "support", "n_predicted"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def confusion_table(confusion: dict[str, np.ndarray], class_names: Sequence[str]) -> pd.DataFrame:
    """Long table: classifier, true_class, predicted_class, count, row_fraction (count / row total)."""
    frames = []
    names = np.asarray(class_names, dtype=object)
    n = len(names)
    for name, cm in confusion.items():
        rows = cm.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(rows > 0, cm / np.maximum(rows, 1), 0.0)
        frames.append(pd.DataFrame({
            "classifier": name,
            "true_class": np.repeat(names, n),
            "predicted_class": np.tile(names, n),
            "count": cm.ravel(),
            "row_fraction": frac.ravel(),
        }))
    cols = ["classifier", "true_class", "predicted_class", "count", "row_fraction"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def _fold_frame(results: list[list[dict]], data: LabelledData, extra_keys: Sequence[str]) -> pd.DataFrame:
    rows = []
    for res in results:
        for r in res:
            missing = np.setdiff1d(np.arange(data.n_classes), r["classes_trained"])
            row = {k: r[k] for k in extra_keys}
            row["classifier"] = DISPLAY_NAMES[r["probe"]]
            row.update({m: r[m] for m in ALL_METRICS})
            row.update({
                "n_train": r["n_train"],
                "n_test": r["n_test"],
                "n_classes_trained": r["n_classes_trained"],
                "missing_classes": ";".join(data.class_names[i] for i in missing),
                "n_iter": r["n_iter"],
            })
            rows.append(row)
    return pd.DataFrame(rows)



# ---------------------------------------------------------------------- public API
def cross_validate(emb, protocol: ProtocolLike = DEFAULT_PROTOCOL, probes: str | Sequence[str] | None = None, seed: int = 0,
                   **options) -> pd.DataFrame:
    """Cross-validated probe accuracy at several data fractions: the summary table.

    Parameters
    ----------
    emb : :class:`Embeddings` or anything :func:`load_embeddings` accepts; only labelled images are used.
    protocol : ``"paper"`` (exactly Rodgers 2025) or ``"standard"``.
    probes : ``"logreg,knn,centroid"`` or a list (default: logreg and knn for
        paper, all three for standard).
    seed : paper: repeat r uses ``random_state = 42 + seed + r`` (seed 0 is the
        reference); standard: repeat r uses ``seed + r``.
    options : ``fractions``, ``n_repeats``, ``n_splits``, ``n_jobs``, ``progress``
        (see :func:`run_cross_validation`; repeats and folds default to the protocol's).

    Returns the summary :class:`pandas.DataFrame`; :func:`run_cross_validation`
    returns it with the fold-level results, confusion matrices and timings.
    """
    return run_cross_validation(emb, protocol=protocol, probes=probes, seed=seed, **options).table


@validate_params({**CV_PARAMS, "max_train": [POSITIVE_INT, Options(["protocol"]), None],
                  "device": [Kind((str,), "a device name ('auto', 'cpu', 'cuda')"), None]})
def run_cross_validation(emb, protocol: ProtocolLike = DEFAULT_PROTOCOL, probes: str | Sequence[str] | None = None,
                         seed: int = 0, fractions: Sequence[float] = FRACTIONS, n_repeats: int | None = None,
                         n_splits: int | None = None, n_jobs: int | None = -1, progress: bool = False,
                         max_train: int | None | str = "protocol", device: str | None = "auto") -> CVResult:
    """Cross-validation with everything it produced (:class:`CVResult`).

    ``paper`` (for each fraction f and repeat r, ``rs = 42 + seed + r``): a
    stratified subsample of fraction f (``train_test_split``; all images at
    f = 1; fractions whose subsample would hold fewer images than classes are
    skipped), then ``StratifiedKFold(n_splits, shuffle=True, random_state=rs)``
    if every class has ``n_splits`` images, else ``StratifiedShuffleSplit`` or
    ``ShuffleSplit`` (5 splits, 20% test); a fold whose training part lacks a
    class is skipped and counted. Metrics: mean and std (ddof=1) over the
    folds pooled across repeats, ``n_folds_used``; columns and classifier
    names as the reference's ``classification_cv_results.csv``. Default 10 repeats.

    ``standard``: ``n_repeats`` (default 5) x ``n_splits``-fold stratified CV
    (``StratifiedGroupKFold`` when the embeddings have specimen ids); per fold
    the test fold is fixed and the probes train on nested stratified subsets
    of the training fold (``fractions``). No split is dropped: rows say how
    many classes the probe was trained on and which were missing. Mean over
    all splits, std over the per-repeat means, and a 95% corrected resampled
    t interval (Nadeau & Bengio 2003) over all splits; ``paired`` compares the
    probes on identical splits. Past ``max_train`` training images (default:
    the protocol's ``max_train_images``, 10,000; None: no limit) the probes learn
    from a seeded stratified subsample of that size; the tables say so
    (``n_train_available`` in the folds, ``mean_n_train_available`` and
    ``max_train_images`` in the summary, the caption, ``CVResult.subsample``).
    ``device``: ``"auto"`` runs the tuned logistic regression and the kNN on a
    CUDA GPU when torch sees one, else in numpy; a torch device string
    (``"cuda"``, ``"cpu"``) forces the torch code there; None forces numpy.
    """
    protocol = get_protocol(protocol)
    device = resolve_device(device)
    if max_train == "protocol":
        max_train = protocol.max_train_images
    probes = parse_probes(probes, protocol)
    data = prepare(emb)
    fractions = tuple(sorted(float(f) for f in fractions))
    n_repeats = n_repeats or protocol.cv_repeats  # None: the protocol's (0 is refused above)
    n_splits = n_splits or protocol.cv_folds
    t0 = time.perf_counter()
    if protocol.reference_splits:
        if max_train is not None:
            raise ParameterError("max_train", f"the {protocol.name} protocol uses every training image as the "
                                              "reference does; {name} applies to the standard protocol only")
        tasks, skipped = _paper_tasks(data, protocol, probes, seed, fractions, n_repeats, n_splits)
    else:
        tasks, skipped = _standard_tasks(data, protocol, probes, seed, fractions, n_repeats, n_splits,
                                         max_train=max_train, device=device)
    t_split = time.perf_counter() - t0
    t1 = time.perf_counter()
    # the reference kNN's shared arrays (double-normalised Z, candidate lists) are computed once for all
    # tasks, as in the reference's arithmetic; the paper protocol is the reference, not a large-scale path
    extras = (reference_knn_extras(data.X, n_jobs, candidates=True)
              if protocol.knn == "reference" and "knn" in probes else None)
    t_knn = time.perf_counter() - t1
    t1 = time.perf_counter()
    results = execute(tasks, data.features, data.y, n_jobs=n_jobs, progress=progress,
                      desc=f"{protocol.name} cross-validation", extras=extras, rows=data.rows)
    t_fit = time.perf_counter() - t1
    t2 = time.perf_counter()
    keys = ["train_fraction", "repeat", "fold"] + ([] if protocol.reference_splits else ["n_train_available"])
    folds = _fold_frame(results, data, keys)
    subsample = None
    if protocol.reference_aggregation:
        table = aggregate_reference_cv(folds)
        paired = None
    else:
        table = aggregate_standard_cv(folds, data.n_classes, [DISPLAY_NAMES[p] for p in probes])
        table["max_train_images"] = max_train
        paired = paired_differences(folds, [DISPLAY_NAMES[p] for p in probes], "train_fraction", corrected=True)
        subsample, protocol = _subsample_record(folds, max_train, protocol)
    confusion = _confusions(results, data.n_classes)
    timings = {"splits": t_split, "knn candidates": t_knn, "fits (wall)": t_fit,
               "aggregation": time.perf_counter() - t2}
    timings.update({f"{k} (summed)": v for k, v in summed_times(results).items()})
    return CVResult(protocol=protocol, table=table, folds=folds, confusion=confusion,
                    per_class=per_class_table(confusion, data.class_names), class_names=data.class_names,
                    baseline=majority_baseline(data.y), paired=paired, skipped=skipped, timings=timings,
                    subsample=subsample, device=device or "numpy")


def _subsample_record(folds: pd.DataFrame, max_train: int | None, protocol: Protocol) -> tuple[dict, Protocol]:
    """What the size limit did (for the run record), and the protocol with a caption that says it."""
    cut = folds[folds["n_train"] < folds["n_train_available"]] if len(folds) else folds
    record = {"max_train_images": max_train, "n_fits_subsampled": int(len(cut)),
              "fractions_subsampled": sorted({float(f) for f in cut["train_fraction"]}) if len(cut) else [],
              "max_n_train_available": int(folds["n_train_available"].max()) if len(folds) else 0,
              "rule": "seeded stratified subsample: the first max_train_images of the training fold's nested "
                      "stratified order (test folds are never subsampled)"}
    if len(cut):
        note = (f" Above {max_train:,} training images the probes learned from a seeded stratified subsample of "
                f"{max_train:,} (up to {record['max_n_train_available']:,} available; columns mean_n_train and "
                "mean_n_train_available).")
        protocol = replace(protocol, cv_caption=protocol.cv_caption + note)
    return record, protocol


# ---------------------------------------------------------------------- paper
def _paper_tasks(data: LabelledData, protocol: Protocol, probes, seed, fractions, n_repeats, n_splits):
    y = data.y
    n, c = len(y), data.n_classes
    tasks: list[Task] = []
    skipped = []
    keep_fraction = max(fractions)
    for frac in fractions:
        if not fraction_is_feasible(n, c, frac):
            skipped.append({"train_fraction": frac, "repeat": None, "fold": None,
                            "reason": f"a {frac:g} subsample holds fewer images than the {c} classes"})
            continue
        for r in range(n_repeats):
            rs = protocol.repeat_seed_base + seed + r
            try:
                sub = reference_subsample(y, frac, rs)
            except ValueError as exc:
                skipped.append({"train_fraction": frac, "repeat": r, "fold": None,
                                "reason": f"stratified subsample impossible: {exc}"})
                continue
            for f_i, (tr, va) in enumerate(reference_folds(y[sub], rs, n_splits)):
                train, test = sub[tr], sub[va]
                present = np.unique(y[train])
                if len(present) < c:
                    missing = np.setdiff1d(np.arange(c), present)
                    skipped.append({"train_fraction": frac, "repeat": r, "fold": f_i,
                                    "reason": "training part lacks " + ";".join(data.class_names[i] for i in missing)})
                    continue
                for p in probes:
                    tasks.append(Task(
                        probe=p, protocol=protocol, subsets=[train],
                        keys=[{"train_fraction": frac, "repeat": r, "fold": f_i}], test=test,
                        metric_mode=REFERENCE_CV, n_classes_eval=c, seed=seed,
                        keep_predictions=(frac == keep_fraction and r == 0),
                        cost=estimate_cost(p, len(train), len(test), data.dim, c)))
    cols = ["train_fraction", "repeat", "fold", "reason"]
    return tasks, pd.DataFrame(skipped, columns=cols)


def aggregate_reference_cv(folds: pd.DataFrame) -> pd.DataFrame:
    """The reference's summary: groupby (fraction, classifier), count/mean/std (ddof=1) of each metric."""
    spec = {"n_folds_used": ("top1_accuracy", "count")}
    for m in METRICS:
        spec[f"mean_{m}"] = (m, "mean")
        spec[f"std_{m}"] = (m, "std")
    if folds.empty:
        return pd.DataFrame(columns=["train_fraction", "classifier", *spec])
    return folds.groupby(["train_fraction", "classifier"]).agg(**spec).reset_index()


# ---------------------------------------------------------------------- standard
def _standard_tasks(data: LabelledData, protocol: Protocol, probes, seed, fractions, n_repeats, n_splits,
                    max_train=None, device=None):
    splits = standard_splits(data.y, data.groups, n_splits, n_repeats, protocol.repeat_seed_base + seed, fractions,
                             max_train=max_train)
    d, c = data.dim, data.n_classes
    tasks: list[Task] = []
    for s in splits:
        keys = [{"train_fraction": f, "repeat": s.repeat, "fold": s.fold, "n_train_available": s.available[f]}
                for f in s.subsets]
        subsets = list(s.subsets.values())
        last = len(keys) - 1  # the largest fraction: its repeat-0 predictions make the confusion matrix
        # runs of equal subsets (fractions above the size limit), fitted once
        runs: list[list[int]] = []
        for i, sub in enumerate(subsets):
            if runs and len(subsets[runs[-1][0]]) == len(sub):  # nested: equal size means equal images
                runs[-1].append(i)
            else:
                runs.append([i])
        for p in probes:
            if p == "logreg":
                groups = runs  # one (expensive) fit per task
            elif s.repeat == 0:
                groups = [[i for r in runs[:-1] for i in r], runs[-1]]
            else:
                groups = [list(range(len(keys)))]  # nested subsets share one similarity product
            for g in groups:
                if not g:
                    continue
                n_train = max(len(subsets[i]) for i in g)
                tasks.append(Task(
                    probe=p, protocol=protocol, subsets=[subsets[i] for i in g], keys=[keys[i] for i in g],
                    test=s.test, metric_mode=RANKED, n_classes_eval=c, seed=seed,
                    keep_predictions=(s.repeat == 0 and last in g), device=device,
                    cost=estimate_cost(p, n_train, len(s.test), d, c) * (10 if p == "logreg" else 1)))
    return tasks, pd.DataFrame(columns=["train_fraction", "repeat", "fold", "reason"])


def aggregate_standard_cv(folds: pd.DataFrame, n_classes: int, order: Sequence[str]) -> pd.DataFrame:
    """Summary of the standard protocol: reference column names plus intervals and class coverage."""
    f = folds.copy()
    f["_correction"] = f["n_test"] / f["n_train"]
    summary = summarise(f, ["train_fraction", "classifier"], ALL_METRICS, repeat_col="repeat",
                        correction_col="_correction")
    extra = f.groupby(["train_fraction", "classifier"], sort=False).agg(
        n_folds_used=("top1_accuracy", "size"),
        n_repeats=("repeat", "nunique"),
        mean_n_train=("n_train", "mean"),
        min_classes_trained=("n_classes_trained", "min"),
        n_folds_missing_classes=("n_classes_trained", lambda s: int((s < n_classes).sum())),
        missing_classes=("missing_classes", lambda s: ";".join(sorted({c for v in s for c in v.split(";") if c}))),
    ).reset_index()
    out = summary.merge(extra, on=["train_fraction", "classifier"])
    out["n_classes"] = n_classes
    rank = {name: i for i, name in enumerate(order)}
    out = out.sort_values(["train_fraction", "classifier"], key=lambda s: s.map(rank) if s.name == "classifier" else s)
    ref_cols = ["train_fraction", "classifier", "n_folds_used"]
    for m in ALL_METRICS:
        ref_cols += [f"mean_{m}", f"std_{m}"]
    ci_cols = [f"ci_{b}_{m}" for m in ALL_METRICS for b in ("low", "high")]
    rest = ["n_repeats", "mean_n_train", "n_classes", "min_classes_trained", "n_folds_missing_classes",
            "missing_classes"]
    if "n_train_available" in f:
        out = out.merge(f.groupby(["train_fraction", "classifier"], sort=False)["n_train_available"].mean()
                        .rename("mean_n_train_available").reset_index(), on=["train_fraction", "classifier"])
        rest.insert(2, "mean_n_train_available")
    return out[ref_cols + ci_cols + rest].reset_index(drop=True)


def paired_differences(frame: pd.DataFrame, order: Sequence[str], setting: str, corrected: bool,
                       metrics: Sequence[str] = ("top1_accuracy", "balanced_accuracy"),
                       pair_keys: Sequence[str] = ("repeat", "fold")) -> pd.DataFrame:
    """Paired differences ``a - b`` between classifiers evaluated on identical splits.

    For each value of ``setting`` (fraction or shots), each pair of
    classifiers (in ``order``) and each metric: the mean difference over the
    shared splits, its 95% t interval and two-sided p-value. With
    ``corrected`` the variance uses the Nadeau & Bengio (2003) correction
    ``n_test / n_train`` for resampled splits that share training images.
    """
    rows = []
    present = [o for o in order if o in set(frame["classifier"])]
    for value, g in frame.groupby(setting, sort=True):
        for a, b in combinations(present, 2):
            ga = g[g["classifier"] == a].set_index(list(pair_keys))
            gb = g[g["classifier"] == b].set_index(list(pair_keys))
            common = ga.index.intersection(gb.index)
            if len(common) == 0:
                continue
            ga, gb = ga.loc[common], gb.loc[common]
            corr = float((ga["n_test"] / ga["n_train"]).mean()) if corrected else 0.0
            for m in metrics:
                diff = (ga[m] - gb[m]).to_numpy(dtype=np.float64)
                lo, hi = t_interval(diff, correction=corr)
                rows.append({setting: value, "classifier_a": a, "classifier_b": b, "metric": m,
                             "mean_difference": float(np.nanmean(diff)) if len(diff) else float("nan"),
                             "ci_low": lo, "ci_high": hi, "p_value": t_test_pvalue(diff, correction=corr),
                             "n_pairs": int(len(diff)),
                             "interval": "corrected resampled t (Nadeau & Bengio 2003)" if corrected else "paired t"})
    cols = [setting, "classifier_a", "classifier_b", "metric", "mean_difference", "ci_low", "ci_high", "p_value",
            "n_pairs", "interval"]
    return pd.DataFrame(rows, columns=cols)
