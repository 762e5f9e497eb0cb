"""What a shard costs besides embedding: listing the collection, its start-up, its share of a store.

    python benchmarks/shard_overhead.py [--files 20000] [--shards 4]

Builds a class-folder collection of ``--files`` small PNGs (hard links of one file, so the
disk holds one), then measures, on the CPU with a tiny random model (so the embedding itself
is negligible):

  (a) listing the collection (``discover``: walk, recognise images by content) per file;
  (b) a whole shard process (``python -m palaeo_ssl extract --shard 0/N``), start-up and
      model load included, and the same process again when its shard is already done
      (the fixed cost a rerun or an empty shard pays);
  (c) the consolidating run after all N shards (reads every chunk, writes the store).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from palaeo_ssl.images import discover  # noqa: E402
from palaeo_ssl.testing import make_tiny_dinov3, write_synthetic_image  # noqa: E402


def cli(*args: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "palaeo_ssl", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--shards", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = tmp / "one.png"
        write_synthetic_image(one, seed=0, size=(32, 32))
        for i in range(args.files):
            dst = tmp / "data" / f"class_{i % 10}" / f"img_{i:07d}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(one, dst)
        model = make_tiny_dinov3(tmp / "model")
        t = time.perf_counter()
        n = len(discover(tmp / "data").files)
        listing = time.perf_counter() - t
        print(f"(a) listing {n:,} files: {listing:.1f} s, {listing / n * 1e6:.0f} us per file")
        common = [str(tmp / "data"), "--out", str(tmp / "out"), "--model", str(model), "--workers", "0",
                  "--image-size", "32", "--no-progress"]
        first = cli("extract", *common, "--shard", f"0/{args.shards}")
        again = cli("extract", *common, "--shard", f"0/{args.shards}")
        print(f"(b) shard 0/{args.shards} ({n // args.shards:,} images, tiny model): {first:.1f} s; "
              f"rerun with nothing to do: {again:.1f} s (start-up, listing, reading the store)")
        for i in range(1, args.shards):
            cli("extract", *common, "--shard", f"{i}/{args.shards}")
        merge = cli("extract", *common)
        print(f"(c) consolidating run after {args.shards} shards ({n:,} rows): {merge:.1f} s, start-up included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
