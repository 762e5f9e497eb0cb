"""Classify new images with a probe fitted on labelled embeddings (``palaeo-ssl classify``).

:func:`classify` fits the probe on every labelled image of one store, then
loads the new embeddings (a store) or extracts them from a folder or manifest
of images with exactly the model, preprocessing, pooling, dtype and image size
recorded in the labelled store (cached), and returns a :class:`ClassifyResult`;
:func:`write_predictions` writes ``predictions.csv``.

With ``abstain=True`` (or a ``min_probability`` / ``target_accuracy``) the
probabilities are calibrated on the labelled images by cross-validation and a
prediction below the threshold is ``unassigned``, its best guess beside it
(see :mod:`palaeo_ssl.labels.calibration`); ``risk_coverage.csv``/``.png`` and
``calibration.json`` are written too.

    >>> result = classify("new_images/", "results/run/embeddings", probe="logreg")  # doctest: +SKIP
    >>> write_predictions(result, "results/new")                                     # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..embeddings import Embeddings
from ..errors import UserError
from ..params import NON_NEGATIVE_INT, POSITIVE_INT, SEED, Interval, Options, ParameterError, validate_params
from ..protocol import DEFAULT_PROTOCOL, ProtocolLike, get_protocol
from .fitted import FittedProbe

#: the label of a prediction under the abstention threshold
UNASSIGNED = "unassigned"
#: the extraction settings two stores must share for one's probe to classify the other's features
SETTINGS = ("model", "pooling", "preprocess", "image_size", "dtype")


@dataclass
class ClassifyResult:
    """The predictions for the new images and the probe that made them.

    ``predictions``: one row per new image (see :func:`predictions_frame`);
    ``probe``: the fitted probe; ``n_labelled``: labelled images it was fitted on;
    ``protocol``: the protocol of its settings.
    """

    predictions: pd.DataFrame
    probe: FittedProbe
    n_labelled: int
    protocol: str
    abstention: Any = None  #: the calibration and threshold (palaeo_ssl.labels.Abstention) when abstaining

    @property
    def n_unassigned(self) -> int:
        """Images left unassigned (below the abstention threshold)."""
        return int((self.predictions["predicted_class"] == UNASSIGNED).sum()) if self.abstention is not None else 0

    @property
    def counts(self) -> pd.Series:
        """Images per predicted class, most frequent first."""
        return self.predictions["predicted_class"].value_counts()

    @property
    def n_known(self) -> int:
        """New images whose own label is one of the probe's classes."""
        if "true_class" not in self.predictions:
            return 0
        return int(self.predictions["true_class"].isin(self.probe.class_names).sum())

    @property
    def agreement(self) -> float | None:
        """Fraction of :attr:`n_known` images whose prediction equals their label, among the assigned ones
        when abstaining (None when there are none)."""
        if not self.n_known:
            return None
        p = self.predictions
        known = p["true_class"].isin(self.probe.class_names) & (p["predicted_class"] != UNASSIGNED)
        if not known.any():
            return None
        return float((p.loc[known, "true_class"] == p.loc[known, "predicted_class"]).mean())


def _is_store(path: Path) -> bool:
    from ..embeddings import find_stores

    return path.is_dir() and bool(find_stores(path))


def check_compatible(train_meta: dict, new_meta: dict) -> None:
    """Raise :class:`UserError` when two stores were not made with the same model and settings."""
    from ..extract import settings_from_meta

    try:
        a, b = settings_from_meta(train_meta), settings_from_meta(new_meta)
    except UserError:
        return  # one of them does not record its settings; the feature length is still checked
    diff = [k for k in SETTINGS if a.get(k) != b.get(k)]
    if diff:
        listing = ", ".join(f"{k}: {b.get(k)!r} here vs {a.get(k)!r} for the probe" for k in diff)
        raise UserError(f"the new embeddings were made differently from the labelled ones ({listing}); "
                        "pass the image folder instead so it is embedded the same way")


def load_or_embed(new: Embeddings | str | os.PathLike, labelled: Embeddings, cache: str | os.PathLike | None = None,
                  **options: Any) -> Embeddings:
    """Embeddings of ``new``: loaded when it is a store, else extracted like ``labelled`` (cached in ``cache``).

    A store made with other settings than ``labelled`` is refused
    (:func:`check_compatible`). ``options`` go to
    :func:`palaeo_ssl.extract.extract_embeddings` (device, batch_size, workers, progress).
    """
    from ..embeddings import load_embeddings
    from ..extract import extract_like

    if isinstance(new, Embeddings):
        check_compatible(labelled.meta, new.meta)
        return new
    path = Path(new).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist; pass an embedding store, an image folder or a CSV manifest")
    if _is_store(path):
        emb = load_embeddings(path)
        check_compatible(labelled.meta, emb.meta)
        return emb
    return extract_like(labelled.meta, path, out=cache, **options)


def predictions_frame(probe: FittedProbe, emb: Embeddings, abstention: Any = None) -> pd.DataFrame:
    """path, predicted_class, probability, top2/top3 class and probability (and true_class when labelled).

    With an ``abstention`` (:class:`palaeo_ssl.labels.Abstention`) the probabilities are calibrated,
    ``predicted_class`` is ``unassigned`` below its threshold, ``best_guess`` holds the best class
    of every image and ``uncalibrated_probability`` the probe's own probability of it.
    """
    X = np.asarray(emb.features)
    n = len(emb)
    if abstention is None:
        top = probe.top_k(X, k=3)
    else:
        raw = probe.predict_proba(X)
        cal, kept = abstention.apply(raw)
        ranking = probe.rank(X)[:, :3]
        r = np.arange(n)
        top = pd.DataFrame({f"{kind}_{j + 1}": ([probe.class_names[i] for i in ranking[:, j]] if kind == "class"
                                                else cal[r, ranking[:, j]])
                            for j in range(ranking.shape[1]) for kind in ("class", "probability")})
    out = pd.DataFrame({"path": emb.paths})
    out["predicted_class"] = top["class_1"]
    out["probability"] = top["probability_1"]
    if abstention is not None:
        out["predicted_class"] = np.where(kept, top["class_1"], UNASSIGNED)
        out["best_guess"] = top["class_1"]
        out["uncalibrated_probability"] = raw[np.arange(n), ranking[:, 0]]
    for j in (2, 3):
        out[f"top{j}_class"] = top[f"class_{j}"] if f"class_{j}" in top else [""] * n
        out[f"top{j}_probability"] = top[f"probability_{j}"] if f"probability_{j}" in top else [np.nan] * n
    if emb.has_labels:
        out["true_class"] = [emb.class_names[l] if l >= 0 else "" for l in emb.labels]
    return out


@validate_params({"seed": SEED, "batch_size": [POSITIVE_INT, None], "workers": [NON_NEGATIVE_INT, None],
                  "min_probability": [Interval(float, 0, 1, closed="right"), None],
                  "target_accuracy": [Interval(float, 0, 1, closed="right"), None],
                  "calibration": [Options({"temperature", "isotonic"})]})
def classify(
    new: Embeddings | str | os.PathLike,
    labelled: Embeddings | str | os.PathLike,
    probe: str = "logreg",
    protocol: ProtocolLike = DEFAULT_PROTOCOL,
    seed: int = 0,
    *,
    abstain: bool = False,
    min_probability: float | None = None,
    target_accuracy: float | None = None,
    calibration: str = "temperature",
    cache: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ClassifyResult:
    """Classify ``new`` with a ``probe`` fitted on every labelled image of ``labelled``.

    Parameters
    ----------
    new : an embedding store (or :class:`Embeddings`), or a folder / CSV manifest of images,
        which is embedded with the settings recorded in ``labelled`` and cached in ``cache``.
    labelled : the embeddings whose labelled images train the probe.
    probe : ``logreg``, ``knn`` or ``centroid``.
    protocol : the probe's setting (``standard``: tuned C on standardised features,
        DINO-style kNN; ``paper``: the reference's settings).
    seed : seed of the probe's random steps.
    cache : where the embeddings of an image folder are stored (None: the default cache).
    device, batch_size, workers, progress : for embedding images (see
        :func:`palaeo_ssl.extract.extract_embeddings`; None = its default).
    abstain : calibrate the probabilities on the labelled images by cross-validation and leave
        predictions under the threshold ``unassigned`` (implied by ``min_probability`` or
        ``target_accuracy``).
    min_probability : the threshold itself, a calibrated probability.
    target_accuracy : choose the threshold as the largest coverage whose cross-validated accuracy
        reaches this (default when abstaining without a threshold: :data:`DEFAULT_TARGET_ACCURACY`).
    calibration : ``temperature`` (one temperature on the log-probabilities) or ``isotonic``.

    The probe is fitted *before* ``new`` is embedded, so a labelled store it
    cannot use fails at once rather than after hours of extraction.
    """
    from ..embeddings import load_embeddings
    from .fitted import fit_probe

    protocol = get_protocol(protocol).name
    if min_probability is not None and target_accuracy is not None:
        raise ParameterError("min_probability", "give either {name} or target_accuracy, not both")
    abstain = bool(abstain or min_probability is not None or target_accuracy is not None)
    labelled = load_embeddings(labelled)
    fitted = fit_probe(labelled, probe=probe, protocol=protocol, seed=seed)
    abstention = None
    if abstain:
        abstention = calibrate_probe(labelled, fitted, min_probability=min_probability,
                                     target_accuracy=target_accuracy, calibration=calibration, seed=seed)
    options: dict[str, Any] = {"device": device, "progress": progress}
    if batch_size is not None:
        options["batch_size"] = batch_size
    if workers is not None:
        options["workers"] = workers
    emb = load_or_embed(new, labelled, cache, **options)
    if emb.dim != labelled.dim:
        raise UserError(f"the new embeddings have {emb.dim} features per image but the labelled ones {labelled.dim}; "
                        "they were made with different models")
    if len(emb) == 0:
        raise UserError(f"no images to classify in {new}")
    return ClassifyResult(predictions=predictions_frame(fitted, emb, abstention), probe=fitted,
                          n_labelled=int((labelled.labels >= 0).sum()), protocol=protocol, abstention=abstention)


#: the accuracy abstention aims at when neither a threshold nor a target is given
DEFAULT_TARGET_ACCURACY = 0.95


def calibrate_probe(labelled: Embeddings, fitted: FittedProbe, *, min_probability: float | None = None,
                    target_accuracy: float | None = None, calibration: str = "temperature", seed: int = 0):
    """The :class:`palaeo_ssl.labels.Abstention` of ``fitted`` (same probe and protocol), calibrated by
    cross-validation on the labelled images of ``labelled``."""
    from ..labels.calibration import fit_abstention
    from .protocols import prepare

    data = prepare(labelled)
    if min_probability is None and target_accuracy is None:
        target_accuracy = DEFAULT_TARGET_ACCURACY
    return fit_abstention(data.X, data.y, len(data.class_names), probe=fitted.probe, protocol=fitted.protocol,
                          method=calibration, target_accuracy=target_accuracy, min_probability=min_probability,
                          seed=seed, groups=data.groups, fitted_model=fitted.model)


def write_predictions(result: ClassifyResult, out: str | os.PathLike) -> list[Path]:
    """Write ``out/predictions.csv`` (and, when abstaining, ``risk_coverage.csv``, ``risk_coverage.png``/``.pdf``
    and ``calibration.json``); returns the paths."""
    from ..report import write_csv, write_json

    out = Path(out)
    files = [write_csv(result.predictions, out / "predictions.csv")]
    if result.abstention is not None:
        from ..labels.calibration import plot_risk_coverage

        ab = result.abstention
        files.append(write_csv(ab.risk_coverage, out / "risk_coverage.csv"))
        files += plot_risk_coverage(ab, out / "risk_coverage")
        record = {**ab.record(), "probe": result.probe.probe, "protocol": result.protocol,
                  "n_labelled": result.n_labelled, "n_classified": len(result.predictions),
                  "n_unassigned": result.n_unassigned}
        files.append(write_json(out / "calibration.json", record))
    return files


def run_classify(new: Embeddings | str | os.PathLike, labelled: Embeddings | str | os.PathLike,
                 out: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """:func:`classify` then :func:`write_predictions` into ``out``, timed.

    ``options`` are those of :func:`classify`; ``cache`` (None) becomes ``out/embeddings``.
    Returns ``{"result": ClassifyResult, "files": [paths], "timings": {"classify", "write", "total": seconds}}``.
    """
    import time

    if options.get("cache") is None:
        options["cache"] = Path(out) / "embeddings"
    t0 = time.perf_counter()
    result = classify(new, labelled, **options)
    t1 = time.perf_counter()
    files = write_predictions(result, out)
    t2 = time.perf_counter()
    return {"result": result, "files": files, "timings": {"classify": t1 - t0, "write": t2 - t1, "total": t2 - t0}}


__all__ = ["DEFAULT_TARGET_ACCURACY", "SETTINGS", "UNASSIGNED", "ClassifyResult", "calibrate_probe", "check_compatible", "classify", "load_or_embed", "predictions_frame",
           "run_classify", "write_predictions"]
