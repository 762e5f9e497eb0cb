"""The Ray engine against the local one on the same images, in one invocation: throughput and Ray's overhead.

    python benchmarks/ray_overhead.py [--repeats 1,4] [--arch vits16] [--images DIR] [--actors 2] [--rounds 2]

Both engines embed the same images (default ../shared/data/fusulinids, else data/example; each image
``R`` times for every ``R`` in ``--repeats``, as symlinks) with the same full-size DINOv3 config
with random weights (the real compute cost, no download), float32 on the CPU, into fresh stores;
the rounds alternate local and Ray. Printed, per collection size: images/s of each engine over the
whole call (model loading included) and the ratio Ray/local (target >= 0.8 with 2 CPU actors on a
2-core machine). Ray's start-up (``ray.init``) is printed apart: it is paid once per process, or never
on a running cluster.

With two or more sizes, each engine's wall times are fitted as ``fixed + images / rate`` (least
squares): the steady rate of each engine, its fixed cost per run (for Ray: joining the cluster,
starting the actor pool, a process, imports and a model load per actor, and the decoding workers),
and the collection size above which Ray's whole call reaches 0.8x the local engine's throughput.
Also printed: the time to Ray's first embedded batch (``meta["extraction"]["timings"]``) and the
largest feature difference between the engines.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from extract_throughput import build_folder, write_model  # noqa: E402

from palaeo_ssl import extract_embeddings  # noqa: E402


def fit_fixed_and_rate(ns: list[int], seconds: list[float]) -> tuple[float, float]:
    """Least-squares ``seconds = fixed + n / rate``: returns (fixed seconds, images per second)."""
    slope, fixed = np.polyfit(np.asarray(ns, float), np.asarray(seconds, float), 1)
    return float(fixed), float(1.0 / slope)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vits16", choices=("vits16", "vitb16", "vitl16"))
    ap.add_argument("--images", type=Path, default=None)
    ap.add_argument("--repeats", default="1,4",
                    help="comma-separated: each image this many times (symlinks), one collection per value")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    src = args.images or (REPO.parent / "shared" / "data" / "fusulinids")
    if not src.is_dir():
        src = REPO / "data" / "example"
    repeats = [int(r) for r in args.repeats.split(",")]

    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = write_model(args.arch, tmp / "model")
        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, object_store_memory=500 * 2**20, include_dashboard=False,
                 log_to_driver=False)
        startup = time.perf_counter() - t
        print(f"{src}, {args.arch} random weights, float32, CPU; Ray with {args.cpus} CPUs, {args.actors} actors; "
              f"load average {os.getloadavg()[0]:.2f}; ray.init: {startup:.1f} s")
        common = dict(model=str(model), progress=False, batch_size=args.batch_size, dtype="float32", device="cpu")
        points = {"local": [], "ray": []}
        diffs, ratios = [], {}
        for rep in repeats:
            data = build_folder(src, rep, tmp / f"data{rep}")
            n = sum(1 for p in data.rglob("*") if p.is_file())
            for r in range(args.rounds):
                t = time.perf_counter()
                loc = extract_embeddings(data, out=tmp / f"local{rep}_{r}", **common)
                t_local = time.perf_counter() - t
                t = time.perf_counter()
                ray_emb = extract_embeddings(data, out=tmp / f"ray{rep}_{r}", engine="ray", actors=args.actors,
                                             **common)
                t_ray = time.perf_counter() - t
                assert loc.paths == ray_emb.paths
                diffs.append(float(np.abs(np.asarray(loc.features) - np.asarray(ray_emb.features)).max()))
                points["local"].append((n, t_local))
                points["ray"].append((n, t_ray))
                ratios.setdefault(n, []).append(t_local / t_ray)
                first = ray_emb.meta["extraction"]["timings"].get("first_batch", float("nan"))
                print(f"{n} images, round {r + 1}: local {n / t_local:.2f} images/s ({t_local:.1f} s), ray "
                      f"{n / t_ray:.2f} images/s ({t_ray:.1f} s; first embedded batch after {first:.1f} s), "
                      f"ratio {t_local / t_ray:.2f}", flush=True)
        for n, rs in ratios.items():
            print(f"Ray / local throughput at {n} images: median {float(np.median(rs)):.2f} (rounds "
                  f"{', '.join(f'{x:.2f}' for x in rs)}; target >= 0.8), whole calls, model loading included, "
                  f"ray.init not included")
        if len(ratios) >= 2:
            fl, rl = fit_fixed_and_rate(*zip(*points["local"]))
            fr, rr = fit_fixed_and_rate(*zip(*points["ray"]))
            print(f"fit of wall = fixed + images / rate over {len(ratios)} sizes: local {fl:.1f} s + images / "
                  f"{rl:.2f} per s; Ray {fr:.1f} s + images / {rr:.2f} per s (steady rate ratio {rr / rl:.2f}; "
                  f"Ray's fixed cost per run {fr - fl:+.1f} s over the local engine's)")
            slope = 1 / rl - 0.8 / rr
            if slope > 0:
                n_even = max(0.0, (0.8 * fr - fl) / slope)
                print(f"whole calls reach 0.8x the local engine's throughput from about {n_even:,.0f} images "
                      f"(ray.init not included; with it, {max(0.0, (0.8 * (fr + startup) - fl) / slope):,.0f})")
            else:
                print("Ray's steady rate is below 0.8x the local engine's: whole calls never reach 0.8x here")
        print(f"largest |feature difference| Ray vs local: {max(diffs):.2e} (the same decoding and "
              f"normalisation functions; random weights, so only a pipeline check)")
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
