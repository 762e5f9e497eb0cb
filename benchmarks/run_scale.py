"""Time and peak memory of every stage of ``palaeo-ssl run`` (extraction excluded) as the collection grows.

For each size it writes a synthetic store of ViT-like features with
``Embeddings.save`` and runs the stages of ``run --protocol standard`` one by
one, each in a child process of its own (probes, morphospace, explorer), on the
memory-mapped store. Each child reports its wall time, its peak RSS and the
stage's own sub-timings; this parent fits a growth exponent per stage
(``seconds ~ N^b`` by least squares on log-log over the 50-class sizes that
were measured) and projects to 10^6 and 10^7 images. Memory is the peak of the
stage's whole process tree (its worker processes too), sampled as the sum of
proportional set sizes, and never less than the stage process's own peak RSS.

The features are not well-separated Gaussian blobs: a low-rank class
structure (64 latent directions, class centres close together, per-image
variation larger than the class separation) plus heavy-tailed (Student t, 3
degrees of freedom) noise in all 1,024 dimensions, L2-normalised, as pooled
ViT features are. The numbers measure speed and memory, not fossils.

    python benchmarks/run_scale.py                                  # 4,215 x 281 and 10^4 x 50
    python benchmarks/run_scale.py --sizes 100000:50 --stages morphospace
    python benchmarks/run_scale.py --report                         # the table from what was measured so far

Results accumulate in ``WORK/scale_results.json`` (one entry per size and
stage, the latest measurement wins), so sizes and stages can be measured in
separate invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("probes", "morphospace", "explorer")
DEFAULT_SIZES = "4215:281,10000:50"
TARGETS = {100_000: (25 * 60, None), 200_000: (60 * 60, 8.0)}  # run --protocol standard: seconds, GB


# ---------------------------------------------------------------------- synthetic store
def vit_like_features(n: int, dim: int, n_classes: int, seed: int = 0, block: int = 8192,
                      out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 unit rows and (n,) labels of ``n_classes`` classes of unequal size.

    Low-rank class structure (64 latent directions, class centres at spread 1,
    images around them at spread 1.6, so classes overlap) plus Student-t (3 d.o.f.)
    noise in every dimension and a shared offset (pooled ViT features share a
    large mean direction), written block by block into ``out`` (e.g. a memmap).
    """
    rng = np.random.default_rng(seed)
    floor = max(1, min(15, n // n_classes))
    sizes = np.floor(floor + rng.dirichlet(np.full(n_classes, 2.0)) * (n - floor * n_classes)).astype(int)
    sizes[-1] += n - sizes.sum()
    labels = rng.permutation(np.repeat(np.arange(n_classes), sizes))
    latent = 64
    basis = rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    centres = rng.standard_normal((n_classes, latent)).astype(np.float32)
    offset = rng.standard_normal(dim).astype(np.float32) * 1.5
    feats = np.empty((n, dim), dtype=np.float32) if out is None else out
    for start in range(0, n, block):
        y = labels[start:start + block]
        z = centres[y] + 1.6 * rng.standard_normal((y.size, latent)).astype(np.float32)
        x = z @ basis + offset + 0.5 * rng.standard_t(3, size=(y.size, dim)).astype(np.float32)
        feats[start:start + block] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return feats, labels.astype(np.int64)


def make_store(folder: Path, n: int, dim: int, n_classes: int, seed: int = 0) -> Path:
    """A store of :func:`vit_like_features` in ``folder`` (kept when it is already there)."""
    from palaeo_ssl import Embeddings

    if (folder / "meta.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / (folder.name + ".tmp.npy")
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    _, labels = vit_like_features(n, dim, n_classes, seed=seed, out=mm)
    mm.flush()
    names = [f"Genus{c // 3:02d}_species{c:03d}" for c in range(n_classes)]
    feats = np.load(tmp, mmap_mode="r")
    Embeddings(feats, [f"{names[c]}/img_{i:07d}.jpg" for i, c in enumerate(labels)], labels, names,
               meta={"dataset": f"synthetic {n} x {dim}, {n_classes} classes"}).save(folder)
    del feats, mm
    tmp.unlink()
    return folder


# ---------------------------------------------------------------------- one stage in a child
def child(stage: str, store: str, results: str) -> None:
    """Run one stage of ``run --protocol standard`` on ``store`` into ``results``; print a JSON line."""
    from palaeo_ssl import report
    from palaeo_ssl.embeddings import load_embeddings
    from palaeo_ssl.pipeline import Pipeline

    p = Pipeline(store, out=results, protocol="standard", progress=False, force=(stage != "explorer"))
    p.emb = load_embeddings(store)
    p.ident = p.emb.identity()
    rss0 = report.peak_rss_mb()
    t = time.perf_counter()
    getattr(p, stage)()
    seconds = time.perf_counter() - t
    rec = p.stages.records.get(f"{stage}_standard") or p.stages.records.get(stage)
    info = {"seconds": seconds, "peak_rss_mb": report.peak_rss_mb(), "rss_after_load_mb": rss0,
            "timings_s": rec.info.get("timings_s", {}) if rec is not None else {}}
    print("RESULT " + json.dumps(info, default=float), flush=True)


class TreeMemory:
    """Samples the memory of a process and all its descendants (the stage's worker processes too)
    every ``interval`` seconds: the largest sum of their proportional set sizes (PSS: a page shared
    by k processes, such as a memory-mapped store, counts 1/k in each), i.e. the physical memory the
    stage held at once. The child's own ``ru_maxrss`` misses its worker processes."""

    def __init__(self, pid: int, interval: float = 0.5):
        import threading

        import psutil

        self.root, self.interval, self.peak_mb = psutil.Process(pid), interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            total = 0.0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for pr in procs:
                try:
                    total += pr.memory_full_info().pss / 2**20
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, total)
            self._stop.wait(self.interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def measure(stage: str, store: Path, results: Path, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, "--store", str(store), "--results", str(results)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.perf_counter()
    # a session of its own, so that a stage stopped at the timeout takes its worker processes with it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    tree = TreeMemory(proc.pid)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        tree.stop()
        return {"status": f"stopped after {timeout:.0f} s", "seconds": time.perf_counter() - t}
    tree_mb = tree.stop()
    proc = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if proc.returncode != 0:
        return {"status": "failed: " + proc.stderr.strip().splitlines()[-1][-300:] if proc.stderr.strip() else "failed",
                "seconds": time.perf_counter() - t}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return {"status": "ok", **json.loads(line[7:]), "peak_tree_pss_mb": tree_mb}


def peak_mb(r: dict) -> float:
    """A stage's peak memory: the process tree's sampled PSS where measured, and never less than the
    child's own peak RSS (which the sampling can miss between two samples)."""
    return max(r["peak_rss_mb"], r.get("peak_tree_pss_mb", 0.0))


# ---------------------------------------------------------------------- the table
def fit_exponent(ns: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) on log(N); None with fewer than two sizes."""
    if len(ns) < 2 or len(set(ns)) < 2:
        return None
    return float(np.polyfit(np.log(ns), np.log(values), 1)[0])


def table(db: dict) -> str:
    """The README table: measured rows, then the projections from the fitted exponents (50 classes)."""
    rows = ["| images x features, classes | stage | time | peak memory | |", "|---|---|---|---|---|"]
    keys = sorted(db, key=lambda k: (db[k]["n"], db[k]["classes"], STAGES.index(db[k]["stage"])))
    for k in keys:
        r = db[k]
        time_s = f"{r['seconds'] / 60:.1f} min" if r["status"] == "ok" else f"> {r['seconds'] / 60:.0f} min"
        rss = f"{peak_mb(r) / 1024:.2f} GB" if r["status"] == "ok" else "-"
        rows.append(f"| {r['n']:,} x {r['dim']:,}, {r['classes']} | {r['stage']} | {time_s} | {rss} | measured |")
    proj = ["", "| stage | exponent (time) | exponent (RSS) | 10^6 time | 10^6 RSS | 10^7 time | 10^7 RSS |",
            "|---|---|---|---|---|---|---|"]
    for stage in STAGES:
        pts = sorted((r["n"], r["seconds"], peak_mb(r)) for r in db.values()
                     if r["stage"] == stage and r["classes"] == 50 and r["status"] == "ok")
        if len(pts) < 2:
            continue
        ns, ts, ms = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        bt, bm = fit_exponent(ns, ts), fit_exponent(ns, ms)
        n0, t0, m0 = pts[-1]
        cells = []
        for target in (10**6, 10**7):
            t = t0 * (target / n0) ** bt
            m = m0 * (target / n0) ** max(bm, 0.0)
            cells += [f"{t / 3600:.1f} h" if t >= 3600 else f"{t / 60:.0f} min", f"{m / 1024:.1f} GB"]
        proj.append(f"| {stage} | {bt:.2f} | {bm:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows + proj) + "\n\n(projected rows: from the largest measured size with the fitted exponents)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help=f"N:classes,... (default {DEFAULT_SIZES})")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ", ".join(STAGES))
    ap.add_argument("--work", default="/tmp/palaeo_ssl_scale", help="stores, outputs and scale_results.json")
    ap.add_argument("--timeout-min", type=float, default=60.0, help="stop a stage after this many minutes")
    ap.add_argument("--report", action="store_true", help="only print the table of what was measured")
    ap.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.store, args.results)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / "scale_results.json"
    db = json.loads(db_path.read_text()) if db_path.is_file() else {}
    if not args.report:
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared: times are noisy)",
              flush=True)
        for spec in args.sizes.split(","):
            n, c = (int(v) for v in spec.split(":"))
            t = time.perf_counter()
            store = make_store(work / f"store_{n}_{c}_{args.dim}", n, args.dim, c)  # every input in the name
            print(f"store {n:,} x {args.dim} in {c} classes ready ({time.perf_counter() - t:.0f} s)", flush=True)
            for stage in args.stages.split(","):
                r = measure(stage, store, work / f"run_{n}_{c}", args.timeout_min * 60)
                db[f"{n}:{c}:{stage}"] = {"n": n, "classes": c, "dim": args.dim, "stage": stage,
                                           "load_average": os.getloadavg()[0], **r}
                db_path.write_text(json.dumps(db, indent=1, default=float))
                rss = (f"{peak_mb(r) / 1024:.2f} GB (process tree PSS {r['peak_tree_pss_mb'] / 1024:.2f} GB, "
                       f"the stage's own process RSS {r['peak_rss_mb'] / 1024:.2f} GB)" if "peak_rss_mb" in r else "-")
                print(f"  {stage:<12} {r['status']:<10} {r['seconds']:8.1f} s  peak memory {rss}", flush=True)
                for k, v in r.get("timings_s", {}).items():
                    if isinstance(v, (int, float)) and v >= 1:
                        print(f"      {k:<50} {v:8.1f} s")
    print(table(db))
    child_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"\nlargest child peak RSS this invocation: {child_gb:.2f} GB")
    for n, (limit_s, limit_gb) in TARGETS.items():
        rs = [r for r in db.values() if r["n"] == n and r["classes"] == 50]
        if len(rs) == len(STAGES) and all(r["status"] == "ok" for r in rs):
            total = sum(r["seconds"] for r in rs)
            peak = max(peak_mb(r) for r in rs) / 1024
            ok = total <= limit_s and (limit_gb is None or peak <= limit_gb)
            print(f"run --protocol standard at {n:,}: {total / 60:.1f} min (target {limit_s / 60:.0f}), peak "
                  f"{peak:.2f} GB{f' (target {limit_gb:.0f})' if limit_gb else ''}: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
