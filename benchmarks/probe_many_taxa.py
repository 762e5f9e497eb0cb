"""The standard protocol's logistic regression at many taxa: the tuned fit before and after.

Builds (once, cached in ``results/benchmark_cache/``, which git ignores) a case
that converges as slowly as real collections do: real images (``data/example``
and, where present, ``/work/shared/data/fusulinids``) augmented into
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
* **new**: :class:`palaeo_ssl.probes.tuned_logreg.TunedLogisticRegression` (the same search,
  preconditioned and warm-started),

and prints wall time, chosen C, L-BFGS iterations at the chosen C, and top-1 / balanced accuracy of
each on the test folds, and the whole ``probe --protocol standard`` cross-validation time with the new fit.

    python benchmarks/probe_many_taxa.py                 # 4,215 images, 281 taxa (features cached)
    python benchmarks/probe_many_taxa.py --old-splits 1  # the old fit on one split only, extrapolated
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
SOURCES = (ROOT / "data" / "example", Path("/work/shared/data/fusulinids"))
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
    path = CACHE / f"many_taxa_vits16_{n_taxa}x{per_taxon}_{size}px_seed{seed}.npz"
    if path.exists():
        z = np.load(path)
        return z["X"], z["y"]
    import torch
    from PIL import Image
    from transformers import DINOv3ViTModel
    from tqdm.auto import tqdm

    from palaeo_ssl.testing import make_full_size_config

    srcs = source_images()
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


if __name__ == "__main__" and os.environ.get("BUILD_ONLY"):
    import torch

    torch.set_num_threads(int(os.environ.get("BUILD_THREADS", "2")))
    X, y = build_features(int(os.environ.get("N_TAXA", "281")), 15)
    print(X.shape, y.shape, float(X.std()))
    sys.exit(0)
