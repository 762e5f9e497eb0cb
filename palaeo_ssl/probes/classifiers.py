"""The probes: logistic regression, k-nearest neighbours and nearest centroid.

Each probe exists in two settings:

``paper`` (exactly the reference code of Rodgers 2025)
    ``logreg``: ``LogisticRegression(C=1, max_iter=1000, class_weight="balanced",
    random_state=42)`` on the raw features. ``knn``: k=5 (``min(5, shots)`` in
    few-shot), uniform votes, cosine on L2-normalised features; computed here
    without scikit-learn's ``Normalizer + KNeighborsClassifier(metric="cosine")``
    pipeline but with the same arithmetic, so the probabilities are
    bit-identical (votes tied between classes go to the lowest class index,
    as there). Numbers equal the reference run with one BLAS thread, as its
    notebook sets ``OMP_NUM_THREADS=1``; multi-threaded BLAS sums the
    logistic-regression gradient in another order and can flip a few predictions.

``standard`` (sound defaults)
    ``logreg``: features standardised on the training split, C chosen from
    ``C_GRID`` by an inner stratified 3-fold CV (balanced accuracy) inside the
    training split, balanced class weights, computed by
    :class:`.tuned_logreg.TunedLogisticRegression` (preconditioned L-BFGS, warm
    starts along the C path, a grid that stops once the inner score has fallen
    twice, fits stopped at a gradient of 1e-3), many times faster at many taxa
    than the ``LogisticRegressionCV`` search (:func:`cv_search_logreg`) it replaced. ``knn``: DINO-style, k=20
    clamped to the training-set size, votes weighted by ``exp(cosine / 0.07)``,
    ties broken by summed similarity, then at random (seeded), never by class index.

Device: the standard logistic regression and kNN also run on a torch device
(``device="cuda"``; ``"cpu"`` runs that code on the CPU); ``"auto"`` (the
default of the protocol functions) takes a CUDA GPU where torch sees one and
numpy/scipy otherwise. Both minimise the same function; results agree within
the solver tolerance (``tests/test_probes_device.py``).

``centroid`` (both settings): nearest class mean of the L2-normalised
features, by cosine; probabilities are ``softmax(cosine / 0.07)``.

Every fitted probe has ``classes_`` (sorted labels seen in training),
``predict_proba(X) -> (n, len(classes_))``, ``predict(X) -> (n,)`` and
``rank(X) -> (n, len(classes_))`` (labels best first).
"""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from sklearn import get_config

from ..embeddings import l2_normalize
from .lean_logreg import ReferenceLogisticRegression
from .tuned_logreg import TunedLogisticRegression
from .neighbours import double_normalize
from ..errors import UserError
from ..params import ParameterError, literal, shown
from ..protocol import DEFAULT_PROTOCOL, ProtocolLike, get_protocol

PROBES = ("logreg", "knn", "centroid")
#: Classifier names used in the tables (the reference's for logreg and knn).
DISPLAY_NAMES = {"logreg": "Logistic Regression", "knn": "k-Nearest Neighbours", "centroid": "Nearest Centroid"}
_ALIASES = {
    "logreg": "logreg", "lr": "logreg", "logistic": "logreg", "linear": "logreg",
    "knn": "knn", "k-nn": "knn", "nn": "knn",
    "centroid": "centroid", "nc": "centroid", "ncm": "centroid", "nearest-centroid": "centroid",
}
#: C values of the standard logistic regression's inner CV (log grid).
C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 7))
#: successive C values below the best inner score after which the standard search stops
PATIENCE = 2
#: the standard fits' stopping rule: max |gradient| of the mean loss in standardised coordinates
#: (scikit-learn's default is 1e-4; on strongly correlated features at many taxa that needs hundreds
#: of iterations for changes in the third decimal of accuracy, benchmarks/probe_many_taxa.py)
STANDARD_TOL = 1e-3
TEMPERATURE = 0.07
REFERENCE_K = 5
STANDARD_K = 20
MAX_ITER = 1000


def parse_probes(probes: str | Iterable[str] | None, protocol: ProtocolLike = DEFAULT_PROTOCOL) -> tuple[str, ...]:
    """Probe names from ``"logreg,knn"`` or a list; default: the protocol's (``Protocol.probes``)."""
    if probes is None:
        return get_protocol(protocol).probes
    items = probes.split(",") if isinstance(probes, str) else list(probes)
    out: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        if not key:
            continue
        if key not in _ALIASES:
            raise ParameterError("probes", "unknown probe " + shown(item) + f" in {{name}}; choose from "
                                 f"{', '.join(PROBES)} (comma-separated)")
        if _ALIASES[key] not in out:
            out.append(_ALIASES[key])
    if not out:
        raise ParameterError("probes", f"no probe given in {{name}}; choose from {', '.join(PROBES)}")
    return tuple(out)


# ---------------------------------------------------------------------- device
def resolve_device(device: str | None) -> str | None:
    """The torch device the standard probes run on, or None for numpy/scipy.

    ``"auto"``: ``"cuda"`` where torch sees a CUDA GPU, else None; None: numpy;
    any other string is a torch device (``"cpu"`` runs the torch code on the CPU).
    """
    if device is None:
        return None
    device = str(device).strip().lower()
    if device in ("auto", ""):
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return None
        return "cuda" if torch.cuda.is_available() else None
    if device == "numpy":
        return None
    try:
        import torch

        torch.device(device)
    except (ImportError, RuntimeError) as exc:
        raise ParameterError("device", "{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N', not " + shown(device)
                             + " (" + literal(exc) + ")") from None
    return device


#: the values of ``probe_device`` (the probe stage's run option; see :func:`probe_torch_device`)
PROBE_DEVICES = ("cpu", "cuda", "auto", "torch-cpu")


def probe_torch_device(probe_device: str) -> str | None:
    """The torch device of the probe stage's option ``probe_device``, or None for numpy/scipy.

    ``"cpu"``: numpy/scipy (the default); ``"cuda"`` (or ``"cuda:N"``): torch on that GPU, an
    error naming the option where torch sees none; ``"auto"``: ``"cuda"`` where torch sees a
    CUDA GPU, else numpy/scipy; ``"torch-cpu"``: the torch code of ``"cuda"`` run on the CPU
    (to check that code path without a GPU). The two paths agree within the solver tolerance.
    """
    value = str(probe_device).strip().lower()
    if value == "cpu":
        return None
    if value == "torch-cpu":
        return "cpu"
    if value == "auto":
        return resolve_device("auto")
    if value == "cuda" or value.startswith("cuda:"):
        import torch

        if not torch.cuda.is_available():
            raise ParameterError("probe_device", "{name} is " + shown(probe_device) + ", but torch sees no CUDA GPU "
                                 "on this machine; use 'cpu' (numpy/scipy) or 'auto' (CUDA where there is one)")
        return resolve_device(value)
    raise ParameterError("probe_device", "{name} must be one of " + ", ".join(repr(v) for v in PROBE_DEVICES)
                         + ", not " + shown(probe_device))


def torch_topk_similarity(zq: np.ndarray, zt: np.ndarray, k: int, device: str,
                          chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The k largest of ``zq @ zt.T`` per row on a torch device: (similarities (n_q, k) float32, columns).

    Query rows go in chunks of ``chunk`` so no (n_q, n_t) matrix is held at once.
    """
    import torch

    t = torch.as_tensor(np.ascontiguousarray(zt, dtype=np.float32), device=device)
    k = max(1, min(int(k), t.shape[0]))
    sims, cols = [], []
    for a in range(0, zq.shape[0], chunk):
        q = torch.as_tensor(np.ascontiguousarray(zq[a:a + chunk], dtype=np.float32), device=device)
        v, i = torch.topk(q @ t.T, k, dim=1)
        sims.append(v.cpu().numpy())
        cols.append(i.cpu().numpy())
    if not sims:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.intp)
    return np.concatenate(sims), np.concatenate(cols).astype(np.intp)


# ---------------------------------------------------------------------- kNN
def _label_positions(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes, pos = np.unique(np.asarray(y), return_inverse=True)
    return classes, pos.astype(np.intp)


def query_chunk_rows(n_train: int, n_query: int) -> int:
    """Query rows per distance block, as ``sklearn.metrics.pairwise_distances_chunked``
    (``working_memory`` MiB of float64 rows; at least 1)."""
    rows = int(get_config()["working_memory"] * (2**20) // (8 * max(n_train, 1)))
    return max(1, min(rows, n_query))


def reference_knn_proba(x_test: np.ndarray, x_train: np.ndarray, train_pos: np.ndarray, n_classes: int,
                        k: int) -> np.ndarray:
    """Uniform k-NN probabilities bit-identical to the reference's scikit-learn pipeline.

    Mirrors ``Normalizer() -> KNeighborsClassifier(k, metric="cosine")``:
    both sides L2-normalised twice (the pipeline's ``Normalizer`` and
    ``cosine_similarity``), then :func:`knn_proba_normalized`. Returns (n_test, n_classes) float64.
    """
    return knn_proba_normalized(double_normalize(x_test), double_normalize(x_train), train_pos, n_classes, k)


def knn_proba_normalized(zq: np.ndarray, zt: np.ndarray, train_pos: np.ndarray, n_classes: int,
                         k: int) -> np.ndarray:
    """Uniform k-NN votes / k from double-normalised query (n_q, D) and training (n_t, D) rows.

    As scikit-learn's brute-force cosine k-NN: distances ``clip(1 - s, 0, 2)``
    in the input dtype, query rows in the chunks ``pairwise_distances_chunked``
    uses, the k nearest found by ``argpartition`` (kth = k - 1).
    """
    n_q = zq.shape[0]
    proba = np.zeros((n_q, n_classes), dtype=np.float64)
    chunk = query_chunk_rows(zt.shape[0], n_q)
    for start in range(0, n_q, chunk):
        stop = min(start + chunk, n_q)
        d = zq[start:stop] @ zt.T
        d *= -1
        d += 1
        np.clip(d, 0.0, 2.0, out=d)
        for s in range(0, stop - start, 1024):  # row-wise, in slices to bound the index array
            e = min(s + 1024, stop - start)
            neigh = np.argpartition(d[s:e], k - 1, axis=1)[:, :k]
            labels = train_pos[neigh]
            block = proba[start + s:start + e]
            r = np.arange(e - s)
            for j in range(k):
                block[r, labels[:, j]] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    return proba


def weighted_knn_scores(sim: np.ndarray, train_pos: np.ndarray, n_classes: int, k: int,
                        temperature: float = TEMPERATURE) -> tuple[np.ndarray, np.ndarray]:
    """DINO-style votes from a similarity matrix.

    Parameters
    ----------
    sim : (n_test, n_train) cosine similarities.
    train_pos : (n_train,) class position (0..n_classes-1) of each training row.
    k : neighbours, clamped to n_train.

    Returns (votes, summed_similarity), each (n_test, n_classes) float64:
    ``votes[i, c] = sum over the k nearest neighbours of class c of exp(sim / T)``.
    """
    n_q, n_t = sim.shape
    k = max(1, min(int(k), n_t))
    if k < n_t:
        neigh = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    else:
        neigh = np.broadcast_to(np.arange(n_t), (n_q, n_t))
    return neighbour_votes(np.take_along_axis(sim, neigh, axis=1), train_pos[neigh], n_classes, temperature)


def neighbour_votes(s: np.ndarray, labels: np.ndarray, n_classes: int,
                    temperature: float = TEMPERATURE) -> tuple[np.ndarray, np.ndarray]:
    """(votes, summed similarity) per class from the k nearest neighbours' similarities ``s`` (n, k)
    and class positions ``labels`` (n, k); see :func:`weighted_knn_scores`."""
    n_q = s.shape[0]
    s = s.astype(np.float64)
    w = np.exp(s / temperature)
    votes = np.zeros((n_q, n_classes), dtype=np.float64)
    sums = np.zeros((n_q, n_classes), dtype=np.float64)
    rows = np.repeat(np.arange(n_q), labels.shape[1])
    np.add.at(votes, (rows, labels.ravel()), w.ravel())
    np.add.at(sums, (rows, labels.ravel()), s.ravel())
    return votes, sums


# input checks shared by KNNProbe and CentroidProbe (scikit-learn's estimator conventions)
def _check_training_data(estimator, X, y) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) validated as scikit-learn estimators do in ``fit``: a dense 2-D finite numeric X (float32 and
    float64 kept as they are) and a 1-D classification target of the same length; sets ``n_features_in_``."""
    X, y = validate_data(estimator, X, y)
    check_classification_targets(y)
    return X, y


def _check_query_data(estimator, X) -> np.ndarray:
    """X validated for ``predict``: the estimator is fitted and X has the ``n_features_in_`` it was fitted with."""
    check_is_fitted(estimator)
    return validate_data(estimator, X, reset=False)


class KNNProbe(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour probe on L2-normalised features (cosine similarity).

    Parameters
    ----------
    n_neighbors : k, clamped to the training-set size (with uniform votes the
        reference code stops with an error there instead).
    weights : ``"uniform"`` (the reference: one vote each, bit-identical to its
        scikit-learn pipeline) or ``"similarity"`` (DINO: ``exp(cos / temperature)``).
    temperature : T of the similarity weighting.
    random_state : seed of the last-resort tie break (similarity weighting only).
    device : None (numpy) or a torch device for the similarity weighting's neighbour search.
    """

    def __init__(self, n_neighbors: int = STANDARD_K, weights: str = "similarity",
                 temperature: float = TEMPERATURE, random_state: int = 0, device: str | None = None):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.temperature = temperature
        self.random_state = random_state
        self.device = device

    def fit(self, X, y):
        X, y = _check_training_data(self, X, y)
        self.classes_, self._pos = _label_positions(y)
        if self.weights == "uniform":
            # k is clamped to the training-set size, where the reference code would stop with an error
            self.n_neighbors_ = max(1, min(int(self.n_neighbors), X.shape[0]))
            self._x = np.array(X, copy=True)
        elif self.weights == "similarity":
            self._z = l2_normalize(X)
        else:
            raise ValueError(f"weights must be 'uniform' or 'similarity', not {self.weights!r}")
        return self

    def _scores(self, X):
        X = _check_query_data(self, X)
        n_cls = len(self.classes_)
        if self.weights == "uniform":
            proba = reference_knn_proba(X.astype(self._x.dtype, copy=False), self._x, self._pos, n_cls,
                                        self.n_neighbors_)
            return proba, None
        if self.device is not None:
            sims, cols = torch_topk_similarity(l2_normalize(X), self._z, self.n_neighbors, self.device)
            return neighbour_votes(sims, self._pos[cols], n_cls, self.temperature)
        sim = l2_normalize(X) @ self._z.T
        return weighted_knn_scores(sim, self._pos, n_cls, self.n_neighbors, self.temperature)

    def scores(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(votes, summed similarity), each (n, len(classes_)), of the similarity weighting; row by row,
        so rows scored in blocks give the same values (``rank_votes`` of them equals :meth:`rank`)."""
        if self.weights != "similarity":
            raise ValueError("scores() needs weights='similarity'")
        return self._scores(X)

    def predict_proba(self, X) -> np.ndarray:
        votes, _ = self._scores(X)
        return votes / votes.sum(axis=1, keepdims=True)

    def rank(self, X) -> np.ndarray:
        """(n, len(classes_)) labels, best first."""
        votes, sums = self._scores(X)
        if sums is None:  # uniform: as argmax, lowest class index first among ties
            order = np.argsort(-votes, axis=1, kind="stable")
        else:
            order = rank_votes(votes, sums, self.random_state)
        return self.classes_[order]

    def predict(self, X) -> np.ndarray:
        return self.rank(X)[:, 0]


def rank_votes(votes: np.ndarray, sums: np.ndarray, seed: int = 0) -> np.ndarray:
    """Column order (n, C) by votes, then summed similarity, then a seeded random key (best first)."""
    rng = np.random.default_rng(seed)
    jitter = rng.random(votes.shape)
    order = np.lexsort((jitter, sums, votes), axis=-1)
    return order[:, ::-1]


# ---------------------------------------------------------------------- nearest centroid
class CentroidProbe(ClassifierMixin, BaseEstimator):
    """Nearest class mean of L2-normalised features, by cosine similarity.

    ``predict_proba`` is ``softmax(cosine / temperature)`` over the class means.
    """

    def __init__(self, temperature: float = TEMPERATURE):
        self.temperature = temperature

    def fit(self, X, y):
        X, y = _check_training_data(self, X, y)
        self.classes_, pos = _label_positions(y)
        z = l2_normalize(X).astype(np.float64)
        means = np.zeros((len(self.classes_), z.shape[1]))
        np.add.at(means, pos, z)
        self.centroids_ = l2_normalize(means / np.bincount(pos)[:, None]).astype(np.float32)
        return self

    def similarity(self, X) -> np.ndarray:
        """(n, len(classes_)) cosine similarity to each class mean."""
        return l2_normalize(_check_query_data(self, X)) @ self.centroids_.T

    def predict_proba(self, X) -> np.ndarray:
        s = self.similarity(X).astype(np.float64) / self.temperature
        s -= s.max(axis=1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=1, keepdims=True)

    def rank(self, X) -> np.ndarray:
        order = np.argsort(-self.similarity(X), axis=1, kind="stable")  # validates X first
        return self.classes_[order]

    def predict(self, X) -> np.ndarray:
        return self.rank(X)[:, 0]


class ConstantProbe(ClassifierMixin, BaseEstimator):
    """Predicts the single class of a one-class training set (a logistic regression cannot be fitted)."""

    def fit(self, X, y):
        self.classes_ = np.unique(np.asarray(y))
        return self

    def predict_proba(self, X) -> np.ndarray:
        return np.ones((np.asarray(X).shape[0], len(self.classes_)))

    def rank(self, X) -> np.ndarray:
        return np.repeat(self.classes_[None, :], np.asarray(X).shape[0], axis=0)

    def predict(self, X) -> np.ndarray:
        return self.rank(X)[:, 0]


# ---------------------------------------------------------------------- logistic regression
def reference_logreg() -> LogisticRegression:
    """The reference's logistic regression (C=1, lbfgs, max_iter=1000, balanced weights, raw features).

    A :class:`.lean_logreg.ReferenceLogisticRegression`: the same estimator with a
    bit-identical, leaner fit.
    """
    return ReferenceLogisticRegression(random_state=42, max_iter=MAX_ITER, class_weight="balanced")


def standard_logreg(y_train: np.ndarray, seed: int = 0, device: str | None = None) -> TunedLogisticRegression:
    """Standardised features + logistic regression with C tuned by an inner stratified CV.

    The inner CV has 3 folds (2 when no class has 3 images). When no class
    has 2 images (1-shot) there is nothing to tune on, and C = 1 is used.
    Fits stop at a gradient of ``STANDARD_TOL``. :func:`cv_search_logreg` is the
    same search as scikit-learn's ``LogisticRegressionCV`` makes it; ``TunedLogisticRegression``
    with ``tol=1e-4, patience=0`` makes the same choice (tested).
    """
    return TunedLogisticRegression(Cs=C_GRID, n_inner=3, patience=PATIENCE, max_iter=MAX_ITER, tol=STANDARD_TOL,
                                   random_state=seed, device=device)


def cv_search_logreg(y_train: np.ndarray, seed: int = 0) -> Pipeline:
    """The standard logistic regression as scikit-learn's ``LogisticRegressionCV`` computes it (slow at many
    taxa): the reference :class:`.tuned_logreg.TunedLogisticRegression` is tested and benchmarked against.
    """
    counts = np.bincount(_label_positions(y_train)[1])
    if counts.max() < 2:
        lr = LogisticRegression(C=1.0, max_iter=MAX_ITER, class_weight="balanced")
    else:
        n_inner = 3 if counts.max() >= 3 else 2
        lr = LogisticRegressionCV(
            Cs=list(C_GRID), cv=StratifiedKFold(n_inner, shuffle=True, random_state=seed),
            scoring="balanced_accuracy", class_weight="balanced", max_iter=MAX_ITER,
            l1_ratios=(0.0,), use_legacy_attributes=False,
        )
    return Pipeline([("standardise", StandardScaler()), ("logreg", lr)])


def make_probe(name: str, protocol: ProtocolLike, y_train: np.ndarray, seed: int = 0, shots: int | None = None,
               device: str | None = None):
    """An unfitted probe of ``name`` in ``protocol``'s setting for the training labels ``y_train``.

    ``shots`` (few-shot only) caps the reference kNN's k at ``min(5, shots)``. ``device`` (a torch
    device, already resolved by :func:`resolve_device`; None: numpy) runs the standard logistic
    regression and kNN there; the paper's probes and the centroid always run in numpy.
    """
    protocol = get_protocol(protocol)
    if len(np.unique(y_train)) < 2 and name == "logreg":
        return ConstantProbe()
    if name == "logreg":
        return reference_logreg() if protocol.logreg == "reference" else standard_logreg(y_train, seed, device)
    if name == "knn":
        if protocol.knn == "reference":
            k = REFERENCE_K if shots is None else min(REFERENCE_K, shots)
            return KNNProbe(n_neighbors=k, weights="uniform")
        return KNNProbe(n_neighbors=STANDARD_K, weights="similarity", temperature=TEMPERATURE, random_state=seed,
                        device=device)
    if name == "centroid":
        return CentroidProbe()
    raise UserError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")


def fit_quietly(model, X, y):
    """``model.fit(X, y)`` with convergence and ill-defined-metric warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return model.fit(X, y)


def n_iterations(model) -> int | None:
    """Iterations of a fitted (reference) logistic regression, or None for other probes."""
    est = model[-1] if isinstance(model, Pipeline) else model
    if isinstance(est, (LogisticRegression, TunedLogisticRegression)):
        return int(np.max(est.n_iter_))
    return None


def rank_labels(model, X) -> np.ndarray:
    """(n, len(classes_)) labels best first, from ``model.rank`` or the probabilities (stable order)."""
    if hasattr(model, "rank"):
        return model.rank(X)
    proba = model.predict_proba(X)
    return model.classes_[np.argsort(-proba, axis=1, kind="stable")]
