"""The batched extraction pipeline: DataLoader workers decode and resize, the model embeds, the store caches.

Use :func:`extract_embeddings` (also ``palaeo_ssl.extract_embeddings`` and
``palaeo-ssl extract``). A rerun computes only images that are new or changed;
a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .backbone import (
    DEFAULT_MODEL,
    POOLINGS,
    PREPROCESSINGS,
    Backbone,
    Preprocessing,
    describe_model,
    dtype_name,
    load_backbone,
    make_preprocessing,
    resolve_device,
    resolve_dtype,
)
from .cache import user_cache_dir
from .compute import compute_context, usable_cpus
from .embeddings import Embeddings
from .errors import UserError
from .params import NON_NEGATIVE_INT, POSITIVE_INT, Interval, Options, ParameterError, validate_params
from .images import ImageReadError, discover, load_image, pad_to_square, parse_color, skipped_frame
from .report import library_versions, now_iso, peak_rss_mb, write_csv
from .store import EmbeddingStore, fingerprint

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- preprocessing
class ImageTransform:
    """PIL RGB image -> normalised float32 tensor (3, size, size).

    Rescale to [0, 1], (``pad``: pad to a square with the background colour),
    bilinear antialiased resize to ``size`` x ``size``, normalise. The same
    operations, in the same order, as the DINOv3 image processor, so
    ``mode="processor"`` reproduces it on the same decoded image. Extraction
    decodes JPEGs of at least twice ``size`` on both sides in draft mode (see
    :func:`~palaeo_ssl.images.load_image`), which is faster but not pixel-identical
    to a full decode (a 1200 px JPEG: mean |difference| 0.01, max 0.18 after
    normalisation).
    """

    def __init__(self, prep: Preprocessing):
        self.prep = prep
        self.mean = torch.tensor(prep.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(prep.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, img) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        if self.prep.mode == "pad":
            img = pad_to_square(img, self.prep.background)
        arr = np.array(img, dtype=np.uint8)  # a writable copy for torch
        t = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
        s = self.prep.size
        if t.shape[1] != s or t.shape[2] != s:
            t = F.resize(t, [s, s], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
        return t.sub_(self.mean).div_(self.std)


class _ImageDataset(Dataset):
    """Decodes file ``i`` once and returns (i, tensor or None, reason)."""

    def __init__(self, files: Sequence[Path], transform: ImageTransform):
        self.files = [str(f) for f in files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        prep = self.transform.prep
        try:
            img = load_image(self.files[i], background=prep.background, draft_size=prep.size)
            return i, self.transform(img), ""
        except ImageReadError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a worker must never die on one bad file
            return i, None, f"cannot process: {type(exc).__name__}: {exc}"


def _collate(items):
    ok = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, r) for i, t, r in items if t is None]
    pixels = torch.stack([t for _, t in ok]) if ok else None
    return [i for i, _ in ok], pixels, bad


def _batches(dataset: Dataset, batch_size: int, workers: int, pin: bool) -> Iterator:
    """Yield collated batches; fall back to in-process loading where worker processes cannot start."""
    if workers > 0:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=_collate, pin_memory=pin, persistent_workers=False,
                            prefetch_factor=4)
        try:
            it = iter(loader)
            first = next(it)
        except StopIteration:
            return
        except Exception as exc:  # e.g. no multiprocessing in this interpreter/notebook
            log.warning("worker processes could not start (%s: %s); loading images in this process instead",
                        type(exc).__name__, exc)
        else:
            yield first
            yield from it
            return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=_collate,
                        pin_memory=pin)
    yield from loader


# ---------------------------------------------------------------------- summary
@dataclass
class ExtractionSummary:
    """What one extraction run did (printed at the end, stored in ``meta.json``)."""

    store: str
    images: int
    computed: int
    reused: int
    skipped: int
    seconds: float
    images_per_second: float
    peak_ram_mb: float
    peak_gpu_mb: float | None
    device: str
    dtype: str
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        lines = [
            f"store:    {self.store}",
            f"images:   {self.images} embedded ({self.computed} computed now, {self.reused} reused from the cache)",
            f"skipped:  {self.skipped}" + (" (see skipped.csv)" if self.skipped else ""),
            f"time:     {self.seconds:.1f} s"
            + (f", {self.images_per_second:.1f} images/s" if self.computed else ""),
            f"peak RAM: {self.peak_ram_mb:.0f} MB (this process)"
            + (f"; peak GPU memory: {self.peak_gpu_mb:.0f} MB" if self.peak_gpu_mb is not None else ""),
            f"device:   {self.device}, {self.dtype}",
        ]
        for path, reason in self.skipped_files[:10]:
            lines.append(f"  skipped {path}: {reason}")
        if len(self.skipped_files) > 10:
            lines.append(f"  ... and {len(self.skipped_files) - 10} more in skipped.csv")
        return "\n".join(lines)


def default_workers(device: torch.device) -> int:
    cores = usable_cpus()
    if device.type == "cpu":
        # on the CPU the model needs the cores; one worker overlaps decoding with compute
        return 1 if cores >= 2 else 0
    return max(1, min(8, cores - 1))


# ---------------------------------------------------------------------- main entry
def default_cache_dir() -> Path:
    """Where stores go without ``out``: ``~/.cache/palaeo-ssl/embeddings`` (or under ``$XDG_CACHE_HOME``)."""
    return user_cache_dir("embeddings")


@validate_params({
    "pooling": Options(POOLINGS),
    "preprocess": Options(PREPROCESSINGS),
    "image_size": [POSITIVE_INT, None],
    "batch_size": [POSITIVE_INT, None],
    "workers": [NON_NEGATIVE_INT, None],
    "chunk_size": POSITIVE_INT,
    "engine": Options(("local", "ray")),
    "gpus_per_actor": [Interval(float, 0, None), None],
    "actors": [POSITIVE_INT, None],
})
def extract_embeddings(
    data: str | os.PathLike,
    model: str = DEFAULT_MODEL,
    out: str | os.PathLike | None = None,
    *,
    pooling: str = "cls",
    preprocess: str = "processor",
    image_size: int | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    strict: bool = False,
    background: str | Sequence[int] = "black",
    chunk_size: int = 512,
    progress: bool = True,
    backbone: Backbone | None = None,
    shard: str | tuple[int, int] | None = None,
    engine: str = "local",
    address: str | None = None,
    gpus_per_actor: float | None = None,
    actors: int | None = None,
) -> Embeddings:
    """Embed every image under ``data`` (a folder or a CSV manifest), reusing cached features.

    Parameters
    ----------
    data : folder of class sub-folders, flat folder, or CSV manifest (``path,label[,specimen]``).
    model : alias (``dinov3-vits16``...), Hub id or local folder.
    out : folder for the store and ``skipped.csv`` (default: ``~/.cache/palaeo-ssl/embeddings``).
    pooling : ``cls`` (pooler output), ``mean`` (patch tokens), or ``cls+mean``.
    preprocess : ``processor`` (squash to a square, as the model's processor) or ``pad``
        (keep the aspect ratio, pad with ``background``).
    image_size : input side in pixels, a multiple of the patch size (default: the processor's).
    batch_size, workers : default 32 on CPU / 64 on GPU; workers as :func:`default_workers`.
    device, dtype : ``auto`` picks CUDA > MPS > CPU and bfloat16 where supported, float32 on CPU.
    strict : raise :class:`UserError` if any file was skipped (features are still saved).
    background : colour for transparency and padding (``black``, ``white``, ``#rrggbb``, ``r,g,b``).
    chunk_size : rows per on-disk chunk; a killed run loses at most one chunk of work.
    shard : ``"I/N"`` (or ``(I, N)``): embed only shard ``I`` of ``N`` (``0 <= I < N``), for the
        tasks of a cluster array job writing into one store (:mod:`palaeo_ssl.shards`). Nothing is
        consolidated and a :class:`~palaeo_ssl.shards.ShardSummary` is returned; a later run
        without ``shard`` consolidates and computes whatever is still missing.
    engine : ``local`` (this process and its decoding workers) or ``ray`` (a Ray Data pipeline:
        decoding as CPU tasks, embedding in a pool of actors; needs ``pip install -r
        requirements-cluster.txt``; see :mod:`palaeo_ssl.engines.ray_data`).
    address : the Ray cluster to join (``ray://host:10001`` or ``auto``; default: a running
        local cluster, else a new one on this machine). ``engine="ray"`` only, as the next two.
    gpus_per_actor : GPUs per embedding actor (fractions share a GPU; default 1 where the cluster
        has GPUs, else the actors run on CPUs).
    actors : embedding actors (default: one per GPU share; on CPUs 2, or one per 4 CPUs past 8).

    Returns the :class:`Embeddings` (features memory-mapped from the store),
    with ``meta["extraction"]`` describing this run.
    """
    from . import shards

    t0 = time.perf_counter()
    shard_spec = shards.parse_shard(shard)
    if engine != "ray" and (address is not None or gpus_per_actor is not None or actors is not None):
        name = "address" if address is not None else "gpus_per_actor" if gpus_per_actor is not None else "actors"
        raise ParameterError(name, "{name} is for the Ray engine only (engine='ray', --engine ray)")
    if engine == "ray":  # the store is keyed by the actors' device and dtype, not the driver's
        from .engines.ray_data import actor_device

        if device == "cpu" and gpus_per_actor is None:
            gpus_per_actor = 0.0
        device = actor_device(address, gpus_per_actor, actors)
    plan = _plan(data, model, out, pooling, preprocess, image_size, device, dtype, background, backbone, shard_spec)
    if shard_spec is None:
        shards.warn_if_incomplete(plan.store.folder)
    else:
        shards.record_start(plan.store.folder, shard_spec, plan.assigned, len(plan.todo))
    computed, extract_seconds, peak_gpu = 0, 0.0, None
    if plan.todo and engine == "ray":
        from .engines.ray_data import embed_with_ray

        t_extract = time.perf_counter()
        computed = embed_with_ray(plan, pooling, batch_size=batch_size, chunk_size=chunk_size, progress=progress,
                                  address=address, gpus_per_actor=gpus_per_actor, actors=actors)
        extract_seconds = time.perf_counter() - t_extract
    elif plan.todo:
        dev = plan.device
        bs = int(batch_size) if batch_size is not None else (32 if dev.type == "cpu" else 64)
        nw = default_workers(dev) if workers is None else int(workers)
        if backbone is None:
            backbone = load_backbone(plan.info.model_id, device=str(dev), dtype=dtype_name(plan.dtype), info=plan.info)
        t_extract = time.perf_counter()
        with compute_context(torch_threads=-1 if dev.type == "cpu" else None):
            computed, peak_gpu = _embed_missing(plan, backbone, pooling, bs, nw, chunk_size, progress)
        extract_seconds = time.perf_counter() - t_extract
    if shard_spec is not None:  # a shard never consolidates: the run without shard does
        return shards.finish_shard(plan, shard_spec, plan.assigned, computed, extract_seconds, t0)
    return _finish(plan, data, pooling, computed, extract_seconds, peak_gpu, t0, strict)


@dataclass
class _Plan:
    """What an extraction must do: the images found, their fingerprints, the store and what it lacks."""

    images: Any  # images.ImageSet
    info: Any  # backbone.ModelInfo
    prep: Preprocessing
    device: torch.device
    dtype: torch.dtype
    out_dir: Path
    store: EmbeddingStore
    fps: list[tuple]
    files: list[Path]
    labels: np.ndarray
    specimens: list[str] | None
    unreadable: list[tuple[str, str]]
    todo: list[int]
    assigned: int = 0  # images this run is responsible for: all, or its shard's (then fps holds only those)


def _plan(data, model, out, pooling, preprocess, image_size, device, dtype, background, backbone,
          shard: tuple[int, int] | None = None) -> _Plan:
    bg = parse_color(background)
    images = discover(data)
    dev = backbone.device if backbone is not None else (
        device if isinstance(device, torch.device) else resolve_device(device))
    dt = backbone.dtype if backbone is not None else resolve_dtype(dtype, dev)
    info = backbone.info if backbone is not None else describe_model(model)
    prep = make_preprocessing(info, preprocess, image_size, bg)
    settings = {
        "model_id": info.model_id,
        # a new commit of a Hub model is another model: it never reuses the old one's features
        "model_revision": info.revision,
        "preprocess": prep.mode,
        "image_size": prep.size,
        "pooling": pooling,
        "dtype": dtype_name(dt),
        "background": list(bg),
        "mean": list(prep.mean),
        "std": list(prep.std),
    }
    out_dir = Path(out).expanduser() if out is not None else default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    from .shards import shard_of, shard_tag

    store = EmbeddingStore(out_dir, images.name, settings, writer="all" if shard is None else shard_tag(*shard))
    fps: list[tuple] = []
    unreadable: list[tuple[str, str]] = list(images.missing)
    keep_idx: list[int] = []
    for i, (rel, f) in enumerate(zip(images.rel_paths, images.files)):
        if shard is not None and shard_of(rel, shard[1]) != shard[0]:
            continue  # another shard's: not even stat'ed (a hash of the path decides)
        fp = fingerprint(rel, f)
        if fp is None:
            unreadable.append((rel, "file not found or not accessible"))
            continue
        fps.append(fp)
        keep_idx.append(i)
    have, cached_skips = store.lookup()
    return _Plan(images=images, info=info, prep=prep, device=dev, dtype=dt, out_dir=out_dir, store=store, fps=fps,
                 files=[images.files[i] for i in keep_idx], labels=images.labels[keep_idx],
                 specimens=[images.specimens[i] for i in keep_idx] if images.specimens is not None else None,
                 unreadable=unreadable,
                 todo=[k for k, fp in enumerate(fps) if fp not in have and fp not in cached_skips], assigned=len(fps))


def _embed_missing(plan: _Plan, backbone: Backbone, pooling: str, batch_size: int, workers: int, chunk_size: int,
                   progress: bool) -> tuple[int, float | None]:
    """Embed the images the store lacks, writing a chunk every ``chunk_size`` rows.

    Returns (images embedded, peak GPU memory in MiB or None).
    """
    from tqdm.auto import tqdm

    dev, fps, todo = plan.device, plan.fps, plan.todo
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    dataset = _ImageDataset([plan.files[k] for k in todo], ImageTransform(plan.prep))
    buf_fp: list[tuple] = []
    buf_feat: list[np.ndarray] = []
    buf_skip: list[tuple[tuple, str]] = []

    def flush():
        if buf_fp or buf_skip:
            feats = np.concatenate(buf_feat) if buf_feat else None
            plan.store.write_chunk(list(buf_fp), feats, list(buf_skip))
            buf_fp.clear(), buf_feat.clear(), buf_skip.clear()

    computed = 0
    bar = tqdm(total=len(todo), unit="img", desc="embedding", disable=not progress, dynamic_ncols=True)
    try:
        for ids, pixels, bad in _batches(dataset, batch_size, workers, pin=dev.type == "cuda"):
            for j, reason in bad:
                buf_skip.append((fps[todo[j]], reason))
            if pixels is not None:
                buf_feat.append(backbone.embed(pixels, pooling).numpy())
                buf_fp.extend(fps[todo[j]] for j in ids)
                computed += len(ids)
            bar.update(len(ids) + len(bad))
            if len(buf_fp) + len(buf_skip) >= chunk_size:
                flush()
        flush()
    finally:
        bar.close()
    peak_gpu = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return computed, peak_gpu


def _finish(plan: _Plan, data, pooling: str, computed: int, extract_seconds: float, peak_gpu: float | None,
            t0: float, strict: bool) -> Embeddings:
    """Consolidate the store, write ``skipped.csv``, attach the run's summary; refuse an empty result."""
    info, prep, images, dev = plan.info, plan.prep, plan.images, plan.device
    meta = {
        "model_id": info.model_id,
        "model_revision": info.revision,  # what the store is keyed by, and the commit the weights come from
        # features of a random-weight checkpoint say nothing about fossils: every output built on them says so
        "random_weights": bool(info.random_weights),
        "preprocess": prep.as_dict(),
        "image_size": prep.size,
        "pooling": pooling,
        "dtype": dtype_name(plan.dtype),
        "device": str(dev),
        "data": str(Path(data).expanduser().resolve()),
        "data_root": str(images.root),
        "dataset": images.name,
        "layout": images.layout,
        "versions": library_versions(),
        "created": now_iso(),
        "platform": platform.platform(),
    }
    emb, skipped_store = plan.store.consolidate(plan.fps, plan.labels, images.class_names, plan.specimens, meta,
                                                info.feature_dim(pooling))
    skipped_all = plan.unreadable + skipped_store
    write_csv(skipped_frame(skipped_all), plan.out_dir / "skipped.csv")
    summary = ExtractionSummary(
        store=str(plan.store.folder), images=len(emb), computed=computed, reused=len(emb) - computed,
        skipped=len(skipped_all), seconds=time.perf_counter() - t0,
        images_per_second=(computed / extract_seconds) if extract_seconds > 0 else 0.0,
        peak_ram_mb=peak_rss_mb(), peak_gpu_mb=peak_gpu, device=str(dev), dtype=dtype_name(plan.dtype),
        skipped_files=skipped_all,
    )
    emb.meta["extraction"] = asdict(summary)
    if len(emb) == 0:
        raise UserError(
            f"no readable image in {data}: all {len(skipped_all)} files were skipped (reasons in "
            f"{plan.out_dir / 'skipped.csv'}); check that the folder holds image files Pillow can open"
        )
    if strict and skipped_all:
        raise ParameterError(
            "strict", f"{len(skipped_all)} file(s) could not be read ({{name}}): see {plan.out_dir / 'skipped.csv'}. "
                      f"The {len(emb)} readable images were embedded and saved in {plan.store.folder}.")
    return emb


# ---------------------------------------------------------------------- helpers for later stages
def settings_from_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The extraction options recorded in a store's ``meta.json``."""
    try:
        prep = meta["preprocess"]
        return {
            "model": meta["model_id"],
            "pooling": meta["pooling"],
            "preprocess": prep["mode"],
            "image_size": int(prep["size"]),
            "dtype": meta["dtype"],
            "background": tuple(prep.get("background", (0, 0, 0))),
        }
    except (KeyError, TypeError) as exc:
        raise UserError(
            "these embeddings do not record how they were made (model, pooling, preprocessing), so new images "
            "cannot be embedded the same way; extract them with 'palaeo-ssl extract' instead"
        ) from exc


def embed_like(meta: Mapping[str, Any], image_paths: Sequence[str | os.PathLike], device: str = "auto",
               backbone: Backbone | None = None, batch_size: int = 16) -> np.ndarray:
    """Embed ``image_paths`` with the model and settings recorded in a store's ``meta`` (no cache).

    Returns (n, D) float32. Raises :class:`UserError` if an image cannot be read.
    """
    s = settings_from_meta(meta)
    bb = backbone or load_backbone(s["model"], device=device, dtype=s["dtype"])
    prep = make_preprocessing(bb.info, s["preprocess"], s["image_size"], s["background"])
    tf = ImageTransform(prep)
    rows = []
    for start in range(0, len(image_paths), batch_size):
        tensors = []
        for p in image_paths[start:start + batch_size]:
            try:
                tensors.append(tf(load_image(p, background=prep.background, draft_size=prep.size)))
            except ImageReadError as exc:
                raise UserError(f"cannot read {p}: {exc}") from None
        rows.append(bb.embed(torch.stack(tensors), s["pooling"]).numpy())
    return np.concatenate(rows) if rows else np.zeros((0, bb.feature_dim(s["pooling"])), np.float32)


def extract_like(meta: Mapping[str, Any], data: str | os.PathLike, out: str | os.PathLike | None = None,
                 **options: Any) -> Embeddings:
    """Extract ``data`` with the settings recorded in a store's ``meta`` (cached under ``out``)."""
    s = settings_from_meta(meta)
    options.setdefault("device", "auto")
    return extract_embeddings(data, model=s["model"], out=out, pooling=s["pooling"], preprocess=s["preprocess"],
                              image_size=s["image_size"], dtype=s["dtype"], background=s["background"], **options)
