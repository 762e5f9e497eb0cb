"""Export and import of 10^5 predictions: EcoTaxa TSV, Darwin Core Archive, CSV (targets: under 30 s each).

Builds, outside the timings, a flat folder of N empty image files (discovery lists them, never opens them),
a store of their (random) features and a ``classify --abstain`` results folder: ``predictions.csv`` with
100 classes and about a fifth of the images unassigned, ``calibration.json``. Then times, each in this
process:

* baseline: reading and writing ``predictions.csv`` with pandas (the least an export must do), and listing
  the dataset with ``discover`` (what every command does with DATA);
* export (``run_export``, images not copied: ``images=False``) to each format;
* import: ``discover`` of each file written, its labels added to the dataset (merge), and the TSV with
  ``accept_predicted``.

    python benchmarks/exchange_speed.py [--n 100000] [--work DIR]

Prints seconds, the ratio to the baselines and the load average (timings on a shared machine are noisy).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from palaeo_ssl import Embeddings  # noqa: E402
from palaeo_ssl.exchange import run_export  # noqa: E402
from palaeo_ssl.images import discover  # noqa: E402
from palaeo_ssl.report import peak_rss_mb  # noqa: E402


def build(work: Path, n: int, n_classes: int = 100, seed: int = 0) -> tuple[Path, Path]:
    data = work / "new_images"
    data.mkdir(parents=True)
    paths = [f"specimen_{i:06d}.png" for i in range(n)]
    for p in paths:
        (data / p).touch()
    rng = np.random.default_rng(seed)
    classes = [f"Genus{c // 4}_sp{c}" for c in range(n_classes)]
    out = work / "classified"
    emb = Embeddings(rng.normal(size=(n, 8)).astype(np.float32), paths, np.full(n, -1), [],
                     meta={"data": str(data), "data_root": str(data), "dataset": data.name,
                           "model_id": "facebook/dinov3-vits16-pretrain-lvd1689m"})
    emb.save(out / "embeddings" / "store")
    best = rng.integers(0, n_classes, n)
    prob = rng.uniform(0.2, 1.0, n)
    guess = np.asarray(classes, dtype=object)[best]
    second = np.asarray(classes, dtype=object)[(best + 1) % n_classes]
    pd.DataFrame({"path": paths, "predicted_class": np.where(prob >= 0.36, guess, "unassigned"),
                  "probability": prob, "best_guess": guess, "uncalibrated_probability": prob,
                  "top2_class": second, "top2_probability": (1 - prob) / 2, "top3_class": guess,
                  "top3_probability": (1 - prob) / 4}).to_csv(out / "predictions.csv", index=False)
    (out / "calibration.json").write_text(json.dumps({"threshold": 0.36, "probe": "logreg"}))
    return data, out


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="exchange_speed_", dir=args.work))
    try:
        t_build, (data, results) = timed(lambda: build(work, args.n))
        print(f"built {args.n} images, store and predictions in {t_build:.1f} s (not timed below)")
        base_csv, _ = timed(lambda: pd.read_csv(results / "predictions.csv", dtype=str, keep_default_na=False)
                            .to_csv(work / "copy.csv", index=False))
        base_list, listed = timed(lambda: discover(data))
        assert len(listed) == args.n
        print(f"baseline: predictions.csv read + written by pandas {base_csv:.2f} s; discover(DATA) "
              f"{base_list:.2f} s")
        written = {}
        for fmt in ("ecotaxa", "dwca", "csv"):
            t, res = timed(lambda: run_export(results, fmt, work / f"out_{fmt}", images=False, progress=False))
            written[fmt] = res["files"][0]
            ids = res["result"]
            print(f"export {fmt:8s} {t:6.2f} s  ({t / base_csv:5.1f} x the pandas baseline)  "
                  f"{len(ids)} rows, {ids.counts()}, {written[fmt].stat().st_size / 2**20:.1f} MiB")
        for fmt, path in written.items():
            t, images = timed(lambda: discover(path))
            labelled = int((images.labels >= 0).sum())
            assert len(images) == args.n and images.missing == []
            print(f"import {fmt:8s} {t:6.2f} s  ({t / base_list:5.1f} x discover(DATA))  {len(images)} images, "
                  f"{labelled} labelled")
        t, images = timed(lambda: discover(written["ecotaxa"], accept_predicted=True))
        print(f"import ecotaxa, accept_predicted {t:6.2f} s  {int((images.labels >= 0).sum())} labelled")
        print(f"peak memory {peak_rss_mb():.0f} MB; load average {open('/proc/loadavg').read().strip()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
