"""The Ray engine against the local one on the same images, in one invocation: throughput and Ray's overhead.

    python benchmarks/ray_overhead.py [--arch vits16] [--images DIR] [--repeat 1] [--actors 2] [--rounds 2]

Both engines embed the same images (default ../shared/data/fusulinids, else data/example) with the
same full-size DINOv3 config with random weights (the real compute cost, no download), float32 on
the CPU, into fresh stores; the rounds alternate local and Ray. Printed: images/s of each, the ratio
Ray/local (target >= 0.8 with 2 CPU actors on a 2-core machine), Ray's start-up (``ray.init``,
paid once per process or never on a running cluster) and its per-run overhead (Ray's wall time minus
the local engine's on the same images), and the largest feature difference between the two.

Each engine's wall time is split into a steady embedding rate and a fixed cost per run, from the
timings the extraction records (``meta["extraction"]["timings"]``): the local engine's rate is
images / ``loop`` (first decoded batch to last feature); Ray's is the images after the first
embedded batch / ``loop`` (first embedded batch at the driver to the last). The fixed cost is the
wall time minus images / rate: for Ray, joining the cluster, starting the actor pool (a process,
imports and a model load per actor) and the decoding workers, and the first batch. From the two
splits the script prints the collection size above which the whole call reaches 0.8x.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vits16", choices=("vits16", "vitb16", "vitl16"))
    ap.add_argument("--images", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="each image this many times (symlinks)")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    src = args.images or (REPO.parent / "shared" / "data" / "fusulinids")
    if not src.is_dir():
        src = REPO / "data" / "example"

    import ray

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = build_folder(src, args.repeat, tmp / "data")
        model = write_model(args.arch, tmp / "model")
        n = sum(1 for p in data.rglob("*") if p.is_file())
        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, object_store_memory=500 * 2**20, include_dashboard=False,
                 log_to_driver=False)
        startup = time.perf_counter() - t
        print(f"{n} images ({src}), {args.arch} random weights, float32, CPU; Ray with {args.cpus} CPUs, "
              f"{args.actors} actors; ray.init: {startup:.1f} s")
        common = dict(model=str(model), progress=False, batch_size=args.batch_size, dtype="float32", device="cpu")
        local_s, ray_s, diffs, rates, fixed = [], [], [], [], []
        for r in range(args.rounds):
            t = time.perf_counter()
            loc = extract_embeddings(data, out=tmp / f"local{r}", **common)
            local_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            ray_emb = extract_embeddings(data, out=tmp / f"ray{r}", engine="ray", actors=args.actors, **common)
            ray_s.append(time.perf_counter() - t)
            assert loc.paths == ray_emb.paths
            diffs.append(float(np.abs(np.asarray(loc.features) - np.asarray(ray_emb.features)).max()))
            tl, tr = loc.meta["extraction"]["timings"], ray_emb.meta["extraction"]["timings"]
            rate_l = n / tl["loop"]
            rate_r = (n - tr["first_batch_images"]) / tr["loop"]
            rates.append((rate_l, rate_r))
            fixed.append((local_s[-1] - n / rate_l, ray_s[-1] - n / rate_r))
            print(f"round {r + 1}: local {n / local_s[-1]:.2f} images/s ({local_s[-1]:.1f} s), "
                  f"ray {n / ray_s[-1]:.2f} images/s ({ray_s[-1]:.1f} s), ratio {local_s[-1] / ray_s[-1]:.2f}; "
                  f"steady rate local {rate_l:.2f}, ray {rate_r:.2f} images/s (ratio {rate_r / rate_l:.2f}); "
                  f"fixed cost per run local {fixed[-1][0]:.1f} s, ray {fixed[-1][1]:.1f} s (ray: start "
                  f"{tr['ray_start']:.1f} s, to the first embedded batch {tr['first_batch']:.1f} s)")
        ratios = [a / b for a, b in zip(local_s, ray_s)]
        print(f"Ray / local throughput: median {float(np.median(ratios)):.2f} (rounds "
              f"{', '.join(f'{x:.2f}' for x in ratios)}; target >= 0.8), whole calls, model loading included")
        print(f"Ray's overhead per run: {float(np.median(np.subtract(ray_s, local_s))):+.1f} s over the local "
              f"engine's {float(np.median(local_s)):.1f} s; plus ray.init {startup:.1f} s once per process "
              f"(with it, the first run's ratio is {local_s[0] / (ray_s[0] + startup):.2f})")
        rl, rr = (float(np.median([x[i] for x in rates])) for i in (0, 1))
        fl, fr = (float(np.median([x[i] for x in fixed])) for i in (0, 1))
        print(f"steady embedding rate, Ray / local: median {rr / rl:.2f} (rounds "
              f"{', '.join(f'{b / a:.2f}' for a, b in rates)}); fixed cost per run: local {fl:.1f} s, Ray {fr:.1f} s")
        slope = 1 / rl - 0.8 / rr
        if slope > 0:
            n_even = max(0.0, (0.8 * fr - fl) / slope)
            print(f"whole calls reach 0.8x the local engine from about {n_even:,.0f} images on this machine "
                  f"(fixed + images / rate for each engine; ray.init not included)")
        else:
            print("Ray's steady rate is below 0.8x the local engine's: whole calls never reach 0.8x here")
        print(f"largest |feature difference| Ray vs local: {max(diffs):.2e} (the same decoding and "
              f"normalisation functions; random weights, so only a pipeline check)")
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
