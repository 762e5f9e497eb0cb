"""Speed and memory of ``palaeo-ssl morphospace`` on a Diverse-Fossils-sized synthetic store.

Writes a synthetic store of N x D float32 features in C classes (default
60,000 x 1,024 in 50 classes of unequal size, with a mean pairwise cosine
distance near Diverse Fossils' 0.83), runs the whole command in a child
process and prints its per-stage times (from ``morphospace.json``), its wall
time and its peak RSS against the targets (20 minutes, 4 GB).

Baseline, in the same invocation: the reference's disparity, which builds the
full pairwise-distance matrix, against the identities used here, on the same
seeded subsample of ``--baseline-n`` images (the full matrix at N does not fit
in memory: N² x 4 bytes). The features are random: the numbers measure speed,
not fossils.

    python benchmarks/morphospace_speed.py                 # the full benchmark (~15 min on 2 busy cores)
    python benchmarks/morphospace_speed.py --n 5000 --dim 256 --classes 10   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from palaeo_ssl import Embeddings  # noqa: E402


def synthetic_features(n: int, dim: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 features with ``n_classes`` classes of Dirichlet-distributed sizes and spreads."""
    rng = np.random.default_rng(seed)
    floor = min(20, n // n_classes)
    sizes = np.floor(floor + rng.dirichlet(np.full(n_classes, 1.5)) * (n - floor * n_classes)).astype(int)
    sizes[-1] += n - sizes.sum()
    labels = np.repeat(np.arange(n_classes), sizes)
    latent = 96
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    centres = rng.standard_normal((n_classes, latent)).astype(np.float32)
    spread = rng.uniform(0.6, 1.3, n_classes).astype(np.float32)
    offset = rng.standard_normal(dim).astype(np.float32) * 0.02
    feats = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 8192):
        y = labels[start:start + 8192]
        z = centres[y] + rng.standard_normal((y.size, latent)).astype(np.float32) * spread[y, None]
        feats[start:start + 8192] = z @ basis / np.sqrt(dim) + offset \
            + rng.standard_normal((y.size, dim)).astype(np.float32) * 0.01
    return feats, labels


def reference_disparity(x: np.ndarray) -> tuple[float, float, float]:
    """The reference's way: the full N x N cosine-distance matrix. Returns (mean, std, seconds)."""
    from sklearn.metrics import pairwise_distances

    t = time.perf_counter()
    d = pairwise_distances(x, metric="cosine")
    iu = np.triu_indices(x.shape[0], k=1)
    vals = d[iu]
    return float(vals.mean()), float(vals.std()), time.perf_counter() - t


def identity_disparity(x: np.ndarray) -> tuple[float, float, float]:
    """The same two numbers through the mean-vector and Gram identities. Returns (mean, std, seconds)."""
    from palaeo_ssl.morphospace.disparity import mean_pairwise_distance, pairwise_distance_std

    t = time.perf_counter()
    mean, std = mean_pairwise_distance(x), pairwise_distance_std(x)
    return mean, std, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60000, help="images (default 60000)")
    ap.add_argument("--dim", type=int, default=1024, help="feature dimension (default 1024, ViT-L)")
    ap.add_argument("--classes", type=int, default=50, help="classes (default 50)")
    ap.add_argument("--protocol", default="standard", choices=("paper", "standard"))
    ap.add_argument("--threads", type=int, default=1, help="--threads of the command (default 1)")
    ap.add_argument("--baseline-n", type=int, default=10000, help="subsample for the full-matrix baseline (default 10000)")
    ap.add_argument("--work", default=None, help="folder for the store and the outputs (default: a temp folder)")
    ap.add_argument("--max-minutes", type=float, default=20.0)
    ap.add_argument("--max-rss-gb", type=float, default=4.0)
    args = ap.parse_args(argv)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="morphospace_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start "
          "(shared with other work: times are noisy)", flush=True)
    t = time.perf_counter()
    feats, labels = synthetic_features(args.n, args.dim, args.classes)
    Embeddings(feats, [f"class_{c:02d}/img_{i:06d}.jpg" for i, c in enumerate(labels)], labels,
                       [f"class_{c:02d}" for c in range(args.classes)], meta={"dataset": "synthetic"}).save(work / "store")
    print(f"synthetic store: {args.n} x {args.dim}, {args.classes} classes "
          f"(sizes {np.bincount(labels).min()}..{np.bincount(labels).max()}), written in {time.perf_counter() - t:.1f} s",
          flush=True)

    # baseline: full pairwise matrix vs identities, same subsample, same process
    from palaeo_ssl.morphospace.disparity import unit_rows

    rng = np.random.default_rng(0)
    m = min(args.baseline_n, args.n)
    sub = unit_rows(feats[np.sort(rng.choice(args.n, size=m, replace=False))])
    ref_mean, ref_std, ref_s = reference_disparity(sub)
    our_mean, our_std, our_s = identity_disparity(sub)
    print(f"\nmean and std of the pairwise cosine distances of {m:,} images: full {m:,} x {m:,} matrix (the "
          f"reference's way) {ref_s:.2f} s ({m * m * 8 / 2**30:.2f} GiB float64), identities {our_s:.3f} s "
          f"-> {ref_s / our_s:.0f}x faster; "
          f"|mean diff| {abs(ref_mean - our_mean):.1e}, |std diff| {abs(ref_std - our_std):.1e}")
    print(f"at N = {args.n:,} the full matrix would need {args.n ** 2 * 4 / 1e9:.1f} GB (float32); "
          "the identities need none", flush=True)
    del sub

    out = work / "morphospace"
    cmd = [sys.executable, "-m", "palaeo_ssl", "morphospace", str(work / "store"), "--out", str(out),
           "--protocol", args.protocol, "--threads", str(args.threads), "--no-progress"]
    print("\n$ " + " ".join(cmd), flush=True)
    del feats
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t
    child_rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        return 1
    print(proc.stdout)
    info = json.loads((out / "morphospace.json").read_text())
    print("per-stage times (s):")
    for k, v in info["timings_s"].items():
        indent = "    " if ":" in k else "  "
        print(f"{indent}{k:<55} {v:8.1f}")
    ok_time = wall <= args.max_minutes * 60
    ok_rss = child_rss_gb <= args.max_rss_gb
    print(f"\nwall time {wall / 60:.1f} min (target <= {args.max_minutes:g}): {'PASS' if ok_time else 'FAIL'}")
    print(f"peak RSS {child_rss_gb:.2f} GB (target <= {args.max_rss_gb:g}): {'PASS' if ok_rss else 'FAIL'}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end; outputs in {out}")
    return 0 if ok_time and ok_rss else 1


if __name__ == "__main__":
    raise SystemExit(main())
