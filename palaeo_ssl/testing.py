"""Tiny random checkpoints of every backbone family, synthetic images and a reference re-implementation, for
tests and demos.

Nothing here reaches the network. :func:`make_tiny_model` writes a tiny random checkpoint of any family of
:data:`palaeo_ssl.families.FAMILIES` (its own config class, saved by transformers itself with the image
processor its published checkpoints use), so that the real loading code runs on it. Features from a random-weight model say
nothing about fossils: use them to exercise code paths, never as results.

``rodgers2025_cross_validation`` and ``rodgers2025_few_shot`` re-implement the
probe protocol of Rodgers (2025) plainly (scikit-learn estimators fitted one
after another, as its notebook does); the tests and ``benchmarks/probe_speed.py``
check that palaeo-ssl's ``paper`` protocol gives the same tables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .backbone import RANDOM_WEIGHTS_KEY
from .synthetic import make_example_dataset  # noqa: F401  (re-exported: the example dataset's generator)

TINY_CONFIG: dict[str, Any] = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_register_tokens=2,
    patch_size=16,
    image_size=224,
)


def make_tiny_dinov3(folder: str | os.PathLike, seed: int = 0, **config_overrides: Any) -> Path:
    """Write a small random DINOv3 checkpoint (model + image-processor config) to ``folder``.

    The folder loads through the same code users use
    (``palaeo_ssl.backbone.load_backbone(str(folder))``, ``AutoModel.from_pretrained``).
    ``config_overrides`` are passed to ``DINOv3ViTConfig`` (e.g. ``hidden_size=64``).
    Its ``config.json`` holds ``"palaeo_ssl_random_weights": true``, so every run on it is
    marked "random weights: a pipeline check, not a result". Returns the folder.
    """
    import torch
    from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessor, DINOv3ViTModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(TINY_CONFIG)
    cfg.update(config_overrides)
    cfg[RANDOM_WEIGHTS_KEY] = True
    config = DINOv3ViTConfig(**cfg)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = DINOv3ViTModel(config).eval()
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(folder)
    size = int(cfg.get("image_size", 224))
    DINOv3ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)
    return folder


#: a tiny ViT (two layers, width 32) for the other families' image towers
TINY_VIT: dict[str, Any] = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
#: a tiny text tower for the vision-language checkpoints (never loaded by palaeo-ssl: it is there because the
#: published checkpoints hold one)
TINY_TEXT: dict[str, Any] = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                 vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                 pad_token_id=1)


def _save_tiny(folder: str | os.PathLike, model_class, config, processor, seed: int) -> Path:
    """Initialise ``model_class(config)`` from ``seed`` (the global RNG left as it was) and save it with
    ``processor`` into ``folder``."""
    import torch
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state, level = torch.random.get_rng_state(), hf_logging.get_verbosity()
    torch.manual_seed(seed)
    hf_logging.set_verbosity_error()  # SigLIP's default text config warns about token ids that the tiny one replaces
    try:
        model = model_class(config).eval()
        model.save_pretrained(folder)
    finally:
        torch.random.set_rng_state(state)
        hf_logging.set_verbosity(level)
    processor.save_pretrained(folder)
    return folder


def make_tiny_dinov2(folder: str | os.PathLike, seed: int = 0, registers: int = 0, **config_overrides: Any) -> Path:
    """A tiny random DINOv2 checkpoint (``registers > 0``: DINOv2 with registers), patch 14, position embeddings
    of 518 px as the published ones, with their processor: shorter side to 256 (bicubic), centre crop 224,
    ImageNet mean and std."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, \
        Dinov2WithRegistersModel

    cfg = dict(TINY_VIT, patch_size=14, image_size=518, **{RANDOM_WEIGHTS_KEY: True})
    if registers:
        cfg["num_register_tokens"] = registers
    cfg.update(config_overrides)
    config_class, model_class = ((Dinov2WithRegistersConfig, Dinov2WithRegistersModel) if registers
                                 else (Dinov2Config, Dinov2Model))
    proc = BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                             do_center_crop=True, resample=3, image_mean=[0.485, 0.456, 0.406],
                             image_std=[0.229, 0.224, 0.225])
    return _save_tiny(folder, model_class, config_class(**cfg), proc, seed)


def make_tiny_dinov3_convnext(folder: str | os.PathLike, seed: int = 0, **config_overrides: Any) -> Path:
    """A tiny random DINOv3 ConvNeXt checkpoint (four stages of one block, widths 8-32) with the DINOv3
    processor (224 x 224, bilinear, ImageNet mean and std)."""
    from transformers import DINOv3ConvNextConfig, DINOv3ConvNextModel, DINOv3ViTImageProcessor

    cfg = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], **{RANDOM_WEIGHTS_KEY: True})
    cfg.update(config_overrides)
    proc = DINOv3ViTImageProcessor(size={"height": 224, "width": 224})
    return _save_tiny(folder, DINOv3ConvNextModel, DINOv3ConvNextConfig(**cfg), proc, seed)


def make_tiny_siglip(folder: str | os.PathLike, seed: int = 0, **vision_overrides: Any) -> Path:
    """A tiny random SigLIP (SigLIP 2 fixed-resolution) checkpoint, image and text towers as the published ones,
    patch 16 at 224, with its processor (224 x 224, bicubic, mean and std 0.5). ``vision_overrides`` go to the
    image tower's config (``vision_use_head=False``: no pooling head)."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    vision = dict(TINY_VIT, patch_size=16, image_size=224)
    vision.update(vision_overrides)
    config = SiglipConfig(vision_config=vision, text_config=dict(TINY_TEXT), **{RANDOM_WEIGHTS_KEY: True})
    proc = SiglipImageProcessor(size={"height": 224, "width": 224}, resample=3, image_mean=[0.5, 0.5, 0.5],
                                image_std=[0.5, 0.5, 0.5])
    return _save_tiny(folder, SiglipModel, config, proc, seed)


def make_tiny_clip(folder: str | os.PathLike, seed: int = 0, **vision_overrides: Any) -> Path:
    """A tiny random CLIP checkpoint, image and text towers as the published ones, patch 16 at 224, with its
    processor (shorter side to 224, bicubic, centre crop 224, OpenAI's mean and std)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    vision = dict(TINY_VIT, patch_size=16, image_size=224)
    vision.update(vision_overrides)
    config = CLIPConfig(vision_config=vision, text_config=dict(TINY_TEXT), projection_dim=16,
                        **{RANDOM_WEIGHTS_KEY: True})
    proc = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    return _save_tiny(folder, CLIPModel, config, proc, seed)


def make_tiny_unsupported(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random checkpoint of an architecture palaeo-ssl does not run (a supervised ViT, ``model_type``
    ``vit``), with its processor: for the message that names the supported families."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(**TINY_VIT, patch_size=16, image_size=224, **{RANDOM_WEIGHTS_KEY: True})
    return _save_tiny(folder, ViTModel, config, ViTImageProcessor(size={"height": 224, "width": 224}), seed)


#: a tiny random checkpoint of each family, by family name (:data:`palaeo_ssl.families.FAMILIES`)
TINY_BUILDERS = {
    "dinov3-vit": make_tiny_dinov3,
    "dinov3-convnext": make_tiny_dinov3_convnext,
    "dinov2": make_tiny_dinov2,
    "dinov2-reg": lambda folder, seed=0, **kw: make_tiny_dinov2(folder, seed=seed, registers=4, **kw),
    "siglip": make_tiny_siglip,
    "clip": make_tiny_clip,
}


def make_tiny_model(folder: str | os.PathLike, family: str = "dinov3-vit", seed: int = 0, **overrides: Any) -> Path:
    """A tiny random checkpoint of ``family`` in ``folder`` (see :data:`TINY_BUILDERS`), marked as random
    weights; it loads through ``from_pretrained`` like a published one. Returns the folder."""
    if family not in TINY_BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(TINY_BUILDERS)}")
    return TINY_BUILDERS[family](folder, seed=seed, **overrides)


def make_full_size_config(name: str = "vits16"):
    """A ``DINOv3ViTConfig`` with the real architecture of a DINOv3 model (random weights).

    Used by benchmarks: it has the real compute cost without downloading weights. Marked as
    random weights like :func:`make_tiny_dinov3`.
    """
    from transformers import DINOv3ViTConfig

    presets = {
        "vits16": dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6),
        "vitb16": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        "vitl16": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16),
    }
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
    return DINOv3ViTConfig(
        **presets[name],
        patch_size=16,
        num_register_tokens=4,
        layerscale_value=1e-5,
        image_size=224,
        **{RANDOM_WEIGHTS_KEY: True},
    )


def write_synthetic_image(path: str | os.PathLike, size=(64, 48), seed: int = 0, mode: str = "RGB", fmt: str | None = None) -> Path:
    """Write a random-noise-plus-shape image (for tests that need *some* decodable image)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    arr = (rng.random((h, w, 3)) * 80).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    cx, cy = w / 2 + rng.normal(0, w / 10), h / 2 + rng.normal(0, h / 10)
    rx, ry = w * rng.uniform(0.2, 0.35), h * rng.uniform(0.2, 0.35)
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=tuple(int(v) for v in rng.integers(120, 255, 3)))
    if mode != "RGB":
        img = img.convert(mode)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt or (path.suffix.lstrip(".").upper().replace("JPG", "JPEG") or "PNG"))
    return path


def make_class_folder_dataset(root: str | os.PathLike, n_classes: int = 3, per_class: int = 4, size=(64, 48), seed: int = 0) -> Path:
    """A class-folder dataset of small synthetic PNGs: ``root/class_k/img_j.png``."""
    root = Path(root)
    for c in range(n_classes):
        for j in range(per_class):
            write_synthetic_image(root / f"class_{c}" / f"img_{j:03d}.png", size=size, seed=seed * 10007 + c * 101 + j)
    return root


# ---------------------------------------------------------------------- the reference protocol, re-implemented plainly
#: The per-fold metrics of the reference code (Rodgers 2025), in its column order.
RODGERS2025_METRICS = ("top1_accuracy", "top2_accuracy", "top3_accuracy", "f1_macro", "f1_weighted",
                       "precision_macro", "recall_macro", "specificity_macro", "balanced_accuracy")
#: Its two classifiers, by the names its tables use.
RODGERS2025_CLASSIFIERS = ("k-Nearest Neighbours", "Logistic Regression")


def rodgers2025_classifiers(k: int = 5) -> dict:
    """The reference's two unfitted classifiers, by table name.

    ``"k-Nearest Neighbours"``: ``Normalizer(norm="l2") -> KNeighborsClassifier(k, metric="cosine")``;
    ``"Logistic Regression"``: ``LogisticRegression(random_state=42, max_iter=1000, class_weight="balanced")``
    on the raw features. Plain scikit-learn, nothing from palaeo-ssl.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer

    return {
        "k-Nearest Neighbours": Pipeline([("normalize", Normalizer(norm="l2")),
                                          ("knn", KNeighborsClassifier(n_neighbors=k, metric="cosine"))]),
        "Logistic Regression": LogisticRegression(random_state=42, max_iter=1000, class_weight="balanced"),
    }


def rodgers2025_folds(y: np.ndarray, random_state: int, n_splits: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """The reference's folds of labels ``y`` (n,): ``StratifiedKFold(5, shuffle=True)`` when every class has
    5 images, else ``StratifiedShuffleSplit(5, test_size=0.2)``, else ``ShuffleSplit(5, test_size=0.2)``.
    Returns (train indices, validation indices) pairs."""
    from sklearn.model_selection import ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

    idx = np.arange(len(y))
    if np.unique(y, return_counts=True)[1].min() >= n_splits:
        return list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state).split(idx, y))
    try:
        return list(StratifiedShuffleSplit(n_splits=n_splits, test_size=0.2, random_state=random_state).split(idx, y))
    except ValueError:
        return list(ShuffleSplit(n_splits=n_splits, test_size=0.2, random_state=random_state).split(idx))


def rodgers2025_top_k(y_true: np.ndarray, y_proba: np.ndarray, k: int, classes: np.ndarray) -> float:
    """The reference's top-k accuracy: NaN when k >= the number of classes or no true label is among ``classes``;
    rows whose true label the classifier never saw are left out. ``y_proba`` is (n, len(classes))."""
    if k >= y_proba.shape[1]:
        return np.nan
    class_to_idx = {c: i for i, c in enumerate(classes)}
    y_idx = np.array([class_to_idx.get(v, -1) for v in y_true])
    valid = y_idx != -1
    if not valid.any():
        return np.nan
    top = np.argpartition(y_proba, -k, axis=1)[:, -k:]
    return float(np.mean(np.any(top[valid] == y_idx[valid][:, None], axis=1)))


def rodgers2025_metrics(clf, y_true: np.ndarray, y_proba: np.ndarray, specificity_labels) -> dict[str, float]:
    """The reference's metrics of one fitted classifier ``clf`` on one validation set.

    Prediction is ``clf.classes_[argmax(y_proba)]``; F1, precision and recall use scikit-learn's functions
    (``zero_division=0``); macro specificity is the NaN-mean of TN / (TN + FP) over the confusion matrix
    of ``specificity_labels``. Returns {metric: value} for :data:`RODGERS2025_METRICS`.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

    y_pred = clf.classes_[np.argmax(y_proba, axis=1)]
    cm = confusion_matrix(y_true, y_pred, labels=specificity_labels)
    tn = cm.sum() - (cm.sum(axis=1) + cm.sum(axis=0) - np.diag(cm))
    fp = cm.sum(axis=0) - np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    return {
        "top1_accuracy": rodgers2025_top_k(y_true, y_proba, 1, clf.classes_),
        "top2_accuracy": rodgers2025_top_k(y_true, y_proba, 2, clf.classes_),
        "top3_accuracy": rodgers2025_top_k(y_true, y_proba, 3, clf.classes_),
        "f1_macro": f1_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_weighted": f1_score(y_true, y_pred, average="weighted", zero_division=0),
        "precision_macro": precision_score(y_true, y_pred, average="macro", zero_division=0),
        "recall_macro": recall_score(y_true, y_pred, average="macro", zero_division=0),
        "specificity_macro": np.nanmean(spec),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
    }


def _no_timer(stage: str, seconds: float) -> None:
    pass


def rodgers2025_cross_validation(features: np.ndarray, labels: np.ndarray, n_repeats: int = 10,
                                 fractions=(0.1, 0.3, 0.5, 0.7, 1), classifiers=RODGERS2025_CLASSIFIERS,
                                 timer=None):
    """The reference's cross-validated learning curve, one fit after another; its ``classification_cv_results``.

    For each training fraction (skipped when it leaves fewer images than classes) and repeat r:
    a stratified ``train_test_split(train_size=fraction, random_state=42 + r)`` (all data at 1),
    :func:`rodgers2025_folds` of it with ``random_state=42 + r``, and each classifier of
    :func:`rodgers2025_classifiers` fitted on every fold whose training part has every class
    (other folds are skipped), scored by :func:`rodgers2025_metrics`. Aggregated as the reference does
    (pandas): one row per (train_fraction, classifier), ``n_folds_used``, ``mean_<metric>``, ``std_<metric>``.

    features : (n, d) array; labels : (n,) class labels; classifiers : which of the two to run.
    timer : optional ``timer(stage, seconds)``, called with the time of each stage
        (``"splits"``, ``"<classifier> fit+predict"``, ``"metrics"``), for benchmarks.
    Returns a pandas DataFrame.
    """
    import time

    import pandas as pd
    from sklearn.model_selection import train_test_split

    timer = timer or _no_timer
    rows = []
    n_classes = len(np.unique(labels))
    for frac in fractions:
        if frac < 1.0 and int(np.ceil(frac * len(labels))) < n_classes:
            continue
        for r in range(n_repeats):
            t = time.perf_counter()
            if frac < 1.0:
                xs, _, ys, _ = train_test_split(features, labels, train_size=frac, stratify=labels,
                                                random_state=42 + r, shuffle=True)
            else:
                xs, ys = np.array(features), np.array(labels)
            folds = rodgers2025_folds(ys, 42 + r)
            timer("splits", time.perf_counter() - t)
            for name, clf in rodgers2025_classifiers().items():
                if name not in classifiers:
                    continue
                for tr, va in folds:
                    if len(np.unique(ys[tr])) < n_classes:
                        continue
                    t = time.perf_counter()
                    clf.fit(xs[tr], ys[tr])
                    proba = clf.predict_proba(xs[va])
                    timer(f"{name} fit+predict", time.perf_counter() - t)
                    t = time.perf_counter()
                    row = rodgers2025_metrics(clf, ys[va], proba, clf.classes_)
                    timer("metrics", time.perf_counter() - t)
                    row.update(train_fraction=frac, repeat=r, classifier=name)
                    rows.append(row)
    spec = {"n_folds_used": ("top1_accuracy", "count")}
    for m in RODGERS2025_METRICS:
        spec[f"mean_{m}"] = (m, "mean")
        spec[f"std_{m}"] = (m, "std")
    return pd.DataFrame(rows).groupby(["train_fraction", "classifier"]).agg(**spec).reset_index()


def rodgers2025_few_shot(features: np.ndarray, labels: np.ndarray, shots=(1, 2, 3, 5, 10, 20), episodes: int = 50,
                         seed: int = 0, classifiers=RODGERS2025_CLASSIFIERS, timer=None):
    """The reference's few-shot table (``few_shot_cv_results``), one fit after another.

    For each shot value k and classifier (the kNN with ``min(5, k)`` neighbours), ``episodes``
    episodes: ``min(k, class size - 1)`` training images drawn per class, all others tested, scored by
    :func:`rodgers2025_metrics` with specificity over the labels present in the test set or its
    predictions; one row per (k, classifier) of NaN-means and NaN-stds (population) in the reference's
    column names. The one departure from the reference: its episodes were unseeded; here episode e
    of k draws from ``numpy.random.default_rng([seed, k, e])``, palaeo-ssl's documented generator,
    so both see the same episodes.

    timer : as in :func:`rodgers2025_cross_validation` (stages ``"episodes"``,
        ``"<classifier> fit+predict"``, ``"metrics"``). Returns a pandas DataFrame.
    """
    import time

    import pandas as pd

    timer = timer or _no_timer
    out = []
    for k in shots:
        for name, clf in rodgers2025_classifiers(min(5, k)).items():
            if name not in classifiers:
                continue
            per = {m: [] for m in RODGERS2025_METRICS}
            for e in range(episodes):
                t = time.perf_counter()
                rng = np.random.default_rng([seed, k, e])
                train = []
                for c in np.unique(labels):
                    members = np.where(labels == c)[0]
                    train.extend(rng.choice(members, size=min(k, len(members) - 1), replace=False))
                train = np.array(train)
                test = np.setdiff1d(np.arange(len(labels)), train)
                timer("episodes", time.perf_counter() - t)
                t = time.perf_counter()
                clf.fit(features[train], labels[train])
                proba = clf.predict_proba(features[test])
                timer(f"{name} fit+predict", time.perf_counter() - t)
                t = time.perf_counter()
                y_pred = clf.classes_[np.argmax(proba, axis=1)]
                present = np.unique(np.concatenate([labels[test], y_pred]))
                for m, v in rodgers2025_metrics(clf, labels[test], proba, present).items():
                    per[m].append(v)
                timer("metrics", time.perf_counter() - t)
            row = {"few_shot_values": k, "classifier": name, "n_repeats_successful": episodes}
            for m in RODGERS2025_METRICS:
                mean, std = np.nanmean(per[m]), np.nanstd(per[m])
                if m.startswith("top"):
                    row[f"mean_{m}"], row[f"std_{m}"] = mean, std
                else:
                    row[m], row[f"{m}_std"] = mean, std
            out.append(row)
    return pd.DataFrame(out)


def specimen_image(path: str | os.PathLike, size: tuple[int, int] = (59, 218), seed: int = 0,
                   box: tuple[float, float, float, float] = (0.2, 0.1, 0.8, 0.9),
                   fill: tuple[int, int, int] = (220, 200, 150)) -> Path:
    """Write a bright elliptical "specimen" on a dark noisy background (radiolarian-like) to ``path``.

    ``size`` is (width, height) in pixels; ``box`` the ellipse's bounding box as fractions of
    (width, height, width, height); the noise is seeded. Returns the path.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.fromarray((rng.random((h, w, 3)) * 40).astype(np.uint8))
    ImageDraw.Draw(img).ellipse([w * box[0], h * box[1], w * box[2], h * box[3]], fill=fill)
    img.save(path)
    return Path(path)


def pdf_text_lines(path: str | os.PathLike) -> list[str]:
    """The text lines drawn in a matplotlib PDF (its content streams, decompressed; one line per TJ operator).

    For tests that read a written figure back (titles, notices) without a PDF library.
    """
    import re
    import zlib

    raw = Path(path).read_bytes()
    content = b""
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", raw, re.S):
        try:
            content += zlib.decompress(m.group(1))
        except zlib.error:
            pass
    return [b"".join(re.findall(rb"\((.*?)(?<!\\)\)", m.group(1))).decode("latin-1")
            for m in re.finditer(rb"\[(.*?)\]\s*TJ", content, re.S)]


def _main(argv: list[str] | None = None) -> int:
    """``python -m palaeo_ssl.testing tiny-model DIR [--family F]``: write a tiny random checkpoint for smoke
    tests (DINOv3 ViT unless ``--family`` names another)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m palaeo_ssl.testing",
                                 description="Write test fixtures. Random-weight models are for testing code "
                                             "paths only: their features say nothing about fossils.")
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("tiny-model", help="a tiny random checkpoint (loads like a real one, offline)")
    t.add_argument("folder")
    t.add_argument("--family", choices=list(TINY_BUILDERS), default="dinov3-vit",
                   help="the backbone family (default: dinov3-vit)")
    t.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(make_tiny_model(args.folder, args.family, seed=args.seed))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())


def kill_when_written(argv: list[str], folder: Path, pattern: str, at_least: int, *, timeout: float = 120,
                      env: dict[str, str] | None = None, poll: float = 0.02) -> list[Path]:
    """Start ``argv`` (a process that writes files under ``folder``), SIGKILL it as soon as at least
    ``at_least`` files match ``folder.glob(pattern)`` (or it has exited, or ``timeout`` seconds passed),
    and return the matching files seen before the kill: the crash-and-resume tests' shared start."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    found: list[Path] = []
    try:
        while time.time() < deadline:
            found = list(Path(folder).glob(pattern))
            if len(found) >= at_least or proc.poll() is not None:
                break
            time.sleep(poll)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return found
