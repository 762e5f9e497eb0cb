"""Run everything for one dataset into one results folder (``palaeo-ssl run`` and notebook 01).

Stages, in the paper's order: extraction (cached store) -> probes (cross-validation,
learning curve, few-shot) -> morphospace (projections, clustering, disparity,
outliers, suspect labels) -> labelling (only when the dataset has unlabelled images:
suggestions, novelty, calibrated predictions with abstention) -> explorer ->
comparison with the published figures -> ``manifest.json`` and ``README.md``.

Each stage records, in ``.stages/<stage>.json``, a key made of the embeddings'
identity (:meth:`~palaeo_ssl.embeddings.Embeddings.identity`: their features, rows,
labels and settings), the stage's own options and the code version
(:func:`palaeo_ssl.cache.code_version`), and the files it wrote. A rerun skips every
stage whose key is unchanged and whose files are all still there, so a run that
crashed, was killed, got one more image or runs on upgraded code redoes only what
is no longer valid. With both protocols, the morphospace work that does not depend
on the protocol (projections, disparity with its bootstrap, outliers) is computed
once and handed to each protocol's stage.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import report
from .models import DEFAULT_MODEL, RANDOM_WEIGHTS_NOTICE
from .cache import atomic_write_json, atomic_write_text, code_version, key_hash, read_json
from .embeddings import Embeddings
from .params import POSITIVE_INT, SEED, Interval, ParameterError, shown, validate_params
from .protocol import ALL, PAPER, expand, get_protocol
from .taxonomy import TAXONOMY_PARAM

log = logging.getLogger(__name__)

STAGE_DIR = ".stages"


# ---------------------------------------------------------------------- what each file is
FILE_DESCRIPTIONS: dict[str, str] = {
    "manifest.json": "how this folder was made: command, versions, model and revision, device, dtype, seeds, "
                     "per-stage timings (and whether each stage was reused), counts, skipped images",
    "README.md": "this list of every file in the results folder",
    "explorer.html": "interactive morphospace: open in a browser from disk; hover a point for the specimen, "
                     "click for its nearest neighbours; colour by class, cluster or outlier score; label specimens "
                     "and download the labels as a CSV manifest",
    "explorer_files/": "the explorer's thumbnails and data files (large sets): keep this folder beside explorer.html",
    "reference_comparison.csv": "this run's key figures beside the published ones of Rodgers (2025), with differences",
    "reference_comparison.tex": "the same comparison as a LaTeX table",
    # extraction
    "skipped.csv": "files that could not be used, with the reason",
    "features.npy": "the embeddings: float32 array (images x dimensions), numpy.load(..., mmap_mode='r')",
    "index.csv": "one row per embedding: path, label, class, specimen, file size, modification time",
    "meta.json": "how the embeddings were made: model, revision, preprocessing, pooling, dtype, versions",
    # probes
    "classification_cv_results.csv": "cross-validated probe accuracy etc. at each data fraction (mean, std, folds)",
    "classification_cv_results.tex": "the same, as a LaTeX table (best value per fraction in bold)",
    "few_shot_cv_results.csv": "few-shot accuracy etc. for k labelled images per class over seeded episodes",
    "few_shot_cv_results.tex": "the same, as a LaTeX table (best value per k in bold)",
    "per_class_metrics.csv": "precision, recall and F1 of each class",
    "per_class_metrics.tex": "the same, as a LaTeX table",
    "confusion_matrix.csv": "confusion matrix summed over the test folds of one full repeat (counts, row-normalised)",
    "classification_paired_comparison.csv": "paired difference between probes on identical CV splits, with its interval",
    "few_shot_paired_comparison.csv": "paired difference between probes on identical few-shot episodes, with its interval",
    "probe_run.json": "settings, seeds, class names, baselines and timings of the probe stage",
    "accuracy_with_data.png": "learning curve: top-1 accuracy against the fraction of training data",
    "accuracy_with_data.pdf": "learning curve (PDF)",
    "few_shot_accuracy.png": "few-shot top-1 accuracy against labelled images per class",
    "few_shot_accuracy.pdf": "few-shot accuracy figure (PDF)",
    "confusion_matrix.png": "row-normalised confusion matrix",
    "confusion_matrix.pdf": "confusion matrix figure (PDF)",
    # morphospace
    "clustering_metrics.csv": "clustering agreement with the labels (ARI, AMI, purity...) and internal quality",
    "clustering_metrics.tex": "the same, as a LaTeX table",
    "morphology_report.csv": "disparity of the whole morphospace, with bootstrap intervals",
    "morphology_report.tex": "the same, as a LaTeX table",
    "disparity_per_class.csv": "disparity of each class, with bootstrap intervals",
    "rarefaction.csv": "disparity against subsample size (compare sets of different size)",
    "outliers.csv": "per-image outlier score, most outlying first",
    "suspect_labels.csv": "images whose label disagrees with their nearest neighbours, most suspect first",
    "projections.npz": "cached 2-D PCA, UMAP and t-SNE coordinates (reused by later steps)",
    "cluster_labels.csv": "the cluster of every image under every clustering algorithm (-1 = noise)",
    "distance_histogram.csv": "the histogram of pairwise cosine distances behind dist_hist (bin edges, counts)",
    "morphospace.json": "settings, seeds, counts and per-stage timings of the morphospace stage",
    "classification_cv_folds.csv": "every metric of every cross-validation fold (the rows behind the means)",
    "few_shot_episodes.csv": "every metric of every few-shot episode (the rows behind the means)",
    "skipped_splits.csv": "cross-validation folds or few-shot settings that could not be evaluated, and why",
    "visualise.json": "settings and numbers of the specimen visualisation",
    # labelling (datasets with unlabelled images)
    "suggestions.csv": "the unlabelled specimens to label next, in rank order, with the reason for each",
    "to_label.csv": "template: fill in the label column and pass this file as DATA; its labels are added to the "
                    "dataset's (a label the dataset already has is never overwritten)",
    "novelty.csv": "every unlabelled specimen by its distance to the labelled ones (most unlike any class first)",
    "predictions.csv": "calibrated predictions for the unlabelled specimens; 'unassigned' below the threshold, "
                       "with the best guess beside it",
    "risk_coverage.csv": "cross-validated accuracy of the kept predictions against the fraction kept",
    "calibration.json": "calibration method and state, threshold, and expected calibration error before/after",
}
_PREFIX_DESCRIPTIONS = {
    "accuracy_by_rank": "top-1 and balanced accuracy at the class rank and each higher rank (genus from the first "
                        "word of the class names, or the --taxonomy CSV)",
    "confusion_pairs": "the most-confused pairs of classes (count, share, reverse count), with example images "
                       "in the figure (written instead of the full matrix above 60 classes)",
    "confusion_matrix_clustered": "confusion matrix with the classes ordered by a clustering of their centroids "
                                  "(confusable taxa together)",
    "confusion_matrix_": "confusion matrix at a higher rank (e.g. genus)",
    "pca_": "PCA of the L2-normalised features (2-D), coloured by a higher rank (e.g. genus)",
    "umap_clusters_": "2-D UMAP coloured by the clusters of one algorithm",
    "umap_": "2-D UMAP coloured by a higher rank (e.g. genus)",
    "pca": "PCA of the L2-normalised features (2-D), coloured by class",
    "umap": "UMAP of the L2-normalised features (2-D, cosine), coloured by class",
    "tsne": "t-SNE of the L2-normalised features (cosine), coloured by class",
    "dist_hist": "histogram of pairwise cosine distances (seeded subsample)",
    "rarefaction": "disparity against subsample size",
    "silhouette_k": "silhouette score against the number of clusters (how K was chosen)",
    "outliers": "contact sheet of the most outlying specimens",
    "suspect_labels": "contact sheet of the most suspect labels with their neighbours' class",
    "suggestions": "contact sheet of the suggested specimens in rank order",
    "novelty": "contact sheet of the 25 unlabelled specimens most unlike any labelled class",
    "risk_coverage": "accuracy of the assigned predictions against the fraction assigned (cross-validated)",
}


def describe_file(rel: str) -> str:
    if rel in FILE_DESCRIPTIONS:
        return FILE_DESCRIPTIONS[rel]
    name = Path(rel).name
    if name in FILE_DESCRIPTIONS:
        return FILE_DESCRIPTIONS[name]
    stem, suffix = Path(name).stem, Path(name).suffix
    for prefix, text in _PREFIX_DESCRIPTIONS.items():
        if stem.startswith(prefix):
            return text + (" (PDF)" if suffix == ".pdf" else "")
    return "output of the " + (Path(rel).parts[0] if len(Path(rel).parts) > 1 else "run") + " stage"


# ---------------------------------------------------------------------- stage bookkeeping
@dataclass
class StageRecord:
    name: str
    seconds: float
    reused: bool
    files: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Stages:
    """Runs stages once per key and remembers what they wrote under ``out/.stages``.

    A stage's key is a JSON-able mapping (the identity of the embeddings and the
    ``asdict()`` of the stage's config dataclass); :meth:`run` adds the code version
    (:func:`palaeo_ssl.cache.code_version`) and hashes it with :func:`palaeo_ssl.cache.key_hash`,
    so results of other code are never reused.
    """

    def __init__(self, out: Path, force: bool = False):
        self.out = out
        self.dir = out / STAGE_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.force = force
        self.records: dict[str, StageRecord] = {}

    def run(self, name: str, key: dict[str, Any], fn: Callable[[], tuple[list[Path], dict[str, Any]]]) -> StageRecord:
        key_hex = key_hash({"stage": key, "code": code_version()})
        marker = self.dir / f"{name}.json"
        saved = None if self.force else read_json(marker)
        if (isinstance(saved, dict) and saved.get("key") == key_hex and isinstance(saved.get("files"), list)
                and all((self.out / f).exists() for f in saved["files"])):
            rec = StageRecord(name, 0.0, True, saved["files"], saved.get("info", {}))
            rec.info["computed_seconds"] = saved.get("seconds")
            self.records[name] = rec
            log.info("%s: reused (nothing changed)", name)
            return rec
        t = time.perf_counter()
        files, info = fn()
        seconds = time.perf_counter() - t
        rel = sorted({Path(f).resolve().relative_to(self.out.resolve()).as_posix() for f in files})
        atomic_write_json(marker, {"key": key_hex, "files": rel, "seconds": seconds, "info": info})
        rec = StageRecord(name, seconds, False, rel, info)
        self.records[name] = rec
        return rec


# ---------------------------------------------------------------------- the run
@dataclass
class RunResult:
    """What :meth:`Pipeline.run` produced: the folder, the manifest, the embeddings, the stage records,
    the comparison with the paper (or None) and each protocol's probe and morphospace results (None
    where a stage was reused from an earlier run)."""

    out: Path
    manifest: dict[str, Any]
    embeddings: Embeddings
    stages: dict[str, StageRecord]
    comparison: pd.DataFrame | None
    probes: dict[str, Any]
    morphospace: dict[str, Any]
    #: the labelling stage's :class:`~palaeo_ssl.labels.LabelsResult` (with ``explorer``, the explorer's
    #: colourings); None when every image is labelled or the stage was reused
    labels: Any = None


class Pipeline:
    """The stages of a run, callable one by one (notebook 01) or all at once (:func:`run_pipeline`).

    ``protocol`` is a registered protocol (``paper``: Rodgers 2025 exactly; ``standard``)
    or ``both`` (each registered protocol, in sub-folders ``paper/`` and ``standard/``
    under ``probes/`` and ``morphospace/``). ``reference`` names a dataset of the paper
    (``fossil_tracks``, ``pollen``, ``radiolaria``, ``endless_forams``, ``diverse_fossils``);
    the report then sets this run's key figures beside the published ones (needs the paper
    protocol). Extraction options (``pooling``, ``preprocess``, ``image_size``,
    ``batch_size``, ``workers``, ``device``, ``dtype``, ``background``, ``strict``) are
    those of :func:`palaeo_ssl.extract.extract_embeddings`. ``max_train_images`` (the standard
    protocol's training-size limit; None: 10,000; 0: none) is that of
    :class:`~palaeo_ssl.probes.ProbeConfig`, ``probe_device`` (``"cpu"``, ``"cuda"``, ``"auto"``)
    that of :func:`~palaeo_ssl.probes.compute_probe_report`; both are checked before extraction.

    Results pass from stage to stage in memory: the explorer is drawn from the
    morphospace result, the comparison from the probe and morphospace tables.
    """

    @validate_params({"seed": SEED, "episodes": POSITIVE_INT, "repeats": [POSITIVE_INT, None],
                      "label_budget": POSITIVE_INT, "literature_best": [Interval(float, 0, 1, closed="right"), None],
                      "taxonomy": TAXONOMY_PARAM})
    def __init__(self, data: str | Path, model: str = DEFAULT_MODEL, out: str | Path = "results/run", *,
                 protocol: str = ALL, reference: str | None = None, seed: int = 0, episodes: int = 50,
                 repeats: int | None = None, literature_best: float | None = None, force: bool = False,
                 progress: bool = True, label_budget: int = 24, taxonomy: str | Path | None = None,
                 max_train_images: int | None = None, probe_device: str = "cpu", **extract_options: Any):
        from .reference import DATASETS

        self.t_start = time.perf_counter()
        self.data = data
        self.model = model
        self.protocols = [p.name for p in expand(protocol)]
        if reference is not None and reference not in DATASETS:
            raise ParameterError("reference", "unknown {name} " + shown(reference) + f"; choose one of "
                                              f"{', '.join(DATASETS)}")
        if reference is not None and PAPER.name not in self.protocols:
            raise ParameterError("reference", "{name} compares with the paper's tables, so it needs the paper "
                                              "protocol (or both)")
        self.reference = reference
        self.literature_best = literature_best if literature_best is not None else (
            DATASETS[reference][3] if reference else None)
        self.seed = int(seed)
        self.episodes = int(episodes)
        self.repeats = repeats
        self.taxonomy = None if taxonomy is None else str(taxonomy)
        self.progress = progress
        self.extract_options = extract_options
        self.out = Path(out).expanduser()
        self.out.mkdir(parents=True, exist_ok=True)
        self.stages = Stages(self.out, force=force)
        self.emb: Embeddings | None = None
        self.summary = None
        self.ident = ""
        self.probe_results: dict[str, Any] = {}
        self.morph_results: dict[str, Any] = {}
        self.probe_tables: dict[str, dict[str, pd.DataFrame | None]] = {}
        self.morph_tables: dict[str, dict[str, pd.DataFrame | None]] = {}
        self.comparison: pd.DataFrame | None = None
        self.label_budget = int(label_budget)
        self.label_result = None
        self.max_train_images = max_train_images
        self.probe_device = probe_device
        self._check_probe_options()

    def folder(self, kind: str, protocol: str) -> Path:
        """``out/probes`` or ``out/morphospace``, with a protocol sub-folder when both protocols run."""
        return self.out / kind / protocol if len(self.protocols) > 1 else self.out / kind

    @property
    def random_weights(self) -> bool:
        """True when the embeddings come from a model with random weights (a pipeline check, not a result)."""
        return bool(self.emb is not None and self.emb.meta.get("random_weights"))

    def _notice(self):
        """Figures drawn while a random-weight run is marked carry the notice."""
        from .plots import figure_notice

        return figure_notice(RANDOM_WEIGHTS_NOTICE if self.random_weights else None)

    # 1. extraction: the store is its own cache (only new or changed images are computed)
    def extract(self) -> Embeddings:
        from .extract import ExtractionSummary, extract_embeddings

        t = time.perf_counter()
        emb = extract_embeddings(self.data, model=self.model, out=self.out / "embeddings", progress=self.progress,
                                 **self.extract_options)
        summary = ExtractionSummary(**emb.meta["extraction"])
        store_rel = Path(summary.store).resolve().relative_to(self.out.resolve()).as_posix()
        files = [f"{store_rel}/{n}" for n in ("features.npy", "index.csv", "meta.json", "skipped.csv")] + [
            "embeddings/skipped.csv"]
        rec = StageRecord("extract", time.perf_counter() - t, summary.computed == 0, files,
                          {"computed": summary.computed, "reused_images": summary.reused, "skipped": summary.skipped,
                           "images_per_second": round(summary.images_per_second, 2)})
        self.stages.records["extract"] = rec
        atomic_write_json(self.stages.dir / "extract.json", rec.__dict__)
        if self.progress:
            print(summary.text(), file=sys.stderr)
        self.emb, self.summary, self.ident = emb, summary, emb.identity()
        return emb

    def _need_emb(self) -> Embeddings:
        return self.emb if self.emb is not None else self.extract()

    def _analysis(self, kind: str, config, compute, write, tables: dict[str, str],
                  results: dict[str, Any]) -> dict[str, pd.DataFrame | None]:
        """One protocol's analysis stage: computed and written unless its key is unchanged.

        ``tables`` maps a table's name to its CSV file; a computed stage hands its tables on from
        its result (``result_tables``), a reused one from the files an earlier run wrote.
        """
        emb, proto = self.emb, config.protocol
        folder = self.folder(kind, proto)

        def _stage():
            res = compute(emb, config, folder)
            with self._notice():
                files = write(res, folder)
            results[proto] = res
            return files, {"timings_s": res.timings}

        results[proto] = None
        self.stages.run(f"{kind}_{proto}", self._key(config), _stage)
        res = results[proto]
        if res is None:  # reused from an earlier run: read what it wrote
            return {name: _read_csv(folder / file) for name, file in tables.items()}
        return result_tables(res, tables)

    def _key(self, config) -> dict[str, Any]:
        """A stage's key: the identity of the embeddings and its config (``asdict``); :meth:`Stages.run` adds the
        code version."""
        return {"emb": self.ident, **asdict(config)}

    def _morphospace_config(self, protocol: str):
        from .morphospace import MorphospaceConfig

        return MorphospaceConfig(protocol=protocol, seed=self.seed, taxonomy=self.taxonomy)

    def _probe_config(self, proto: str):
        from .probes import ProbeConfig

        # the size limit is the standard protocol's; the paper protocol (the reference) never takes one
        limit = None if get_protocol(proto).reference_splits else self.max_train_images
        return ProbeConfig(protocol=proto, seed=self.seed, episodes=self.episodes, n_repeats=self.repeats,
                           literature_best=self.literature_best, taxonomy=self.taxonomy, max_train_images=limit)

    def _check_probe_options(self) -> None:
        """Bad ``max_train_images`` / ``probe_device`` stop the run before extraction, not after."""
        from .probes.classifiers import probe_torch_device

        probe_torch_device(self.probe_device)
        if self.max_train_images not in (None, 0) and self.protocols == [PAPER.name]:
            from .probes import ProbeConfig

            ProbeConfig(protocol=PAPER.name, max_train_images=self.max_train_images)  # says why not
        for proto in self.protocols:
            self._probe_config(proto)

    # 2. probes: cross-validation, learning curve, few-shot
    def probes(self) -> dict[str, dict[str, pd.DataFrame | None]]:
        from .probes import compute_probe_report, write_probe_report

        emb = self._need_emb()
        labelled = emb.labels[emb.labels >= 0]
        if len(np.unique(labelled)) < 2:
            log.warning("probes skipped: they need labelled images of at least two classes")
            return {}
        for proto in self.protocols:
            config = self._probe_config(proto)
            self.probe_tables[proto] = self._analysis(
                "probes", config, lambda e, c, _: compute_probe_report(e, c, progress=self.progress,
                                                                       probe_device=self.probe_device),
                write_probe_report, PROBE_TABLES, self.probe_results)
        return self.probe_tables

    # 3. morphospace: projections, clustering, disparity, outliers, suspect labels
    def morphospace(self) -> dict[str, dict[str, pd.DataFrame | None]]:
        """Each protocol's morphospace stage. The protocol-independent work (projections, disparity with its
        bootstrap, outliers: :func:`~palaeo_ssl.morphospace.compute_shared_morphospace`) is computed once, by the
        first stage that is not reused, and handed to the others; the projection cache lies in
        ``out/morphospace`` for all of them."""
        from .morphospace import compute_morphospace, compute_shared_morphospace, write_morphospace
        from .morphospace.projections import CACHE_FILE

        self._need_emb()
        shared: dict[str, Any] = {}

        def compute(e, c, folder):
            if "work" not in shared:
                shared["work"] = compute_shared_morphospace(e, c, cache=self.projection_folder,
                                                            progress=self.progress)
            return compute_morphospace(e, c, cache=self.projection_folder, progress=self.progress,
                                       shared=shared["work"])

        def write(res, folder):
            files = write_morphospace(res, folder, progress=self.progress)
            cache = self.projection_folder / CACHE_FILE
            return files + ([cache] if cache.is_file() and cache not in files else [])

        for proto in self.protocols:
            config = self._morphospace_config(proto)
            self.morph_tables[proto] = self._analysis("morphospace", config, compute, write, MORPHOSPACE_TABLES,
                                                      self.morph_results)
        return self.morph_tables

    @property
    def projection_folder(self) -> Path:
        """Where the projection cache (``projections.npz``) of every protocol's morphospace lies: ``out/morphospace``."""
        return self.out / "morphospace"

    # 3b. labelling: suggestions, novelty and calibrated predictions when the dataset has unlabelled images
    def labels(self):
        """The labelling stage into ``out/labels`` (see :mod:`palaeo_ssl.labels`); None when every image
        is labelled. Its result, kept as ``label_result``, holds the explorer's colourings (``explorer``)."""
        from .labels import compute_labels, write_labels

        config = self._labels_config()
        if config is None:
            return None
        emb = self._need_emb()
        folder = self.out / "labels"

        def _stage():
            res = compute_labels(emb, config)
            with self._notice():
                files = write_labels(res, folder)
            self.label_result = res
            return files, {"timings_s": res.timings, "strategy": res.suggestions.strategy}

        self.stages.run("labels", self._key(config), _stage)
        return self.label_result

    def _labels_config(self):
        """The labelling stage's :class:`~palaeo_ssl.labels.LabelsConfig`; None when every image is labelled."""
        from .labels import LabelsConfig, has_unlabelled

        if not has_unlabelled(self._need_emb()):
            return None
        return LabelsConfig(budget=self.label_budget, seed=self.seed)

    # 4. the interactive explorer
    def explorer(self) -> Path:
        emb = self._need_emb()
        proto = self.protocols[-1]
        mdir = self.folder("morphospace", proto)
        path = self.out / "explorer.html"
        notice = RANDOM_WEIGHTS_NOTICE if self.random_weights else None
        # drawn from the morphospace stage's result: its key, and the notice in the header
        key = {"morphospace": self._key(self._morphospace_config(proto)), "notice": notice}
        labelling = self._labels_config()
        if labelling is not None:  # the labelling stage's colourings (suggestion rank, confidence, novelty)
            key["labels"] = self._key(labelling)

        def _explorer():
            result = self.morph_results.get(proto)
            if result is None:  # the morphospace stage was reused from an earlier run: read what it wrote
                from .morphospace import explorer_inputs_from_folder

                inputs = explorer_inputs_from_folder(emb, mdir, seed=self.seed, cache=self.projection_folder)
            else:
                from .morphospace import explorer_inputs

                inputs = explorer_inputs(result)
            if labelling is not None:
                from .labels import explorer_columns_from_folder

                columns = (self.label_result.explorer if self.label_result is not None
                           else explorer_columns_from_folder(emb, self.out / "labels"))
                if columns is not None:
                    inputs.update(scores=columns["scores"], predicted=columns["predicted"])
            page = write_run_explorer(emb, inputs, path, notice=notice, progress=self.progress)
            from .explorer import companion_folder

            folder = companion_folder(page)  # a large set's thumbnails and data files, beside the page
            return [page] + ([folder] if folder.is_dir() else []), {}

        self.stages.run("explorer", key, _explorer)
        return path

    # 5. comparison with the published figures
    def compare_with_reference(self) -> pd.DataFrame | None:
        from .reference import DATASETS, compare

        if self.reference is None:
            return None
        tables = {**self.probe_tables.get(PAPER.name, {}), **self.morph_tables.get(PAPER.name, {})}
        self.comparison = compare(self.reference, tables)
        report.write_table(self.comparison, self.out / "reference_comparison", columns=list(self.comparison.columns),
                           digits=3, caption=f"This run against Rodgers (2025), {DATASETS[self.reference][0]}")
        return self.comparison

    # 6. manifest and README
    def finish(self) -> dict[str, Any]:
        emb = self._need_emb()
        manifest = build_manifest(emb, self.out, self.stages, self.summary, protocols=self.protocols,
                                  seed=self.seed, reference=self.reference,
                                  total_seconds=time.perf_counter() - self.t_start)
        report.write_json(self.out / "manifest.json", manifest)
        write_results_readme(self.out, manifest, self.comparison)
        return manifest

    def run(self, explorer: bool = True) -> RunResult:
        """Every stage in order; returns the :class:`RunResult`."""
        self.extract()
        self.probes()
        self.morphospace()
        self.labels()
        if explorer:
            self.explorer()
        self.compare_with_reference()
        manifest = self.finish()
        return RunResult(out=self.out, manifest=manifest, embeddings=self.emb, stages=self.stages.records,
                         comparison=self.comparison, probes=dict(self.probe_results),
                         morphospace=dict(self.morph_results), labels=self.label_result)


def run_pipeline(data: str | Path, model: str = DEFAULT_MODEL, out: str | Path = "results/run", *,
                 explorer: bool = True, **options: Any) -> RunResult:
    """Extraction, probes, few-shot, morphospace, explorer and report for ``data`` into ``out``.

    See :class:`Pipeline` for the options.
    """
    return Pipeline(data, model, out, **options).run(explorer=explorer)


#: the tables later stages use (the comparison with the paper), by name, with the file each is written to
PROBE_TABLES = {"classification": "classification_cv_results.csv", "few_shot": "few_shot_cv_results.csv"}
MORPHOSPACE_TABLES = {"clustering": "clustering_metrics.csv", "morphology": "morphology_report.csv"}


def result_tables(result: Any, names: dict[str, str]) -> dict[str, pd.DataFrame | None]:
    """The tables ``names`` of a probe or morphospace result (its ``tables``), in memory."""
    return {name: result.tables.get(name) for name in names}


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def write_run_explorer(emb: Embeddings, inputs: dict[str, Any], path: Path, notice: str | None = None,
                       progress: bool = False) -> Path:
    """The explorer of a run, from the morphospace stage's projection and scores (see ``explorer_inputs``).

    The downloaded labels list absolute paths under the embeddings' data root, when it is known.
    """
    from .explorer import write_explorer

    inputs = dict(inputs)
    root = emb.data_root
    files = [emb.image_path(i) for i in range(len(emb))] if root is not None else None
    return write_explorer(path, inputs.pop("coords"), paths=emb.paths, class_names=emb.class_names,
                          labels=emb.labels, image_files=files, notice=notice, progress=progress,
                          data_root=str(root) if root is not None else None,
                          title=f"{emb.meta.get('dataset', 'dataset')}: morphospace explorer", **inputs)


def build_manifest(emb: Embeddings, out: Path, stages: Stages, summary, *, protocols: Sequence[str], seed: int,
                   reference: str | None, total_seconds: float) -> dict[str, Any]:
    skipped = pd.read_csv(out / "embeddings" / "skipped.csv") if (out / "embeddings" / "skipped.csv").is_file() \
        else pd.DataFrame(columns=["path", "reason"])
    labels = emb.labels
    return {
        "command": report.command_line(),
        "created": report.now_iso(),
        "palaeo_ssl_version": report.library_versions(("palaeo_ssl",)).get("palaeo_ssl"),
        "versions": report.library_versions(),
        "data": emb.meta.get("data"),
        "model": {"id": emb.meta.get("model_id"), "revision": emb.meta.get("model_revision"),
                  "pooling": emb.meta.get("pooling"), "preprocess": emb.meta.get("preprocess"),
                  "image_size": emb.meta.get("image_size"),
                  "family": emb.meta.get("family"), "licence": emb.meta.get("licence")},
        "device": summary.device,
        "dtype": summary.dtype,
        "seeds": {"all_stages": seed, "paper_protocol_repeats": "42 + repeat (as the reference)"
                  if "paper" in protocols else None},
        "protocols": list(protocols),
        "reference": reference,
        "counts": {"images": len(emb), "labelled": int((labels >= 0).sum()), "classes": len(emb.class_names),
                   "per_class": {c: int((labels == i).sum()) for i, c in enumerate(emb.class_names)},
                   "skipped": len(skipped)},
        "skipped_images": skipped.to_dict(orient="records"),
        "stages": {name: {"seconds": round(r.seconds, 3), "reused": r.reused, "files": r.files, **r.info}
                   for name, r in stages.records.items()},
        "total_seconds": round(total_seconds, 3),
        "random_weights": bool(emb.meta.get("random_weights")),
        "note": (RANDOM_WEIGHTS_NOTICE + ": this run's model has random weights, so its numbers say nothing "
                 "about the images" if emb.meta.get("random_weights") else
                 "Features from random-weight test models say nothing about fossils; only real pretrained "
                 "weights give meaningful numbers."),
    }


def _made_by_this_run(manifest: dict[str, Any], comparison: pd.DataFrame | None) -> set[str]:
    """The files (and folders) this run wrote or reused: every stage's, the manifest, the README, the comparison."""
    made = {"manifest.json", "README.md"}
    if comparison is not None:
        made |= {"reference_comparison.csv", "reference_comparison.tex"}
    for stage in manifest["stages"].values():
        made.update(str(f).rstrip("/") for f in stage.get("files", []))
    return made


def _within(rel: str, made: set[str]) -> bool:
    parts = rel.rstrip("/").split("/")
    return any("/".join(parts[:k]) in made for k in range(1, len(parts) + 1))


def _licence_line(model: dict[str, Any]) -> str:
    """The model's licence, and the attribution the DINOv3 License asks for ("Built with DINOv3")."""
    family, licence = model.get("family"), model.get("licence")
    if family is None or str(family).startswith("dinov3"):
        return "Built with DINOv3 (see LICENSE_DINOv3.md of palaeo-ssl)." if family else \
            "Built with DINOv3 (when a DINOv3 model was used; see LICENSE_DINOv3.md of palaeo-ssl)."
    return f"The model's weights are under the {licence} licence (backbone family {family})."


def write_results_readme(out: Path, manifest: dict[str, Any], comparison: pd.DataFrame | None = None) -> Path:
    """``README.md`` of a results folder: what was run, then every file with one line on what it shows; files in
    the folder that no stage of this run wrote or reused (an earlier run's, with other inputs or code) are listed
    apart, as not part of these results."""
    lines = [
        f"# Results: {Path(str(manifest.get('data') or out)).name}",
        "",
        *([f"**{RANDOM_WEIGHTS_NOTICE}.** The model of this run has random weights: the files show that the "
           "pipeline works, and their numbers say nothing about the images.", ""]
          if manifest.get("random_weights") else []),
        f"Made by palaeo-ssl {manifest.get('palaeo_ssl_version')} on {manifest.get('created')} with "
        f"`{manifest['model']['id']}` ({manifest['model']['pooling']} pooling, {manifest['dtype']} on "
        f"{manifest['device']}), protocol(s): {', '.join(manifest['protocols'])}, seed {manifest['seeds']['all_stages']}.",
        f"{manifest['counts']['images']} images embedded, {manifest['counts']['labelled']} labelled in "
        f"{manifest['counts']['classes']} classes, {manifest['counts']['skipped']} skipped.",
        "",
        _licence_line(manifest["model"]),
        "",
        "## Stages",
        "",
        "| stage | seconds | reused from a previous run |",
        "|---|---|---|",
    ]
    for name, s in manifest["stages"].items():
        lines.append(f"| {name} | {s['seconds']:.1f} | {'yes' if s['reused'] else 'no'} |")
    if comparison is not None:
        lines += ["", f"## Compared with Rodgers (2025), {manifest['reference']}", "",
                  "See `reference_comparison.csv` (published, this run, difference)."]
    lines += ["", "## Files", ""]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)
                   and p.relative_to(out).parts[0] != "explorer_files")
    if (out / "explorer_files").is_dir():  # thousands of thumbnails: one line for the folder
        files.append("explorer_files/")
    if "README.md" not in files:
        files.append("README.md")
    made = _made_by_this_run(manifest, comparison)
    earlier = [rel for rel in sorted(files) if not _within(rel, made)]
    for rel in sorted(files):
        if rel not in earlier:
            lines.append(f"- `{rel}`: {describe_file(rel)}")
    if earlier:  # never deleted (they may be someone's results), never presented as this run's
        lines += ["", "## Files left from earlier runs", "",
                  "Not made or reused by this run (another dataset, other options or another version of "
                  "palaeo-ssl made them): they are not part of these results. palaeo-ssl never deletes them; "
                  "remove them when they are no longer needed.", ""]
        lines += [f"- `{rel}`: {describe_file(rel)}, left from an earlier run" for rel in earlier]
    path = out / "README.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
