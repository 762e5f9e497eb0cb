"""Confusions that stay readable with hundreds of taxa, and accuracy at each taxonomic rank.

Up to :data:`FULL_MATRIX_MAX_CLASSES` classes the probe stage draws the full
confusion matrix with every class named. Above it, a 0.75 x 18-inch axis
leaves less than 9 points per class, the names shrink below a readable 5
points and the cells to a few pixels (checked on rendered figures at 60, 100
and 281 classes), so it writes instead:

* the most-confused pairs (:func:`most_confused_pairs`: true class, predicted
  class, count, share of the true class, the count the other way round, and
  whether both are of one genus), as a table and a figure with example images
  of both classes where the images exist;
* the matrix with its classes ordered by a hierarchical clustering of the
  class centroids (:func:`centroid_order`), so confusable taxa sit together;
* the matrix at a higher rank (genus by default; :mod:`palaeo_ssl.taxonomy`).

Accuracy at each rank (:func:`rank_accuracy`) comes from the same confusion
matrix: a prediction counts as correct at the genus rank when the predicted
class is of the true class's genus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..taxonomy import CLASS_RANK, Taxonomy, collapse_confusion

#: above this many classes the full named matrix is replaced by the views of this module
FULL_MATRIX_MAX_CLASSES = 60
#: rows of the most-confused-pairs table (and the pairs in its figure)
N_PAIRS = 30
N_PAIRS_FIGURE = 12
_BLOCK = 8192


# ---------------------------------------------------------------------- tables
def most_confused_pairs(counts: np.ndarray, class_names: Sequence[str], top: int = N_PAIRS,
                        taxonomy: Taxonomy | None = None) -> pd.DataFrame:
    """The ``top`` largest off-diagonal cells of a confusion matrix (rows true, columns predicted).

    Columns: ``true_class``, ``predicted_class``, ``count`` (test images of the
    true class predicted as the other), ``share_of_true`` (count / images of the
    true class), ``reverse_count`` (the other way round), and with a taxonomy
    ``true_<rank>``, ``predicted_<rank>``, ``same_<rank>`` for its first rank.
    Sorted by count, then share, then names; zero cells are never listed.
    """
    cm = np.asarray(counts, dtype=np.int64)
    names = [str(c) for c in class_names]
    off = cm.copy()
    np.fill_diagonal(off, 0)
    i, j = np.nonzero(off)
    rows = cm.sum(axis=1)
    share = off[i, j] / np.maximum(rows[i], 1)
    frame = pd.DataFrame({"true_class": [names[a] for a in i], "predicted_class": [names[b] for b in j],
                          "count": off[i, j], "share_of_true": share, "reverse_count": off[j, i],
                          "_i": i, "_j": j})
    frame = frame.sort_values(["count", "share_of_true", "true_class", "predicted_class"],
                              ascending=[False, False, True, True]).head(top)
    if taxonomy is not None and taxonomy.rank_names:
        rank = taxonomy.rank_names[0]
        codes, groups = taxonomy.mapping(rank)
        frame[f"true_{rank}"] = [groups[codes[a]] for a in frame["_i"]]
        frame[f"predicted_{rank}"] = [groups[codes[b]] for b in frame["_j"]]
        frame[f"same_{rank}"] = codes[frame["_i"].to_numpy()] == codes[frame["_j"].to_numpy()]
    frame = frame.rename(columns={"_i": "true_label", "_j": "predicted_label"}).reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def rank_accuracy(counts: np.ndarray, taxonomy: Taxonomy) -> list[dict]:
    """Accuracy and balanced accuracy at the class rank and at each higher rank of ``taxonomy``.

    One dict per rank: ``rank``, ``n_groups``, ``top1_accuracy`` (trace / total of the
    confusion matrix summed into that rank's groups), ``balanced_accuracy`` (mean
    recall over the groups with test images).
    """
    out = []
    for rank in [CLASS_RANK, *taxonomy.rank_names]:
        cm = np.asarray(counts, dtype=np.int64) if rank == CLASS_RANK else collapse_confusion(counts, taxonomy, rank)[0]
        total = cm.sum()
        support = cm.sum(axis=1)
        has = support > 0
        out.append({"rank": rank, "n_groups": int(cm.shape[0]),
                    "top1_accuracy": float(np.trace(cm) / total) if total else float("nan"),
                    "balanced_accuracy": float(np.mean(np.diag(cm)[has] / support[has])) if has.any() else float("nan")})
    return out


# ---------------------------------------------------------------------- class centroids and their order
def class_centroids(features: np.ndarray, labels: np.ndarray, n_classes: int, block: int = _BLOCK) -> np.ndarray:
    """Mean of the L2-normalised rows of each class, (n_classes, D) float64; rows of label -1 are ignored.

    Works block by block on ``features`` (e.g. a memory-mapped store): no copy of the whole array.
    """
    y = np.asarray(labels, dtype=np.int64)
    d = features.shape[1]
    sums = np.zeros((n_classes, d), dtype=np.float64)
    counts = np.bincount(y[y >= 0], minlength=n_classes)[:n_classes].astype(np.float64)
    for start in range(0, features.shape[0], block):
        yb = y[start:start + block]
        keep = yb >= 0
        if not keep.any():
            continue
        xb = np.asarray(features[start:start + block], dtype=np.float32)[keep]
        xb /= np.maximum(np.linalg.norm(xb, axis=1, keepdims=True), 1e-12)
        onehot = np.zeros((xb.shape[0], n_classes), dtype=np.float32)
        onehot[np.arange(xb.shape[0]), yb[keep]] = 1.0
        sums += (onehot.T @ xb).astype(np.float64)
    return sums / np.maximum(counts, 1.0)[:, None]


def centroid_order(centroids: np.ndarray) -> np.ndarray:
    """Order of the classes from an average-linkage clustering (cosine) of their centroids.

    Leaves in the optimal order of the dendrogram (scipy, deterministic), so that
    classes with similar centroids are adjacent. Classes without images (zero
    centroid) go last, in label order.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage

    c = np.asarray(centroids, dtype=np.float64)
    ok = np.flatnonzero(np.linalg.norm(c, axis=1) > 0)
    rest = np.setdiff1d(np.arange(c.shape[0]), ok)
    if ok.size <= 2:
        return np.concatenate([ok, rest]).astype(np.int64)
    z = linkage(c[ok], method="average", metric="cosine", optimal_ordering=True)
    return np.concatenate([ok[leaves_list(z)], rest]).astype(np.int64)


# ---------------------------------------------------------------------- everything the writer needs
@dataclass
class ConfusionViews:
    """The readable confusion outputs of one classifier.

    classifier : whose confusions (the logistic regression when it ran)
    counts : (C, C) class confusion counts; class_names : the C names
    order : (C,) class order by centroid clustering
    pairs : :func:`most_confused_pairs`
    by_rank : rank -> ((G, G) counts, G group names), for each higher rank
    taxonomy : where the ranks came from
    examples : class name -> path of an example image that exists (for the pairs figure)
    """

    classifier: str
    counts: np.ndarray
    class_names: list[str]
    order: np.ndarray
    pairs: pd.DataFrame
    by_rank: dict[str, tuple[np.ndarray, list[str]]]
    taxonomy: Taxonomy
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def full_matrix_readable(self) -> bool:
        return len(self.class_names) <= FULL_MATRIX_MAX_CLASSES

    def ordered(self) -> tuple[np.ndarray, list[str]]:
        """The counts and names in centroid-clustering order."""
        o = self.order
        return self.counts[np.ix_(o, o)], [self.class_names[i] for i in o]

    def ordered_table(self) -> pd.DataFrame:
        """The ordered matrix as a wide table: one row per true class, in order, counts per predicted class."""
        cm, names = self.ordered()
        frame = pd.DataFrame(cm, columns=names)
        frame.insert(0, "true_class", names)
        frame.insert(1, "order", np.arange(len(names)))
        return frame


def example_images(emb, class_names: Sequence[str], wanted: Sequence[str]) -> dict[str, str]:
    """An existing image file for each class in ``wanted`` (the first in path order); classes without one are left out."""
    from pathlib import Path

    if emb.data_root is None and not any(Path(p).is_absolute() for p in emb.paths[:1]):
        return {}
    index = {str(c): k for k, c in enumerate(emb.class_names)}
    out = {}
    for name in dict.fromkeys(wanted):
        k = index.get(str(name))
        if k is None:
            continue
        for i in np.flatnonzero(emb.labels == k)[:5]:
            p = emb.image_path(int(i))
            if p.is_file():
                out[str(name)] = str(p)
                break
    return out


def confusion_views(emb, confusion: dict[str, np.ndarray], class_names: Sequence[str], taxonomy: Taxonomy,
                    classifier: str) -> ConfusionViews:
    """The :class:`ConfusionViews` of ``classifier``'s confusion matrix over ``class_names`` (the probes' classes).

    ``emb`` supplies the features for the class centroids (read block by block)
    and the example images; its labels are mapped to ``class_names`` by name.
    """
    counts = np.asarray(confusion[classifier], dtype=np.int64)
    names = [str(c) for c in class_names]
    pos = {c: i for i, c in enumerate(names)}
    remap = np.array([pos.get(str(c), -1) for c in emb.class_names] + [-1], dtype=np.int64)
    y = remap[np.where(emb.labels >= 0, emb.labels, len(emb.class_names))]
    order = centroid_order(class_centroids(emb.features, y, len(names)))
    pairs = most_confused_pairs(counts, names, taxonomy=taxonomy)
    by_rank = {r: collapse_confusion(counts, taxonomy, r) for r in taxonomy.rank_names if taxonomy.is_informative(r)}
    top = pairs.head(N_PAIRS_FIGURE)
    examples = example_images(emb, names, [*top["true_class"], *top["predicted_class"]])
    return ConfusionViews(classifier=classifier, counts=counts, class_names=names, order=order, pairs=pairs,
                          by_rank=by_rank, taxonomy=taxonomy, examples=examples)


__all__ = ["FULL_MATRIX_MAX_CLASSES", "N_PAIRS", "ConfusionViews", "most_confused_pairs", "rank_accuracy",
           "class_centroids", "centroid_order", "confusion_views", "example_images"]
