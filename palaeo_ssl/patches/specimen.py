"""Everything computed for one specimen, in one call: tokens, attention, foreground, PCA colours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..params import ParameterError

from .analysis import (ColourBasis, Correspondence, Foreground, _literal, colour_patches, compose, correspondence,
                       fit_colour_basis, foreground, mask_centre, patch_at, pca_colours, upsample_grid)
from .tokens import DEFAULT_SIZE, PatchTokens, as_rgb, attention_refusal, load_rgb, patch_tokens

BARE_MAX_SIDE = 4096


@dataclass
class SpecimenView:
    """What the model sees in one image.

    ``name``: file name (or a label); ``image``: (H, W, 3) uint8 photograph at
    its own resolution; ``tokens``: patch tokens (and attention when asked);
    ``foreground``: mask and score on the (h, w) grid; ``colours``: (h, w, 3)
    uint8 PCA colours fitted on this image's foreground (background black).
    """

    name: str
    image: np.ndarray
    tokens: PatchTokens
    foreground: Foreground
    colours: np.ndarray

    @property
    def grid(self) -> tuple[int, int]:
        return self.tokens.grid

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the photograph in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def bare_size(self, max_side: int = BARE_MAX_SIDE) -> tuple[int, int]:
        """(width, height) of the bare pictures: the photograph's, scaled down only if its longer side exceeds ``max_side``."""
        w, h = self.image_size
        s = min(1.0, max_side / max(w, h))
        return max(1, round(w * s)), max(1, round(h * s))

    def photo(self, max_side: int = BARE_MAX_SIDE) -> np.ndarray:
        """The photograph at :meth:`bare_size` (scaled down only if its longer side exceeds ``max_side``)."""
        size = self.bare_size(max_side)
        if size == self.image_size:
            return self.image
        return np.asarray(Image.fromarray(self.image).resize(size, Image.Resampling.BICUBIC))

    def pca_picture(self, background: str = "black", colours: np.ndarray | None = None,
                    max_side: int = BARE_MAX_SIDE) -> np.ndarray:
        """PCA colours at the photograph's pixel size, (H, W, 3) uint8 (see :func:`compose`)."""
        return compose(self.colours if colours is None else colours, self.foreground.mask,
                       self.photo(max_side), background)

    def mask_picture(self, max_side: int = BARE_MAX_SIDE) -> np.ndarray:
        """Foreground mask at the photograph's pixel size, (H, W) uint8: 255 object, 0 background."""
        return upsample_grid(self.foreground.mask, self.bare_size(max_side)).astype(np.uint8) * 255

    def point_to_patch(self, point: tuple[float, float] | None) -> tuple[int, int]:
        """(row, col) under pixel ``point`` = (x, y) of the photograph; None: the foreground's centre patch."""
        if point is None:
            return mask_centre(self.foreground.mask)
        return patch_at(point, self.image_size, self.grid)


def view_specimen(backbone, image: str | Path | Image.Image, size: int = DEFAULT_SIZE,
                  attention: bool | None = None, threshold: float | str = "otsu", orientation: str = "auto",
                  name: str | None = None) -> SpecimenView:
    """Tokens (at the image's own aspect ratio), attention, foreground and own-basis PCA colours of one image.

    ``image``: a path or a PIL image; ``size``: longer side fed to the model in
    pixels; ``attention``: record class-token attention (None: where the model has
    it, i.e. not SigLIP and not a ConvNeXt); ``threshold``/``orientation``: see
    :func:`foreground`.
    """
    if attention is None:
        attention = attention_refusal(backbone) is None
    if name is None:
        name = Path(image).name if isinstance(image, (str, Path)) else "image"
    pil = as_rgb(image) if isinstance(image, Image.Image) else load_rgb(image)
    tokens = patch_tokens(backbone, pil, size=size, attention=attention)
    if tokens.grid[0] * tokens.grid[1] < 4:
        raise ParameterError("size", f"{{name}} {size} gives only {tokens.grid[0]} x {tokens.grid[1]} patches for "
                             + _literal(str(name))
                             + f"; use a larger {{name}} (the default is {DEFAULT_SIZE})")
    fg = foreground(tokens.patches, threshold=threshold, orientation=orientation)
    colours = pca_colours(tokens.patches, fg.mask)
    return SpecimenView(name=name, image=np.asarray(pil, dtype=np.uint8), tokens=tokens,
                        foreground=fg, colours=colours)


def shared_basis(views: list[SpecimenView]) -> tuple[ColourBasis, list[np.ndarray]]:
    """One colour PCA fitted on the pooled foreground patches of ``views``.

    Returns the basis and, per view, its (h, w, 3) uint8 colours in that basis
    (background black): the same colour means the same feature in every image.
    """
    basis = fit_colour_basis([colour_patches(v.tokens.patches, v.foreground.mask) for v in views])
    return basis, [pca_colours(v.tokens.patches, v.foreground.mask, basis=basis) for v in views]


def match(view: SpecimenView, point: tuple[float, float] | None = None,
          other: SpecimenView | None = None) -> Correspondence:
    """Cosine similarity to the patch under ``point`` (default: the foreground's centre), within ``view`` and across ``other``."""
    rc = view.point_to_patch(point)
    return correspondence(view.tokens.patches, rc, view.image_size,
                          other=None if other is None else other.tokens.patches,
                          other_size=None if other is None else other.image_size)
