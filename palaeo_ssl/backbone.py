"""Load a Hugging Face vision backbone and its preprocessing; choose device and dtype; pool tokens.

Models are named by a Hub id, a local folder, or a short alias (``dinov3-vits16``
-> ``facebook/dinov3-vits16-pretrain-lvd1689m``). Several families run: DINOv3
ViT and ConvNeXt, DINOv2 (with and without registers), the image towers of SigLIP
(2) and CLIP; their table (recognition from ``config.json``, loading, poolings,
licence) is :data:`palaeo_ssl.families.FAMILIES`, re-exported here. Each model's
preprocessing (input size, resize-then-centre-crop, resampling, mean and std) is
read from its own image-processor config. :func:`describe_backbone` gives what a
comparison of models needs (family, licence, parameters, embedding size, input size).

The token comes from ``HF_TOKEN`` or a stored login (never an interactive prompt);
with ``HF_HUB_OFFLINE=1`` models load from the local cache only. Before reading a
Hub model, one quick request decides whether the Hub can be reached
(:mod:`palaeo_ssl.hub`).

A checkpoint whose ``config.json`` holds ``"palaeo_ssl_random_weights": true``
(what :func:`palaeo_ssl.testing.make_tiny_dinov3` writes) has random weights:
:attr:`ModelInfo.random_weights` says so, extraction records it in the store's
``meta.json``, and every output of such a run carries :data:`RANDOM_WEIGHTS_NOTICE`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError, UserError
from .families import (AUTO, FAMILIES, POOLING_MEANINGS, POOLINGS, Family, config_facts,  # noqa: F401
                       family_named, family_of_config, pooling_error, supported_text, unsupported_error)
from .hub import (HUB_CONNECT_TIMEOUT, HUB_READ_TIMEOUT, WEIGHT_FILES, _explain_load_error,  # noqa: F401
                  _hub_offline_mode, _hub_revision, _offline_error, _token, hub_unreachable, weights_cached)
from .models import ALIASES, DEFAULT_MODEL, RANDOM_WEIGHTS_NOTICE  # noqa: F401  (re-exported)
from .params import ParameterError

log = logging.getLogger(__name__)

PREPROCESSINGS = ("processor", "pad")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16")

#: config.json key that marks a checkpoint with random weights (see palaeo_ssl.testing.make_tiny_dinov3)
RANDOM_WEIGHTS_KEY = "palaeo_ssl_random_weights"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the resampling filters of the uint8 pipeline, by the PIL number an image-processor config records
#: (``resample``); others (Lanczos, box, Hamming) fall back to bicubic, as transformers' torchvision processors do
RESAMPLE_NAMES = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def resolve_model_id(model: str) -> str:
    """Map a short alias to its Hub id; Hub ids and local folders pass through."""
    model = str(model).strip()
    if model.lower() in ALIASES:
        return ALIASES[model.lower()]
    return model


def is_local_model(model: str) -> bool:
    return Path(model).expanduser().is_dir()


# ---------------------------------------------------------------------- device / dtype
def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. Asking for a device that is absent is a UserError."""
    device = (device or "auto").lower()
    if device not in DEVICES and not device.startswith("cuda:"):
        raise UserError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(
            "device", "{name} cuda was asked for but no CUDA GPU is available to PyTorch here; use {name} auto "
            "(or cpu), or install a CUDA build of torch on a machine with an NVIDIA GPU")
    if device == "mps" and not has_mps:
        raise ParameterError("device", "{name} mps was asked for but Apple MPS is not available here; "
                                       "use {name} auto or cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA with bf16 support and on MPS, float32 elsewhere."""
    dtype = (dtype or "auto").lower()
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "mps":
        return torch.bfloat16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# ---------------------------------------------------------------------- preprocessing spec
@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input tensor.

    ``mode="processor"``: what the model's own image processor does: squash to ``size`` x
    ``size`` (DINOv3, SigLIP; the paper's setting), or, where ``resize_short`` is set
    (DINOv2, CLIP), resize the shorter side to ``resize_short`` keeping the aspect ratio and
    cut the centre ``size`` x ``size`` square. ``mode="pad"``: keep the aspect ratio, pad
    to a square with ``background`` (RGB 0-255), then squash (the whole image, never
    cropped). All resize with the processor's ``interpolation`` (antialiased), then
    rescale to [0, 1] and normalise with ``mean``/``std``.
    """

    mode: str = "processor"
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    background: tuple[int, int, int] = (0, 0, 0)
    #: ``bilinear``, ``bicubic`` or ``nearest``, from the processor's ``resample``
    interpolation: str = "bilinear"
    #: the shorter side before the centre crop to ``size`` (None: no crop, squash to ``size``)
    resize_short: int | None = None

    @property
    def resize(self) -> str:
        """How the image reaches ``size`` x ``size``, in words (part of the store key)."""
        if self.resize_short is None:
            return self.interpolation
        return f"{self.interpolation}, shorter side {self.resize_short}, centre crop {self.size}"

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "size": self.size, "mean": list(self.mean), "std": list(self.std),
                "background": list(self.background), "interpolation": self.interpolation,
                "resize_short": self.resize_short}


# ---------------------------------------------------------------------- the backbone
@dataclass
class Backbone:
    """A loaded model with what extraction needs to know about it."""

    model: torch.nn.Module
    model_id: str
    revision: str
    device: torch.device
    dtype: torch.dtype
    patch_size: int
    num_register_tokens: int
    hidden_size: int
    default_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    config: Any = field(repr=False, default=None)
    #: the checkpoint is marked as random weights (its features say nothing about fossils)
    random_weights: bool = False
    #: what was read from the config files (family, poolings, token layout, preprocessing)
    model_info: "ModelInfo | None" = field(repr=False, default=None)
    #: a norm to apply to ``last_hidden_state`` to get final-norm tokens (CLIP's post-layernorm), or None
    final_norm: torch.nn.Module | None = field(repr=False, default=None)
    #: keyword arguments of every forward call (``interpolate_pos_encoding`` for SigLIP and CLIP)
    forward_kwargs: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def family(self) -> Family:
        """The backbone family (:data:`palaeo_ssl.families.FAMILIES`)."""
        return self.info.family_entry

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens that precede the patch tokens: the class token (ConvNeXt: its pooled token; SigLIP: none)
        and the registers."""
        return self.info.num_prefix_tokens

    def feature_dim(self, pooling: str) -> int:
        return self.info.feature_dim(pooling)

    def preprocessing(self, mode: str = "processor", image_size: int | None = None,
                      background: tuple[int, int, int] = (0, 0, 0)) -> Preprocessing:
        return make_preprocessing(self.info, mode, image_size, background)

    @property
    def info(self) -> "ModelInfo":
        if self.model_info is not None:
            return self.model_info
        return ModelInfo(model_id=self.model_id, local=self.revision == "local", patch_size=self.patch_size,
                         hidden_size=self.hidden_size, num_register_tokens=self.num_register_tokens,
                         default_size=self.default_size, mean=self.mean, std=self.std, revision=self.revision,
                         random_weights=self.random_weights)

    @torch.inference_mode()
    def embed(self, pixel_values: torch.Tensor, pooling: str = AUTO) -> torch.Tensor:
        """Features of a batch (B, 3, H, W) -> (B, D) float32 on the CPU."""
        x = pixel_values.to(self.device, dtype=self.dtype, non_blocking=True)
        return self.features(x, pooling).float().cpu()

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward pass of a normalised batch on the device: (final-norm tokens (B, prefix + patches, D),
        the model's own global feature (B, D) or None). Tokens are laid out as :attr:`num_prefix_tokens`
        prefix tokens, then the patch tokens in row-major order."""
        out = self.model(pixel_values=x, **self.forward_kwargs)
        hidden = out.last_hidden_state
        if self.final_norm is not None:
            hidden = self.final_norm(hidden)
        return hidden, getattr(out, "pooler_output", None)

    def features(self, x: torch.Tensor, pooling: str = AUTO) -> torch.Tensor:
        """Pooled features (B, D) of a normalised batch already on the device in the model's dtype,
        left on the device (no copy back, no synchronisation). Call under ``torch.inference_mode()``."""
        return self._pooled(x, resolve_pooling(self.info, pooling))

    def _pooled(self, x: torch.Tensor, pooling: str) -> torch.Tensor:
        tokens, pooled = self.forward_tokens(x)
        return pool_tokens(tokens, pooled, pooling, self.num_prefix_tokens)

    def feature_fn(self, pooling: str = AUTO, compile: bool = False):
        """:meth:`features` for ``pooling`` as a function of the batch; with ``compile``, compiled by
        ``torch.compile`` for fixed shapes (every batch must have the same shape: pad the last one).
        Compiled artefacts are cached on disk (see :func:`compile_cache_dir`), so a second run in a new
        process skips most of the compile time."""
        pooling = resolve_pooling(self.info, pooling)  # checked once, not in every (compiled) call

        def fn(x: torch.Tensor) -> torch.Tensor:
            return self._pooled(x, pooling)

        if not compile:
            return fn
        check_compile(self.device)
        compile_cache_dir()
        return torch.compile(fn, dynamic=False)

    @torch.inference_mode()
    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Final-norm tokens (B, prefix + patches, D) in float32 on the CPU (see :meth:`forward_tokens`)."""
        x = pixel_values.to(self.device, dtype=self.dtype)
        return self.forward_tokens(x)[0].float().cpu()


#: TORCHINDUCTOR_CACHE_DIR as the user set it, read before torch can fill in its own default (a folder
#: under /tmp, lost at reboot) the first time anything asks for it
_USER_COMPILE_CACHE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")


def compile_cache_dir() -> Path:
    """Where ``torch.compile`` keeps its artefacts: ``$TORCHINDUCTOR_CACHE_DIR`` when the user set it, else
    ``~/.cache/palaeo-ssl/torch-compile``, set for this process so that every later compile reads and
    writes there (torch reads the variable each time it looks for its cache)."""
    from .cache import user_cache_dir

    path = _USER_COMPILE_CACHE or str(user_cache_dir("torch-compile"))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def check_compile(device: torch.device) -> None:
    """A ParameterError naming ``compile`` where ``torch.compile`` cannot work for ``device``: CUDA without
    Triton, a CPU without a C++ compiler, or Apple MPS."""
    import shutil

    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton
            ok = has_triton()
        except Exception:  # pragma: no cover - very old torch
            ok = False
        if not ok:
            raise ParameterError("compile", "{name} needs Triton on a CUDA GPU (pip install triton, as the "
                                            "torch wheels for Linux bring it); run without {name}")
    elif device.type == "cpu":
        if not any(shutil.which(c) for c in ("g++", "c++", "clang++", "cl")):
            raise ParameterError("compile", "{name} on the CPU needs a C++ compiler (g++ or clang++) on the PATH; "
                                            "install one or run without {name}")
    else:
        raise ParameterError("compile", f"{{name}} is not supported on {device.type}; run without {{name}}")


def pool_tokens(last_hidden_state: torch.Tensor, pooler_output: torch.Tensor | None, pooling: str,
                num_prefix_tokens: int) -> torch.Tensor:
    """Pool a (B, T, D) sequence of final-norm tokens whose first ``num_prefix_tokens`` precede the patch tokens.

    ``cls`` / ``head`` / ``gap``: the model's own global feature, ``pooler_output`` (the class token
    after the final norm; SigLIP's attention-pooling head; ConvNeXt's normed global average);
    ``mean``: mean of the patch tokens (class, pooled and register tokens excluded);
    ``<global>+mean``: both, concatenated (B, 2D). Which of them mean something for a model is
    :func:`resolve_pooling`'s business.
    """
    if pooling not in POOLING_MEANINGS:
        raise UserError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    base = pooling.split("+")[0]
    if base != "mean":
        if pooler_output is None and (base != "cls" or num_prefix_tokens < 1):
            raise UserError(f"pooling {pooling!r}: this model has no {base} output")
        glob = pooler_output if pooler_output is not None else last_hidden_state[:, 0]
        if pooling == base:
            return glob
    mean = last_hidden_state[:, num_prefix_tokens:].mean(dim=1)
    if pooling == "mean":
        return mean
    return torch.cat([glob, mean], dim=1)


def resolve_pooling(info: "ModelInfo", pooling: str | None) -> str:
    """``pooling`` checked against the model's family: ``auto`` (or None) becomes the family's own global
    feature (``cls``, SigLIP ``head``, ConvNeXt ``gap``); a pooling that means nothing for it (``cls`` of
    SigLIP, which has no class token) is a ParameterError naming the valid ones."""
    pooling = AUTO if pooling is None else str(pooling)
    if pooling == AUTO:
        return info.poolings[0]
    if pooling not in info.poolings:
        if pooling not in POOLING_MEANINGS:
            raise ParameterError("pooling", f"unknown {{name}} {pooling!r}; choose one of {', '.join(POOLINGS)}")
        raise ParameterError("pooling", pooling_error(pooling, info.family_entry, info.poolings, info.model_id))
    return pooling


def _size_field(size: Any, key: str) -> int | None:
    """``size[key]`` of an image processor's size (a dict or transformers' SizeDict), or None."""
    if size is None:
        return None
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def _processor_stats(model_path: str, token, local_files_only: bool = False) -> dict[str, Any]:
    """What the model's image processor does, from its config: ``mean``, ``std``, ``size`` (the square side it
    feeds the model), ``crop_from`` (the shorter side it resizes to before cutting the centre ``size`` square,
    or None when it squashes) and ``interpolation`` (:data:`RESAMPLE_NAMES`)."""
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(model_path, token=token, local_files_only=local_files_only)
    mean = tuple(float(v) for v in (getattr(proc, "image_mean", None) or IMAGENET_MEAN))
    std = tuple(float(v) for v in (getattr(proc, "image_std", None) or IMAGENET_STD))
    size = getattr(proc, "size", None)
    height, short = _size_field(size, "height"), _size_field(size, "shortest_edge")
    crop = _size_field(getattr(proc, "crop_size", None), "height") if getattr(proc, "do_center_crop", False) else None
    side, crop_from = height or short, None
    if short and not height:  # shorter side to `short`, then (if it crops) the centre `crop` square
        side = crop or short
        crop_from = max(short, side)
    resample = getattr(proc, "resample", None)
    try:
        interpolation = RESAMPLE_NAMES.get(int(resample), "bicubic") if resample is not None else "bilinear"
    except (TypeError, ValueError):  # a torchvision InterpolationMode
        interpolation = str(getattr(resample, "value", resample)).lower()
        interpolation = interpolation if interpolation in RESAMPLE_NAMES.values() else "bicubic"
    return {"mean": mean, "std": std, "size": side, "crop_from": crop_from, "interpolation": interpolation}


#: how loud transformers may be while an image tower is read out of a whole vision-language checkpoint
#: (its report lists every text-tower weight left unread, which is what was meant)
_QUIET = 40  # logging.ERROR


def _load_weights(info: "ModelInfo", dtype: torch.dtype, attn_implementation: str) -> torch.nn.Module:
    """The family's model (or image tower) from ``info.model_id``, through ``from_pretrained``."""
    import transformers
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    fam = info.family_entry
    # the weights of the very commit whose config was read (and that keys the store)
    pinned = {"revision": info.revision} if not info.local and info.revision != "unknown" else {}
    kwargs = dict(token=_token(), dtype=dtype, local_files_only=info.cache_only, **pinned)
    if fam.attention_impl:
        kwargs["attn_implementation"] = attn_implementation
    if fam.tower_class is None:
        return AutoModel.from_pretrained(info.model_id, **kwargs)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity(max(level, _QUIET))
    try:
        return getattr(transformers, fam.tower_class).from_pretrained(info.model_id, **kwargs)
    finally:
        hf_logging.set_verbosity(level)


def _attribute(obj: Any, path: str | None) -> Any:
    for part in (path or "").split("."):
        if part:
            obj = getattr(obj, part)
    return obj if path else None


def load_backbone(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto",
                  attn_implementation: str = "sdpa", info: "ModelInfo | None" = None) -> Backbone:
    """Load ``model`` (alias, Hub id or local folder) for inference on ``device`` in ``dtype``.

    Raises :class:`ModelLoadError` (a :class:`UserError`) with advice when the
    model cannot be found, is gated, or cannot be downloaded.
    """
    info = info or describe_model(model)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    try:
        net = _load_weights(info, dt, attn_implementation)
    except UserError:
        raise
    except Exception as exc:  # Hub, network and file errors come in many types
        if info.cache_only and not weights_cached(info):
            raise _offline_error(info.model_id, info.cache_reason, "its weights are not in the cache") from exc
        raise _explain_load_error(model, info.model_id, exc) from exc
    net.eval().to(dev)
    revision = "local" if info.local else info.revision
    log.debug("loaded %s (revision %s) on %s as %s", info.model_id, revision, dev, dt)
    fam = info.family_entry
    return Backbone(model=net, model_id=info.model_id, revision=revision, device=dev, dtype=dt,
                    patch_size=info.patch_size, num_register_tokens=info.num_register_tokens,
                    hidden_size=info.hidden_size, default_size=info.default_size, mean=info.mean, std=info.std,
                    config=net.config, random_weights=info.random_weights, model_info=info,
                    final_norm=_attribute(net, fam.final_norm), forward_kwargs=dict(fam.forward_kwargs))


def describe_backbone(model: "Backbone | ModelInfo | str", pooling: str = AUTO,
                      image_size: int | None = None) -> dict[str, Any]:
    """What a comparison of models reports about one: ``family`` (name), ``family_title``, ``licence``,
    ``licence_note``, ``model_id``, ``revision``, ``pooling`` (resolved), ``poolings`` (those that mean
    something for it), ``embedding_dim`` (the pooled feature's length), ``hidden_size``, ``patch_size``
    (pixels per token side; ConvNeXt: its stride, 32), ``num_prefix_tokens``, ``image_size`` (the input
    side: ``image_size`` or the processor's), ``tokens_per_image`` (prefix + patch tokens at that size),
    ``attention`` (class-token attention maps exist), ``random_weights`` and, for a loaded
    :class:`Backbone`, ``params`` (the number of parameters of what was loaded: the image tower alone for
    SigLIP and CLIP) and ``params_millions``. ``model`` may also be an alias, Hub id or folder (read
    from its config files; no weights, no ``params``)."""
    info = model.info if isinstance(model, Backbone) else model if isinstance(model, ModelInfo) \
        else describe_model(model)
    fam = info.family_entry
    pooling = resolve_pooling(info, pooling)
    size = int(image_size or info.default_size)
    grid = size // info.patch_size
    out: dict[str, Any] = {
        "model_id": info.model_id, "revision": info.revision, "family": fam.name, "family_title": fam.title,
        "licence": fam.licence, "licence_note": fam.licence_note, "pooling": pooling, "poolings": list(info.poolings),
        "embedding_dim": info.feature_dim(pooling), "hidden_size": info.hidden_size, "patch_size": info.patch_size,
        "num_prefix_tokens": info.num_prefix_tokens, "image_size": size,
        "tokens_per_image": info.num_prefix_tokens + grid * grid, "attention": fam.attention,
        "random_weights": bool(info.random_weights),
    }
    if isinstance(model, Backbone):
        params = sum(p.numel() for p in model.model.parameters())
        out.update(params=int(params), params_millions=round(params / 1e6, 3))
    return out


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a model from its config files alone (no weights loaded)."""

    model_id: str
    local: bool
    patch_size: int
    hidden_size: int
    num_register_tokens: int
    default_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: the Hub commit the files come from, "local" for a folder, "unknown" when not recorded
    revision: str = "unknown"
    #: the checkpoint is marked as random weights (config.json: "palaeo_ssl_random_weights": true)
    random_weights: bool = False
    #: why the Hub is not asked (no network, HF_HUB_OFFLINE=1): files come from the local cache only
    cache_reason: str | None = field(default=None, compare=False)
    #: the backbone family (a key of :data:`palaeo_ssl.families.FAMILIES`)
    family: str = "dinov3-vit"
    #: the poolings that mean something for this model, its own global feature first
    poolings: tuple[str, ...] = ("cls", "mean", "cls+mean")
    #: the image processor's resampling filter (``bilinear``, ``bicubic``, ``nearest``)
    interpolation: str = "bilinear"
    #: the shorter side the processor resizes to before cutting the centre ``default_size`` square (None: squash)
    crop_from: int | None = None

    @property
    def cache_only(self) -> bool:
        """Load from the local cache without any request to the Hub."""
        return self.cache_reason is not None

    @property
    def family_entry(self) -> Family:
        return family_named(self.family)

    @property
    def licence(self) -> str:
        return self.family_entry.licence

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens: class (ConvNeXt: pooled) token if the family has one, and registers."""
        return int(self.family_entry.prefix_token) + self.num_register_tokens

    def feature_dim(self, pooling: str) -> int:
        """Length of a pooled feature: ``<global>+mean`` concatenates two hidden-size vectors."""
        return self.hidden_size * (2 if "+" in str(pooling) else 1)


def describe_model(model: str = DEFAULT_MODEL) -> ModelInfo:
    """Read a model's config and image-processor config (small JSON files) without its weights.

    Lets extraction decide what is cached before paying for loading the weights.
    """
    from transformers import AutoConfig

    model_id = resolve_model_id(model)
    local = is_local_model(model_id)
    path = str(Path(model_id).expanduser().resolve()) if local else model_id
    if not local and (model_id.startswith((".", "/", "~")) or model_id.count("/") > 1):
        raise ModelLoadError(
            f"model folder {model_id!r} does not exist; pass an existing folder, a Hub id such as "
            f"{ALIASES[DEFAULT_MODEL]} or an alias ({', '.join(ALIASES)})",
            kind="not_found", reason=f"model folder {model_id} does not exist",
        )
    if not local:
        from huggingface_hub.utils import validate_repo_id

        try:  # a malformed id needs no request to be refused
            validate_repo_id(model_id)
        except Exception as exc:
            raise _explain_load_error(model, model_id, exc) from exc
    token = _token()
    unreachable = None if local else hub_unreachable(model_id)
    try:
        config = AutoConfig.from_pretrained(path, token=token, local_files_only=unreachable is not None)
        fam = family_of_config(config, model)  # an unsupported architecture is refused before anything else
        proc = _processor_stats(path, token, local_files_only=unreachable is not None)
    except UserError:
        raise
    except Exception as exc:
        if unreachable is not None:
            raise _offline_error(model_id, unreachable) from exc
        raise _explain_load_error(model, model_id, exc) from exc
    facts = config_facts(config, fam)
    return ModelInfo(
        model_id=path if local else model_id,
        local=local,
        patch_size=facts["patch_size"],
        hidden_size=facts["hidden_size"],
        num_register_tokens=facts["num_register_tokens"],
        default_size=int(proc["size"] or facts["native_size"] or 224),
        mean=proc["mean"],
        std=proc["std"],
        revision="local" if local else _hub_revision(model_id, token),
        random_weights=bool(getattr(config, RANDOM_WEIGHTS_KEY, False)),
        cache_reason=unreachable,
        family=fam.name,
        poolings=fam.poolings(facts["has_global"]),
        interpolation=proc["interpolation"],
        crop_from=proc["crop_from"],
    )


def check_model_access(model: str = DEFAULT_MODEL) -> ModelInfo:
    """Describe ``model`` and make sure its weights can be had (local folder, cache, or the Hub), quickly.

    Reads only the small config files (one quick Hub request at most; well under five seconds
    without a network). Raises :class:`ModelLoadError`, whose ``kind`` says why, when the weights
    cannot be loaded: the Hub cannot be reached and the weights are not cached, the model is gated
    and this account has no access, there is no token, or no such model or folder.
    """
    info = describe_model(model)
    if (info.local or info.cache_only) and not weights_cached(info):
        if info.local:
            raise ModelLoadError(f"model folder {info.model_id} holds no weights (none of {', '.join(WEIGHT_FILES)})",
                                 kind="not_found", reason=f"model folder {info.model_id} holds no weights")
        raise _offline_error(info.model_id, info.cache_reason, "its weights are not in the cache")
    return info


def make_preprocessing(info: ModelInfo, mode: str = "processor", image_size: int | None = None,
                       background: tuple[int, int, int] = (0, 0, 0)) -> Preprocessing:
    """Validate ``mode`` and ``image_size`` for a model and say how its images are resized.

    ``image_size`` (default: the side the model's processor feeds it) must be a multiple of the patch size
    (ConvNeXt: of its stride, 32), unless it is the processor's own side (SigLIP so400m/14 at 384). A
    processor that resizes the shorter side and cuts the centre square (DINOv2: 256 then 224) keeps its
    ratio at other sizes (448: 512 then 448); ``mode="pad"`` never crops.
    """
    if mode not in PREPROCESSINGS:
        raise UserError(f"unknown preprocessing {mode!r}; choose one of {', '.join(PREPROCESSINGS)}")
    size = int(image_size or info.default_size)
    if size <= 0 or (size % info.patch_size and size != info.default_size):
        raise ParameterError(
            "image_size", f"{{name}} {size} is not a multiple of the model's patch size ({info.patch_size}); "
                          f"try {max(info.patch_size, round(size / info.patch_size) * info.patch_size)}")
    resize_short = None
    if mode == "processor" and info.crop_from:
        resize_short = max(size, int(round(size * info.crop_from / info.default_size)))
    return Preprocessing(mode=mode, size=size, mean=tuple(info.mean), std=tuple(info.std),
                         background=tuple(int(v) for v in background), interpolation=info.interpolation,
                         resize_short=resize_short)
