"""What the model sees in one specimen: patch tokens, PCA colours, foreground, attention, correspondences.

- :mod:`.tokens`: the forward pass at the image's own aspect ratio (final-norm
  patch tokens; last-layer attention from CLS and registers with eager
  attention for that call only);
- :mod:`.analysis`: foreground from the first principal component, PCA colours
  stretched to [0, 255] by robust percentiles (own or shared basis), cosine
  correspondences; pure NumPy / scikit-learn;
- :mod:`.specimen`: all of it for one image in one call (:func:`view_specimen`);
- :mod:`.visualise`: the stage behind ``palaeo-ssl visualise`` and notebook 02:
  :func:`visualise_specimen` (compute) -> :class:`SpecimenVisualisation`,
  :func:`write_visualisation` (figures + ``visualise.json``), :func:`run_visualise` (both, timed).

Figures are drawn by :mod:`palaeo_ssl.plots.patches`.
"""

from .analysis import (PERCENTILES, ColourBasis, Correspondence, Foreground, compose, correspondence, cosine_map,
                       fit_colour_basis, foreground, iou, mask_centre, otsu_threshold, patch_at, patch_centre,
                       pca_colours, upsample_grid)
from .specimen import BARE_MAX_SIDE, SpecimenView, match, shared_basis, view_specimen
from .tokens import (DEFAULT_SIZE, Attention, PatchTokens, attention_refusal, input_size, load_rgb, patch_tokens,
                     prepare_image)
from .visualise import SpecimenVisualisation, run_visualise, visualise_specimen, write_visualisation

__all__ = [
    "PERCENTILES", "ColourBasis", "Correspondence", "Foreground", "compose", "correspondence", "cosine_map",
    "fit_colour_basis", "foreground", "iou", "mask_centre", "otsu_threshold", "patch_at", "patch_centre",
    "pca_colours", "upsample_grid", "BARE_MAX_SIDE", "SpecimenView", "match", "shared_basis", "view_specimen",
    "DEFAULT_SIZE", "Attention", "PatchTokens", "attention_refusal", "input_size", "load_rgb", "patch_tokens",
    "prepare_image",
    "SpecimenVisualisation", "run_visualise", "visualise_specimen", "write_visualisation",
]
