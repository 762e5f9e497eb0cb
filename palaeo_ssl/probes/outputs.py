"""Writes the tables (CSV, LaTeX) and figures of a probe run into a results folder.

Files (``palaeo-ssl probe`` writes all of them):

``classification_cv_results.csv`` / ``.tex``
    one row per data fraction and classifier (columns as the reference's in
    the paper protocol; plus intervals and class coverage in the standard one).
``classification_cv_folds.csv``
    one row per evaluated split and classifier (every metric, sizes, classes trained on).
``few_shot_cv_results.csv`` / ``.tex``, ``few_shot_episodes.csv``
    the same for few-shot episodes.
``per_class_metrics.csv`` / ``.tex``, ``confusion_matrix.csv``
    from the test folds of one full repeat at the largest fraction.
``accuracy_by_rank.csv`` / ``.tex``
    top-1 and balanced accuracy of each classifier at the class rank and each higher rank
    (genus from the first word of the class names, or the ranks of a taxonomy CSV), from
    the same test folds, when a higher rank groups classes.
``confusion_pairs.csv`` / ``.tex`` / ``.png`` / ``.pdf``, ``confusion_matrix_clustered`` (``.csv``, ``.png``,
``.pdf``), ``confusion_matrix_<rank>`` (``.csv``, ``.png``, ``.pdf``)
    above :data:`~palaeo_ssl.probes.confusions.FULL_MATRIX_MAX_CLASSES` classes, instead of the
    ``confusion_matrix`` figure: the most-confused pairs, the matrix ordered by a clustering of
    the class centroids, and the matrix at each higher rank.
``classification_paired_comparison.csv``, ``few_shot_paired_comparison.csv``
    (standard protocol) differences between classifiers on identical splits.
``skipped_splits.csv``
    what was skipped and why (folds lacking a class, excluded classes), when anything was.
``accuracy_with_data``, ``few_shot_accuracy``, ``confusion_matrix`` (``.png``, ``.pdf``)
    the figures.
``probe_run.json``
    settings, counts, timings and library versions of the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .. import report
from ..embeddings import atomic_write_text
from ..params import N_JOBS, Interval, Options, ParameterError, check, check_all
from ..protocol import DEFAULT_PROTOCOL, ProtocolLike, get_protocol
from ..taxonomy import TAXONOMY_PARAM, Taxonomy, load_taxonomy
from .classifiers import DISPLAY_NAMES, MAX_ITER, parse_probes, probe_torch_device
from .confusions import FULL_MATRIX_MAX_CLASSES, N_PAIRS_FIGURE, ConfusionViews, confusion_views, rank_accuracy
from .fewshot import FEW_SHOT_PARAMS, N_QUERY, FewShotResult, run_few_shot
from .protocols import CV_PARAMS, CVResult, confusion_table, run_cross_validation
from .splits import FRACTIONS, SHOTS

_HEADERS = {
    "train_fraction": "Fraction",
    "few_shot_values": "Shots",
    "classifier": "Classifier",
    "n_folds_used": "Folds",
    "n_repeats_successful": "Episodes",
    "top1_accuracy": "Top-1",
    "top2_accuracy": "Top-2",
    "top3_accuracy": "Top-3",
    "balanced_accuracy": "Bal. acc.",
    "f1_macro": "F1 macro",
    "f1_weighted": "F1 weighted",
    "precision_macro": "Precision",
    "recall_macro": "Recall",
    "specificity_macro": "Specificity",
    "cohen_kappa": "Kappa",
}
_TEX_METRICS = ("top1_accuracy", "top2_accuracy", "top3_accuracy", "balanced_accuracy", "f1_macro", "f1_weighted",
                "precision_macro", "recall_macro", "specificity_macro", "cohen_kappa")
_ABBREV = {"Logistic Regression": "LR", "k-Nearest Neighbours": "kNN", "Nearest Centroid": "NC"}


def fit_to_width(tex: str) -> str:
    """Scale a table's tabular to the text width (adds graphicx to the ``% requires`` line)."""
    lines = tex.splitlines()
    if lines and lines[0].startswith("% requires:") and "graphicx" not in lines[0]:
        lines[0] = lines[0] + ", graphicx"
    out = []
    for line in lines:
        if line.startswith(r"\begin{tabular}"):
            out.append(r"\resizebox{\linewidth}{!}{%")
            out.append(line)
        elif line.startswith(r"\end{tabular}"):
            out.append(line + "%")
            out.append("}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _mean_std_columns(table: pd.DataFrame, few_shot: bool) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Shown mean columns, {mean: std} and headers, dropping metrics that are NaN throughout."""
    shown, pm, headers = [], {}, {}
    for m in _TEX_METRICS:
        if few_shot and not m.startswith("top"):
            mean, std = m, f"{m}_std"
        else:
            mean, std = f"mean_{m}", f"std_{m}"
        if mean not in table or table[mean].isna().all():
            continue
        shown.append(mean)
        pm[mean] = std
        headers[mean] = _HEADERS[m]
    return shown, pm, headers


def classification_tex(table: pd.DataFrame, protocol: ProtocolLike) -> str:
    """LaTeX of the cross-validation summary: mean ± std, best value bold within each fraction."""
    df = table.copy()
    df["train_fraction"] = df["train_fraction"].map(lambda f: f"{float(f):g}")
    shown, pm, headers = _mean_std_columns(df, few_shot=False)
    headers.update({k: _HEADERS[k] for k in ("train_fraction", "classifier", "n_folds_used")})
    caption = get_protocol(protocol).cv_caption
    tex = report.latex_table(df, columns=["train_fraction", "classifier", "n_folds_used", *shown], headers=headers,
                             pm=pm, bold={c: "max" for c in shown}, group_by="train_fraction", digits=3,
                             caption=caption, label="tab:classification_cv")
    return fit_to_width(tex)


def few_shot_tex(table: pd.DataFrame, protocol: ProtocolLike) -> str:
    """LaTeX of the few-shot summary: mean ± std over episodes, best value bold within each k."""
    shown, pm, headers = _mean_std_columns(table, few_shot=True)
    headers.update({k: _HEADERS[k] for k in ("few_shot_values", "classifier", "n_repeats_successful")})
    what = get_protocol(protocol).few_shot_caption
    caption = (f"Few-shot classification ({what}): mean and standard deviation over episodes; best value per "
               "number of shots in bold.")
    tex = report.latex_table(table, columns=["few_shot_values", "classifier", "n_repeats_successful", *shown],
                             headers=headers, pm=pm, bold={c: "max" for c in shown}, group_by="few_shot_values",
                             digits=3, caption=caption, label="tab:few_shot")
    return fit_to_width(tex)


def per_class_tex(per_class: pd.DataFrame) -> str:
    """LaTeX of per-class precision, recall and F1 (one row per class, columns per classifier)."""
    wide = None
    cols, headers = [], {"class_name": "Class", "support": "n"}
    for name, g in per_class.groupby("classifier", sort=False):
        ab = _ABBREV.get(name, name)
        part = g.set_index("class_name")[["precision", "recall", "f1"]]
        part.columns = [f"{ab}_{c}" for c in part.columns]
        for c, h in zip(part.columns, ("precision", "recall", "F1")):
            headers[c] = f"{ab} {h}"
        cols += list(part.columns)
        wide = part if wide is None else wide.join(part)
        support = g.set_index("class_name")["support"]
    if wide is None:
        return report.latex_table(pd.DataFrame({"class_name": []}), columns=["class_name"])
    wide.insert(0, "support", support)
    wide = wide.reset_index()
    tex = report.latex_table(wide, columns=["class_name", "support", *cols], headers=headers, digits=3,
                             caption="Per-class precision, recall and F1 (test folds of one full repeat).",
                             label="tab:per_class")
    return fit_to_width(tex)


def _write_tex(path: Path, tex: str) -> Path:
    atomic_write_text(path, tex)
    return path


def write_cv_outputs(result: CVResult, out: str | Path, literature_best: float | None = None,
                     views: ConfusionViews | None = None, by_rank: pd.DataFrame | None = None) -> list[Path]:
    """Write the cross-validation tables and figures of ``result`` into ``out``; returns the paths.

    With ``views`` of more than :data:`FULL_MATRIX_MAX_CLASSES` classes, the confusion figure is
    replaced by the most-confused pairs, the centroid-ordered matrix and the higher-rank matrices;
    ``by_rank`` (accuracy at each rank) is written when given.
    """
    from ..plots import save_figure
    from ..plots import probes as probe_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [report.write_csv(result.table, out / "classification_cv_results.csv"),
               _write_tex(out / "classification_cv_results.tex", classification_tex(result.table, result.protocol)),
               report.write_csv(result.folds, out / "classification_cv_folds.csv"),
               report.write_csv(result.per_class, out / "per_class_metrics.csv"),
               _write_tex(out / "per_class_metrics.tex", per_class_tex(result.per_class)),
               report.write_csv(confusion_table(result.confusion, result.class_names), out / "confusion_matrix.csv")]
    if result.paired is not None:
        written.append(report.write_csv(result.paired, out / "classification_paired_comparison.csv"))
    fig = probe_plots.accuracy_with_data(result.table, baseline=result.baseline, literature=literature_best)
    written += save_figure(fig, out / "accuracy_with_data")
    if by_rank is not None and len(by_rank):
        written.append(report.write_csv(by_rank, out / "accuracy_by_rank.csv"))
        written.append(_write_tex(out / "accuracy_by_rank.tex", rank_tex(by_rank)))
    if views is not None and not views.full_matrix_readable:
        written += write_confusion_views(views, out)
    elif result.confusion:
        name = _confusion_classifier(result.confusion)
        fig = probe_plots.confusion_matrix(result.confusion[name], result.class_names, title=name)
        written += save_figure(fig, out / "confusion_matrix")
    return written


def _confusion_classifier(confusion: dict) -> str:
    """Whose confusions are drawn: the logistic regression when it ran, else the first classifier."""
    return DISPLAY_NAMES["logreg"] if DISPLAY_NAMES["logreg"] in confusion else next(iter(confusion))


def _rank_note(taxonomy: Taxonomy) -> str:
    return f"higher ranks from {taxonomy.source}"


def rank_tex(by_rank: pd.DataFrame) -> str:
    """LaTeX of the accuracy at each rank."""
    source = str(by_rank["rank_source"].iloc[0]) if "rank_source" in by_rank and len(by_rank) else ""
    return report.latex_table(by_rank, columns=["classifier", "rank", "n_groups", "top1_accuracy", "balanced_accuracy"],
                              headers={"classifier": "Classifier", "rank": "Rank", "n_groups": "Groups",
                                       "top1_accuracy": "Top-1", "balanced_accuracy": "Bal. acc."}, digits=3,
                              caption=("Accuracy at each taxonomic rank (test folds of one full repeat): a prediction "
                                       f"is correct at a rank when its class is in the true class's group; {source}."),
                              label="tab:accuracy_by_rank")


def pairs_tex(pairs: pd.DataFrame, views: ConfusionViews) -> str:
    """LaTeX of the most-confused pairs."""
    cols = ["rank", "true_class", "predicted_class", "count", "share_of_true", "reverse_count"]
    headers = {"rank": "", "true_class": "True class", "predicted_class": "Predicted as", "count": "n",
               "share_of_true": "Share", "reverse_count": "Reverse n"}
    same = [c for c in pairs.columns if c.startswith("same_")]
    df = pairs.copy()
    if same:
        df[same[0]] = df[same[0]].map(lambda v: "yes" if v else "no")
        cols.append(same[0])
        headers[same[0]] = f"Same {same[0][5:]}"
    tex = report.latex_table(df, columns=cols, headers=headers, digits=3,
                             caption=(f"The {len(pairs)} most-confused pairs of classes ({views.classifier}; test "
                                      "folds of one full repeat): test images of the true class predicted as the "
                                      f"other, their share of the true class, and the count the other way round; "
                                      f"{_rank_note(views.taxonomy)}."),
                             label="tab:confusion_pairs")
    return fit_to_width(tex)


def write_confusion_views(views: ConfusionViews, out: Path) -> list[Path]:
    """The confusion outputs for many classes: pairs (table, figure), centroid-ordered and higher-rank matrices."""
    from ..plots import save_figure
    from ..plots import probes as probe_plots

    pairs = views.pairs.drop(columns=["true_label", "predicted_label"])
    written = [report.write_csv(pairs, out / "confusion_pairs.csv"),
               _write_tex(out / "confusion_pairs.tex", pairs_tex(pairs, views))]
    fig = probe_plots.confused_pairs(pairs, views.examples, n=N_PAIRS_FIGURE,
                                     title=f"Most-confused pairs ({views.classifier})")
    written += save_figure(fig, out / "confusion_pairs")
    written.append(report.write_csv(views.ordered_table(), out / "confusion_matrix_clustered.csv"))
    cm, names = views.ordered()
    fig = probe_plots.confusion_matrix(cm, names, title=f"{views.classifier}: classes ordered by a clustering of "
                                                       "their centroids")
    written += save_figure(fig, out / "confusion_matrix_clustered")
    for rank, (rcm, groups) in views.by_rank.items():
        frame = pd.DataFrame(rcm, columns=groups)
        frame.insert(0, f"true_{rank}", groups)
        written.append(report.write_csv(frame, out / f"confusion_matrix_{rank}.csv"))
        fig = probe_plots.confusion_matrix(rcm, groups, title=f"{views.classifier}: {rank} level "
                                                              f"({_rank_note(views.taxonomy)})",
                                           xlabel=f"Predicted {rank}", ylabel=f"True {rank}")
        written += save_figure(fig, out / f"confusion_matrix_{rank}")
    return written


def write_few_shot_outputs(result: FewShotResult, out: str | Path, literature_best: float | None = None) -> list[Path]:
    """Write the few-shot tables and figure of ``result`` into ``out``; returns the paths."""
    from ..plots import save_figure
    from ..plots import probes as probe_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [report.write_csv(result.table, out / "few_shot_cv_results.csv"),
               _write_tex(out / "few_shot_cv_results.tex", few_shot_tex(result.table, result.protocol)),
               report.write_csv(result.episodes, out / "few_shot_episodes.csv")]
    if result.paired is not None:
        written.append(report.write_csv(result.paired, out / "few_shot_paired_comparison.csv"))
    fig = probe_plots.few_shot_accuracy(result.table, baseline=result.baseline, literature=literature_best)
    written += save_figure(fig, out / "few_shot_accuracy")
    return written


def _skipped_frame(cv: CVResult | None, fs: FewShotResult | None) -> pd.DataFrame:
    frames = []
    if cv is not None and len(cv.skipped):
        frames.append(cv.skipped.assign(analysis="cross-validation"))
    if fs is not None and len(fs.skipped):
        frames.append(fs.skipped.assign(analysis="few-shot"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---------------------------------------------------------------------- the probe stage
@dataclass(frozen=True)
class ProbeConfig:
    """Every option that changes the numbers of a probe run; ``asdict()`` is the stage's cache key.

    ``protocol`` may be a name or a :class:`~palaeo_ssl.protocol.Protocol` (kept as its name);
    ``probes`` a list or ``"logreg,knn"`` (kept as a tuple of names).
    ``probes`` None, ``n_repeats`` None and ``n_splits`` None take the protocol's
    defaults. ``max_train_images``: past this many training images the cross-validation's
    probes learn from a seeded stratified subsample of that size (stated in the tables);
    None: the protocol's limit (:attr:`~palaeo_ssl.protocol.Protocol.max_train_images`,
    10,000 for ``standard``); 0: no limit; otherwise at least :data:`MIN_TRAIN_IMAGES`. The
    ``paper`` protocol refuses a limit: it is the reference and learns from every image.
    How the work runs (``n_jobs``, ``progress``, ``probe_device`` of
    :func:`compute_probe_report`) is not part of it: the results do not depend on it
    (beyond the stated tolerance of the torch path).
    """

    protocol: str = DEFAULT_PROTOCOL
    probes: tuple[str, ...] | None = None
    seed: int = 0
    fractions: tuple[float, ...] = FRACTIONS
    n_repeats: int | None = None
    n_splits: int | None = None
    few_shot: bool = True
    shots: tuple[int, ...] = SHOTS
    episodes: int = 50
    n_query: int = N_QUERY
    literature_best: float | None = None
    taxonomy: str | None = None
    max_train_images: int | None = None

    def __post_init__(self):
        proto = get_protocol(self.protocol)
        check_all({k: getattr(self, k) for k in PROBE_PARAMS}, PROBE_PARAMS)
        if proto.reference_splits and self.max_train_images:
            raise ParameterError("max_train_images", f"the {proto.name} protocol is the reference and learns from "
                                 "every training image; {name} (a training-size limit) applies to the standard "
                                 "protocol only (leave it unset, or 0)")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: normalise once here)
        set_("protocol", proto.name)
        set_("probes", parse_probes(self.probes, proto))
        set_("fractions", tuple(sorted(float(f) for f in self.fractions)))
        set_("shots", tuple(int(k) for k in self.shots))
        set_("taxonomy", None if self.taxonomy is None else str(self.taxonomy))

    @property
    def repeats(self) -> int:
        return self.n_repeats or get_protocol(self.protocol).cv_repeats

    @property
    def folds(self) -> int:
        return self.n_splits or get_protocol(self.protocol).cv_folds

    @property
    def train_limit(self) -> int | None:
        """The training-size limit in force: the protocol's (None: no limit) unless set; 0 means none."""
        if self.max_train_images is None:
            return get_protocol(self.protocol).max_train_images
        return self.max_train_images or None


#: the smallest training-size limit ``max_train_images`` accepts (0 = no limit)
MIN_TRAIN_IMAGES = 100

#: constraints of the probe stage's parameters
PROBE_PARAMS = {**CV_PARAMS, **FEW_SHOT_PARAMS,
                "literature_best": [Interval(float, 0, 1, closed="right"), None], "taxonomy": TAXONOMY_PARAM,
                "max_train_images": [Interval(int, MIN_TRAIN_IMAGES, None), Options((0,)), None]}
PROBE_PARAMS.pop("n_jobs")


@dataclass
class ProbeReport:
    """What the probe stage computed: cross-validation, few-shot (or None), the run record and timings.

    ``confusions``: the readable confusion views (:class:`~palaeo_ssl.probes.confusions.ConfusionViews`);
    ``by_rank``: accuracy at each taxonomic rank (empty when no higher rank groups classes).
    ``files`` is filled by :func:`write_probe_report`.
    """

    config: ProbeConfig
    cv: CVResult
    few_shot: FewShotResult | None
    info: dict[str, Any]
    timings: dict[str, float]
    files: list[Path] = field(default_factory=list)
    confusions: ConfusionViews | None = None
    by_rank: pd.DataFrame | None = None

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The summary tables by name: ``classification`` (and ``few_shot`` when it ran)."""
        out = {"classification": self.cv.table}
        if self.few_shot is not None:
            out["few_shot"] = self.few_shot.table
        return out


def compute_probe_report(emb, config: ProbeConfig, n_jobs: int | None = -1, progress: bool = False,
                         probe_device: str = "cpu") -> ProbeReport:
    """Cross-validation and few-shot of ``emb`` as ``config`` says; nothing is written.

    ``probe_device`` (not part of the config: the numbers agree within the solver's
    tolerance) is where the standard protocol's logistic regression and kNN run:
    ``"cpu"`` (numpy/scipy, the default), ``"cuda"``, ``"auto"`` (CUDA where torch sees a
    GPU) or ``"torch-cpu"`` (the CUDA code path run on the CPU); see
    :func:`~palaeo_ssl.probes.classifiers.probe_torch_device`.
    """
    from ..embeddings import load_embeddings

    check("n_jobs", n_jobs, [N_JOBS, None])
    device = probe_torch_device(probe_device)
    emb = load_embeddings(emb)
    c = config
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if c.taxonomy is not None:  # a bad taxonomy file fails before the cross-validation, not after
        load_taxonomy(emb.class_names, c.taxonomy)
    cv = run_cross_validation(emb, protocol=c.protocol, probes=c.probes, seed=c.seed, fractions=c.fractions,
                              n_repeats=c.n_repeats, n_splits=c.n_splits, n_jobs=n_jobs, progress=progress,
                              max_train=c.train_limit, device=device)
    timings["cross-validation"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    views, by_rank = _confusions(emb, cv, c.taxonomy)
    timings["confusions and ranks"] = time.perf_counter() - t1
    fs = None
    if c.few_shot:
        t1 = time.perf_counter()
        fs = run_few_shot(emb, protocol=c.protocol, shots=c.shots, episodes=c.episodes, seed=c.seed,
                          probes=c.probes, n_query=c.n_query, n_jobs=n_jobs, progress=progress)
        timings["few-shot"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    info = _run_info(emb, c, cv, fs, timings)
    if views is not None:
        info["confusions"] = {"classifier": views.classifier, "n_classes": len(views.class_names),
                              "full_matrix_max_classes": FULL_MATRIX_MAX_CLASSES,
                              "views": "full matrix" if views.full_matrix_readable
                              else "most-confused pairs, centroid-ordered matrix, higher-rank matrices",
                              "ranks": views.taxonomy.rank_names, "rank_source": views.taxonomy.source}
    return ProbeReport(config=c, cv=cv, few_shot=fs, info=info, timings=timings, confusions=views, by_rank=by_rank)


def _confusions(emb, cv: CVResult, taxonomy_path: str | None) -> tuple[ConfusionViews | None, pd.DataFrame]:
    """The confusion views of the logistic regression (or first classifier) and accuracy at each rank."""
    if not cv.confusion:
        return None, pd.DataFrame()
    taxonomy = load_taxonomy(cv.class_names, taxonomy_path)
    views = confusion_views(emb, cv.confusion, cv.class_names, taxonomy, _confusion_classifier(cv.confusion))
    rows = []
    informative = [r for r in taxonomy.rank_names if taxonomy.is_informative(r)]
    if informative:
        for name, cm in cv.confusion.items():
            for r in rank_accuracy(cm, taxonomy):
                if r["rank"] == "class" or r["rank"] in informative:
                    rows.append({"classifier": name, **r, "rank_source": taxonomy.source})
    return views, pd.DataFrame(rows)


def _run_info(emb, c: ProbeConfig, cv: CVResult, fs: FewShotResult | None, timings: dict[str, float]) -> dict:
    lr = cv.folds[cv.folds["classifier"] == DISPLAY_NAMES["logreg"]]
    return {
        "command": report.command_line(),
        "created": report.now_iso(),
        "protocol": c.protocol,
        "probes": list(c.probes),
        "seed": c.seed,
        "n_labelled_images": int((emb.labels >= 0).sum()),
        "n_classes": len(cv.class_names),
        "class_names": cv.class_names,
        "majority_baseline": cv.baseline,
        "literature_best": c.literature_best,
        "fractions": list(c.fractions),
        "n_splits": c.folds,
        "n_repeats": c.repeats,
        "few_shot": {"shots": list(c.shots), "episodes": c.episodes, "n_query": c.n_query} if c.few_shot else None,
        "n_folds_skipped": int(cv.skipped["fold"].notna().sum()) if len(cv.skipped) else 0,
        "logreg_fits_at_max_iter": int((lr["n_iter"] >= MAX_ITER).sum()) if len(lr) else 0,
        "logreg_fits": int(len(lr)),
        "probe_training": {"subsample": cv.subsample, "device": getattr(cv, "device", "numpy")},
        "embeddings": {k: emb.meta.get(k) for k in ("store_path", "model_id", "pooling", "dtype", "image_size")
                       if k in emb.meta},
        "timings_s": {**timings, **{f"cv {k}": v for k, v in cv.timings.items()},
                      **({f"few-shot {k}": v for k, v in fs.timings.items()} if fs else {})},
        "versions": report.library_versions(("palaeo_ssl", "numpy", "scipy", "sklearn", "pandas", "joblib",
                                             "threadpoolctl", "matplotlib")),
    }


def write_probe_report(result: ProbeReport, out: str | Path) -> list[Path]:
    """Every table and figure of ``result`` and ``probe_run.json`` into ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lit = result.config.literature_best
    files = write_cv_outputs(result.cv, out, lit, views=result.confusions, by_rank=result.by_rank)
    if result.few_shot is not None:
        files += write_few_shot_outputs(result.few_shot, out, lit)
    skipped = _skipped_frame(result.cv, result.few_shot)
    if len(skipped):
        files.append(report.write_csv(skipped, out / "skipped_splits.csv"))
    files.append(report.write_json(out / "probe_run.json", result.info))
    result.files = files
    return files


def run_probe_report(emb, out: str | Path, protocol: ProtocolLike = DEFAULT_PROTOCOL,
                     probes: str | Sequence[str] | None = None, seed: int = 0, literature_best: float | None = None,
                     few_shot: bool = True, fractions: Sequence[float] = FRACTIONS, n_repeats: int | None = None,
                     n_splits: int | None = None, shots: Sequence[int] = SHOTS, episodes: int = 50,
                     n_query: int = N_QUERY, n_jobs: int | None = -1, progress: bool = False,
                     taxonomy: str | Path | None = None, max_train_images: int | None = None,
                     probe_device: str = "cpu") -> ProbeReport:
    """Cross-validation and few-shot for ``emb`` with every table and figure written into ``out``.

    The options are those of :class:`ProbeConfig` (checked there; errors name the
    parameter). ``literature_best`` (a top-1 accuracy in (0, 1]) is drawn as a line
    on the accuracy figures. ``taxonomy`` is a CSV of higher ranks (``class,genus,...``;
    default: genus from the first word of the class names). ``max_train_images`` (None: the
    protocol's limit; 0: none) and ``probe_device`` as in :class:`ProbeConfig` and
    :func:`compute_probe_report`. Returns the :class:`ProbeReport` with ``files`` and
    ``timings`` (compute and writing, in seconds).
    """
    config = ProbeConfig(protocol=protocol, probes=probes, seed=seed,
                         fractions=tuple(fractions), n_repeats=n_repeats, n_splits=n_splits, few_shot=few_shot,
                         shots=tuple(shots), episodes=episodes, n_query=n_query, literature_best=literature_best,
                         taxonomy=taxonomy, max_train_images=max_train_images)
    result = compute_probe_report(emb, config, n_jobs=n_jobs, progress=progress, probe_device=probe_device)
    t = time.perf_counter()
    write_probe_report(result, out)
    result.timings["writing"] = time.perf_counter() - t
    return result


__all__ = ["ProbeConfig", "MIN_TRAIN_IMAGES", "ProbeReport", "compute_probe_report", "write_probe_report", "run_probe_report",
           "write_cv_outputs", "write_few_shot_outputs", "classification_tex", "few_shot_tex", "per_class_tex",
           "rank_tex", "pairs_tex", "write_confusion_views"]
