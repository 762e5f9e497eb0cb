"""Extraction as a Ray Data pipeline: ``extract_embeddings(..., engine="ray")``, ``palaeo-ssl extract --engine ray``.

What runs where:

- the **driver** (the process that called ``extract_embeddings``) finds the images,
  works out what the store lacks (as the local engine does), hands the list of
  files to Ray as a dataset, writes the embedded rows into the store as chunks as
  they come back, and consolidates the store at the end. Only the driver touches
  the store, so it need not be on a filesystem the cluster shares; the images must
  be readable at the same path on every node.
- **decoding** runs as Ray tasks on the cluster's CPUs (:func:`_decode_batch`):
  each reads a batch of files and returns them as uint8 arrays at the model's input
  size (4x smaller than float32 in the object store);
- **embedding** runs in a pool of actors (``map_batches`` with a callable class,
  :class:`_Embedder`): each loads the model once, moves the uint8 batch to its device, normalises it
  there and embeds it (:func:`palaeo_ssl.loading.embed_uint8`), on a GPU when the cluster has them.

A killed run loses only the batches in flight: every chunk written is kept, and
the next run (with either engine) computes only what is missing.

Ray is optional: ``pip install -r requirements-cluster.txt`` (or the ``cluster``
extra).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..backbone import Preprocessing, dtype_name, load_backbone
from ..errors import UserError
from ..images import ImageReadError
from ..loading import decode_image, embed_uint8
from ..params import ParameterError, literal, shown

log = logging.getLogger(__name__)

#: share of a CPU-only cluster's CPUs given to the embedding actors; the rest decodes
CPU_ACTOR_SHARE = 0.75
#: logical CPUs one decoding task asks for on a CPU-only cluster (a GPU cluster: 1)
DECODE_CPUS_WITHOUT_GPUS = 0.25
#: batches are made small enough that every actor gets at least this many, so that no actor
#: idles for long while another works through the last batches (119 images in batches of 32 on 2
#: actors left one actor with a single batch and the other with three)
MIN_BATCHES_PER_ACTOR = 8


def require_ray():
    """The ``ray`` module, or a :class:`UserError` that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UserError(
            "engine='ray' (--engine ray) needs Ray Data, which is not installed: run "
            "'pip install -r requirements-cluster.txt' (or pip install -e '.[cluster]'), or use the local engine"
        ) from exc
    return ray


# ---------------------------------------------------------------------- the two steps (swappable at one place each)
def _decode_batch(paths: Sequence[str], prep: Preprocessing) -> tuple[list[int], np.ndarray, list[tuple[int, str]]]:
    """Decode ``paths`` to uint8 arrays at the model's input size, exactly as the local engine does
    (:func:`palaeo_ssl.loading.decode_image`).

    Returns (indices of the files that could be read, uint8 array (n_ok, 3, S, S),
    [(index, reason)] of those that could not).
    """
    s = prep.size
    ok: list[int] = []
    arrays: list[torch.Tensor] = []
    bad: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        try:
            arrays.append(decode_image(path, prep))
            ok.append(i)
        except ImageReadError as exc:
            bad.append((i, str(exc)))
        except Exception as exc:  # one bad file never stops the pipeline
            bad.append((i, f"cannot process: {type(exc).__name__}: {exc}"))
    pixels = torch.stack(arrays).numpy() if arrays else np.zeros((0, 3, s, s), np.uint8)
    return ok, pixels, bad


# ---------------------------------------------------------------------- Ray stages
def _decode_stage(batch: dict[str, np.ndarray], prep: Preprocessing) -> dict[str, np.ndarray]:
    """Ray task: a batch of ``{"k", "path"}`` rows -> ``{"k", "pixels" (uint8), "reason"}`` ("" = read)."""
    paths = [str(p) for p in batch["path"]]
    ok, pixels, bad = _decode_batch(paths, prep)
    n, s = len(paths), prep.size
    out = np.zeros((n, 3, s, s), np.uint8)
    if ok:
        out[ok] = pixels
    reason = np.array([""] * n, dtype=object)
    for i, r in bad:
        reason[i] = r
    return {"k": np.asarray(batch["k"], np.int64), "pixels": out, "reason": reason}


class _Embedder:
    """Ray actor: loads the model once, embeds uint8 batches; rows that could not be read stay zero."""

    def __init__(self, model_id: str, info: Any, device: str, dtype: str, pooling: str, prep: Preprocessing,
                 torch_threads: int | None):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.backbone = load_backbone(model_id, device=device, dtype=dtype, info=info)
        self.pooling, self.prep = pooling, prep
        self.dim = self.backbone.feature_dim(pooling)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        reason = np.asarray(batch["reason"], dtype=object)
        ok = np.flatnonzero(reason == "")
        feats = np.zeros((len(reason), self.dim), np.float32)
        if len(ok):
            pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
            feats[ok] = embed_uint8(self.backbone, pixels, self.prep, self.pooling).numpy()
        return {"k": np.asarray(batch["k"], np.int64), "features": feats, "reason": reason}


# ---------------------------------------------------------------------- the cluster and the pipeline
@dataclass
class RayLayout:
    """How the pipeline uses the cluster: actors, their GPUs/CPUs and threads, the decoding tasks' CPUs."""

    actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    decode_cpus: float
    torch_threads: int | None
    device: str  # the actors' device: "cuda" or "cpu"
    cluster_cpus: float
    cluster_gpus: float


def connect(address: str | None = None):
    """Join the Ray cluster at ``address`` (or the running one / a new local one); returns ``ray``."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except ConnectionError as exc:
            raise ParameterError("address", "cannot reach the Ray cluster at {name} = " + shown(address) + ": "
                                 + literal(exc)) from exc
    return ray


def layout(ray, gpus_per_actor: float | None = None, actors: int | None = None) -> RayLayout:
    """The actor pool for this cluster (see :func:`palaeo_ssl.extract.extract_embeddings` for the defaults)."""
    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 1)), float(res.get("GPU", 0))
    g = (1.0 if gpus >= 1 else gpus) if gpus_per_actor is None else float(gpus_per_actor)
    if g > 0:
        if gpus < g:
            raise ParameterError("gpus_per_actor",
                                 f"{{name}} = {g:g}, but the Ray cluster has {gpus:g} GPUs; pass 0 for CPU actors")
        n = actors or max(1, int(gpus // g))
        return RayLayout(actors=n, gpus_per_actor=g, cpus_per_actor=1.0, decode_cpus=1.0, torch_threads=None,
                         device="cuda", cluster_cpus=cpus, cluster_gpus=gpus)
    n = actors or (2 if cpus <= 8 else int(cpus // 4))
    share = CPU_ACTOR_SHARE * cpus / n
    return RayLayout(actors=n, gpus_per_actor=0.0, cpus_per_actor=share, decode_cpus=DECODE_CPUS_WITHOUT_GPUS,
                     torch_threads=max(1, int(share)), device="cpu", cluster_cpus=cpus, cluster_gpus=gpus)


def actor_device(address: str | None, gpus_per_actor: float | None, actors: int | None) -> torch.device:
    """The device the actors will embed on (keys the store with the right dtype before anything runs)."""
    return torch.device(layout(connect(address), gpus_per_actor, actors).device)


def batch_size_for(n_images: int, actors: int, batch_size: int | None, device: str) -> int:
    """The batch the pipeline moves and embeds: ``batch_size`` (default 64 on CUDA, 32 on the CPU),
    made smaller when needed so that each actor gets at least :data:`MIN_BATCHES_PER_ACTOR` batches."""
    bs = int(batch_size) if batch_size is not None else (64 if device == "cuda" else 32)
    return max(1, min(bs, n_images // (max(1, actors) * MIN_BATCHES_PER_ACTOR)))


def embed_with_ray(plan: Any, pooling: str, batch_size: int | None, chunk_size: int, progress: bool,
                   address: str | None = None, gpus_per_actor: float | None = None,
                   actors: int | None = None, timings: dict[str, float] | None = None) -> int:
    """Embed ``plan.todo`` on the Ray cluster, writing store chunks as results arrive; returns images embedded.

    ``timings`` (when given) receives ``ray_start`` (joining the cluster, building the dataset),
    ``first_batch`` (from the pipeline's start to the first embedded batch at the driver: the
    actors' start and model load, the first decode and forward pass), ``loop`` (first batch to
    last) and ``first_batch_images`` (images in that first batch, not counted in ``loop``).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    ray = connect(address)
    lay = layout(ray, gpus_per_actor, actors)
    todo, fps = plan.todo, plan.fps
    bs = batch_size_for(len(todo), lay.actors, batch_size, lay.device)
    import pyarrow as pa

    paths = [str(plan.files[k]) for k in todo]
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver's own bar counts the images
    step = max(bs, math.ceil(len(todo) / 10_000))  # blocks of about one batch, at most 10,000 of them
    ds = ray.data.from_arrow([pa.table({"k": np.arange(a, min(a + step, len(todo)), dtype=np.int64),
                                        "path": paths[a:a + step]}) for a in range(0, len(todo), step)])
    ds = ds.map_batches(_decode_stage, fn_kwargs={"prep": plan.prep}, batch_size=bs, batch_format="numpy",
                        num_cpus=lay.decode_cpus)
    ds = ds.map_batches(
        _Embedder, batch_size=bs, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=lay.actors),
        num_cpus=lay.cpus_per_actor,
        num_gpus=lay.gpus_per_actor or None,
        fn_constructor_kwargs={"model_id": plan.info.model_id, "info": plan.info, "device": lay.device,
                               "dtype": dtype_name(plan.dtype), "pooling": pooling, "prep": plan.prep,
                               "torch_threads": lay.torch_threads})
    log.info("Ray: %d actor(s) on %s (%g GPU, %g CPU each), decoding tasks at %g CPU; cluster %g CPUs, %g GPUs",
             lay.actors, lay.device, lay.gpus_per_actor, lay.cpus_per_actor, lay.decode_cpus, lay.cluster_cpus,
             lay.cluster_gpus)
    buf_fp: list[tuple] = []
    buf_feat: list[np.ndarray] = []
    buf_skip: list[tuple[tuple, str]] = []

    def flush():
        if buf_fp or buf_skip:
            plan.store.write_chunk(list(buf_fp), np.concatenate(buf_feat) if buf_feat else None, list(buf_skip))
            buf_fp.clear(), buf_feat.clear(), buf_skip.clear()

    computed = 0
    t0 = time.perf_counter()
    t_first, first_n = None, 0
    bar = tqdm(total=len(todo), unit="img", desc="embedding (ray)", disable=not progress, dynamic_ncols=True)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            ks, reason = batch["k"], np.asarray(batch["reason"], dtype=object)
            if t_first is None:
                t_first, first_n = time.perf_counter(), len(ks)
            ok = reason == ""
            for k, r in zip(ks[~ok].tolist(), reason[~ok].tolist()):
                buf_skip.append((fps[todo[k]], str(r)))
            if ok.any():
                buf_feat.append(np.asarray(batch["features"][ok], np.float32))
                buf_fp.extend(fps[todo[k]] for k in ks[ok].tolist())
                computed += int(ok.sum())
            bar.update(len(ks))
            if len(buf_fp) + len(buf_skip) >= chunk_size:
                flush()
        flush()
    finally:
        bar.close()
    t_end = time.perf_counter()
    log.info("Ray pipeline: %d images in %.1f s", len(todo), t_end - t0)
    if timings is not None and t_first is not None:
        timings.update({"ray_start": t0 - t_start, "first_batch": t_first - t0, "loop": t_end - t_first,
                        "first_batch_images": float(first_n)})
    return computed


__all__ = ["MIN_BATCHES_PER_ACTOR", "RayLayout", "actor_device", "batch_size_for", "connect", "embed_with_ray",
           "layout", "require_ray"]
