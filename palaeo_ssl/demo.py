"""The main job of a fresh checkout: the whole pipeline on ``data/example``.

It uses the real DINOv3 weights when they can be had (a token of an account that
accepted the licence, a cached copy, or a local folder). When they cannot, it says in
one line why and how to get them, then runs the same pipeline on a tiny random-weight
DINOv3 (built once, cached) into a separate folder, every output of which carries
:data:`palaeo_ssl.backbone.RANDOM_WEIGHTS_NOTICE`.

``palaeo-ssl demo`` and ``python3 start.py demo`` are thin faces on :func:`run_demo`.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backbone import (ALIASES, DEFAULT_MODEL, RANDOM_WEIGHTS_KEY, RANDOM_WEIGHTS_NOTICE, check_model_access,
                       is_local_model, resolve_model_id)
from .cache import atomic_write_json, code_version, jsonable, read_json, user_cache_dir
from .errors import ModelLoadError, UserError

log = logging.getLogger(__name__)

DEMO_DATA = "data/example"
DEMO_OUT = "results/example"
#: appended to the results folder of a run that fell back to random weights
SMOKE_SUFFIX = "-smoke"
SMOKE_MODEL_NAME = "tiny-dinov3-random"
#: the code the smoke model was built by (palaeo-ssl, torch, transformers), recorded in its folder
SMOKE_BUILT_BY = ".palaeo-ssl-built-by.json"
SMOKE_LIBRARIES = ("torch", "transformers")


def smoke_model_dir() -> Path:
    """Where the random-weight smoke model is kept: ``$XDG_CACHE_HOME/palaeo-ssl/models`` (``~/.cache`` by default)."""
    return user_cache_dir("models", SMOKE_MODEL_NAME)


def smoke_model(folder: str | os.PathLike | None = None) -> Path:
    """The tiny random DINOv3 checkpoint (written once into ``folder``, then reused while palaeo-ssl, torch and
    transformers keep their versions, which ``folder/.palaeo-ssl-built-by.json`` records; rebuilt otherwise).

    Built by :func:`palaeo_ssl.testing.make_tiny_dinov3` in a temporary folder next to
    ``folder`` and moved into place, so that an interrupted build is never half-used.
    """
    import json

    folder = Path(folder) if folder is not None else smoke_model_dir()
    built_by = jsonable(code_version(SMOKE_LIBRARIES))
    try:
        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get(RANDOM_WEIGHTS_KEY) and (folder / "model.safetensors").is_file() \
                and (folder / "preprocessor_config.json").is_file() and read_json(folder / SMOKE_BUILT_BY) == built_by:
            return folder
    except (OSError, ValueError):
        pass
    from transformers.utils import logging as hf_logging

    from .testing import make_tiny_dinov3

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar for writing a 100 kB file is noise
    try:
        make_tiny_dinov3(tmp)
        atomic_write_json(tmp / SMOKE_BUILT_BY, built_by)  # another palaeo-ssl or transformers builds it anew
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process put it there first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


@dataclass(frozen=True)
class DemoPlan:
    """What :func:`run_demo` will run: the model, the results folder, and why (when it fell back)."""

    model: str
    out: Path
    random_weights: bool
    #: the one line that says why the real weights cannot be had and how to get them (None: they can)
    message: str | None = None


def model_page(model: str) -> str:
    """The Hub page where the licence of ``model`` is accepted (the default model's for a local folder)."""
    model_id = resolve_model_id(model)
    if is_local_model(model_id) or model_id.count("/") != 1:
        model_id = ALIASES[DEFAULT_MODEL]
    return f"https://huggingface.co/{model_id}"


def fallback_message(model: str, err: ModelLoadError, smoke_out: str | os.PathLike) -> str:
    """One line: why the weights of ``model`` cannot be had, how to get them, and what runs instead."""
    return (f"{model} weights not available: {err.reason}. To use them: accept the licence at {model_page(model)}, "
            "then run 'hf auth login' or set HF_TOKEN, with network access once (or pass --model "
            f"/path/to/model/folder). Now running the same pipeline on a random-weight model into {smoke_out}: "
            f"{RANDOM_WEIGHTS_NOTICE.split(': ', 1)[1]}.")


def plan_demo(model: str = DEFAULT_MODEL, out: str | os.PathLike = DEMO_OUT,
              smoke_out: str | os.PathLike | None = None, smoke_model_folder: str | os.PathLike | None = None) -> DemoPlan:
    """Decide quickly (seconds, offline too) whether ``model``'s weights can be had.

    Yes: run ``model`` into ``out``. No: run the random-weight smoke model into ``smoke_out``
    (default ``out`` + ``-smoke``), with the message saying why. The smoke model itself is
    built (once) by :func:`run_demo`, after the message is out.
    """
    try:
        check_model_access(model)
        return DemoPlan(model=str(model), out=Path(out), random_weights=False)
    except ModelLoadError as err:
        smoke_out = Path(smoke_out) if smoke_out is not None else Path(f"{Path(out)}{SMOKE_SUFFIX}")
        folder = Path(smoke_model_folder) if smoke_model_folder is not None else smoke_model_dir()
        return DemoPlan(model=str(folder), out=smoke_out, random_weights=True,
                        message=fallback_message(model, err, smoke_out))


@dataclass
class DemoResult:
    plan: DemoPlan
    #: what :func:`palaeo_ssl.pipeline.run_pipeline` returned
    result: Any


def run_demo(data: str | os.PathLike = DEMO_DATA, out: str | os.PathLike = DEMO_OUT, model: str = DEFAULT_MODEL, *,
             smoke_out: str | os.PathLike | None = None, smoke_model_folder: str | os.PathLike | None = None,
             progress: bool = True) -> DemoResult:
    """Run the whole pipeline on ``data`` with ``model``, or on random weights when its weights cannot be had.

    Parameters
    ----------
    data : the images (default ``data/example``, relative to the working folder: the repository root).
    out : results folder of a run with the real weights (default ``results/example``).
    model : alias, Hub id or local folder (default ``dinov3-vits16``).
    smoke_out : results folder of a random-weight run (default ``out`` + ``-smoke``).
    smoke_model_folder : where the smoke model is kept (default :func:`smoke_model_dir`).
    progress : progress bars.

    Logs the one-line reason (a warning) when it falls back. Returns a :class:`DemoResult`.
    """
    from .pipeline import run_pipeline

    if not Path(data).expanduser().exists():
        raise UserError(f"no {data} here ({Path.cwd()}): run from the repository root (where start.py is), "
                        "or pass a folder of images as data (palaeo-ssl demo DATA)")
    plan = plan_demo(model, out, smoke_out, smoke_model_folder)
    if plan.message:
        log.warning(plan.message)
    if plan.random_weights:
        smoke_model(plan.model)
    # the pipeline marks every output of a random-weight run itself (the store's meta says so)
    result = run_pipeline(data, model=plan.model, out=plan.out, progress=progress)
    return DemoResult(plan=plan, result=result)
