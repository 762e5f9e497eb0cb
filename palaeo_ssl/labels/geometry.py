"""Cosine geometry of L2-normalised features without N x N matrices.

Every function takes L2-normalised float32 rows (see
:func:`palaeo_ssl.embeddings.l2_normalize`) and works in row blocks of at most
:data:`BLOCK_BYTES` of similarities, so memory stays flat whatever N is.
"""

from __future__ import annotations

import numpy as np

#: the largest block of similarities held at once (bytes of float32)
BLOCK_BYTES = 64 * 2**20


def _rows_per_block(n_ref: int) -> int:
    return max(1, BLOCK_BYTES // (4 * max(n_ref, 1)))


def nearest(query: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the largest cosine similarity to a ``ref`` row and that row's index.

    ``query`` (n, D), ``ref`` (m, D), both L2-normalised; returns ((n,) float32 similarity,
    (n,) int64 index). With no ``ref`` rows the similarity is -inf and the index -1.
    """
    n = query.shape[0]
    best = np.full(n, -np.inf, dtype=np.float32)
    arg = np.full(n, -1, dtype=np.int64)
    if ref.shape[0] == 0 or n == 0:
        return best, arg
    step = _rows_per_block(ref.shape[0])
    for a in range(0, n, step):
        s = query[a:a + step] @ ref.T
        arg[a:a + step] = np.argmax(s, axis=1)
        best[a:a + step] = s[np.arange(s.shape[0]), arg[a:a + step]]
    return best, arg


def nearest_per_group(query: np.ndarray, ref: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n, n_groups) largest cosine similarity of each query row to the ``ref`` rows of each group.

    ``groups`` (m,) holds each ref row's group in 0..n_groups-1; a group without
    rows gets -inf.
    """
    n = query.shape[0]
    out = np.full((n, n_groups), -np.inf, dtype=np.float32)
    if ref.shape[0] == 0 or n == 0:
        return out
    order = np.argsort(groups, kind="stable")
    ref, groups = ref[order], np.asarray(groups)[order]
    present, starts = np.unique(groups, return_index=True)
    step = _rows_per_block(ref.shape[0])
    for a in range(0, n, step):
        s = query[a:a + step] @ ref.T
        out[a:a + step][:, present] = np.maximum.reduceat(s, starts, axis=1)
    return out


def density(z: np.ndarray, members: np.ndarray, k: int = 20, max_ref: int = 2000,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Typicality of each row of ``members`` within that set: mean cosine similarity to its k nearest others.

    ``members`` are row indices into ``z``. For a set larger than ``max_ref`` the
    neighbours are looked for among a seeded sample of ``max_ref`` of its rows
    (the ranking of typicality barely changes; the cost stays linear in N).
    Returns (len(members),) float32; a set of one row gets 0.
    """
    members = np.asarray(members)
    m = len(members)
    if m <= 1:
        return np.zeros(m, dtype=np.float32)
    if m > max_ref:
        rng = rng if rng is not None else np.random.default_rng(0)
        ref_idx = np.sort(rng.choice(members, size=max_ref, replace=False))
    else:
        ref_idx = members
    ref = z[ref_idx]
    kk = min(k, len(ref_idx) - 1)
    out = np.empty(m, dtype=np.float32)
    step = _rows_per_block(len(ref_idx))
    for a in range(0, m, step):
        rows = members[a:a + step]
        s = z[rows] @ ref.T
        s[rows[:, None] == ref_idx[None, :]] = -np.inf  # a row is not its own neighbour
        top = np.partition(s, s.shape[1] - kk, axis=1)[:, -kk:]
        out[a:a + step] = top.mean(axis=1)
    return out
