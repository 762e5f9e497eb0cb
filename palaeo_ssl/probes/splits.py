"""How images are split: the reference protocol's subsamples and folds, this
package's repeated (grouped) stratified K-fold with nested learning-curve
subsets, and few-shot episodes.

All functions take label arrays and return integer index arrays; every random
step is seeded.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import (
    ShuffleSplit,
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
    train_test_split,
)

from ..params import ParameterError

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 1.0)
SHOTS = (1, 2, 3, 5, 10, 20)


# ---------------------------------------------------------------------- the reference protocol
def reference_subsample(y: np.ndarray, fraction: float, random_state: int) -> np.ndarray:
    """Indices of the reference's stratified subsample of ``fraction`` of the images.

    ``train_test_split(train_size=fraction, stratify=y, shuffle=True,
    random_state=random_state)``; all images, in order, when fraction >= 1.
    Raises ``ValueError`` where scikit-learn cannot stratify.
    """
    idx = np.arange(len(y))
    if fraction >= 1.0:
        return idx
    sub, _ = train_test_split(idx, train_size=fraction, stratify=y, random_state=random_state, shuffle=True)
    return np.asarray(sub)


def reference_folds(y: np.ndarray, random_state: int, n_splits: int = 5,
                    test_size: float = 0.2) -> list[tuple[np.ndarray, np.ndarray]]:
    """The reference's folds of ``y`` (positions into ``y``).

    ``StratifiedKFold(n_splits, shuffle=True)`` when every class has at least
    ``n_splits`` images, else ``StratifiedShuffleSplit(n_splits, test_size)``,
    else (when that cannot stratify) ``ShuffleSplit`` with the same arguments.
    """
    y = np.asarray(y)
    idx = np.arange(len(y))
    _, counts = np.unique(y, return_counts=True)
    if counts.min() >= n_splits:
        return list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state).split(idx, y))
    try:
        return list(StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size,
                                           random_state=random_state).split(idx, y))
    except ValueError:
        return list(ShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=random_state).split(idx))


def fraction_is_feasible(n_images: int, n_classes: int, fraction: float) -> bool:
    """The reference skips fractions whose subsample would hold fewer images than classes."""
    return fraction >= 1.0 or math.ceil(fraction * n_images) >= n_classes


def reference_episode(y: np.ndarray, shots: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A reference few-shot episode: ``min(shots, n_c - 1)`` support images per class, the rest as query.

    Classes are visited in sorted order and each support is drawn with
    ``rng.choice(members, size, replace=False)``; the query is every other
    image (sorted). Returns (support, query) indices.
    """
    support = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        size = min(shots, len(members) - 1)
        support.extend(rng.choice(members, size=size, replace=False).tolist())
    support = np.asarray(support, dtype=np.intp)
    query = np.setdiff1d(np.arange(len(y)), support)
    return support, query


def episode_rng(seed: int, shots: int, episode: int) -> np.random.Generator:
    """The generator of few-shot episode ``episode`` at ``shots`` (same for every probe)."""
    return np.random.default_rng([int(seed), int(shots), int(episode)])


# ---------------------------------------------------------------------- the standard protocol
@dataclass
class Split:
    """One outer split of the standard protocol (indices into the labelled images)."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray
    #: training subset per data fraction (nested: each holds the smaller ones)
    subsets: dict[float, np.ndarray] = field(default_factory=dict)
    #: training images the fraction had before the size limit (equal to the subset's size below it)
    available: dict[float, int] = field(default_factory=dict)


def nested_stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(len(y))`` whose every prefix is close to stratified.

    Within each class the images are shuffled; the j-th of a class of n_c
    gets the key ``(j + u) / n_c`` (u uniform in [0, 1)) and all images are
    sorted by key. A prefix of length m therefore holds about ``m * n_c / N``
    images of each class, and shorter prefixes are subsets of longer ones.
    """
    y = np.asarray(y)
    keys = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        perm = rng.permutation(members)
        keys[perm] = (np.arange(len(perm)) + rng.random(len(perm))) / len(perm)
    return np.argsort(keys, kind="stable")


def standard_splits(y: np.ndarray, groups: np.ndarray | None, n_splits: int, n_repeats: int, seed: int,
                    fractions=FRACTIONS, max_train: int | None = None) -> list[Split]:
    """Repeated stratified K-fold (grouped when ``groups`` is given) with nested training subsets.

    Repeat r uses ``StratifiedKFold`` / ``StratifiedGroupKFold`` with
    ``shuffle=True, random_state=seed + r``; the test fold is fixed and the
    training subset of fraction f holds ``max(1, round(f * n_train))`` images
    of the fold's nested stratified order, or its first ``max_train`` images
    when there are more (a stratified subsample, seeded like the order; the
    test fold is never subsampled).
    """
    y = np.asarray(y)
    idx = np.arange(len(y))
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < n_splits:
            raise ParameterError(
                "n_splits", f"only {n_groups} specimens for {n_splits} folds; use fewer folds ({{name}}) or drop "
                            "the specimen column")
    elif np.bincount(np.unique(y, return_inverse=True)[1]).max() < n_splits:
        raise ParameterError("n_splits", f"no class has {n_splits} images, so {n_splits}-fold cross-validation is "
                                         "impossible; use fewer folds ({name})")
    out = []
    for r in range(n_repeats):
        if groups is not None:
            cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + r)
            folds = cv.split(idx, y, groups)
        else:
            cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed + r)
            folds = cv.split(idx, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer members than n_splits"
            folds = list(folds)
        for f_i, (tr, te) in enumerate(folds):
            order = nested_stratified_order(y[tr], np.random.default_rng([seed, r, f_i]))
            subsets, available = {}, {}
            for frac in fractions:
                m = len(tr) if frac >= 1.0 else max(1, int(round(frac * len(tr))))
                available[float(frac)] = m
                subsets[float(frac)] = np.sort(tr[order[:m if max_train is None else min(m, max_train)]])
            out.append(Split(repeat=r, fold=f_i, train=np.asarray(tr), test=np.asarray(te), subsets=subsets,
                             available=available))
    return out


def standard_episode(y: np.ndarray, shots: int, n_query: int, rng: np.random.Generator,
                     classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A balanced few-shot episode over ``classes``: ``shots`` support and up to ``n_query`` query images each.

    Returns (support, query) indices. Classes are visited in sorted order.
    """
    support, query = [], []
    for c in classes:
        members = rng.permutation(np.flatnonzero(y == c))
        support.extend(members[:shots].tolist())
        query.extend(members[shots:shots + n_query].tolist())
    return np.asarray(support, dtype=np.intp), np.asarray(query, dtype=np.intp)
