"""Tiny random DINOv3 checkpoints and synthetic images for tests and demos.

Nothing here reaches the network. Features from a random-weight model say
nothing about fossils: use them to exercise code paths, never as results.
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


def _main(argv: list[str] | None = None) -> int:
    """``python -m palaeo_ssl.testing tiny-model DIR``: write a tiny random DINOv3 checkpoint for smoke tests."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m palaeo_ssl.testing",
                                 description="Write test fixtures. Random-weight models are for testing code "
                                             "paths only: their features say nothing about fossils.")
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("tiny-model", help="a tiny random DINOv3 checkpoint (loads like a real one, offline)")
    t.add_argument("folder")
    t.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(make_tiny_dinov3(args.folder, seed=args.seed))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
