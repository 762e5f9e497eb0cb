"""Consolidating a sharded store at scale: 10^6 rows x 1,024 features (synthetic chunks), time and peak memory.

    python benchmarks/consolidate_scale.py [--rows 1000000] [--dim 1024] [--shards 4] [--chunk 512] [--dir DIR]

Writes the chunks that ``--shards`` shard processes of ``chunk``-row chunks would leave
in one store (rows assigned by :func:`palaeo_ssl.shards.shard_of`, each shard's chunks
in its own order), then consolidates them in a fresh process and prints the time, the
throughput and that process's peak resident memory beside the size of the features,
and checks every row landed where it belongs. Target: 10^6 x 1,024 (4.1 GB of float32)
within 2 minutes, with peak memory well below the size of the features (no second
copy in memory). Needs twice the feature size free on disk (chunks + store).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from palaeo_ssl.shards import shard_of, shard_tag  # noqa: E402
from palaeo_ssl.store import EmbeddingStore  # noqa: E402

SETTINGS = {"model_id": "synthetic", "model_revision": "none", "preprocess": "processor", "image_size": 224,
            "pooling": "cls", "dtype": "float32"}


def fingerprints(n: int) -> list[tuple[str, int, int]]:
    return [(f"class_{i % 10}/img_{i:07d}.png", 1000 + i, 1_700_000_000_000_000_000 + i) for i in range(n)]


def pattern(dim: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=dim).astype(np.float32)


def write_chunks(folder: Path, n: int, dim: int, n_shards: int, chunk: int) -> Path:
    fps = fingerprints(n)
    owner = np.fromiter((shard_of(fp[0], n_shards) for fp in fps), dtype=np.int64, count=n)
    base = pattern(dim)
    store_folder = None
    for s in range(n_shards):
        store = EmbeddingStore(folder, "synthetic", SETTINGS, writer=shard_tag(s, n_shards))
        store_folder = store.folder
        mine = np.flatnonzero(owner == s)
        for a in range(0, len(mine), chunk):
            rows = mine[a:a + chunk]
            feats = np.empty((len(rows), dim), np.float32)
            feats[:] = base
            feats[:, 0] = rows  # which image each row belongs to, checked after consolidation
            store.write_chunk([fps[i] for i in rows], feats)
    return store_folder


def consolidate(folder: Path, n: int, dim: int) -> None:
    """Run in a fresh process: consolidate, print time and peak RSS, check the rows."""
    fps = fingerprints(n)
    labels = np.arange(n, dtype=np.int64) % 10
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store = EmbeddingStore(folder, "synthetic", SETTINGS)
    t = time.perf_counter()
    emb, skipped = store.consolidate(fps, labels, [f"class_{k}" for k in range(10)], None, {}, dim)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    gb = n * dim * 4 / 1e9
    feats = np.load(store.folder / "features.npy", mmap_mode="r")
    ok = feats.shape == (n, dim) and not skipped
    for a in range(0, n, 65536):  # every row is the right image's (checked in blocks, not all in memory)
        ok &= bool(np.array_equal(feats[a:a + 65536, 0], np.arange(a, min(n, a + 65536), dtype=np.float32)))
    base = pattern(dim)
    ok &= all(np.array_equal(feats[i, 1:], base[1:]) for i in (0, n // 2, n - 1))
    print(f"consolidated {n:,} rows x {dim} ({gb:.2f} GB float32) in {seconds:.1f} s ({gb / seconds:.2f} GB/s, "
          f"{n / seconds:,.0f} rows/s)")
    print(f"peak RSS of the consolidating process: {peak:,.0f} MB ({rss_before:,.0f} MB before consolidating, "
          f"the fingerprints and imports); features: {gb * 1000:,.0f} MB; "
          f"{'no' if peak < gb * 1000 else 'A'} full copy held in memory")
    print(f"rows correct: {ok}; target (10^6 x 1,024 within 120 s): {'met' if n >= 10**6 and seconds <= 120 else 'n/a' if n < 10**6 else 'MISSED'}")
    sys.exit(0 if ok else 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder, removed)")
    ap.add_argument("--consolidate", type=Path, default=None, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.consolidate is not None:
        consolidate(args.consolidate, args.rows, args.dim)
        return 0
    work = Path(tempfile.mkdtemp(prefix="consolidate-", dir=args.dir))
    try:
        t = time.perf_counter()
        store = write_chunks(work, args.rows, args.dim, args.shards, args.chunk)
        n_chunks = len(list((store / "chunks").glob("*.csv")))
        print(f"wrote {n_chunks:,} chunks of {args.chunk} rows from {args.shards} shards in "
              f"{time.perf_counter() - t:.1f} s (setup, not timed below)")
        return subprocess.call([sys.executable, __file__, "--consolidate", str(work), "--rows", str(args.rows),
                                "--dim", str(args.dim)])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
