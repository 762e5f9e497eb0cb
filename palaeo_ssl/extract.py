"""The batched extraction pipeline: DataLoader workers decode and resize to uint8, the device normalises and
embeds, the store caches.

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
    check_compile,
    describe_model,
    dtype_name,
    load_backbone,
    make_preprocessing,
    resolve_device,
    resolve_dtype,
    resolve_pooling,
)
from .cache import files_fingerprint, user_cache_dir
from .compute import compute_context, usable_cpus
from .embeddings import Embeddings
from .errors import UserError
from .params import NON_NEGATIVE_INT, POSITIVE_INT, Interval, Kind, Options, ParameterError, literal, validate_params
from .images import ImageReadError, discover, parse_color, skipped_frame
from .loading import (DECODERS, PIXEL_PIPELINE, DeviceFeeder, InFlight, Uint8Dataset, check_gpu_decoder,
                      collate_uint8, decode_image, embed_uint8, prefetch_factor, resolve_decoder)
from .report import library_versions, now_iso, peak_rss_mb, write_csv
from .store import EmbeddingStore, fingerprint

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- batches
#: host memory that the batches prepared ahead by the workers may take together (prefetch is sized by it)
PREFETCH_BUDGET_BYTES = 1 << 30
#: feature batches whose copy back to the host may be outstanding at once (CUDA)
RESULTS_IN_FLIGHT = 3


def _batch_bytes(plan: "_Plan", batch_size: int, decoder: str) -> int:
    """Host bytes of one prepared batch: uint8 pixels, or for GPU decoding the files' own bytes."""
    pixels = batch_size * 3 * plan.prep.size ** 2
    if decoder != "gpu" or not plan.todo:
        return pixels
    sizes = [plan.fps[k][1] for k in plan.todo[:2000]]
    return max(pixels, int(batch_size * float(np.mean(sizes))))


class _ChunkWriter:
    """Writes the store's chunks on a thread of their own, in order, so that the loop feeding the model never
    waits for a chunk's table and file writes; at most ``depth`` chunks wait to be written."""

    def __init__(self, store: EmbeddingStore, depth: int = 4):
        import queue
        import threading

        self.store, self.error = store, None
        self.queue: "queue.Queue" = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name="palaeo-ssl-chunk-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.store.write_chunk(*item)
                except BaseException as exc:  # raised in the caller's thread at the next write or close
                    self.error = exc

    def write(self, fps: list, feats, skips: list) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((fps, feats, skips))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _batches(dataset: Dataset, batch_size: int, workers: int, pin: bool, prefetch: int = 2) -> Iterator:
    """Yield collated batches; fall back to in-process loading where worker processes cannot start."""
    if workers > 0:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=collate_uint8, pin_memory=pin, persistent_workers=False,
                            prefetch_factor=prefetch)
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
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, collate_fn=collate_uint8,
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
    #: seconds per stage: ``plan`` (discovery, fingerprints, model config), ``load`` (weights), ``first_batch``
    #: (worker start and the first batch on the device), ``loop`` (first batch in to last feature out),
    #: ``finish`` (consolidation); ``gpu_busy``: fraction of ``loop`` the GPU spent in the model (CUDA).
    #: The Ray engine: ``ray_start``, ``first_batch`` (until the first *embedded* batch reaches the
    #: driver), ``loop`` and ``first_batch_images`` (see :func:`palaeo_ssl.engines.ray_data.embed_with_ray`)
    timings: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        lines = [
            f"store:    {self.store}",
            f"images:   {self.images} embedded ({self.computed} computed now, {self.reused} reused from the cache)",
            f"skipped:  {self.skipped}" + (" (see skipped.csv)" if self.skipped else ""),
            f"time:     {self.seconds:.1f} s"
            + (f", {self.images_per_second:.1f} images/s" if self.computed else "")
            + (f" (embedding loop {self.timings['loop']:.1f} s, the rest start-up and saving)"
               if "loop" in self.timings else ""),
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
    """Decoding worker processes: on a GPU every usable core but one (the main process feeds the GPU);
    on the CPU one (the model needs the cores; one worker overlaps decoding with compute), none on one core."""
    cores = usable_cpus()
    if device.type == "cpu":
        return 1 if cores >= 2 else 0
    return max(1, cores - 1)


def default_batch_size(device: torch.device) -> int:
    """32 on the CPU, 64 on Apple MPS, 128 on CUDA (small ViTs need large batches to fill a big GPU)."""
    return {"cpu": 32, "mps": 64}.get(device.type, 128)


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
    "compile": Kind((bool,), "True or False"),
    "decode": Options(DECODERS),
    "engine": Options(("local", "ray")),
    "gpus_per_actor": [Interval(float, 0, None), None],
    "actors": [POSITIVE_INT, None],
})
def extract_embeddings(
    data: str | os.PathLike,
    model: str = DEFAULT_MODEL,
    out: str | os.PathLike | None = None,
    *,
    pooling: str = "auto",
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
    compile: bool = False,
    decode: str = "auto",
    shard: str | tuple[int, int] | None = None,
    engine: str = "local",
    address: str | None = None,
    gpus_per_actor: float | None = None,
    actors: int | None = None,
    accept_predicted: bool = False,
) -> Embeddings:
    """Embed every image under ``data`` (a folder or a CSV manifest), reusing cached features.

    Parameters
    ----------
    data : folder of class sub-folders, flat folder, CSV manifest (``path,label[,specimen]``), or
        identifications exchanged with other tools: an EcoTaxa TSV, a Darwin Core Archive, a CSV of
        ``palaeo-ssl export`` (see :func:`palaeo_ssl.images.discover`).
    model : alias (``dinov3-vits16``...), Hub id or local folder.
    out : folder for the store and ``skipped.csv`` (default: ``~/.cache/palaeo-ssl/embeddings``).
    pooling : ``auto`` (the model's own global feature: ``cls`` for DINOv3 ViT, DINOv2 and CLIP, ``head``
        for SigLIP, ``gap`` for DINOv3 ConvNeXt), ``mean`` (mean of the patch tokens, every family), or
        ``<global>+mean`` (both); a pooling that means nothing for the model's family is refused
        (:data:`palaeo_ssl.families.POOLING_MEANINGS`). The store records the resolved name.
    preprocess : ``processor`` (as the model's own processor: a square squash, or a shorter-side resize
        and centre crop) or ``pad`` (keep the whole image and its aspect ratio, pad with ``background``).
    image_size : input side in pixels, a multiple of the patch size (default: the processor's).
    batch_size, workers : defaults :func:`default_batch_size` (32 on CPU, 128 on CUDA) and
        :func:`default_workers` (1 on CPU; on a GPU every usable core but one).
    device, dtype : ``auto`` picks CUDA > MPS > CPU and bfloat16 where supported, float32 on CPU.
    strict : raise :class:`UserError` if any file was skipped (features are still saved).
    background : colour for transparency and padding (``black``, ``white``, ``#rrggbb``, ``r,g,b``).
    chunk_size : rows per on-disk chunk; a killed run loses at most the few chunks not yet written.
    compile : run the model through ``torch.compile`` with fixed shapes (the last batch is padded and the
        padding dropped); artefacts are cached on disk (:func:`~palaeo_ssl.backbone.compile_cache_dir`).
        Pays only when the images are many: the first compile takes about a minute.
    decode : ``gpu`` decodes baseline JPEGs on a CUDA GPU (nvJPEG), every other file on the CPU; ``cpu``
        decodes all on the CPU; ``auto`` is ``cpu``. The decoder is part of the store key.
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
    accept_predicted : when ``data`` holds exchanged identifications, take the machine's (EcoTaxa
        ``predicted``, Darwin Core ``PredictedByMachine``) as labels too, not only a person's.

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
        if compile:
            raise ParameterError("compile", "{name} is for the local engine only; the Ray engine runs the model "
                                            "eagerly in each actor")
        if decode == "gpu":
            raise ParameterError("decode", "{name}='gpu' is for the local engine only; the Ray engine decodes "
                                           "on the cluster's CPUs")
        from .engines.ray_data import actor_device

        if device == "cpu" and gpus_per_actor is None:
            gpus_per_actor = 0.0
        device = actor_device(address, gpus_per_actor, actors)
    plan = _plan(data, model, out, pooling, preprocess, image_size, device, dtype, background, backbone, decode,
                 shard_spec, accept_predicted)
    pooling = plan.store.settings["pooling"]  # resolved for the model's family ("auto" -> "cls", "head", ...)
    timings = {"plan": time.perf_counter() - t0}
    if shard_spec is None:
        shards.warn_if_incomplete(plan.store.folder)
    else:
        shards.record_start(plan.store.folder, shard_spec, plan.assigned, len(plan.todo))
    computed, extract_seconds, peak_gpu = 0, 0.0, None
    if plan.todo and engine == "ray":
        from .engines.ray_data import embed_with_ray

        t_extract = time.perf_counter()
        computed = embed_with_ray(plan, pooling, batch_size=batch_size, chunk_size=chunk_size, progress=progress,
                                  address=address, gpus_per_actor=gpus_per_actor, actors=actors, timings=timings)
        extract_seconds = time.perf_counter() - t_extract
    elif plan.todo:
        dev = plan.device
        bs = int(batch_size) if batch_size is not None else default_batch_size(dev)
        nw = default_workers(dev) if workers is None else int(workers)
        if compile:
            check_compile(dev)  # before the weights are loaded
        if plan.store.settings["decoder"] == "gpu":
            check_gpu_decoder(dev)
        t_load = time.perf_counter()
        if backbone is None:
            backbone = load_backbone(plan.info.model_id, device=str(dev), dtype=dtype_name(plan.dtype), info=plan.info)
        t_extract = time.perf_counter()
        timings["load"] = t_extract - t_load
        with compute_context(torch_threads=-1 if dev.type == "cpu" else None):
            computed, peak_gpu = _embed_missing(plan, backbone, pooling, bs, nw, chunk_size, progress, compile,
                                                timings)
        extract_seconds = time.perf_counter() - t_extract
    if shard_spec is not None:  # a shard never consolidates: the run without shard does
        return shards.finish_shard(plan, shard_spec, plan.assigned, computed, extract_seconds, t0)
    t_finish = time.perf_counter()
    emb = _finish(plan, data, pooling, computed, extract_seconds, peak_gpu, t0, strict, accept_predicted)
    timings["finish"] = time.perf_counter() - t_finish
    emb.meta["extraction"]["timings"] = {k: round(v, 4) for k, v in timings.items()}
    return emb


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
          decode="auto", shard: tuple[int, int] | None = None, accept_predicted: bool = False) -> _Plan:
    bg = parse_color(background)
    images = discover(data, accept_predicted=accept_predicted)
    dev = backbone.device if backbone is not None else (
        device if isinstance(device, torch.device) else resolve_device(device))
    dt = backbone.dtype if backbone is not None else resolve_dtype(dtype, dev)
    info = backbone.info if backbone is not None else describe_model(model)
    prep = make_preprocessing(info, preprocess, image_size, bg)
    pooling = resolve_pooling(info, pooling)
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
        "pixels": PIXEL_PIPELINE, "decoder": resolve_decoder(decode, dev),  # both change the pixel values
        "family": info.family, "resize": prep.resize,  # the backbone family; its processor's resize (and crop)
    }
    if info.local:  # a folder's weights can be replaced in place: keyed by its files' sizes and modification times
        settings["model_files"] = model_files_fingerprint(info.model_id)
    out_dir = Path(out).expanduser() if out is not None else default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    from .shards import shard_of, shard_tag

    store = EmbeddingStore(out_dir, images.name, settings, writer="all" if shard is None else shard_tag(*shard),
                           collection=images.collection)
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


#: the files of a local model folder that make its features (weights, configs), by suffix
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".pt", ".pth")


def model_files_fingerprint(folder: str | os.PathLike) -> list[tuple[str, int, int]]:
    """(name, size, modification time in ns) of the weight and configuration files of a local model folder:
    new weights saved into the same folder (a fine-tuned checkpoint, a rebuilt test model) make another store,
    never reusing the features of the old ones."""
    folder = Path(folder)
    try:
        names = sorted(e.name for e in os.scandir(folder)
                       if e.is_file() and not e.name.startswith(".") and e.name.endswith(MODEL_FILE_SUFFIXES))
    except OSError:
        return []
    return files_fingerprint(folder, names)


def _embed_missing(plan: _Plan, backbone: Backbone, pooling: str, batch_size: int, workers: int, chunk_size: int,
                   progress: bool, compile: bool = False,
                   timings: dict | None = None) -> tuple[int, float | None]:
    """Embed the images the store lacks, writing a chunk every ``chunk_size`` rows.

    Workers hand over uint8 batches (pinned on CUDA); :class:`~palaeo_ssl.loading.DeviceFeeder` copies
    batch n+1 on a side stream while batch n computes; :class:`~palaeo_ssl.loading.InFlight` brings the
    features back without a synchronisation per batch; chunks are written on a thread of their own. With ``compile`` every batch is padded to
    ``batch_size`` rows (fixed shapes) and the padding dropped from the output.

    Returns (images embedded, peak GPU memory in MiB or None); ``timings`` (a dict) receives
    ``first_batch``, ``loop`` and, on CUDA, ``gpu_busy`` (see :class:`ExtractionSummary`).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    dev, fps, todo = plan.device, plan.fps, plan.todo
    decoder = plan.store.settings["decoder"]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    files = [plan.files[k] for k in todo]
    dataset = Uint8Dataset(files, plan.prep, decoder)
    prefetch = prefetch_factor(workers, _batch_bytes(plan, batch_size, decoder), PREFETCH_BUDGET_BYTES)
    batches = _batches(dataset, batch_size, workers, pin=dev.type == "cuda", prefetch=prefetch)
    feeder = DeviceFeeder(batches, files, plan.prep, dev, plan.dtype, decoder, pad_to=batch_size if compile else None)
    forward = backbone.feature_fn(pooling, compile=compile)
    results = InFlight(dev, RESULTS_IN_FLIGHT)
    writer = _ChunkWriter(plan.store)
    buf_fp: list[tuple] = []
    buf_feat: list[np.ndarray] = []
    buf_skip: list[tuple[tuple, str]] = []
    computed = 0
    bar = tqdm(total=len(todo), unit="img", desc="embedding", disable=not progress, dynamic_ncols=True)

    def take(done) -> None:
        nonlocal computed
        for ids, feats in done:
            buf_feat.append(feats)
            buf_fp.extend(fps[todo[j]] for j in ids)
            computed += len(ids)
            bar.update(len(ids))
        if len(buf_fp) + len(buf_skip) >= chunk_size:
            writer.write(list(buf_fp), np.concatenate(buf_feat) if buf_feat else None, list(buf_skip))
            buf_fp.clear(), buf_feat.clear(), buf_skip.clear()

    t_first = None
    busy: list[tuple] = []  # CUDA events around each forward pass: the time the GPU computed
    try:
        with torch.inference_mode():
            for ids, x, bad in feeder:
                if t_first is None:
                    t_first = time.perf_counter()
                for j, reason in bad:
                    buf_skip.append((fps[todo[j]], reason))
                bar.update(len(bad))
                if x is None:
                    continue
                if dev.type == "cuda":
                    busy.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
                    busy[-1][0].record()
                feats = forward(x)[:len(ids)]
                if dev.type == "cuda":
                    busy[-1][1].record()
                take(results.put(feats, ids))
            take(results.drain())
        if buf_fp or buf_skip:
            writer.write(list(buf_fp), np.concatenate(buf_feat) if buf_feat else None, list(buf_skip))
    finally:
        bar.close()
        writer.close()  # what was computed reaches the disk, also when the loop failed
    t_end = time.perf_counter()
    if timings is not None and t_first is not None:
        timings["first_batch"] = t_first - t_start
        timings["loop"] = t_end - t_first
        if busy:
            torch.cuda.synchronize(dev)
            gpu_s = sum(a.elapsed_time(b) for a, b in busy) / 1000
            timings["gpu_busy"] = gpu_s / max(t_end - t_first, 1e-9)
    peak_gpu = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return computed, peak_gpu


def _finish(plan: _Plan, data, pooling: str, computed: int, extract_seconds: float, peak_gpu: float | None,
            t0: float, strict: bool, accept_predicted: bool = False) -> Embeddings:
    """Consolidate the store, write ``skipped.csv``, attach the run's summary; refuse an empty result."""
    info, prep, images, dev = plan.info, plan.prep, plan.images, plan.device
    meta = {
        "model_id": info.model_id,
        "model_revision": info.revision,  # what the store is keyed by, and the commit the weights come from
        # features of a random-weight checkpoint say nothing about fossils: every output built on them says so
        "random_weights": bool(info.random_weights),
        "family": info.family,
        "licence": info.licence,
        "preprocess": prep.as_dict(),
        "image_size": prep.size,
        "pooling": pooling,
        "dtype": dtype_name(plan.dtype),
        "device": str(dev),
        "data": str(Path(data).expanduser().resolve()),
        "data_root": str(images.root),
        "dataset": images.name,
        "layout": images.layout,
        **({"accept_predicted": True} if accept_predicted else {}),  # labels include machine identifications
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
            "strict", f"{len(skipped_all)} file(s) could not be read ({{name}}): see "
                      + literal(plan.out_dir / "skipped.csv") + f". The {len(emb)} readable images were embedded "
                      "and saved in " + literal(plan.store.folder) + ".")
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
    rows = []
    for start in range(0, len(image_paths), batch_size):
        tensors = []
        for p in image_paths[start:start + batch_size]:
            try:
                tensors.append(decode_image(p, prep))
            except ImageReadError as exc:
                raise UserError(f"cannot read {p}: {exc}") from None
        rows.append(embed_uint8(bb, torch.stack(tensors), prep, s["pooling"]).numpy())
    return np.concatenate(rows) if rows else np.zeros((0, bb.feature_dim(s["pooling"])), np.float32)


def extract_like(meta: Mapping[str, Any], data: str | os.PathLike, out: str | os.PathLike | None = None,
                 **options: Any) -> Embeddings:
    """Extract ``data`` with the settings recorded in a store's ``meta`` (cached under ``out``)."""
    s = settings_from_meta(meta)
    options.setdefault("device", "auto")
    return extract_embeddings(data, model=s["model"], out=out, pooling=s["pooling"], preprocess=s["preprocess"],
                              image_size=s["image_size"], dtype=s["dtype"], background=s["background"], **options)
