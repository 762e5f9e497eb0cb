"""The explorer's input checks: every array :func:`~palaeo_ssl.explorer.write_explorer` takes, validated and normalised.

All checks run before any thumbnail is decoded or any file is written; each
failure is a ValueError that names the argument the caller passed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class ExplorerInputs:
    """Validated explorer inputs for N points (see :func:`check_inputs`)."""

    coords: np.ndarray  # (N, 2) float64, finite
    paths: list[str]  # N relative paths
    class_names: list[str]
    labels: np.ndarray  # (N,) int64, -1 or an index into class_names
    image_files: Sequence[str | os.PathLike | None] | None  # N entries, or None
    clusters: list[tuple[str, np.ndarray]]  # (name, (N,) int64 with -1 = noise), in the caller's order
    outlier_score: np.ndarray | None  # (N,) float64, NaN = not scored
    suspect_score: np.ndarray | None  # (N,) float64, NaN = not scored
    neighbours: np.ndarray | None  # (N, k) int64 in [-1, N)
    neighbour_sim: np.ndarray | None  # (N, k) float64, only with neighbours
    scores: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (name, (N,) float64, NaN = not scored)
    predicted: np.ndarray | None = None  # (N,) int64, -1 (unassigned) or an index into class_names

    @property
    def n(self) -> int:
        return self.coords.shape[0]


def check_inputs(
    coords,
    *,
    paths: Sequence[str],
    class_names: Sequence[str],
    labels,
    image_files: Sequence[str | os.PathLike | None] | None = None,
    clusters: Mapping[str, np.ndarray] | None = None,
    outlier_score=None,
    suspect_score=None,
    neighbours=None,
    neighbour_sim=None,
    scores: Mapping[str, np.ndarray] | None = None,
    predicted=None,
) -> ExplorerInputs:
    """Check the explorer's inputs (shapes and meaning as in :func:`~palaeo_ssl.explorer.write_explorer`).

    Returns them as an :class:`ExplorerInputs`; raises ValueError when the
    arrays disagree in length or hold invalid values.
    """
    coords = check_coords(coords)
    n = coords.shape[0]
    paths = [str(p) for p in paths]
    if len(paths) != n:
        raise ValueError(f"{len(paths)} paths for {n} points")
    class_names = [str(c) for c in class_names]
    labels = check_labels(labels, n, len(class_names))
    if image_files is not None and len(image_files) != n:
        raise ValueError(f"{len(image_files)} image files for {n} points")
    nb, sim = check_neighbours(neighbours, neighbour_sim, n)
    return ExplorerInputs(
        coords=coords, paths=paths, class_names=class_names, labels=labels, image_files=image_files,
        clusters=check_clusterings(clusters, n),
        outlier_score=check_score(outlier_score, n, "outlier_score"),
        suspect_score=check_score(suspect_score, n, "suspect_score"),
        neighbours=nb, neighbour_sim=sim,
        scores=check_scores(scores, n),
        predicted=None if predicted is None else check_labels(predicted, n, len(class_names), "predicted"),
    )


def check_coords(coords) -> np.ndarray:
    """``coords`` as a finite (N, 2) float64 array."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {coords.shape}")
    if not np.isfinite(coords).all():
        raise ValueError("coords contain NaN or infinite values")
    return coords


def check_labels(labels, n: int, n_classes: int, name: str = "labels") -> np.ndarray:
    """``labels`` (or ``predicted``: ``name``) as an (N,) int64 array of -1 (none) or class indices."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n} points" if name == "labels"
                         else f"{name} has {labels.shape[0]} values for {n} points")
    if n and (labels.min() < -1 or labels.max() >= n_classes):
        raise ValueError(f"{name} must be -1 ({'unlabelled' if name == 'labels' else 'unassigned'}) "
                         "or an index into class_names")
    return labels


def check_neighbours(neighbours, neighbour_sim, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(neighbours, neighbour_sim)`` as (N, k) int64 and float64 arrays (either may be None)."""
    if neighbours is None:
        if neighbour_sim is not None:
            raise ValueError("neighbour_sim given without neighbours")
        return None, None
    nb = np.asarray(neighbours).astype(np.int64)
    if nb.ndim != 2 or nb.shape[0] != n:
        raise ValueError(f"neighbours must have shape (N, k) with N={n}, got {nb.shape}")
    if nb.size and (nb.min() < -1 or nb.max() >= n):
        raise ValueError("neighbours must hold point indices in [0, N) or -1")
    if neighbour_sim is None:
        return nb, None
    sim = np.asarray(neighbour_sim, dtype=np.float64)
    if sim.shape != nb.shape:
        raise ValueError(f"neighbour_sim has shape {sim.shape}, neighbours {nb.shape}")
    return nb, sim


def check_score(score, n: int, name: str) -> np.ndarray | None:
    """A per-point score as an (N,) float64 array (NaN = not scored), or None."""
    if score is None:
        return None
    a = np.asarray(score, dtype=np.float64).reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} values for {n} points")
    return a


def check_clusterings(clusters: Mapping[str, np.ndarray] | None, n: int) -> list[tuple[str, np.ndarray]]:
    """``[(name as str, (N,) int64 cluster labels with -1 = noise)]``, one per clustering, in order."""
    out = []
    for name, values in (clusters or {}).items():
        v = np.asarray(values).reshape(-1)
        if v.shape[0] != n:
            raise ValueError(f"clustering {name!r} has {v.shape[0]} labels for {n} points")
        out.append((str(name), v.astype(np.int64)))
    return out


def check_scores(scores: Mapping[str, np.ndarray] | None, n: int) -> list[tuple[str, np.ndarray]]:
    """``[(name as str, (N,) float64 with NaN = not scored)]``, one per entry of ``scores``, in order."""
    out = []
    for name, values in (scores or {}).items():
        name = str(name)
        if not name.strip():
            raise ValueError("scores: a score needs a name (the key of the mapping)")
        if any(name == seen for seen, _ in out):
            raise ValueError(f"scores: two scores are named {name!r}")
        out.append((name, check_score(values, n, f"score {name!r}")))
    return out
