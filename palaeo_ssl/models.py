"""Model names, without importing torch: the aliases, the default model and the random-weights notice.

:mod:`palaeo_ssl.backbone` resolves these names and loads models; this module
only names them, so that the pipeline, the command line and the package root
can read the defaults without loading PyTorch. The families themselves (how each
is recognised, loaded and pooled, and its licence) are in :mod:`palaeo_ssl.families`.
"""

from __future__ import annotations

#: the model of every command and function that takes one
DEFAULT_MODEL = "dinov3-vits16"
#: short names of published checkpoints, per backbone family (:data:`palaeo_ssl.families.FAMILIES`) -> Hugging
#: Face ids
ALIAS_FAMILIES = {
    # DINOv3 ViT, LVD-1689M pretraining
    "dinov3-vit": {
        "dinov3-vits16": "facebook/dinov3-vits16-pretrain-lvd1689m",
        "dinov3-vits16plus": "facebook/dinov3-vits16plus-pretrain-lvd1689m",
        "dinov3-vitb16": "facebook/dinov3-vitb16-pretrain-lvd1689m",
        "dinov3-vitl16": "facebook/dinov3-vitl16-pretrain-lvd1689m",
        "dinov3-vith16plus": "facebook/dinov3-vith16plus-pretrain-lvd1689m",
        "dinov3-vit7b16": "facebook/dinov3-vit7b16-pretrain-lvd1689m",
    },
    # DINOv3 ConvNeXt, distilled from DINOv3 ViT-7B on LVD-1689M
    "dinov3-convnext": {
        "dinov3-convnext-tiny": "facebook/dinov3-convnext-tiny-pretrain-lvd1689m",
        "dinov3-convnext-small": "facebook/dinov3-convnext-small-pretrain-lvd1689m",
        "dinov3-convnext-base": "facebook/dinov3-convnext-base-pretrain-lvd1689m",
        "dinov3-convnext-large": "facebook/dinov3-convnext-large-pretrain-lvd1689m",
    },
    "dinov2": {
        "dinov2-vits14": "facebook/dinov2-small",
        "dinov2-vitb14": "facebook/dinov2-base",
        "dinov2-vitl14": "facebook/dinov2-large",
        "dinov2-vitg14": "facebook/dinov2-giant",
    },
    "dinov2-reg": {
        "dinov2-vits14-reg": "facebook/dinov2-with-registers-small",
        "dinov2-vitb14-reg": "facebook/dinov2-with-registers-base",
        "dinov2-vitl14-reg": "facebook/dinov2-with-registers-large",
        "dinov2-vitg14-reg": "facebook/dinov2-with-registers-giant",
    },
    # SigLIP 2, fixed resolution (the image tower only)
    "siglip": {
        "siglip2-base-patch16-224": "google/siglip2-base-patch16-224",
        "siglip2-large-patch16-256": "google/siglip2-large-patch16-256",
        "siglip2-so400m-patch14-384": "google/siglip2-so400m-patch14-384",
    },
    # OpenAI CLIP (the image tower only)
    "clip": {
        "clip-vit-base-patch32": "openai/clip-vit-base-patch32",
        "clip-vit-base-patch16": "openai/clip-vit-base-patch16",
        "clip-vit-large-patch14": "openai/clip-vit-large-patch14",
    },
}
#: every alias -> its Hugging Face id
ALIASES = {alias: hub_id for names in ALIAS_FAMILIES.values() for alias, hub_id in names.items()}
#: the words every output of a run on random weights carries (manifest, README, figures, explorer)
RANDOM_WEIGHTS_NOTICE = "random weights: a pipeline check, not a result"

__all__ = ["DEFAULT_MODEL", "ALIAS_FAMILIES", "ALIASES", "RANDOM_WEIGHTS_NOTICE"]
