"""Load a Hugging Face vision backbone and its preprocessing; choose device and dtype; pool tokens.

Models are named by a Hub id, a local folder, or a short alias (``dinov3-vits16``
-> ``facebook/dinov3-vits16-pretrain-lvd1689m``). The token comes from
``HF_TOKEN`` or a stored login (never an interactive prompt); with
``HF_HUB_OFFLINE=1`` models load from the local cache only.

Before reading a Hub model, one quick request (no retries, a few seconds at most)
decides whether the Hub can be reached. When it cannot, files come from the local
cache only, or the call fails at once with one message, instead of
huggingface_hub's retries with back-off (half a minute per file).

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
from .params import ParameterError
from .models import ALIASES, DEFAULT_MODEL, RANDOM_WEIGHTS_NOTICE  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean", "cls+mean")
PREPROCESSINGS = ("processor", "pad")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16")

#: config.json key that marks a checkpoint with random weights (see palaeo_ssl.testing.make_tiny_dinov3)
RANDOM_WEIGHTS_KEY = "palaeo_ssl_random_weights"
#: seconds the one reachability request to the Hub may take to connect, and then to answer
HUB_CONNECT_TIMEOUT = 1.5
HUB_READ_TIMEOUT = 3.0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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

    ``mode="processor"``: squash to ``size`` x ``size`` (the model's own processor, the
    paper's setting). ``mode="pad"``: keep the aspect ratio, pad to a square with
    ``background`` (RGB 0-255), then the same resize. Both rescale to [0, 1],
    resize bilinearly with antialiasing, then normalise with ``mean``/``std``.
    """

    mode: str = "processor"
    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    background: tuple[int, int, int] = (0, 0, 0)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "size": self.size, "mean": list(self.mean), "std": list(self.std),
                "background": list(self.background)}


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

    @property
    def num_prefix_tokens(self) -> int:
        """CLS + register tokens that precede the patch tokens."""
        return 1 + self.num_register_tokens

    def feature_dim(self, pooling: str) -> int:
        return self.info.feature_dim(pooling)

    def preprocessing(self, mode: str = "processor", image_size: int | None = None,
                      background: tuple[int, int, int] = (0, 0, 0)) -> Preprocessing:
        return make_preprocessing(self.info, mode, image_size, background)

    @property
    def info(self) -> "ModelInfo":
        return ModelInfo(model_id=self.model_id, local=self.revision == "local", patch_size=self.patch_size,
                         hidden_size=self.hidden_size, num_register_tokens=self.num_register_tokens,
                         default_size=self.default_size, mean=self.mean, std=self.std, revision=self.revision,
                         random_weights=self.random_weights)

    @torch.inference_mode()
    def embed(self, pixel_values: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
        """Features of a batch (B, 3, H, W) -> (B, D) float32 on the CPU."""
        x = pixel_values.to(self.device, dtype=self.dtype, non_blocking=True)
        return self.features(x, pooling).float().cpu()

    def features(self, x: torch.Tensor, pooling: str = "cls") -> torch.Tensor:
        """Pooled features (B, D) of a normalised batch already on the device in the model's dtype,
        left on the device (no copy back, no synchronisation). Call under ``torch.inference_mode()``."""
        out = self.model(pixel_values=x)
        return pool_tokens(out.last_hidden_state, out.pooler_output, pooling, self.num_prefix_tokens)

    def feature_fn(self, pooling: str = "cls", compile: bool = False):
        """:meth:`features` for ``pooling`` as a function of the batch; with ``compile``, compiled by
        ``torch.compile`` for fixed shapes (every batch must have the same shape: pad the last one).
        Compiled artefacts are cached on disk (see :func:`compile_cache_dir`), so a second run in a new
        process skips most of the compile time."""
        if pooling not in POOLINGS:
            raise UserError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")

        def fn(x: torch.Tensor) -> torch.Tensor:
            return self.features(x, pooling)

        if not compile:
            return fn
        check_compile(self.device)
        compile_cache_dir()
        return torch.compile(fn, dynamic=False)

    @torch.inference_mode()
    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states (B, 1 + registers + patches, D) in float32 on the CPU."""
        x = pixel_values.to(self.device, dtype=self.dtype)
        return self.model(pixel_values=x).last_hidden_state.float().cpu()


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
    """Pool a (B, T, D) token sequence.

    ``cls``: the pooler output (the CLS token after the final norm);
    ``mean``: mean of the patch tokens (CLS and register tokens excluded);
    ``cls+mean``: both, concatenated (B, 2D).
    """
    if pooling not in POOLINGS:
        raise UserError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    cls = pooler_output if pooler_output is not None else last_hidden_state[:, 0]
    if pooling == "cls":
        return cls
    mean = last_hidden_state[:, num_prefix_tokens:].mean(dim=1)
    if pooling == "mean":
        return mean
    return torch.cat([cls, mean], dim=1)


def _token() -> str | bool | None:
    tok = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    return tok or None  # None: huggingface_hub falls back to a stored login


def _explain_load_error(model: str, model_id: str, exc: BaseException) -> ModelLoadError:
    """Turn Hub / transformers errors into a message that says what to do."""
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    page = f"https://huggingface.co/{model_id}"
    local_hint = "or pass a local folder that holds config.json, the weights and preprocessor_config.json"
    if "gated" in low or "access to model" in low or "403" in low:
        return ModelLoadError(
            f"{model_id} is a gated model and this account has no access yet. Open {page}, log in, accept "
            "the DINOv3 licence, then set HF_TOKEN (or run 'hf auth login') and try again; " + local_hint,
            kind="gated", reason="a gated model, and this account has not accepted its licence",
        )
    if "401" in low or "unauthorized" in low or "token" in low and "invalid" in low:
        return ModelLoadError(
            f"the Hub refused the request for {model_id} (no token or an invalid token). Set HF_TOKEN to a "
            f"token of an account that accepted the licence at {page} (or run 'hf auth login'); " + local_hint,
            kind="token", reason="no Hugging Face token, or an invalid one",
        )
    if "offline" in low or "couldn't connect" in low or "connection" in low or "cannot find the requested files in the" in low \
            or "localentrynotfound" in low or "name or service not known" in low:
        return _offline_error(model_id, "no network connection (or HF_HUB_OFFLINE=1)")
    if "not a valid model identifier" in low or "repository not found" in low or "repo id must" in low \
            or "404" in low or "repositorynotfound" in low or "hfvalidationerror" in low:
        aliases = ", ".join(ALIASES)
        return ModelLoadError(
            f"{model!r} is neither a local folder nor a model on the Hugging Face Hub. Check the spelling, "
            f"use a short alias ({aliases}) or a Hub id such as {ALIASES[DEFAULT_MODEL]}, " + local_hint,
            kind="not_found", reason="no such local folder or Hub model",
        )
    return ModelLoadError(f"could not load model {model!r} ({text[:500]}); " + local_hint)


def _offline_error(model_id: str, why: str, what: str = "no cached copy") -> ModelLoadError:
    return ModelLoadError(
        f"could not download {model_id}: {why} and {what}. Run once with network access to fill the cache, "
        "then HF_HUB_OFFLINE=1 works; or pass a local folder that holds config.json, the weights and "
        "preprocessor_config.json",
        kind="offline", reason=f"{why} and {what}",
    )


def _hub_offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def hub_unreachable(model_id: str, connect_timeout: float = HUB_CONNECT_TIMEOUT, endpoint: str | None = None) -> str | None:
    """Why the Hugging Face Hub cannot serve ``model_id`` right now, or ``None`` when it answers.

    One bare HEAD request for the model's ``config.json`` at ``endpoint`` (default: ``HF_ENDPOINT``),
    no retries, no token: any HTTP answer but a server error means "reachable" (refusals such as a
    gated model are reported by the ordinary loading that follows). At most ``connect_timeout``
    seconds to connect, :data:`HUB_READ_TIMEOUT` to answer; no request at all under ``HF_HUB_OFFLINE=1``. Returns a short reason ("no network connection
    (HF_HUB_OFFLINE=1 is set)", "no network connection (the Hugging Face Hub at
    https://huggingface.co cannot be reached: ...)") when there is no network or the Hub is down,
    so that the caller reads the local cache only instead of waiting through huggingface_hub's
    retries with back-off (half a minute per file).
    """
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import get_session

    try:
        import httpx2 as httpx  # the HTTP client of huggingface_hub >= 2
    except ImportError:  # pragma: no cover - older huggingface_hub
        import httpx

    if _hub_offline_mode():
        return "no network connection (HF_HUB_OFFLINE=1 is set)"
    endpoint = endpoint or constants.ENDPOINT
    try:
        response = get_session().head(hf_hub_url(model_id, "config.json", endpoint=endpoint),
                                      timeout=httpx.Timeout(HUB_READ_TIMEOUT, connect=connect_timeout))
    except httpx.TransportError as exc:  # DNS, refused, timeout, proxy: no usable network
        return (f"no network connection (the Hugging Face Hub at {endpoint} cannot be reached: "
                f"{_short(exc) or type(exc).__name__})")
    except Exception as exc:  # anything else: let the ordinary loading path find out and report it
        log.debug("Hub check for %s: %r", model_id, exc)
        return None
    if response.status_code >= 500:
        return f"the Hugging Face Hub at {endpoint} answered HTTP {response.status_code} (down or overloaded)"
    return None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _processor_stats(model_path: str, token, local_files_only: bool = False) -> tuple[tuple, tuple, int | None]:
    """Mean, std and square size from the model's image-processor config."""
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(model_path, token=token, local_files_only=local_files_only)
    mean = tuple(float(v) for v in (getattr(proc, "image_mean", None) or IMAGENET_MEAN))
    std = tuple(float(v) for v in (getattr(proc, "image_std", None) or IMAGENET_STD))
    size = getattr(proc, "size", None)
    side = None
    if isinstance(size, dict):
        side = size.get("height") or size.get("shortest_edge")
    elif size is not None:
        side = getattr(size, "height", None) or getattr(size, "shortest_edge", None)
    return mean, std, (int(side) if side else None)


def load_backbone(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto",
                  attn_implementation: str = "sdpa", info: "ModelInfo | None" = None) -> Backbone:
    """Load ``model`` (alias, Hub id or local folder) for inference on ``device`` in ``dtype``.

    Raises :class:`ModelLoadError` (a :class:`UserError`) with advice when the
    model cannot be found, is gated, or cannot be downloaded.
    """
    from transformers import AutoModel

    info = info or describe_model(model)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    try:
        # the weights of the very commit whose config was read (and that keys the store)
        pinned = {"revision": info.revision} if not info.local and info.revision != "unknown" else {}
        net = AutoModel.from_pretrained(info.model_id, token=_token(), dtype=dt,
                                        attn_implementation=attn_implementation,
                                        local_files_only=info.cache_only, **pinned)
    except UserError:
        raise
    except Exception as exc:  # Hub, network and file errors come in many types
        if info.cache_only and not weights_cached(info):
            raise _offline_error(info.model_id, info.cache_reason, "its weights are not in the cache") from exc
        raise _explain_load_error(model, info.model_id, exc) from exc
    net.eval().to(dev)
    revision = "local" if info.local else info.revision
    log.debug("loaded %s (revision %s) on %s as %s", info.model_id, revision, dev, dt)
    return Backbone(model=net, model_id=info.model_id, revision=revision, device=dev, dtype=dt,
                    patch_size=info.patch_size, num_register_tokens=info.num_register_tokens,
                    hidden_size=info.hidden_size, default_size=info.default_size, mean=info.mean, std=info.std,
                    config=net.config, random_weights=info.random_weights)


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

    @property
    def cache_only(self) -> bool:
        """Load from the local cache without any request to the Hub."""
        return self.cache_reason is not None

    def feature_dim(self, pooling: str) -> int:
        """Length of a pooled feature: ``cls+mean`` concatenates two hidden-size vectors."""
        return self.hidden_size * (2 if pooling == "cls+mean" else 1)


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
        mean, std, side = _processor_stats(path, token, local_files_only=unreachable is not None)
    except UserError:
        raise
    except Exception as exc:
        if unreachable is not None:
            raise _offline_error(model_id, unreachable) from exc
        raise _explain_load_error(model, model_id, exc) from exc
    return ModelInfo(
        model_id=path if local else model_id,
        local=local,
        patch_size=int(getattr(config, "patch_size", 16) or 16),
        hidden_size=int(getattr(config, "hidden_size")),
        num_register_tokens=int(getattr(config, "num_register_tokens", 0) or 0),
        default_size=int(side or getattr(config, "image_size", 224) or 224),
        mean=mean,
        std=std,
        revision="local" if local else _hub_revision(model_id, token),
        random_weights=bool(getattr(config, RANDOM_WEIGHTS_KEY, False)),
        cache_reason=unreachable,
    )


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def weights_cached(info: ModelInfo) -> bool:
    """Whether the model's weights are on this machine (a local folder, or the Hub cache at its revision)."""
    if info.local:
        return any((Path(info.model_id) / f).is_file() for f in WEIGHT_FILES)
    from huggingface_hub import try_to_load_from_cache

    rev = None if info.revision == "unknown" else info.revision
    return any(isinstance(try_to_load_from_cache(info.model_id, f, revision=rev), str) for f in WEIGHT_FILES)


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


def _hub_revision(model_id: str, token) -> str:
    """The commit a Hub model's files come from: the snapshot folder its cached config.json lives in.

    Read from the local cache only: describe_model has just fetched config.json, which recorded the
    commit it came from, so asking the Hub again would cost a round trip and could name a newer commit.
    """
    from transformers.utils import cached_file

    try:
        path = Path(cached_file(model_id, "config.json", token=token, local_files_only=True))
    except Exception:  # already read once by describe_model; anything odd here only loses the record
        return "unknown"
    parts = path.parts
    if "snapshots" in parts[:-1]:
        return parts[parts.index("snapshots") + 1]
    return "unknown"


def make_preprocessing(info: ModelInfo, mode: str = "processor", image_size: int | None = None,
                       background: tuple[int, int, int] = (0, 0, 0)) -> Preprocessing:
    """Validate ``mode`` and ``image_size`` (a multiple of the patch size) for a model."""
    if mode not in PREPROCESSINGS:
        raise UserError(f"unknown preprocessing {mode!r}; choose one of {', '.join(PREPROCESSINGS)}")
    size = int(image_size or info.default_size)
    if size <= 0 or size % info.patch_size:
        raise ParameterError(
            "image_size", f"{{name}} {size} is not a multiple of the model's patch size ({info.patch_size}); "
                          f"try {max(info.patch_size, round(size / info.patch_size) * info.patch_size)}")
    return Preprocessing(mode=mode, size=size, mean=tuple(info.mean), std=tuple(info.std),
                         background=tuple(int(v) for v in background))
