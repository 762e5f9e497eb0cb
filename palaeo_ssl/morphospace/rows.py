"""L2-normalised rows without a normalised copy of the features.

:class:`UnitRows` stands for the unit rows of an (N, D) array (typically the
memory-mapped ``features.npy`` of a store): it keeps the array as it is and
the (N,) row norms, and normalises rows only when they are read, block by
block. Indexing returns the normalised rows asked for (a copy of those rows
only); ``x @ v``, ``w @ x``, ``x.sum(axis=0)`` and :func:`weighted_gram` walk
the array in blocks of :data:`BLOCK` rows. So an analysis on 10^6 x 1,024
features holds blocks of 8,192 rows in memory, never a second (N, D) array.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

#: rows read at a time
BLOCK = 8192


def row_norms(x: np.ndarray, block: int | None = None) -> np.ndarray:
    """(N,) float64 Euclidean norms of the rows of ``x``, block by block."""
    block = block or BLOCK
    n = x.shape[0]
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, block):
        b = np.asarray(x[start:start + block], dtype=np.float32)
        out[start:start + b.shape[0]] = np.sqrt(np.einsum("ij,ij->i", b, b, dtype=np.float64))
    return out


class UnitRows:
    """The unit rows of ``raw`` (N, D), normalised when read; ``raw`` is never copied.

    ``norms`` (N,) may be given when known. Raises ValueError on a row of zeros
    (its cosine distance is undefined).
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, raw: np.ndarray, norms: np.ndarray | None = None, block: int | None = None):
        if isinstance(raw, UnitRows):
            raw, norms = raw.raw, raw.norms
        if raw.ndim != 2:
            raise ValueError(f"features must be 2-D (N x D), got shape {raw.shape}")
        self.raw = raw
        self.block = int(block or BLOCK)
        self.norms = row_norms(raw, self.block) if norms is None else np.asarray(norms, dtype=np.float64)
        if raw.shape[0] and float(self.norms.min()) == 0.0:
            bad = int(np.flatnonzero(self.norms == 0)[0])
            raise ValueError(f"row {bad} of the features is all zeros: its cosine distance is undefined")
        self._inv = (1.0 / self.norms).astype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.raw.shape)

    def __len__(self) -> int:
        return self.raw.shape[0]

    def __repr__(self) -> str:
        return f"UnitRows({self.shape[0]} x {self.shape[1]}, {type(self.raw).__name__})"

    # ------------------------------------------------------------------ reading rows
    def __getitem__(self, index):
        """The normalised rows ``index`` (slice, int, int array or mask): a new float32 array of those rows."""
        cols = None
        if isinstance(index, tuple):
            index, cols = index
        if isinstance(index, (int, np.integer)):
            out = np.asarray(self.raw[index], dtype=np.float32) * self._inv[index]
        else:
            if isinstance(index, np.ndarray) and index.dtype == bool:
                index = np.flatnonzero(index)
            out = np.asarray(self.raw[index], dtype=np.float32) * self._inv[index][:, None]
        return out if cols is None else out[..., cols]

    def blocks(self, block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, rows)`` for consecutive blocks of normalised rows."""
        step = int(block or self.block)
        for start in range(0, self.shape[0], step):
            yield start, self[start:start + step]

    def __array__(self, dtype=None, copy=None):
        """All rows as one normalised array: a full copy, for callers outside the analyses (they use blocks)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    # ------------------------------------------------------------------ products
    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        """``X @ v`` for v (D,) or (D, k): (N,) or (N, k) float32."""
        v = np.asarray(v, dtype=np.float32)
        out = np.empty((self.shape[0],) + v.shape[1:], dtype=np.float32)
        for start, b in self.blocks():
            out[start:start + b.shape[0]] = b @ v
        return out

    def __rmatmul__(self, w: np.ndarray) -> np.ndarray:
        """``w @ X`` for w (N,) or (k, N): (D,) or (k, D) float64 sums."""
        w = np.asarray(w)
        acc = np.zeros(w.shape[:-1] + (self.shape[1],), dtype=np.float64)
        for start, b in self.blocks():
            acc += w[..., start:start + b.shape[0]].astype(np.float32) @ b
        return acc

    def sum(self, axis: int = 0, dtype=np.float64) -> np.ndarray:
        """Column sums (axis 0 only), float64."""
        if axis != 0:
            raise ValueError("UnitRows.sum supports axis=0 only")
        acc = np.zeros(self.shape[1], dtype=np.float64)
        for _, b in self.blocks():
            acc += b.sum(axis=0, dtype=np.float64)
        return acc.astype(dtype)

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """``queries @ X.T``: (M, N) float32 cosine similarities of unit ``queries`` (M, D) to every row."""
        q = np.asarray(queries, dtype=np.float32)
        out = np.empty((q.shape[0], self.shape[0]), dtype=np.float32)
        for start, b in self.blocks():
            out[:, start:start + b.shape[0]] = q @ b.T
        return out


def iter_blocks(x, block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, rows)`` blocks of an array or a :class:`UnitRows` (rows of an array are views)."""
    block = block or BLOCK
    if isinstance(x, UnitRows):
        yield from x.blocks(block)
        return
    for start in range(0, x.shape[0], block):
        yield start, x[start:start + block]


def similarities(x, queries: np.ndarray) -> np.ndarray:
    """``queries @ x.T`` for an array or a :class:`UnitRows` ``x``: (M, N) float32."""
    if isinstance(x, UnitRows):
        return x.similarities(queries)
    return np.asarray(queries, dtype=np.float32) @ x.T


def weighted_gram(x, w: np.ndarray | None = None, center: np.ndarray | None = None,
                  block: int | None = None) -> tuple[np.ndarray, float]:
    """``Σ_i w_i (x_i - c)(x_i - c)ᵀ`` (D, D) float64 and ``Σ_i w_i |x_i - c|⁴``, block by block.

    ``x`` an array or :class:`UnitRows`, ``w`` (N,) weights (default 1), ``center``
    (D,) ``c`` (default 0). Each block is multiplied in float32 and summed in float64.
    """
    d = x.shape[1]
    g = np.zeros((d, d), dtype=np.float64)
    fourth = 0.0
    c32 = None if center is None else np.asarray(center, dtype=np.float32)
    for start, b in iter_blocks(x, block):
        b = np.asarray(b, dtype=np.float32)
        if c32 is not None:
            b = b - c32
        sq = np.einsum("ij,ij->i", b, b, dtype=np.float64)
        if w is None:
            fourth += float((sq * sq).sum())
        else:
            wb = np.asarray(w[start:start + b.shape[0]], dtype=np.float64)
            keep = wb > 0
            if not keep.all():
                b, wb, sq = b[keep], wb[keep], sq[keep]
            fourth += float((wb * sq * sq).sum())
            b = b * np.sqrt(wb).astype(np.float32)[:, None]
        g += (b.T @ b).astype(np.float64)
    return g, fourth


__all__ = ["BLOCK", "UnitRows", "row_norms", "iter_blocks", "similarities", "weighted_gram"]
