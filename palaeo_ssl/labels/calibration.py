"""Calibrated probabilities and abstention: labels for the rest that say "not sure" instead of guessing.

The probe's probabilities are calibrated on the labelled data by
cross-validation: every labelled specimen gets an out-of-fold probability from
a probe that never saw it (stratified k-fold, grouped by specimen where the
store records specimens), and a calibration map is fitted on those:

``temperature`` (default)
    one number T dividing the log-probabilities before the softmax, fitted by
    minimising the negative log-likelihood of the out-of-fold labels (Guo et
    al. 2017); it changes the confidence, never the ranking of the classes.
``isotonic``
    a monotone map from the out-of-fold top-1 probability to the observed
    top-1 accuracy (scikit-learn's ``IsotonicRegression``); the other classes
    share the rest in proportion.

The risk-coverage table sorts the out-of-fold predictions by calibrated
confidence and gives, for each fraction kept, the accuracy of the kept ones.
The threshold is either given (``min_probability``) or chosen from a target
(``target_accuracy``: the smallest confidence whose kept fraction still reaches
that cross-validated accuracy, i.e. the largest such coverage). New predictions
below the threshold are ``unassigned``, with their best guess beside them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError

METHODS = ("temperature", "isotonic")
#: label of a prediction under the threshold
UNASSIGNED = "unassigned"
ECE_BINS = 15
_EPS = 1e-12


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-1 probability: the mean over ``n_bins`` equal-width
    confidence bins of |accuracy - mean confidence|, weighted by the bin's share of the rows."""
    proba = np.asarray(proba, dtype=np.float64)
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def fixed_regularisation(fitted_model: Any) -> Any:
    """A factory of probes like ``fitted_model`` but with its tuned C fixed, or None when it has none.

    The standard logistic regression tunes C by an inner cross-validation; on few labels the C it
    picks can change by orders of magnitude between subsets, and so does the sharpness of its
    probabilities. Calibrating folds that each tuned their own C would calibrate other models than
    the one that classifies: the folds therefore reuse the C of the probe fitted on every label.
    """
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    last = fitted_model[-1] if isinstance(fitted_model, Pipeline) else fitted_model
    c = getattr(last, "C_", None)
    if c is None:
        return None
    c = float(np.ravel(c)[0])
    params = last.get_params()
    if "Cs" in params:  # a probe that searches a grid of C (the standard one): the same probe, a grid of one
        lr = clone(last).set_params(Cs=(c,))
    else:
        lr = LogisticRegression(C=c, class_weight=params.get("class_weight"), max_iter=params.get("max_iter", 1000))
    if isinstance(fitted_model, Pipeline):
        return lambda: Pipeline([*[(name, clone(step)) for name, step in fitted_model.steps[:-1]],
                                 (fitted_model.steps[-1][0], clone(lr))])
    return lambda: clone(lr)


def cross_validated_proba(X: np.ndarray, y: np.ndarray, n_classes: int, probe: str = "logreg",
                          protocol: str = "standard", n_splits: int = 5, seed: int = 0,
                          groups: np.ndarray | None = None, make_model: Any = None) -> np.ndarray:
    """(n, n_classes) out-of-fold probabilities of ``probe`` for labels ``y`` (0..n_classes-1).

    Stratified k-fold (grouped when ``groups`` is given) with ``min(n_splits, largest class)``
    folds; a class missing from a fold's training part gets probability 0 there. ``make_model``:
    a factory of the unfitted model each fold fits instead of a fresh ``probe`` (see
    :func:`fixed_regularisation`).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from ..probes import make_probe
    from ..probes.classifiers import fit_quietly

    y = np.asarray(y, dtype=np.int64)
    k = int(min(n_splits, np.bincount(y).max()))
    if k < 2:
        raise UserError("calibration needs at least two labelled specimens of one class; label more specimens")
    splitter = (StratifiedGroupKFold(k, shuffle=True, random_state=seed) if groups is not None
                else StratifiedKFold(k, shuffle=True, random_state=seed))
    out = np.zeros((len(y), n_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes smaller than the folds
        splits = list(splitter.split(X, y, groups))
    for train, test in splits:
        one_class = len(np.unique(y[train])) < 2
        model = make_model() if make_model is not None and not one_class else make_probe(probe, protocol, y[train], seed=seed)
        fit_quietly(model, X[train], y[train])
        out[np.ix_(test, np.asarray(model.classes_))] = model.predict_proba(X[test])
    return out


def _temperature_scale(proba: np.ndarray, t: float) -> np.ndarray:
    logits = np.log(np.clip(proba, _EPS, 1.0)) / t
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of ``y`` under softmax(log p / T)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y)

    def nll(log_t: float) -> float:
        p = _temperature_scale(proba, float(np.exp(log_t)))
        return float(-np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0)).mean())

    res = minimize_scalar(nll, bounds=(np.log(1e-4), np.log(100.0)), method="bounded")
    return float(np.exp(res.x))


@dataclass
class Calibrator:
    """A calibration map fitted on out-of-fold probabilities: ``method`` and its state
    (``temperature``, or the ``isotonic`` regressor)."""

    method: str
    temperature: float = 1.0
    isotonic: Any = None

    @classmethod
    def fit(cls, proba: np.ndarray, y: np.ndarray, method: str = "temperature") -> "Calibrator":
        if method not in METHODS:
            from ..params import ParameterError, shown

            raise ParameterError("calibration", "unknown {name} " + shown(method) + f"; choose one of "
                                 f"{', '.join(METHODS)}")
        if method == "temperature":
            return cls(method, temperature=fit_temperature(proba, y))
        from sklearn.isotonic import IsotonicRegression

        conf = proba.max(axis=1)
        correct = (proba.argmax(axis=1) == np.asarray(y)).astype(float)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(conf, correct)
        return cls(method, isotonic=iso)

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated (n, C) probabilities; the best class of each row is unchanged."""
        proba = np.asarray(proba, dtype=np.float64)
        if self.method == "temperature":
            return _temperature_scale(proba, self.temperature)
        top = proba.argmax(axis=1)
        r = np.arange(len(top))
        old = proba[r, top]
        n_classes = proba.shape[1]
        new = np.clip(self.isotonic.predict(old), 1.0 / n_classes, 1.0)
        rest = np.clip(1.0 - old, _EPS, None)
        out = proba * ((1.0 - new) / rest)[:, None]
        out[r, top] = new
        return out


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    """Accuracy of the kept predictions against the fraction kept, keeping the most confident first.

    One row per distinct confidence value (the threshold ``min_probability``: predictions at or above
    it are kept): ``min_probability``, ``n_kept``, ``coverage``, ``accuracy``, ``risk`` (1 - accuracy);
    highest threshold (smallest coverage) first.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    order = np.argsort(-conf, kind="stable")
    c, ok = conf[order], correct[order]
    cum = np.cumsum(ok)
    last = np.r_[c[1:] != c[:-1], True]  # the last row of each run of equal confidence
    n_kept = np.flatnonzero(last) + 1
    acc = cum[last] / n_kept
    return pd.DataFrame({"min_probability": c[last], "n_kept": n_kept, "coverage": n_kept / len(c),
                         "accuracy": acc, "risk": 1.0 - acc})


def choose_threshold(table: pd.DataFrame, target_accuracy: float | None = None,
                     min_probability: float | None = None) -> float:
    """The confidence threshold: ``min_probability`` itself, or the one of the largest coverage whose
    accuracy in ``table`` (:func:`risk_coverage`) reaches ``target_accuracy`` (above 1 when none does)."""
    if min_probability is not None:
        return float(min_probability)
    ok = table[table["accuracy"] >= target_accuracy - 1e-12]
    if ok.empty:
        return float(np.nextafter(1.0, 2.0))
    return float(ok.loc[ok["coverage"].idxmax(), "min_probability"])


@dataclass
class Abstention:
    """How the probe's probabilities are calibrated and where it abstains.

    ``calibrator``: the map fitted on the out-of-fold probabilities; ``threshold``: calibrated
    probability below which a prediction is unassigned; ``target_accuracy`` / ``min_probability``:
    what chose it (one is None); ``risk_coverage``: the cross-validated table (:func:`risk_coverage`);
    ``cv_accuracy`` and ``cv_coverage``: the cross-validated accuracy of the kept predictions and the
    fraction kept at the threshold; ``ece_before`` / ``ece_after``: expected calibration error of the
    out-of-fold probabilities before and after calibration; ``n_splits``: folds used.
    """

    calibrator: Calibrator
    threshold: float
    target_accuracy: float | None
    min_probability: float | None
    risk_coverage: pd.DataFrame
    cv_accuracy: float
    cv_coverage: float
    ece_before: float
    ece_after: float
    n_splits: int
    info: dict[str, Any] = field(default_factory=dict)

    def apply(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, (n,) bool kept) for new (n, C) probabilities."""
        cal = self.calibrator.transform(proba)
        return cal, cal.max(axis=1) >= self.threshold

    def record(self) -> dict[str, Any]:
        """JSON-able summary (``calibration.json``)."""
        return {"method": self.calibrator.method,
                "temperature": self.calibrator.temperature if self.calibrator.method == "temperature" else None,
                "threshold": self.threshold, "target_accuracy": self.target_accuracy,
                "min_probability": self.min_probability, "cv_accuracy_kept": self.cv_accuracy,
                "cv_coverage": self.cv_coverage, "ece_before": self.ece_before, "ece_after": self.ece_after,
                "cv_folds": self.n_splits, **self.info}


def fit_abstention(X: np.ndarray, y: np.ndarray, n_classes: int, *, probe: str = "logreg",
                   protocol: str = "standard", method: str = "temperature", target_accuracy: float | None = None,
                   min_probability: float | None = None, n_splits: int = 5, seed: int = 0,
                   groups: np.ndarray | None = None, fitted_model: Any = None) -> Abstention:
    """Calibrate ``probe`` on labelled (X, y) by cross-validation and choose the abstention threshold.

    ``fitted_model``: the probe fitted on all of (X, y) that will classify; its tuned C is kept in
    the folds (:func:`fixed_regularisation`)."""
    from ..params import ParameterError, shown

    if (target_accuracy is None) == (min_probability is None):
        raise ParameterError("target_accuracy", "give either {name} or min_probability, not both or neither")
    for name, v in (("target_accuracy", target_accuracy), ("min_probability", min_probability)):
        if v is not None and not (0.0 < float(v) <= 1.0):
            raise ParameterError(name, "{name} must be in (0, 1], not " + shown(v))
    factory = fixed_regularisation(fitted_model) if fitted_model is not None else None
    oof = cross_validated_proba(X, y, n_classes, probe=probe, protocol=protocol, n_splits=n_splits, seed=seed,
                                groups=groups, make_model=factory)
    cal = Calibrator.fit(oof, y, method)
    oof_cal = cal.transform(oof)
    table = risk_coverage(oof_cal.max(axis=1), oof_cal.argmax(axis=1) == y)
    threshold = choose_threshold(table, target_accuracy, min_probability)
    kept = oof_cal.max(axis=1) >= threshold
    return Abstention(
        calibrator=cal, threshold=threshold, target_accuracy=target_accuracy, min_probability=min_probability,
        risk_coverage=table, cv_accuracy=float((oof_cal.argmax(axis=1) == y)[kept].mean()) if kept.any() else float("nan"),
        cv_coverage=float(kept.mean()), ece_before=expected_calibration_error(oof, y),
        ece_after=expected_calibration_error(oof_cal, y),
        n_splits=int(min(n_splits, np.bincount(y).max())))


def plot_risk_coverage(abstention: Abstention, stem) -> list:
    """Accuracy of the kept predictions against the fraction kept (cross-validated), threshold marked."""
    from ..plots import plt, save_figure

    t = abstention.risk_coverage
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(t["coverage"], t["accuracy"], color="C0", lw=1.6, label="kept predictions (cross-validated)")
    ax.axvline(abstention.cv_coverage, color="C3", lw=1, ls="--",
               label=f"threshold {min(abstention.threshold, 1.0):.3f}: {100 * abstention.cv_coverage:.0f}% kept")
    if abstention.target_accuracy is not None:
        ax.axhline(abstention.target_accuracy, color="0.5", lw=1, ls=":",
                   label=f"target accuracy {abstention.target_accuracy:.2f}")
    ax.set_xlabel("fraction of specimens assigned (coverage)")
    ax.set_ylabel("accuracy of the assigned")
    ax.set_xlim(0, 1)
    low = min(float(t["accuracy"].min()), abstention.target_accuracy or 1.0)
    ax.set_ylim(max(0.0, low - 0.05), 1.01)
    ax.set_title(f"Risk-coverage ({abstention.calibrator.method} calibration)", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, stem)
