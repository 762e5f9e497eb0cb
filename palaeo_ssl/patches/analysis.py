"""What the patch features say: foreground mask, PCA colours and patch correspondences.

Pure NumPy / scikit-learn on patch grids (h, w, D); nothing here runs a model,
so every function can be checked on constructed features.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from ..compute import one_blas_thread
from ..errors import UserError
from ..params import ParameterError


def _literal(text: str) -> str:
    """``text`` as data inside a :class:`ParameterError` template (see :func:`palaeo_ssl.params.literal`)."""
    from ..params import literal

    return literal(text)


log = logging.getLogger(__name__)

PERCENTILES = (1.0, 99.0)


def _pca(x: np.ndarray, n_components: int) -> PCA:
    """Exact, deterministic PCA of (N, D) ``x`` (no randomised solver, so no seed is needed).

    BLAS is held to one thread: these matrices are small (about 10^3 x 10^3), and
    multi-threaded OpenBLAS on a busy CPU was measured 15-50x slower here.
    """
    solver = "covariance_eigh" if x.shape[0] >= x.shape[1] else "full"
    with one_blas_thread():
        return PCA(n_components=n_components, svd_solver=solver).fit(x)


# ---------------------------------------------------------------------- foreground
def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of 1-D ``values``: the cut that maximises the between-class variance.

    Values above the returned threshold form the upper class. Constant input
    returns that constant.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)  # weight of the lower class when cutting after bin i
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = (w0 * w1 * (m0 - m1) ** 2)[:-1]
    # empty bins between two modes give a plateau of equal maxima: cut in its middle, not at its start
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    plateau = best[: np.argmax(np.diff(np.append(best, best[-1] + 2)) > 1) + 1]
    return float(edges[int(plateau[len(plateau) // 2]) + 1])


def _border(grid: tuple[int, int]) -> np.ndarray:
    h, w = grid
    b = np.zeros((h, w), dtype=bool)
    b[0, :] = b[-1, :] = b[:, 0] = b[:, -1] = True
    return b


@dataclass
class Foreground:
    """Foreground of one patch grid.

    ``score``: (h, w) float32 in [0, 1], the first principal component of the
    patch tokens, oriented so that the object scores high and min-max scaled;
    ``mask``: (h, w) bool, ``score > threshold``; ``threshold`` on the score's
    [0, 1] scale; ``method``: ``"otsu"`` or ``"fixed"``; ``flipped``: whether the
    principal component's sign was reversed; ``explained_variance``: the
    fraction of patch-token variance along that component.
    """

    score: np.ndarray
    mask: np.ndarray
    threshold: float
    method: str
    flipped: bool
    explained_variance: float

    @property
    def fraction(self) -> float:
        """Share of patches in the foreground."""
        return float(self.mask.mean())


def foreground(patches: np.ndarray, threshold: float | str = "otsu", orientation: str = "auto") -> Foreground:
    """Foreground mask of a patch grid from its first principal component.

    ``patches``: (h, w, D). ``threshold``: ``"otsu"`` or a number in [0, 1] on
    the scaled score. ``orientation``: ``"auto"`` points the component so that
    the image border scores lower than the interior (specimens are photographed
    inside the frame; on grids too thin to have an interior, the smaller side
    of the cut is taken as the object); ``"keep"`` and ``"flip"`` force it.
    """
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim != 3:
        raise ValueError(f"patches must be (h, w, D); got shape {patches.shape}")
    h, w, d = patches.shape
    flat = patches.reshape(-1, d)
    if h * w < 2 or float(np.ptp(flat, axis=0).max()) == 0.0:
        log.warning("all patches are identical: the whole image is taken as foreground")
        ones = np.ones((h, w), dtype=bool)
        return Foreground(np.ones((h, w), np.float32), ones, 0.0, "constant", False, 0.0)
    pca = _pca(flat, 1)
    pc1 = pca.transform(flat)[:, 0].reshape(h, w)

    if orientation == "keep":
        flipped = False
    elif orientation == "flip":
        flipped = True
    elif orientation == "auto":
        border = _border((h, w))
        if (~border).any():
            flipped = bool(pc1[border].mean() > pc1[~border].mean())
        else:
            flipped = bool((pc1 > otsu_threshold(pc1)).mean() > 0.5)
    else:
        raise UserError(f"unknown foreground orientation {orientation!r}; choose auto, keep or flip")
    if flipped:
        pc1 = -pc1
    score = ((pc1 - pc1.min()) / (pc1.max() - pc1.min())).astype(np.float32)

    if isinstance(threshold, str):
        if threshold.lower() != "otsu":
            raise ParameterError("threshold", "{name} must be 'otsu' or a number between 0 and 1; got "
                                 + _literal(repr(threshold)))
        t, method = otsu_threshold(score), "otsu"
    else:
        t, method = float(threshold), "fixed"
        if not 0.0 <= t < 1.0:
            raise ParameterError("threshold", "{name} " + _literal(str(t))
                                 + " is outside [0, 1): the foreground score is scaled to [0, 1]")
    mask = score > t
    return Foreground(score, mask, float(t), method, flipped, float(pca.explained_variance_ratio_[0]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# ---------------------------------------------------------------------- PCA colours
@dataclass
class ColourBasis:
    """A 3-component PCA of foreground patch tokens and the per-channel range mapped to [0, 255].

    ``pca``: fitted scikit-learn PCA (D -> 3); ``low``/``high``: (3,) the
    ``percentiles`` of the projected foreground patches, mapped to 0 and 255.
    Fitted on several images, the same colour means the same feature in each.
    """

    pca: PCA
    low: np.ndarray
    high: np.ndarray
    percentiles: tuple[float, float]
    n_patches: int

    def colours(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N, 3) uint8 colours; PC1 -> red, PC2 -> green, PC3 -> blue."""
        z = self.pca.transform(np.asarray(features, dtype=np.float32))
        scale = np.where(self.high > self.low, self.high - self.low, 1.0)
        return np.clip(np.rint((z - self.low) / scale * 255.0), 0, 255).astype(np.uint8)


def fit_colour_basis(features: np.ndarray | list[np.ndarray], percentiles: tuple[float, float] = PERCENTILES) -> ColourBasis:
    """Fit the colour PCA on foreground patch features.

    ``features``: (N, D), or a list of (N_i, D) arrays from several images
    (pooled). Each channel is later stretched so that its ``percentiles``
    (robust to a few extreme patches) span the full [0, 255] range.
    """
    if isinstance(features, (list, tuple)):
        features = np.concatenate([np.asarray(f, np.float32).reshape(-1, np.shape(f)[-1]) for f in features])
    x = np.asarray(features, dtype=np.float32)
    if x.shape[0] < 3:
        raise ValueError(f"need at least 3 patches to fit 3 colour components; got {x.shape[0]}")
    pca = _pca(x, 3)
    z = pca.transform(x)
    low, high = np.percentile(z, percentiles, axis=0)
    return ColourBasis(pca, low.astype(np.float64), high.astype(np.float64), tuple(percentiles), int(x.shape[0]))


def colour_patches(patches: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Foreground patches of ``patches`` (h, w, D) with at least 3 members, else all patches, as (N, D)."""
    flat = patches.reshape(-1, patches.shape[-1])
    if mask is not None and int(np.count_nonzero(mask)) >= 3:
        return flat[np.asarray(mask, bool).ravel()]
    if mask is not None:
        log.warning("fewer than 3 foreground patches: colour PCA fitted on all patches")
    return flat


def pca_colours(patches: np.ndarray, mask: np.ndarray | None = None, basis: ColourBasis | None = None) -> np.ndarray:
    """PCA colours of a patch grid, (h, w, 3) uint8; background patches (``~mask``) are black.

    Without ``basis`` the PCA is fitted on this image's foreground patches.
    """
    h, w, d = patches.shape
    if basis is None:
        basis = fit_colour_basis(colour_patches(patches, mask))
    rgb = basis.colours(patches.reshape(-1, d)).reshape(h, w, 3)
    if mask is not None:
        rgb[~np.asarray(mask, bool)] = 0
    return rgb


def upsample_grid(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a patch grid (h, w[, c]) to ``size`` = (width, height) pixels.

    Every pixel takes the value of the patch that covers it, so patch edges stay
    sharp and the grid lines up with the photograph.
    """
    width, height = size
    h, w = grid.shape[:2]
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(int)
    return grid[rows[:, None], cols[None, :]]


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luminance in [0, 255] of an (H, W, 3) uint8 picture (ITU-R BT.601 weights)."""
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def compose(colours: np.ndarray, mask: np.ndarray, image: np.ndarray, background: str = "black") -> np.ndarray:
    """Patch colours drawn at the photograph's pixel size.

    ``colours``: (h, w, 3) uint8; ``mask``: (h, w) bool; ``image``: (H, W, 3)
    uint8 photograph. ``background``: ``"black"``, or ``"grey"`` for the
    photograph in greyscale at reduced contrast. Returns (H, W, 3) uint8.
    """
    height, width = image.shape[:2]
    out = upsample_grid(colours, (width, height)).copy()
    if background == "black":
        out[~upsample_grid(mask, (width, height))] = 0
    elif background in ("grey", "gray"):
        grey = (64 + 0.5 * luminance(image)).astype(np.uint8)
        bg = ~upsample_grid(mask, (width, height))
        out[bg] = grey[bg][:, None]
    else:
        raise UserError(f"unknown background {background!r}; choose black or grey")
    return out


# ---------------------------------------------------------------------- correspondence
def patch_at(point: tuple[float, float], image_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """(row, col) of the patch under pixel ``point`` = (x, y) of an image of ``image_size`` = (width, height)."""
    x, y = point
    width, height = image_size
    if not (0 <= x < width and 0 <= y < height):
        raise ParameterError("point", f"{{name}} {x:g},{y:g} lies outside the image ({width} x {height} pixels); "
                             "give X,Y in pixels from the top-left corner")
    h, w = grid
    return min(int(y * h / height), h - 1), min(int(x * w / width), w - 1)


def patch_centre(rc: tuple[int, int], image_size: tuple[int, int], grid: tuple[int, int]) -> tuple[float, float]:
    """Pixel (x, y) of the centre of patch ``rc`` = (row, col) in an image of ``image_size``."""
    (r, c), (width, height), (h, w) = rc, image_size, grid
    return (c + 0.5) * width / w, (r + 0.5) * height / h


def mask_centre(mask: np.ndarray) -> tuple[int, int]:
    """The foreground patch nearest to the centroid of ``mask`` (the grid centre when empty)."""
    mask = np.asarray(mask, bool)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return mask.shape[0] // 2, mask.shape[1] // 2
    cy, cx = rows.mean(), cols.mean()
    i = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    return int(rows[i]), int(cols[i])


def cosine_map(query: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``query`` (D,) to every patch of ``patches`` (h, w, D) -> (h, w) in [-1, 1]."""
    q = np.asarray(query, np.float64)
    p = np.asarray(patches, np.float64)
    num = p @ q
    den = np.linalg.norm(p, axis=-1) * np.linalg.norm(q)
    return np.clip(num / np.maximum(den, 1e-12), -1.0, 1.0).astype(np.float32)


@dataclass
class Correspondence:
    """Cosine similarity of every patch to one query patch.

    ``query``: (row, col) of the query patch in the first image; ``query_xy``:
    its centre in the first image's pixels; ``within``: (h, w) similarity map
    of the first image; ``across``: (h2, w2) map of the second image or None;
    ``best``/``best_xy``/``best_similarity``: the best-matching patch of the
    second image (or None).
    """

    query: tuple[int, int]
    query_xy: tuple[float, float]
    within: np.ndarray
    across: np.ndarray | None = None
    best: tuple[int, int] | None = None
    best_xy: tuple[float, float] | None = None
    best_similarity: float | None = None


def correspondence(patches: np.ndarray, query: tuple[int, int], image_size: tuple[int, int],
                   other: np.ndarray | None = None, other_size: tuple[int, int] | None = None) -> Correspondence:
    """Similarity of every patch to the patch ``query`` = (row, col), within ``patches`` and across ``other``.

    ``patches``: (h, w, D) of the first image (pixel size ``image_size`` =
    (width, height)); ``other``: (h2, w2, D) of a second image of pixel size
    ``other_size``.
    """
    grid = patches.shape[:2]
    q = patches[query[0], query[1]]
    result = Correspondence(query=tuple(int(v) for v in query), query_xy=patch_centre(query, image_size, grid),
                            within=cosine_map(q, patches))
    if other is not None:
        across = cosine_map(q, other)
        best = np.unravel_index(int(np.argmax(across)), across.shape)
        best = (int(best[0]), int(best[1]))
        result.across = across
        result.best = best
        result.best_xy = patch_centre(best, other_size or (other.shape[1], other.shape[0]), other.shape[:2])
        result.best_similarity = float(across[best])
    return result
