"""Extraction throughput against its ceiling and against the reference recipe, in one invocation.

Prints, on the same folder of real JPEGs and the same backbone (a full-size
DINOv3 config with random weights: the real compute cost, no download):

  (a) model-only forward throughput on random tensors (same batch size, dtype): the ceiling;
  (b) ``extract_embeddings`` end to end (decode, resize, forward, store), float32 and bfloat16;
  (c) the reference recipe: torchvision ``ImageFolder`` whose ``__getitem__`` calls the HF
      processor on one PIL image, ``num_workers=0``, batch 64, float32;

then the ratios b/a and b/c, the mean cosine similarity of bf16 and float32
features, and the peak RSS of extraction subprocesses on N and 4N images.

Usage:
  python benchmarks/extract_throughput.py [--arch vits16|vitb16|vitl16] [--images DIR] [--repeat 3]
      [--rounds 3] [--batch-size 32] [--device cpu|cuda]

Without --images it uses ../shared/data/fusulinids when present, else the
synthetic data/example. Timing on shared machines is noisy: the five measurements run
interleaved in --rounds rounds after a warm-up, and each ratio is the median of its per-round
ratios.

On a CUDA GPU (``--device cuda``, see :mod:`extract_throughput_gpu`) it measures instead, for
ViT-L/16 and ViT-S/16 in bfloat16, on small real JPEGs and on large JPEGs (~1,600 px, generated from
the same images at run time): the eager and compiled model-only ceilings, ``extract_embeddings``
(CPU and GPU decoding, eager and ``compile=True``) inside its loop and wall clock with the start-up
printed apart, the GPU busy fraction, peak host RSS and peak GPU memory, the uint8 loader and the GPU
decoder on their own, and the reference recipe as it runs on a GPU (bf16 weights, HF processor per
image, no workers, batch 64). ``--quick`` keeps it within about five minutes on an H100/H200-class GPU:

  python benchmarks/extract_throughput.py --device cuda --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from palaeo_ssl import extract_embeddings  # noqa: E402
from palaeo_ssl.backbone import load_backbone  # noqa: E402
from palaeo_ssl.compute import compute_context  # noqa: E402
from palaeo_ssl.testing import make_full_size_config  # noqa: E402


def build_folder(src: Path, repeat: int, dst: Path) -> Path:
    """Class-folder copy of ``src`` made of symlinks, each image ``repeat`` times."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        for f in sorted(cls.iterdir()):
            if f.name.startswith("."):
                continue
            for r in range(repeat):
                link = dst / cls.name / f"r{r}_{f.name}"
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(f.resolve(), link)
    return dst


def write_model(arch: str, folder: Path) -> Path:
    from transformers import DINOv3ViTImageProcessor, DINOv3ViTModel

    torch.manual_seed(0)
    DINOv3ViTModel(make_full_size_config(arch)).save_pretrained(folder)
    DINOv3ViTImageProcessor().save_pretrained(folder)
    return folder


def model_only(model_dir: Path, n: int, batch: int, dtype: str, device: str) -> float:
    bb = load_backbone(str(model_dir), device=device, dtype=dtype)
    # every usable core on CPU, as extract_embeddings runs its loop
    with compute_context(torch_threads=-1 if bb.device.type == "cpu" else None):
        x = torch.randn(batch, 3, 224, 224)
        bb.embed(x[:2])  # warm-up
        if bb.device.type == "cuda":
            torch.cuda.synchronize()
        done, t = 0, time.perf_counter()
        while done < n:
            bb.embed(x)
            done += batch
        if bb.device.type == "cuda":
            torch.cuda.synchronize()
        return done / (time.perf_counter() - t)


def reference_recipe(model_dir: Path, data: Path, device: str) -> tuple[float, int]:
    """Rodgers (2025)-style loop: ImageFolder + HF processor per image, no workers, batch 64, float32."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from transformers import AutoImageProcessor, AutoModel

    proc = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval().to(device)

    class Processed(ImageFolder):
        def __getitem__(self, i):
            path, label = self.samples[i]
            img = self.loader(path)
            return proc(images=img, return_tensors="pt")["pixel_values"][0], label

    ds = Processed(str(data))
    loader = DataLoader(ds, batch_size=64, num_workers=0, shuffle=False)
    t = time.perf_counter()
    n = 0
    with torch.no_grad():
        for x, _ in loader:
            model(pixel_values=x.to(device)).pooler_output.cpu()
            n += len(x)
    return n / (time.perf_counter() - t), n


def end_to_end(model_dir: Path, data: Path, out: Path, dtype: str, batch: int, device: str) -> tuple[float, np.ndarray]:
    emb = extract_embeddings(data, model=str(model_dir), out=out, dtype=dtype, batch_size=batch, device=device,
                             progress=False)
    s = emb.meta["extraction"]
    return s["computed"] / s["seconds"], np.asarray(emb.features)


_RSS = """
import json, resource, sys, palaeo_ssl
palaeo_ssl.extract_embeddings(sys.argv[1], model=sys.argv[2], out=sys.argv[3], progress=False, chunk_size=128)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
"""


def peak_rss(data: Path, model_dir: Path, out: Path) -> float:
    r = subprocess.run([sys.executable, "-c", _RSS, str(data), str(model_dir), str(out)], capture_output=True,
                       text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vits16", choices=["vits16", "vitb16", "vitl16"])
    ap.add_argument("--images", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="use each image this many times (default 3)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of all five measurements; ratios are per-round medians (default 3)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, the library's default on GPU")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpu-dtype", default="bfloat16", help="dtype of the end-to-end run compared on GPU")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--quick", action="store_true", help="GPU: fewer images, no compiled ViT-S (about 5 minutes)")
    ap.add_argument("--n-small", type=int, default=None, help="GPU: small JPEGs per run (default 10,000 quick, "
                                                              "60,000 otherwise)")
    ap.add_argument("--archs", default="vitl16,vits16", help="GPU: backbones to measure (default vitl16,vits16)")
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        from extract_throughput_gpu import gpu_main

        gpu_main(args)
        return

    args.batch_size = args.batch_size or 32
    src = args.images
    if src is None:
        shared = REPO.parent / "shared" / "data" / "fusulinids"
        src = shared if shared.is_dir() else REPO / "data" / "example"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = build_folder(src, args.repeat, tmp / "data")
        n = sum(1 for _ in data.rglob("*") if _.is_file() or _.is_symlink())
        model_dir = write_model(args.arch, tmp / "model")
        print(f"images: {n} ({src}, x{args.repeat}); backbone: DINOv3 {args.arch} config, random weights; "
              f"device {args.device}; torch threads {torch.get_num_threads()}; batch {args.batch_size}")
        # Interleaved rounds: every round runs all five measurements one after another, so
        # a burst of load from elsewhere hits one round rather than one measurement; the
        # ratios are taken within each round and summarised by their median.
        names = ["a_f32", "b_f32", "c_f32", "a_bf16", "b_bf16"]
        rounds: list[dict[str, float]] = []
        t = time.perf_counter()
        model_only(model_dir, 2 * args.batch_size, args.batch_size, "float32", args.device)  # warm caches
        for r in range(args.rounds):
            res = {}
            res["a_f32"] = model_only(model_dir, n, args.batch_size, "float32", args.device)
            res["b_f32"], f32 = end_to_end(model_dir, data, tmp / f"out_f32_{r}", "float32", args.batch_size,
                                           args.device)
            res["c_f32"], _ = reference_recipe(model_dir, data, args.device)
            res["a_bf16"] = model_only(model_dir, n, args.batch_size, "bfloat16", args.device)
            res["b_bf16"], bf16 = end_to_end(model_dir, data, tmp / f"out_bf16_{r}", "bfloat16", args.batch_size,
                                             args.device)
            rounds.append(res)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {res[k]:.1f}" for k in names)
                  + " images/s", flush=True)
        med = {k: float(np.median([res[k] for res in rounds])) for k in names}

        def ratio(num: str, den: str) -> str:
            per = [res[num] / res[den] for res in rounds]
            return f"{np.median(per):.2f} (rounds: {', '.join(f'{x:.2f}' for x in per)})"

        fn = f32 / np.linalg.norm(f32, axis=1, keepdims=True)
        bn = bf16 / np.linalg.norm(bf16, axis=1, keepdims=True)
        cos = float(np.mean(np.sum(fn * bn, axis=1)))
        print(f"median over {args.rounds} rounds:")
        print(f"(a) model only, float32:         {med['a_f32']:8.1f} images/s")
        print(f"(b) extract_embeddings, float32: {med['b_f32']:8.1f} images/s")
        print(f"(c) reference recipe, float32:   {med['c_f32']:8.1f} images/s")
        print(f"(a) model only, bfloat16:        {med['a_bf16']:8.1f} images/s")
        print(f"(b) extract_embeddings, bf16:    {med['b_bf16']:8.1f} images/s")
        print(f"b/a float32   = {ratio('b_f32', 'a_f32')}   (target >= 0.90 on CPU)")
        print(f"b/c float32   = {ratio('b_f32', 'c_f32')}")
        print(f"b/a bfloat16  = {ratio('b_bf16', 'a_bf16')}")
        print(f"b/c bf16 vs reference float32 = {ratio('b_bf16', 'c_f32')}   "
              f"(target >= 1.8 on CPU, >= 10 on GPU)")
        print(f"mean cosine similarity bf16 vs float32 features: {cos:.5f}")
        if not args.skip_rss:
            from palaeo_ssl.testing import make_tiny_dinov3

            tiny = make_tiny_dinov3(tmp / "tiny")
            small = build_folder(src, 1, tmp / "rss_small")
            big = build_folder(src, 4, tmp / "rss_big")
            r1 = peak_rss(small, tiny, tmp / "rss_o1")
            r4 = peak_rss(big, tiny, tmp / "rss_o4")
            print(f"peak RSS of an extraction: {r1:.0f} MB for N images, {r4:.0f} MB for 4N "
                  f"(ratio {r4 / r1:.2f}; features stream to disk in chunks)")
        print(f"total benchmark time {time.perf_counter() - t:.0f} s")
        print(json.dumps({"median": {k: round(v, 2) for k, v in med.items()},
                          "rounds": [{k: round(v, 2) for k, v in res.items()} for res in rounds]}))


if __name__ == "__main__":
    main()
