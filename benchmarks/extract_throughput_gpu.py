"""The CUDA half of ``extract_throughput.py`` (``--device cuda [--quick]``): extraction against its ceilings
and against the reference recipe as it runs on a GPU, in one invocation.

Everything it needs comes from the repository or is generated here (no download, nothing from outside
the repository): the small JPEGs are ``--images`` (default ../shared/data/fusulinids when present, else
data/example) repeated by symbolic links; the large ones are generated from them at ~1,600 px on the long
side; the backbones are full-size DINOv3 configs with random weights, loaded in bfloat16.

Per backbone it prints images/s of
  * the model alone on device-resident batches: eager, and compiled (with the compile time);
  * ``extract_embeddings`` with its defaults (CPU decoding), with ``compile=True`` and with ``decode="gpu"``:
    inside its loop (first batch in to last feature out) and wall clock for the whole call, the start-up
    (CUDA, model load, discovery, worker start, consolidation) apart, GPU busy fraction, peak host memory
    (this process, and the whole process tree as PSS) and peak GPU memory;
  * the uint8 loader alone (the workers' pace) and the GPU decoder alone;
  * the reference recipe: torchvision ImageFolder + the HF processor per image, no workers, batch 64,
    bf16 weights (on a subset: it is slow);
and the ratios the project's targets are stated in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from palaeo_ssl import extract_embeddings  # noqa: E402
from palaeo_ssl.backbone import describe_model, load_backbone, make_preprocessing  # noqa: E402
from palaeo_ssl.compute import usable_cpus  # noqa: E402
from palaeo_ssl.extract import _batches, default_batch_size, default_workers  # noqa: E402
from palaeo_ssl.loading import DeviceFeeder, Uint8Dataset  # noqa: E402

_WRITE_MODEL = """
import sys, torch
from transformers import DINOv3ViTImageProcessor, DINOv3ViTModel
from palaeo_ssl.testing import make_full_size_config
torch.manual_seed(0)
DINOv3ViTModel(make_full_size_config(sys.argv[1])).save_pretrained(sys.argv[2])
DINOv3ViTImageProcessor().save_pretrained(sys.argv[2])
"""


def write_model(arch: str, folder: Path) -> Path:
    """A random-weight full-size checkpoint, written by a child process (its CPU copy never enters this one)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", _WRITE_MODEL, arch, str(folder)], check=True, env=env)
    return folder


def image_files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))


def link_folder(files: list[Path], n: int, dst: Path) -> Path:
    """A flat folder of ``n`` symbolic links cycling through ``files``."""
    dst.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = files[i % len(files)]
        os.symlink(f.resolve(), dst / f"{i:06d}{f.suffix.lower() or '.img'}")
    return dst


def make_large_jpegs(files: list[Path], dst: Path, count: int = 64, long_side: int = 1600) -> list[Path]:
    """``count`` distinct baseline JPEGs of ~``long_side`` x 0.78 ``long_side`` px upscaled from ``files``."""
    from PIL import Image, ImageFilter

    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        with Image.open(files[i % len(files)]) as im:
            img = im.convert("RGB").resize((long_side, int(long_side * 0.7775)), Image.Resampling.BICUBIC)
        img = img.filter(ImageFilter.GaussianBlur(0.6 + 0.1 * (i % 5)))  # distinct files, photo-like texture
        path = dst / f"large_{i:03d}.jpg"
        img.save(path, format="JPEG", quality=90)
        out.append(path)
    return out


def _pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split between the processes that share them)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Memory:
    """Peak host memory while the block runs: this process's RSS and the process tree's PSS (sampled)."""

    def __init__(self, every: float = 0.5):
        import psutil

        self.proc, self.every = psutil.Process(), every
        self.peak_rss = self.peak_tree = 0.0

    def _sample(self) -> None:
        rss = self.proc.memory_info().rss
        tree = 0
        for p in [self.proc] + self.proc.children(recursive=True):
            tree += _pss(p.pid)
        self.peak_rss = max(self.peak_rss, rss / 2**20)
        self.peak_tree = max(self.peak_tree, tree / 2**20)

    def __enter__(self):
        self._stop = threading.Event()

        def run():
            while not self._stop.is_set():
                self._sample()
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def ceiling(model_dir: Path, dev: torch.device, batch: int, compile: bool, seconds: float = 3.0,
            min_batches: int = 10) -> dict:
    """Model-only images/s on a device-resident bf16 batch, through the extraction's own feature function."""
    bb = load_backbone(str(model_dir), device=str(dev), dtype="bfloat16")
    fn = bb.feature_fn("cls", compile=compile)
    x = torch.randn(batch, 3, 224, 224, device=bb.device).to(torch.bfloat16)
    t = time.perf_counter()
    with torch.inference_mode():
        for _ in range(3):
            fn(x)
        sync(dev)
        warm = time.perf_counter() - t
        done, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds or done < min_batches * batch:
            fn(x)
            done += batch
        sync(dev)
        ips = done / (time.perf_counter() - t)
    del bb, fn, x
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return {"images_per_s": ips, "warmup_s": warm}


def run_extract(data: Path, model_dir: Path, out: Path, dev: torch.device, **kw) -> dict:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with Memory() as mem:
        t = time.perf_counter()
        emb = extract_embeddings(data, model=str(model_dir), out=out, progress=False, device=str(dev), **kw)
        wall = time.perf_counter() - t
    s = emb.meta["extraction"]
    tm = s["timings"]
    n = s["computed"]
    return {"images": n, "wall_s": wall, "wall_ips": n / wall, "loop_ips": n / tm["loop"], "loop_s": tm["loop"],
            "startup_s": wall - tm["loop"], "stages": tm, "gpu_busy": tm.get("gpu_busy"),
            "peak_rss_mb": mem.peak_rss, "peak_tree_pss_mb": mem.peak_tree, "peak_gpu_mb": s["peak_gpu_mb"] or 0.0,
            "skipped": s["skipped"]}


def loader_alone(data: Path, prep, dev: torch.device, decoder: str, batch: int, workers: int) -> float:
    """The uint8 loader's own pace (CPU decoding), or with ``decoder="gpu"`` the workers reading bytes and the
    GPU decoding, orienting and resizing them; no model."""
    from palaeo_ssl.images import discover

    files = discover(data).files
    ds = Uint8Dataset(files, prep, decoder)
    batches = _batches(ds, batch, workers, pin=dev.type == "cuda", prefetch=4)
    t, n = time.perf_counter(), 0
    for ids, x, bad in DeviceFeeder(batches, files, prep, dev, torch.bfloat16, decoder):
        n += len(ids)
    sync(dev)
    return n / (time.perf_counter() - t)


def reference_gpu(model_dir: Path, data: Path, dev: torch.device) -> float:
    """The paper's recipe on a GPU: ImageFolder + HF processor per image, no workers, batch 64, bf16 weights."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from transformers import AutoImageProcessor, AutoModel

    proc = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.bfloat16).eval().to(dev)

    class Processed(ImageFolder):
        def __getitem__(self, i):
            path, label = self.samples[i]
            return proc(images=self.loader(path), return_tensors="pt")["pixel_values"][0], label

    loader = DataLoader(Processed(str(data)), batch_size=64, num_workers=0, shuffle=False)
    t, n = time.perf_counter(), 0
    with torch.no_grad():
        for x, _ in loader:
            model(pixel_values=x.to(dev, dtype=torch.bfloat16)).pooler_output.float().cpu()
            n += len(x)
    ips = n / (time.perf_counter() - t)
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return ips


def _line(name: str, r: dict) -> str:
    busy = f", GPU busy {r['gpu_busy']:.0%}" if r.get("gpu_busy") is not None else ""
    return (f"  {name:<34} loop {r['loop_ips']:8.0f}  wall {r['wall_ips']:8.0f} images/s  (start-up "
            f"{r['startup_s']:.1f} s{busy}; peak RSS {r['peak_rss_mb']:.0f} MB, tree PSS "
            f"{r['peak_tree_pss_mb']:.0f} MB, GPU {r['peak_gpu_mb']:.0f} MB)")


def gpu_main(args) -> None:
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU is available to PyTorch here")
    import torchvision
    import transformers

    quick = args.quick
    n_small = args.n_small or (10_000 if quick else 60_000)
    n_large = getattr(args, "n_large", None) or (2_000 if quick else 6_000)
    n_ref_small, n_ref_large = getattr(args, "n_ref", None) or ((1_000, 256) if quick else (5_000, 1_000))
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    batch = args.batch_size or default_batch_size(dev)
    workers = default_workers(dev)
    src = args.images
    if src is None:
        shared = REPO.parent / "shared" / "data" / "fusulinids"
        src = shared if shared.is_dir() else REPO / "data" / "example"
    t_all = time.perf_counter()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    print(f"GPU: {name}; {usable_cpus()} usable CPU cores; torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, transformers {transformers.__version__}")
    print(f"batch {batch}, {workers} decoding workers (the defaults); small JPEGs: {n_small} links to {src}; "
          f"large JPEGs: {n_large}; random-weight DINOv3 configs in bfloat16{' (quick)' if quick else ''}", flush=True)
    results: dict = {"gpu": name, "batch": batch, "workers": workers, "archs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = [f for f in image_files(src) if f.suffix.lower() in (".jpg", ".jpeg")] or image_files(src)
        small = link_folder(files, n_small, tmp / "small" / "all")
        ref_small = link_folder(files, n_ref_small, tmp / "ref_small" / "all")
        big = make_large_jpegs(files, tmp / "large_src")
        large = link_folder(big, n_large, tmp / "large" / "all")
        ref_large = link_folder(big, n_ref_large, tmp / "ref_large" / "all")
        print(f"data ready in {time.perf_counter() - t_all:.0f} s", flush=True)
        for arch in archs:
            r: dict = {}
            model_dir = write_model(arch, tmp / f"model_{arch}")
            out = tmp / f"out_{arch}"
            prep = make_preprocessing(describe_model(str(model_dir)))
            r["ceiling_eager"] = ceiling(model_dir, dev, batch, compile=False)
            do_compile = not (quick and arch != archs[0])
            if do_compile:
                r["ceiling_compiled"] = ceiling(model_dir, dev, batch, compile=True)
            print(f"{arch}: model only {r['ceiling_eager']['images_per_s']:.0f} images/s eager"
                  + (f", {r['ceiling_compiled']['images_per_s']:.0f} compiled (first call "
                     f"{r['ceiling_compiled']['warmup_s']:.0f} s)" if do_compile else ""), flush=True)
            r["small_cpu"] = run_extract(small, model_dir, out / "s_cpu", dev, decode="cpu")
            print(_line("small, defaults (CPU decoding)", r["small_cpu"]), flush=True)
            if do_compile:
                r["small_compiled"] = run_extract(small, model_dir, out / "s_comp", dev, decode="cpu", compile=True)
                print(_line("small, compile=True", r["small_compiled"]), flush=True)
            r["small_gpu"] = run_extract(small, model_dir, out / "s_gpu", dev, decode="gpu")
            print(_line("small, decode=gpu", r["small_gpu"]), flush=True)
            r["loader_small_cpu"] = loader_alone(small, prep, dev, "cpu", batch, workers)
            r["loader_small_gpu"] = loader_alone(small, prep, dev, "gpu", batch, workers)
            r["reference_small"] = reference_gpu(model_dir, ref_small.parent, dev)
            print(f"  uint8 loader alone {r['loader_small_cpu']:.0f}, GPU decoder alone {r['loader_small_gpu']:.0f}, "
                  f"reference recipe (bf16) {r['reference_small']:.0f} images/s", flush=True)
            if arch == archs[0]:
                r["large_cpu"] = run_extract(large, model_dir, out / "l_cpu", dev, decode="cpu")
                print(_line("large, CPU decoding", r["large_cpu"]), flush=True)
                r["large_gpu"] = run_extract(large, model_dir, out / "l_gpu", dev, decode="gpu")
                print(_line("large, decode=gpu", r["large_gpu"]), flush=True)
                r["loader_large_cpu"] = loader_alone(large, prep, dev, "cpu", batch, workers)
                r["loader_large_gpu"] = loader_alone(large, prep, dev, "gpu", batch, workers)
                r["reference_large"] = reference_gpu(model_dir, ref_large.parent, dev)
                print(f"  large: uint8 loader alone {r['loader_large_cpu']:.0f}, GPU decoder alone "
                      f"{r['loader_large_gpu']:.0f}, reference recipe (bf16) {r['reference_large']:.0f} images/s",
                      flush=True)
            results["archs"][arch] = r
            _ratios(arch, r)
    print(f"total benchmark time {time.perf_counter() - t_all:.0f} s")
    print(json.dumps(results, default=float))


def _ratios(arch: str, r: dict) -> None:
    eager = r["ceiling_eager"]["images_per_s"]
    print(f"  {arch} ratios (targets for ViT-L/16 on an H200-class GPU in brackets):")
    print(f"    loop / eager ceiling             {r['small_cpu']['loop_ips'] / eager:.2f}  (>= 0.90)")
    print(f"    wall / eager ceiling             {r['small_cpu']['wall_ips'] / eager:.2f}  (>= 0.80 at >= 50,000 images)")
    print(f"    loop / reference recipe          {r['small_cpu']['loop_ips'] / r['reference_small']:.2f}  (>= 3.5)")
    if "small_compiled" in r:
        comp = r["ceiling_compiled"]["images_per_s"]
        print(f"    compiled loop / compiled ceiling {r['small_compiled']['loop_ips'] / comp:.2f}  (>= 0.85)")
        print(f"    compiled loop / reference        {r['small_compiled']['loop_ips'] / r['reference_small']:.2f}  (>= 5.5)")
    print(f"    decode=gpu loop / eager ceiling  {r['small_gpu']['loop_ips'] / eager:.2f}  (ViT-S: >= 0.6)")
    if "large_cpu" in r:
        print(f"    large, CPU: loop / uint8 loader  {r['large_cpu']['loop_ips'] / r['loader_large_cpu']:.2f}  (>= 0.9)")
        print(f"    large, GPU: loop / eager ceiling {r['large_gpu']['loop_ips'] / eager:.2f}  (>= 0.85, or within "
              f"10% of the GPU decoder alone: {r['large_gpu']['loop_ips'] / r['loader_large_gpu']:.2f})")
