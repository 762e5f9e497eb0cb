"""The Hugging Face Hub side of loading a model: tokens, one quick reachability check, cached weights, and
errors that say what to do.

Before reading a Hub model, one quick request (no retries, a few seconds at most)
decides whether the Hub can be reached. When it cannot, files come from the local
cache only, or the call fails at once with one message, instead of
huggingface_hub's retries with back-off (half a minute per file).
:mod:`palaeo_ssl.backbone` uses these and re-exports them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import ModelLoadError
from .families import unsupported_error
from .models import ALIASES, DEFAULT_MODEL

log = logging.getLogger("palaeo_ssl.backbone")

#: seconds the one reachability request to the Hub may take to connect, and then to answer
HUB_CONNECT_TIMEOUT = 1.5
HUB_READ_TIMEOUT = 3.0


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
            "the licence on that page, then set HF_TOKEN (or run 'hf auth login') and try again; " + local_hint,
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
    if "does not recognize this architecture" in low or "unrecognized model" in low:
        return unsupported_error(model, None)
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


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def weights_cached(info) -> bool:
    """Whether the model's weights are on this machine (a local folder, or the Hub cache at its revision)."""
    if info.local:
        return any((Path(info.model_id) / f).is_file() for f in WEIGHT_FILES)
    from huggingface_hub import try_to_load_from_cache

    rev = None if info.revision == "unknown" else info.revision
    return any(isinstance(try_to_load_from_cache(info.model_id, f, revision=rev), str) for f in WEIGHT_FILES)


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
