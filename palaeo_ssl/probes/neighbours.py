"""Nearest-neighbour candidates shared by every fold of the reference protocol's kNN.

The reference computes, for every fold, the cosine distances from each test
image to each training image (one matrix product per fold) and keeps the 5
nearest. Over 5 fractions x 10 repeats x 5 folds that is the same distance
computed many times: at 20,000 images it is ~13 TFLOP, more than all
logistic-regression fits. Here every image's ``m`` nearest images *among all
images* are found once (:func:`candidate_lists`); a fold then takes, for each
test image, the first k candidates that belong to its training part.

That is exactly the reference's answer, not an approximation, when

* the distances are bit-identical to the ones the reference computes per fold:
  single-threaded BLAS gives each entry of a matrix product the same rounding
  whatever the other rows and columns, for products large enough to use the
  blocked kernel; smaller products (where BLAS switches to small-matrix or
  matrix-vector kernels) are computed per fold as the reference does
  (:func:`shared_distances_apply`); and
* the k-th and (k+1)-th nearest training images have different distances, so
  the k nearest form a unique set, and at least k + 1 training images are
  among the candidates (so no image outside the list can be nearer).

Folds where any test image misses either condition are computed per fold, as
the reference does. ``tests/test_probes.py`` checks the result against
scikit-learn's pipeline at shapes that take the shared path.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import normalize

#: candidates kept per image
N_CANDIDATES = 128
#: per-fold products smaller than this (test x train x features) are computed per fold
MIN_SHARED_FLOPS = 8_000_000
MIN_SHARED_SIDE = 64


def double_normalize(X: np.ndarray) -> np.ndarray:
    """L2-normalised twice, as the reference's ``Normalizer`` followed by ``cosine_similarity``.

    Row-wise, so ``double_normalize(X)[rows] == double_normalize(X[rows])`` bit for bit.
    """
    return normalize(normalize(np.asarray(X)))


def shared_distances_apply(n_test: int, n_train: int, dim: int) -> bool:
    """Whether a product of this shape is large enough for its entries to equal the shared ones."""
    return (min(n_test, n_train) >= MIN_SHARED_SIDE
            and float(n_test) * float(n_train) * float(dim) >= MIN_SHARED_FLOPS)


def candidates_apply(n: int, dim: int, block: int = 512) -> bool:
    """Whether the candidate lists of n images (computed in row blocks) use the blocked BLAS kernel."""
    rows = n // max(1, n // block)  # the smallest block of :func:`candidate_lists`
    return shared_distances_apply(rows, n, dim)


def candidate_block(z: np.ndarray, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` nearest images of each of ``rows`` among all rows of ``z`` (itself included).

    ``z`` is (N, D), double-normalised. Distances are computed as the
    reference does (``d = clip(1 - z_i . z_j, 0, 2)`` in the input dtype).
    Returns (indices (len(rows), m) int32, distances (len(rows), m) float32),
    sorted by distance.
    """
    d = z[rows] @ z.T
    d *= -1
    d += 1
    np.clip(d, 0.0, 2.0, out=d)
    m = min(m, d.shape[1])
    part = np.argpartition(d, m - 1, axis=1)[:, :m]
    dist = np.take_along_axis(d, part, axis=1)
    order = np.argsort(dist, axis=1, kind="stable")
    return (np.take_along_axis(part, order, axis=1).astype(np.int32),
            np.take_along_axis(dist, order, axis=1).astype(np.float32))


def candidate_lists(z: np.ndarray, m: int = N_CANDIDATES, block: int = 512, n_jobs: int = 1):
    """Candidate lists of every row of ``z`` (see :func:`candidate_block`), in row blocks.

    Returns (indices (N, m) int32, distances (N, m) float32). With ``n_jobs``
    > 1 the row blocks run in worker processes (one BLAS thread each), which
    read ``z`` from a memory-mapped temporary file.
    """
    import tempfile
    from pathlib import Path

    from ..compute import compute_context

    n = z.shape[0]
    m = min(m, n)
    # blocks of equal size (never a tiny last block, which BLAS would treat with other kernels)
    blocks = np.array_split(np.arange(n), max(1, n // block))
    parts = None
    if n_jobs != 1 and len(blocks) > 1:
        from joblib import Parallel, delayed

        try:
            with tempfile.TemporaryDirectory(prefix="palaeo-ssl-knn-") as tmp:
                path = str(Path(tmp) / "z.npy")
                np.save(path, np.ascontiguousarray(z))
                parts = Parallel(n_jobs=n_jobs, backend="loky")(
                    delayed(_block_from_file)(path, b[0], b[-1] + 1, m) for b in blocks)
        except (OSError, ImportError, RuntimeError):  # no worker processes here: run in this process
            parts = None
    if parts is None:
        with compute_context(blas=1):
            parts = [candidate_block(z, b, m) for b in blocks]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _block_from_file(path: str, start: int, stop: int, m: int):
    from ..compute import compute_context

    with compute_context(blas=1):
        return candidate_block(np.load(path, mmap_mode="r"), np.arange(start, stop), m)


def candidate_votes(cand_idx: np.ndarray, cand_dist: np.ndarray, train: np.ndarray, train_pos: np.ndarray,
                    n_total: int, n_classes: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform k-NN probabilities of test images from their candidate lists, where they are determined.

    Parameters
    ----------
    cand_idx, cand_dist : (n_test, m) candidate lists of the test images (sorted by distance).
    train : (n_train,) indices of the training images (into the N images).
    train_pos : (n_train,) class position (0..n_classes-1) of each training image.
    n_total : N.

    Returns (proba (n_test, n_classes) float64 votes / k, bit-identical to the
    reference's in the rows where ``resolved`` is True; resolved (n_test,) bool).
    A row is unresolved when fewer than k + 1 of its candidates are training
    images or its k-th and (k+1)-th nearest training images are equally far
    (then ``argpartition`` on the whole row decides).
    """
    pos_of = np.full(n_total, -1, dtype=np.intp)
    pos_of[train] = train_pos
    n = cand_idx.shape[0]
    proba = np.zeros((n, n_classes), dtype=np.float64)
    if cand_idx.shape[1] == 0:
        return proba, np.zeros(n, dtype=bool)
    cls = pos_of[cand_idx]                      # class position of each candidate, -1 if not in training
    member = cls >= 0
    count = np.cumsum(member, axis=1)
    enough = count[:, -1] >= k + 1
    rows = np.arange(n)
    kth = np.argmax(count >= k, axis=1)         # position of the k-th training candidate
    next_ = np.argmax(count >= k + 1, axis=1)   # ... and of the (k+1)-th
    resolved = enough & (cand_dist[rows, kth] < cand_dist[rows, next_])
    chosen = member & (count <= k) & resolved[:, None]
    r, c = np.nonzero(chosen)
    np.add.at(proba, (r, cls[r, c]), 1.0)
    sums = proba.sum(axis=1, keepdims=True)
    np.divide(proba, sums, out=proba, where=sums > 0)
    return proba, resolved
