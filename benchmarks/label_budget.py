"""Few or no labels on scikit-learn's digits: which specimens to label, abstention and novelty; and speed.

Features: the 1,797 digits' 64 pixels, L2-normalised (no network, no model). Every accuracy is
the standard logistic regression (C tuned by inner CV) fitted on the labels a strategy asked for,
scored on all remaining images. Parts (all by default):

``cold``     no labels at the start; budgets 10/20/50/100; typical and random (``--diverse``: also diverse).
             Targets: typical beats random by >= 15 points at 10 and >= 8 at 20, never below it
             (the upper end of the paired 95% interval of typical - random is >= 0 everywhere).
``warm``     5 labels per class known; budgets 10/20/30/50/100 more; uncertain (auto) and random.
             Target: uncertain reaches random's accuracy at the next budget step with fewer labels.
``calib``    100 random labelled images per seed, the rest held out; temperature calibration by
             5-fold CV, threshold for --target-accuracy 0.95: accuracy of the kept held-out
             predictions must be 0.95 +- 0.02 (mean over seeds); ECE before/after printed.
``novelty``  two classes hidden (5 pairs), half of the other classes labelled: AUROC of the distance
             to the nearest labelled image, hidden against known unlabelled (mean >= 0.90).
``speed``    ``suggest`` on 60,000 x 1,024 synthetic features, budget 500 (typical, diverse, and
             auto with 1% labelled), each in its own process: seconds and peak memory
             (target: 3 minutes and 4 GB). Not part of the default run (``--part speed``).

Seeds are 0..S-1 (``--seeds``, default 10); intervals are 95% t-intervals over seeds. Writes each
setting's table (``docs/label_budget_cold.csv``, ``docs/label_budget_warm.csv``: one row per strategy,
budget and seed) and the figure ``docs/label_budget.png`` (and .pdf) from the tables there are, so the
parts may run in separate processes.

    python benchmarks/label_budget.py                 # cold, warm, calib, novelty (several minutes)
    python benchmarks/label_budget.py --part speed    # the 60,000 x 1,024 timing (--threads 1 on a busy machine)
    python benchmarks/label_budget.py --quick         # 2 seeds, a smoke test
    python benchmarks/label_budget.py --part cold & python benchmarks/label_budget.py --part warm   # in parallel
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from palaeo_ssl.embeddings import l2_normalize  # noqa: E402
from palaeo_ssl.labels.simulation import plot_label_budget, simulate_label_budget, summarise  # noqa: E402

FIGURE = ROOT / "docs" / "label_budget"
DIVERSE = False  # --diverse: also the greedy k-centre in the cold start
PANELS = {"cold": "no labels at the start", "warm": "5 labels per class known"}


def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return l2_normalize(X.astype(np.float32)), y.astype(np.int64)


def show(s: pd.DataFrame, title: str) -> None:
    print(f"\n{title}")
    print(f"{'strategy':10s} {'budget':>6s} {'labels':>6s} {'accuracy (95% CI)':>24s} {'minus random (95% CI)':>26s}")
    for r in s.itertuples():
        diff = "" if np.isnan(r.diff) or r.strategy == "random" else \
            f"{100 * r.diff:+6.1f} [{100 * r.diff_low:+.1f}, {100 * r.diff_high:+.1f}]"
        print(f"{r.strategy:10s} {r.budget:6d} {r.n_labels:6d} {r.mean:8.3f} [{r.low:.3f}, {r.high:.3f}]     {diff:>26s}")


def cold(X, y, seeds, checks):
    t = time.perf_counter()
    strategies = ("typical", "diverse", "random") if DIVERSE else ("typical", "random")
    table = simulate_label_budget(X, y, [10, 20, 50, 100], strategies, seeds, progress=True)
    s = summarise(table)
    show(s, f"cold start (no labels), seeds {seeds[0]}..{seeds[-1]}, {time.perf_counter() - t:.0f} s")
    typ = s[s.strategy == "typical"].set_index("budget")
    checks.append(("typical - random >= 15 points at 10", typ.loc[10, "diff"] >= 0.15, f"{100 * typ.loc[10, 'diff']:+.1f}"))
    checks.append(("typical - random >= 8 points at 20", typ.loc[20, "diff"] >= 0.08, f"{100 * typ.loc[20, 'diff']:+.1f}"))
    worst = typ["diff_high"].min()
    checks.append(("typical never below random (upper CI of the difference >= 0)", worst >= 0,
                   f"smallest upper bound {100 * worst:+.1f}"))
    return table, s


def warm(X, y, seeds, checks):
    t = time.perf_counter()
    budgets = [10, 20, 30, 50, 75, 100]
    table = simulate_label_budget(X, y, budgets, ("uncertain", "random"), seeds, known_per_class_start=5,
                                  progress=True)
    s = summarise(table)
    show(s, f"5 labels per class known (50), budgets added; seeds {seeds[0]}..{seeds[-1]}, "
            f"{time.perf_counter() - t:.0f} s")
    unc = s[s.strategy == "uncertain"].set_index("budget")["mean"]
    rnd = s[s.strategy == "random"].set_index("budget")["mean"]
    steps = [10, 20, 50, 100]
    ok = True
    print("\nlabels uncertain needs to reach random's accuracy at the next budget step:")
    for a, b in zip(steps[:-1], steps[1:]):
        need = next((k for k in budgets if unc[k] >= rnd[b]), None)
        fewer = None if need is None else b - need
        ok &= fewer is not None and fewer > 0
        print(f"  random at +{b}: {rnd[b]:.3f}; uncertain reaches it at +{need} labels"
              + (f" ({fewer} fewer)" if fewer is not None else " (not within the budgets tried)"))
    checks.append(("uncertain reaches random's next-step accuracy with fewer labels", ok, "see above"))
    return table, s


def calibration(X, y, seeds, checks):
    from palaeo_ssl.labels.calibration import expected_calibration_error, fit_abstention
    from palaeo_ssl.probes import make_probe
    from palaeo_ssl.probes.classifiers import fit_quietly

    print(f"\ncalibration: 100 labelled, the rest held out; target accuracy 0.95; seeds {seeds[0]}..{seeds[-1]}")
    print(f"{'seed':>4s} {'T':>7s} {'held-out acc (all)':>18s} {'kept':>6s} {'held-out acc (kept)':>20s} "
          f"{'ECE before':>10s} {'ECE after':>10s}")
    accs, eb, ea = [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        lab = np.sort(rng.choice(len(y), 100, replace=False))
        rest = np.setdiff1d(np.arange(len(y)), lab)
        model = make_probe("logreg", "standard", y[lab], seed=seed)
        fit_quietly(model, X[lab], y[lab])
        ab = fit_abstention(X[lab], y[lab], 10, target_accuracy=0.95, seed=seed, fitted_model=model)
        raw = np.zeros((len(rest), 10))
        raw[:, np.asarray(model.classes_)] = model.predict_proba(X[rest])
        cal, kept = ab.apply(raw)
        acc_kept = float((cal.argmax(1) == y[rest])[kept].mean())
        before, after = expected_calibration_error(raw, y[rest]), expected_calibration_error(cal, y[rest])
        accs.append(acc_kept), eb.append(before), ea.append(after)
        print(f"{seed:4d} {ab.calibrator.temperature:7.3f} {float((raw.argmax(1) == y[rest]).mean()):18.3f} "
              f"{kept.mean():6.2f} {acc_kept:20.3f} {before:10.3f} {after:10.3f}")
    m = float(np.mean(accs))
    print(f"mean held-out accuracy of the kept: {m:.3f} (sd {np.std(accs, ddof=1):.3f}); held-out ECE "
          f"{np.mean(eb):.3f} before, {np.mean(ea):.3f} after")
    checks.append(("kept held-out accuracy at target 0.95 within 0.95 +- 0.02", abs(m - 0.95) <= 0.02, f"{m:.3f}"))
    checks.append(("calibration lowers held-out ECE", np.mean(ea) < np.mean(eb), f"{np.mean(eb):.3f} -> {np.mean(ea):.3f}"))


def novelty(X, y, checks):
    from sklearn.metrics import roc_auc_score

    from palaeo_ssl.labels.novelty import novelty_scores

    print("\nnovelty: two classes hidden, half of the other classes labelled (seed = pair index)")
    aucs = []
    for i, pair in enumerate([(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]):
        rng = np.random.default_rng(i)
        hidden = np.isin(y, pair)
        known = np.flatnonzero(~hidden)
        lab = rng.choice(known, len(known) // 2, replace=False)
        labels = np.full(len(y), -1)
        labels[lab] = y[lab]
        score, _, _ = novelty_scores(X, labels, 10)
        unl = labels < 0
        auc = roc_auc_score(hidden[unl], score[unl])
        aucs.append(auc)
        print(f"  hidden {pair}: AUROC {auc:.3f}")
    m = float(np.mean(aucs))
    print(f"  mean AUROC {m:.3f}")
    checks.append(("novelty open-set AUROC >= 0.90 (mean over 5 pairs)", m >= 0.90, f"{m:.3f}"))


SPEED_CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from palaeo_ssl import Embeddings
from palaeo_ssl.labels import suggest
n, d, budget, strategy, labelled = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
threads = int(sys.argv[7]) or None
from threadpoolctl import threadpool_limits
rng = np.random.default_rng(0)
centres = rng.normal(size=(100, d)).astype(np.float32)
y = rng.integers(0, 100, n)
x = centres[y] * 0.5
x += rng.normal(size=(n, d)).astype(np.float32)
labels = np.full(n, -1)
if labelled:
    lab = rng.choice(n, int(labelled * n), replace=False)
    labels[lab] = y[lab] % 20  # 20 classes
emb = Embeddings(x, [f"{i}.png" for i in range(n)], labels, [f"c{c}" for c in range(20)])
del x
with threadpool_limits(threads):
    t = time.perf_counter()
    c = time.process_time()
    res = suggest(emb, budget, strategy=strategy)
    s = time.perf_counter() - t
print(json.dumps({"strategy": res.strategy, "seconds": s, "cpu_seconds": time.process_time() - c, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "features_mb": emb.features.nbytes / 2**20, "n": len(res.index)}))
"""


def speed(checks, n=60000, d=1024, budget=500, threads=0):
    print(f"\nspeed: suggest on {n:,} x {d:,} float32 features, budget {budget}, each run in its own process "
          f"(BLAS threads: {threads or 'library default'}; {os.cpu_count()} CPUs)")
    for strategy, labelled in (("typical", 0.0), ("diverse", 0.0), ("auto", 0.01)):
        out = subprocess.run([sys.executable, "-c", SPEED_CHILD, str(ROOT), str(n), str(d), str(budget), strategy,
                              str(labelled), str(threads)], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:])
            checks.append((f"suggest {strategy} runs", False, "failed"))
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {strategy:8s} ({r['strategy']}, {100 * labelled:.0f}% labelled): {r['seconds']:6.1f} s wall, "
              f"{r['cpu_seconds']:6.1f} s CPU (all threads), load average {os.getloadavg()[0]:.1f}; peak "
              f"memory {r['peak_mb'] / 1024:.2f} GB (the features alone: {r['features_mb'] / 1024:.2f} GB)")
        checks.append((f"suggest {strategy} within 180 s and 4 GB", r["seconds"] <= 180 and r["peak_mb"] <= 4096,
                       f"{r['seconds']:.0f} s, {r['peak_mb'] / 1024:.2f} GB"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", action="append", choices=("cold", "warm", "calib", "novelty", "speed"),
                    help="run only these parts (repeatable; default: all but speed)")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..S-1 (default 10)")
    ap.add_argument("--quick", action="store_true", help="2 seeds: a smoke test, not the measurement")
    ap.add_argument("--diverse", action="store_true", help="also the greedy k-centre (diverse) in the cold start")
    ap.add_argument("--threads", type=int, default=0,
                    help="speed: BLAS threads (0 = library default; 1 gives CPU times that a busy machine does not inflate)")
    args = ap.parse_args(argv)
    global DIVERSE
    DIVERSE = args.diverse
    parts = args.part or ["cold", "warm", "calib", "novelty"]
    seeds = list(range(2 if args.quick else args.seeds))
    X, y = digits()
    print(f"digits: {X.shape[0]} images x {X.shape[1]} L2-normalised pixels, {len(np.unique(y))} classes")
    checks: list[tuple[str, bool, str]] = []
    written = []
    for part, run in (("cold", cold), ("warm", warm)):
        if part in parts:
            t, _ = run(X, y, seeds, checks)
            if not args.quick:  # each setting's table is kept, so the parts may run in separate processes
                FIGURE.parent.mkdir(parents=True, exist_ok=True)
                t.to_csv(f"{FIGURE}_{part}.csv", index=False)
                written.append(part)
    if "calib" in parts:
        calibration(X, y, seeds, checks)
    if "novelty" in parts:
        novelty(X, y, checks)
    if "speed" in parts:
        speed(checks, threads=args.threads)
    if written:  # the figure from every setting's table there is (this run's and earlier ones')
        panels = {title: summarise(pd.read_csv(f"{FIGURE}_{part}.csv"))
                  for part, title in PANELS.items() if Path(f"{FIGURE}_{part}.csv").is_file()}
        plot_label_budget(panels, FIGURE)
        print(f"\nwrote {FIGURE.with_suffix('.png')} from " + ", ".join(f"{FIGURE.name}_{p}.csv" for p in PANELS
                                                                        if Path(f"{FIGURE}_{p}.csv").is_file()))
    print("\nchecks:")
    for name, ok, value in checks:
        print(f"  [{'pass' if ok else 'FAIL'}] {name}: {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
