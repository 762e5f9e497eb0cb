"""The standard protocol's logistic regression at many taxa: the tuned fit before and after.

Builds (once, cached in ``results/benchmark_cache/``, which git ignores) a case
that converges as slowly as real collections do: real images (``data/example``
and, where present, ``../shared/data/fusulinids``) augmented into
pseudo-taxa of 15 images each (every taxon is one source image under seeded
random crops, rotations, flips and colour jitter; taxa past the number of
source images use the same images turned 90 degrees and in grey), embedded by
a random-weight ViT-S/16 (``palaeo_ssl.testing.make_full_size_config``; CLS
token, 112 px by default: 49 patches instead of 224 px's 196, to keep the one-off extraction
to minutes on two shared cores). Random-weight features of real images are strongly correlated,
so L-BFGS needs hundreds of iterations at the chosen C, unlike well-separated
synthetic clusters. The numbers say nothing about fossils.

Then, on the same splits of the standard protocol (5-fold, one repeat by
default, full training folds), it fits

* **old**: ``StandardScaler + LogisticRegressionCV`` (7 C x 3 inner folds, L-BFGS, balanced accuracy)
  as the landed standard protocol did, and
* **new**: ``palaeo_ssl.probes.classifiers.standard_logreg``, a
  :class:`palaeo_ssl.probes.tuned_logreg.TunedLogisticRegression`: the same grid and objective,
  preconditioned and warm-started L-BFGS, a grid that stops, fits stopped at a gradient of 1e-3,

and prints wall time, chosen C, L-BFGS iterations at the chosen C, and top-1 / balanced accuracy of
each on the test folds, and the whole ``probe --protocol standard`` cross-validation time with the new fit.

    python benchmarks/probe_many_taxa.py                 # 4,215 images, 281 taxa (features cached)
    python benchmarks/probe_many_taxa.py --old-splits 5  # the old fit on all five splits (slow)
    python benchmarks/probe_many_taxa.py --quick         # 600 images, 40 taxa
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "results" / "benchmark_cache"
SOURCES = (ROOT / "data" / "example", ROOT.parent / "shared" / "data" / "fusulinids")
EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


def source_images() -> list[Path]:
    out = []
    for root in SOURCES:
        if root.is_dir():
            out += sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTS)
    if not out:
        raise SystemExit("no source images found (data/example is part of the repository)")
    return out


def augment(img, rng: np.random.Generator, size: int = 224):
    """One seeded random view of ``img`` (PIL RGB): crop, rotation, flips, colour jitter, resized to size x size."""
    from PIL import ImageEnhance, ImageOps

    w, h = img.size
    scale = rng.uniform(0.35, 1.0)
    cw, ch = max(8, int(w * np.sqrt(scale))), max(8, int(h * np.sqrt(scale)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    view = img.crop((x0, y0, x0 + cw, y0 + ch)).rotate(float(rng.uniform(-30, 30)), expand=False)
    if rng.random() < 0.5:
        view = ImageOps.mirror(view)
    if rng.random() < 0.5:
        view = ImageOps.flip(view)
    view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.7, 1.3))
    view = ImageEnhance.Contrast(view).enhance(rng.uniform(0.7, 1.3))
    view = ImageEnhance.Color(view).enhance(rng.uniform(0.6, 1.4))
    return view.resize((size, size))


def build_features(n_taxa: int, per_taxon: int, seed: int = 0, size: int = 112, batch: int = 32
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(X (n_taxa * per_taxon, 384) float32, y) through a random-weight ViT-S/16 at ``size`` px; cached on disk."""
    from palaeo_ssl.cache import FEATURE_LIBRARIES, code_version, files_fingerprint, key_hash

    srcs = source_images()
    # keyed by the source images (their paths, sizes and mtimes) and the code that embeds them, as every cache
    key = key_hash({"sources": [(str(p.parent), *files_fingerprint(p.parent, [p.name])[0]) for p in srcs],
                    "code": code_version(FEATURE_LIBRARIES)}, length=10)
    path = CACHE / f"many_taxa_vits16_{n_taxa}x{per_taxon}_{size}px_seed{seed}_{key}.npz"
    if path.exists():
        z = np.load(path)
        return z["X"], z["y"]
    import torch
    from PIL import Image
    from transformers import DINOv3ViTModel
    from tqdm.auto import tqdm

    from palaeo_ssl.testing import make_full_size_config

    torch.manual_seed(seed)
    model = DINOv3ViTModel(make_full_size_config("vits16")).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_taxa), per_taxon)
    feats = []
    views = []

    def flush():
        x = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            out = model(pixel_values=(x - mean) / std)
        feats.append(out.last_hidden_state[:, 0].numpy().astype(np.float32))
        views.clear()

    for t in tqdm(range(n_taxa), desc="embedding pseudo-taxa", unit="taxon"):
        img = Image.open(srcs[t % len(srcs)]).convert("RGB")
        if t >= len(srcs):  # a second pass over the sources: turned and in grey, a different taxon
            img = img.rotate(90, expand=True).convert("L").convert("RGB")
        img.thumbnail((512, 512))
        for _ in range(per_taxon):
            views.append(np.asarray(augment(img, rng, size)))
            if len(views) == batch:
                flush()
    if views:
        flush()
    X = np.concatenate(feats)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, X=X, y=y)
    os.replace(tmp, path)
    return X, y


def digits_case() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y.astype(np.int64)


def synthetic_case() -> tuple[np.ndarray, np.ndarray]:
    from probe_speed import make_clusters  # noqa: E402  (the synthetic set of the other probe benchmark)

    return make_clusters(5000, 384, 20)


def fit_both(X, y, split, seed, run_old: bool):
    """Old (LogisticRegressionCV) and new (TunedLogisticRegression) on one split: a dict of numbers."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from palaeo_ssl.probes.classifiers import C_GRID, cv_search_logreg, fit_quietly, standard_logreg

    tr, te = split
    out = {}
    fits = [("new", standard_logreg(y[tr], seed))]
    if run_old:
        fits.insert(0, ("old", cv_search_logreg(y[tr], seed)))
    for name, model in fits:
        t = time.perf_counter()
        fit_quietly(model, X[tr], y[tr])
        sec = time.perf_counter() - t
        pred = model.predict(X[te])
        est = model[-1] if hasattr(model, "steps") else model
        C = float(np.ravel(est.C_)[0])
        if name == "old":  # iterations of the inner fits at the chosen C (n_iter_: folds x Cs)
            it = int(np.max(np.asarray(est.n_iter_).reshape(-1, len(C_GRID))[:, list(C_GRID).index(C)]))
            total = int(np.sum(est.n_iter_))
        else:
            it, total = int(est.n_iter_[0]), int(est.n_iter_search_)
        out[name] = {"seconds": sec, "C": C, "iter_at_C": it, "iter_total": total,
                     "top1": accuracy_score(y[te], pred), "balanced": balanced_accuracy_score(y[te], pred)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("many-taxa", "digits", "synthetic"), default="many-taxa",
                    help="many-taxa: random ViT-S/16 features of augmented real images (default); digits: "
                         "scikit-learn's digits; synthetic: probe_speed.py's Gaussian clusters (5,000 x 384, 20)")
    ap.add_argument("--quick", action="store_true", help="many-taxa with 40 taxa (600 images)")
    ap.add_argument("--taxa", type=int, default=281, help="pseudo-taxa of 15 images (default 281: 4,215 images)")
    ap.add_argument("--size", type=int, default=112, help="image size in px for the ViT (default 112)")
    ap.add_argument("--splits", type=int, default=5, help="outer splits the fits are compared on (default 5)")
    ap.add_argument("--old-splits", type=int, default=1,
                    help="run the old fit on only this many of them (default 1: it takes minutes per split); the "
                         "whole protocol's old cost is extrapolated from them")
    ap.add_argument("--no-protocol", action="store_true", help="skip the whole standard cross-validation run")
    ap.add_argument("--jobs", type=int, default=-1, help="worker processes of the protocol run (default: every CPU)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats of the protocol run (default: the protocol's 5); the 5-repeat time is extrapolated")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from palaeo_ssl.probes.splits import standard_splits

    warnings.simplefilter("ignore")
    if args.case == "digits":
        X, y = digits_case()
    elif args.case == "synthetic":
        X, y = synthetic_case()
    else:
        X, y = build_features(40 if args.quick else args.taxa, 15, size=args.size)
    n_classes = len(np.unique(y))
    print(f"case {args.case}: {X.shape[0]} x {X.shape[1]}, {n_classes} classes; CPUs {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}; one BLAS thread per fit")
    splits = standard_splits(y, None, 5, 1, 0, fractions=(1.0,))[: args.splits]
    n_old = min(args.old_splits, len(splits))
    rows = []
    with threadpool_limits(limits=1):
        for i, sp in enumerate(splits):
            r = fit_both(X, y, (sp.subsets[1.0], sp.test), seed=0, run_old=i < n_old)
            rows.append(r)
            for name, v in r.items():
                print(f"  split {i} {name}: {v['seconds']:7.1f} s  C={v['C']:g}  L-BFGS iterations at C "
                      f"{v['iter_at_C']} (all fits {v['iter_total']})  top-1 {v['top1']:.4f}  balanced "
                      f"{v['balanced']:.4f}", flush=True)
    new_s = sum(r["new"]["seconds"] for r in rows)
    if rows:
        print(f"\nnew: {new_s:.1f} s for {len(rows)} full-split fits ({new_s / len(rows):.1f} s each)")
    if n_old:
        old = [r["old"] for r in rows[:n_old]]
        new = [r["new"] for r in rows[:n_old]]
        old_s, new_s_same = sum(o["seconds"] for o in old), sum(o["seconds"] for o in new)
        d1 = np.mean([b["top1"] - a["top1"] for a, b in zip(old, new)])
        d2 = np.mean([b["balanced"] - a["balanced"] for a, b in zip(old, new)])
        same_c = sum(a["C"] == b["C"] for a, b in zip(old, new))
        print(f"old: {old_s:.1f} s on {n_old} split(s) ({old_s / n_old:.1f} s each) -> speed-up "
              f"{old_s / new_s_same:.1f}x per fit; same C on {same_c} of {n_old}")
        print(f"accuracy, new - old (mean over {n_old} split(s)): top-1 {100 * d1:+.2f} points, balanced "
              f"{100 * d2:+.2f} points")
    if not args.no_protocol:
        from palaeo_ssl import Embeddings
        from palaeo_ssl.probes import run_cross_validation

        emb = Embeddings(X, [f"{i}.png" for i in range(len(y))], y, [f"taxon_{c}" for c in range(n_classes)])
        from probe_speed import PeakRSS

        t = time.perf_counter()
        with PeakRSS() as mem:
            cv = run_cross_validation(emb, protocol="standard", n_jobs=args.jobs, progress=True, device=None,
                                      n_repeats=args.repeats)
        sec = time.perf_counter() - t
        full = cv.table[cv.table["train_fraction"] == 1.0]
        reps = args.repeats or 5
        print(f"\nstandard cross-validation ({reps} x 5 splits, 5 fractions, logreg + kNN + centroid, "
              f"n_jobs={args.jobs}): {sec:.0f} s = {sec / 60:.1f} min; CPU {mem.cpu_s:.0f} s with workers; peak RSS "
              f"{mem.peak:.0f} MiB; load average now {os.getloadavg()[0]:.1f}")
        if reps != 5:
            print(f"  5 repeats (the protocol), extrapolated in proportion: {sec * 5 / reps / 60:.1f} min wall, "
                  f"{mem.cpu_s * 5 / reps / 60:.1f} CPU-min")
        print("  " + ", ".join(f"{k} {v:.0f} s" for k, v in cv.timings.items()))
        print("  top-1 at full data: " + ", ".join(f"{a} {b:.3f}" for a, b in
                                                    full[["classifier", "mean_top1_accuracy"]].itertuples(index=False)))
        if n_old:
            per_split_old = sum(r["old"]["seconds"] for r in rows[:n_old]) / n_old
            lr = cv.folds[cv.folds["classifier"] == "Logistic Regression"]
            # the old fit's cost grows with the training size about linearly: scale by the images per fit
            est = per_split_old * lr["n_train"].sum() / np.mean([len(sp.subsets[1.0]) for sp in splits[:n_old]])
            print(f"  the old logistic-regression fits of this run, extrapolated from {n_old} full-split fit(s) "
                  f"(in proportion to training images): about {est / 60:.0f} CPU-min")
    return 0


if __name__ == "__main__" and os.environ.get("BUILD_ONLY"):
    import torch

    torch.set_num_threads(int(os.environ.get("BUILD_THREADS", "2")))
    X, y = build_features(int(os.environ.get("N_TAXA", "281")), 15)
    print(X.shape, y.shape, float(X.std()))
    sys.exit(0)

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
