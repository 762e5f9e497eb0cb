"""Model names, without importing torch: the aliases, the default model and the random-weights notice.

:mod:`palaeo_ssl.backbone` resolves these names and loads models; this module
only names them, so that the pipeline, the command line and the package root
can read the defaults without loading PyTorch.
"""

from __future__ import annotations

#: the model of every command and function that takes one
DEFAULT_MODEL = "dinov3-vits16"
#: short names of the DINOv3 backbones (LVD-1689M pretraining) -> Hugging Face ids
ALIASES = {
    "dinov3-vits16": "facebook/dinov3-vits16-pretrain-lvd1689m",
    "dinov3-vits16plus": "facebook/dinov3-vits16plus-pretrain-lvd1689m",
    "dinov3-vitb16": "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "dinov3-vitl16": "facebook/dinov3-vitl16-pretrain-lvd1689m",
    "dinov3-vith16plus": "facebook/dinov3-vith16plus-pretrain-lvd1689m",
    "dinov3-vit7b16": "facebook/dinov3-vit7b16-pretrain-lvd1689m",
}
#: the words every output of a run on random weights carries (manifest, README, figures, explorer)
RANDOM_WEIGHTS_NOTICE = "random weights: a pipeline check, not a result"

__all__ = ["DEFAULT_MODEL", "ALIASES", "RANDOM_WEIGHTS_NOTICE"]
