"""The backbone families palaeo-ssl runs, in one table: how each is recognised, loaded, pooled, and its licence.

A checkpoint's family is read from its ``config.json`` (``model_type``, which
``transformers`` writes for every model it saves). Everything that differs
between families lives in its :class:`Family` entry:

* how to load it: the whole model (``AutoModel``), or only the image tower of a
  vision-language checkpoint (SigLIP, CLIP: the text tower is never loaded);
* what its tokens are: ``[class, registers..., patches]`` (DINOv3 ViT, DINOv2,
  CLIP), ``[patches]`` (SigLIP: no class token), ``[pooled, feature map]`` (DINOv3
  ConvNeXt: the global average of its last feature map, then its stride-32 map);
* the poolings that mean something for it (:data:`POOLING_MEANINGS`), the first
  being its own global feature (what ``pooling="auto"`` picks);
* whether it has last-layer attention from a class token (the attention maps of
  ``visualise``), and its licence.

The preprocessing of a checkpoint (image size, resize-then-centre-crop, resampling,
mean and std) is read from its image-processor config by
:func:`palaeo_ssl.backbone.describe_model`, not from this table.

No torch import here: the command line and the documentation read the table cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ModelLoadError
from .models import ALIAS_FAMILIES

#: the default pooling: each family's own global feature (the first of its poolings)
AUTO = "auto"

#: what each pooling means (the words of the README, of ``--help`` and of the errors)
POOLING_MEANINGS = {
    "cls": "the class token after the final norm",
    "head": "the output of SigLIP's attention-pooling head (a learned query attending over the patch tokens)",
    "gap": "the global average of the last feature map, then the final norm (DINOv3 ConvNeXt's own global feature)",
    "mean": "the mean of the patch tokens after the final norm (any class, pooled or register token left out)",
    "cls+mean": "cls and mean concatenated (twice the width)",
    "head+mean": "head and mean concatenated (twice the width)",
    "gap+mean": "gap and mean concatenated (twice the width)",
}
#: every pooling name of any family, and ``auto``
POOLINGS = (AUTO,) + tuple(POOLING_MEANINGS)


@dataclass(frozen=True)
class Family:
    """One backbone family: how palaeo-ssl recognises, loads, pools and credits it."""

    #: short name, recorded in the store's settings and meta (``dinov3-vit``)
    name: str
    #: name for people (``DINOv3 ViT``)
    title: str
    #: ``config.model_type`` values of this family (the full checkpoint's and its image tower's)
    model_types: tuple[str, ...]
    #: the licence of the published weights, short (SPDX identifier where there is one)
    licence: str
    #: where the licence is, and what else a user must know about it
    licence_note: str
    #: the pooling of its own global feature, or None (then only ``mean``)
    global_pooling: str | None
    #: one token (class token, or ConvNeXt's pooled token) precedes the registers and the patch tokens
    prefix_token: bool
    #: last-layer attention from a class token exists (``visualise`` draws it); else why not
    attention: bool
    no_attention: str = ""
    #: the transformers class that loads only the image tower (None: ``AutoModel``)
    tower_class: str | None = None
    #: attribute path (from the loaded model) of a norm to apply to ``last_hidden_state`` to get final-norm tokens
    final_norm: str | None = None
    #: keyword arguments of every forward call (learned absolute position embeddings interpolate to other sizes)
    forward_kwargs: tuple[tuple[str, Any], ...] = ()
    #: fixed stride of its token grid in pixels (ConvNeXt: 32); None: the config's ``patch_size``
    stride: int | None = None
    #: what the patch tokens are, for people
    tokens: str = "patch tokens"
    #: it takes ``attn_implementation`` (a convolutional network does not)
    attention_impl: bool = True

    @property
    def aliases(self) -> dict[str, str]:
        """Short names of this family's published checkpoints -> Hugging Face ids."""
        return dict(ALIAS_FAMILIES.get(self.name, {}))

    def poolings(self, has_global: bool = True) -> tuple[str, ...]:
        """The poolings that mean something for this family, its own global feature first."""
        if self.global_pooling is None or not has_global:
            return ("mean",)
        g = self.global_pooling
        return (g, "mean", f"{g}+mean")


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(
        name="dinov3-vit", title="DINOv3 ViT", model_types=("dinov3_vit",),
        licence="DINOv3 License",
        licence_note="Meta's DINOv3 License (gated on the Hub: accept it on the model's page); "
                     "https://ai.meta.com/resources/models-and-libraries/dinov3-license/",
        global_pooling="cls", prefix_token=True, attention=True,
    ),
    Family(
        name="dinov3-convnext", title="DINOv3 ConvNeXt", model_types=("dinov3_convnext",),
        licence="DINOv3 License",
        licence_note="Meta's DINOv3 License (gated on the Hub: accept it on the model's page); "
                     "https://ai.meta.com/resources/models-and-libraries/dinov3-license/",
        global_pooling="gap", prefix_token=True, attention=False,
        no_attention="a ConvNeXt is a convolutional network: it has no attention to draw (its last feature map, "
                     "one token per 32 x 32 pixels, gives the PCA colours and the foreground)",
        stride=32, tokens="feature map (stride 32)", attention_impl=False,
    ),
    Family(
        name="dinov2", title="DINOv2", model_types=("dinov2",),
        licence="Apache-2.0", licence_note="Apache License 2.0 (code and weights, facebookresearch/dinov2)",
        global_pooling="cls", prefix_token=True, attention=True,
    ),
    Family(
        name="dinov2-reg", title="DINOv2 with registers", model_types=("dinov2_with_registers",),
        licence="Apache-2.0", licence_note="Apache License 2.0 (code and weights, facebookresearch/dinov2)",
        global_pooling="cls", prefix_token=True, attention=True,
    ),
    Family(
        name="siglip", title="SigLIP / SigLIP 2 (image tower)", model_types=("siglip", "siglip_vision_model"),
        licence="Apache-2.0", licence_note="Apache License 2.0 (google/siglip and google/siglip2 checkpoints)",
        global_pooling="head", prefix_token=False, attention=False,
        no_attention="SigLIP has no class token, so there is no class-token attention to draw",
        tower_class="SiglipVisionModel", forward_kwargs=(("interpolate_pos_encoding", True),),
    ),
    Family(
        name="clip", title="CLIP (image tower)", model_types=("clip", "clip_vision_model"),
        licence="MIT",
        licence_note="MIT (github.com/openai/CLIP); OpenAI's model card puts any deployed use out of scope",
        global_pooling="cls", prefix_token=True, attention=True,
        tower_class="CLIPVisionModel", final_norm="post_layernorm",
        forward_kwargs=(("interpolate_pos_encoding", True),),
    ),
)}

#: model types that are refused with a message of their own (what to use instead)
REFUSED = {
    "siglip2": "a SigLIP 2 NaFlex checkpoint (variable resolution and aspect ratio, fed as a padded sequence of "
               "patches), which palaeo-ssl does not run; use a fixed-resolution SigLIP 2 checkpoint such as "
               "siglip2-base-patch16-224 (google/siglip2-base-patch16-224)",
    "siglip2_vision_model": "the image tower of a SigLIP 2 NaFlex checkpoint, which palaeo-ssl does not run; use a "
                            "fixed-resolution SigLIP 2 checkpoint such as siglip2-base-patch16-224",
}


def supported_text() -> str:
    """The supported families in one line, for messages."""
    return "; ".join(f"{f.title} ({', '.join(f.model_types)})" for f in FAMILIES.values())


def unsupported_error(model: str, model_type: str | None, architectures=None) -> ModelLoadError:
    """The one message for a checkpoint of an architecture palaeo-ssl does not run (CLI: exit 2)."""
    kind = f"model_type {model_type!r}" if model_type else "no model_type"
    if architectures:
        kind += f", {', '.join(architectures)}"
    what = REFUSED.get(model_type or "")
    if what:
        text = f"{model} is {what}"
    else:
        text = (f"{model} is a checkpoint of an architecture palaeo-ssl does not run ({kind}); the supported "
                f"families are {supported_text()}. Use one of their checkpoints or aliases (see the README's "
                "table of backbone families)")
    return ModelLoadError(text, kind="unsupported", reason=f"unsupported architecture ({kind})")


def family_of_config(config: Any, model: str = "the model") -> Family:
    """The family of a loaded ``transformers`` config; :func:`unsupported_error` when there is none."""
    model_type = getattr(config, "model_type", None)
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    raise unsupported_error(model, model_type, getattr(config, "architectures", None))


def family_named(name: str) -> Family:
    """The family called ``name`` (as recorded in a store's settings)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown backbone family {name!r}; known: {', '.join(FAMILIES)}") from None


def vision_config(config: Any) -> Any:
    """The image tower's config of a vision-language checkpoint (``config.vision_config``), else ``config``."""
    return getattr(config, "vision_config", None) or config


def config_facts(config: Any, family: Family) -> dict[str, Any]:
    """What the config says about the token layout: ``hidden_size`` (feature width), ``patch_size`` (pixels per
    token side), ``num_register_tokens``, ``has_global`` (SigLIP: whether its pooling head exists) and
    ``native_size`` (the side its position embeddings were trained at, or None)."""
    vc = vision_config(config)
    if family.stride is not None:  # ConvNeXt: channels of the last stage; stem 4 x three downsamplings of 2
        hidden = int(list(getattr(vc, "hidden_sizes"))[-1])
        patch = family.stride
    else:
        hidden = int(getattr(vc, "hidden_size"))
        patch = int(getattr(vc, "patch_size", 16) or 16)
    return {
        "hidden_size": hidden,
        "patch_size": patch,
        "num_register_tokens": int(getattr(vc, "num_register_tokens", 0) or 0),
        "has_global": bool(getattr(vc, "vision_use_head", True)) if family.name == "siglip" else True,
        "native_size": int(getattr(vc, "image_size", 0) or 0) or None,
    }


def pooling_error(pooling: str, family: Family, poolings: tuple[str, ...], model: str) -> str:
    """The message (``{name}`` for the parameter) refusing a pooling that means nothing for ``family``."""
    why = ""
    if pooling.startswith("cls") and not family.prefix_token:
        why = f"{family.title} has no class token. "
    elif pooling.startswith("cls") and family.global_pooling != "cls":
        why = f"{family.title} has no class token (its own global feature is {family.global_pooling}). "
    elif pooling.split("+")[0] in ("head", "gap", "cls") and family.global_pooling != pooling.split("+")[0]:
        why = f"{pooling.split('+')[0]} is not an output of {family.title}. "
    meanings = "; ".join(f"{p}: {POOLING_MEANINGS[p]}" for p in poolings if "+" not in p)
    return (f"{{name}} {pooling!r} does not apply to {model}: {why}Choose auto (here {poolings[0]}) or one of "
            f"{', '.join(poolings)} ({meanings})")


__all__ = ["AUTO", "FAMILIES", "Family", "POOLINGS", "POOLING_MEANINGS", "REFUSED", "config_facts",
           "family_named", "family_of_config", "pooling_error", "supported_text", "unsupported_error",
           "vision_config"]
