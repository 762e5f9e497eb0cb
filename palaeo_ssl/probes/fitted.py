"""A probe fitted on every labelled image, to classify new images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..embeddings import load_embeddings
from .classifiers import DISPLAY_NAMES, fit_quietly, make_probe, parse_probes, rank_labels, resolve_device
from .protocols import prepare
from .splits import nested_stratified_order
from ..params import SEED, validate_params
from ..protocol import DEFAULT_PROTOCOL, ProtocolLike, get_protocol


@dataclass
class FittedProbe:
    """A probe trained on all labelled images of an embedding store.

    ``predict_proba(X)`` returns (n, C) probabilities over ``class_names``
    (a class the probe never saw has probability 0); ``predict(X)`` the
    column index of the best class; ``predict_names(X)`` its name. X is
    (n, D) features made with the same model and settings as the training store.
    """

    probe: str
    protocol: str
    model: Any
    class_names: list[str]
    dim: int
    meta: dict = field(default_factory=dict)

    def _check(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected feature rows of length {self.dim}, got shape {X.shape}")
        return X

    def predict_proba(self, X) -> np.ndarray:
        X = self._check(X)
        p = self.model.predict_proba(X)
        out = np.zeros((X.shape[0], len(self.class_names)), dtype=np.float64)
        out[:, self.model.classes_] = p
        return out

    def rank(self, X) -> np.ndarray:
        """(n, C_trained) class indices, best first (the probe's own tie rules)."""
        return rank_labels(self.model, self._check(X))

    def predict(self, X) -> np.ndarray:
        return self.rank(X)[:, 0]

    def predict_names(self, X) -> list[str]:
        return [self.class_names[i] for i in self.predict(X)]

    def top_k(self, X, k: int = 3) -> pd.DataFrame:
        """The k best classes per row with their probabilities (columns class_1, probability_1, ...)."""
        X = self._check(X)
        proba = self.predict_proba(X)
        ranking = self.rank(X)[:, :k]
        cols: dict[str, Any] = {}
        for j in range(ranking.shape[1]):
            idx = ranking[:, j]
            cols[f"class_{j + 1}"] = [self.class_names[i] for i in idx]
            cols[f"probability_{j + 1}"] = proba[np.arange(len(idx)), idx]
        return pd.DataFrame(cols)

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES[self.probe]


@validate_params({"seed": SEED})
def fit_probe(emb, probe: str = "logreg", protocol: ProtocolLike = DEFAULT_PROTOCOL, seed: int = 0,
              device: str | None = "auto") -> FittedProbe:
    """Fit ``probe`` (``logreg``, ``knn`` or ``centroid``) in ``protocol``'s setting on every labelled image.

    ``emb`` is an :class:`Embeddings` or anything :func:`load_embeddings`
    accepts. The standard logistic regression tunes C by an inner CV on these
    images. Past the protocol's ``max_train_images`` the probe learns from a
    seeded stratified subsample of that size (``meta["train_subsample"]`` says
    so). ``device`` as in :func:`.protocols.run_cross_validation`. Returns a
    :class:`FittedProbe` for new feature rows.
    """
    protocol = get_protocol(protocol)
    name = parse_probes([probe], protocol)[0]
    emb = load_embeddings(emb)
    data = prepare(emb)
    y = data.y
    keep = None
    limit = protocol.max_train_images
    subsample = None
    if limit is not None and len(y) > limit:
        keep = np.sort(nested_stratified_order(y, np.random.default_rng([seed, 0x5B5]))[:limit])
        y = y[keep]
        subsample = {"max_train_images": limit, "n_available": int(len(data.y)), "n_used": int(limit),
                     "rule": "seeded stratified subsample"}
    model = make_probe(name, protocol, y, seed=seed, device=resolve_device(device))
    fit_quietly(model, data.X if keep is None else data.take(keep), y)  # only the rows it learns from
    meta = {k: v for k, v in emb.meta.items() if not k.startswith("_")}
    if subsample:
        meta["train_subsample"] = subsample
    return FittedProbe(probe=name, protocol=protocol.name, model=model, class_names=list(data.class_names),
                       dim=data.dim, meta=meta)
