"""``palaeo-ssl classify``: label new images with a probe trained on labelled embeddings."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError

_SETTINGS = ("model", "pooling", "preprocess", "image_size", "dtype")


def register(sub) -> None:
    p = sub.add_parser(
        "classify",
        help="classify new images or embeddings with a probe trained on labelled embeddings",
        description=(
            "Fit a probe on every labelled image of --probe-from and classify NEW: an embedding store, or a "
            "folder/manifest of images, which is then embedded with exactly the model, preprocessing, pooling, "
            "dtype and image size recorded in --probe-from (cached). Writes OUT/predictions.csv with the "
            "predicted class, its probability and the top 3."
        ),
    )
    p.add_argument("new", metavar="EMBEDDINGS_OR_FOLDER",
                   help="an embedding store (or 'palaeo-ssl extract' output folder), or a folder / CSV manifest of "
                        "images to embed")
    p.add_argument("--probe-from", required=True, metavar="LABELLED_EMBEDDINGS",
                   help="embedding store whose labelled images train the probe")
    p.add_argument("--probe", default="logreg", help="logreg, knn or centroid (default: logreg)")
    p.add_argument("--protocol", choices=("paper", "standard"), default="standard",
                   help="probe setting: standard (tuned C on standardised features; DINO-style kNN) or paper "
                        "(the reference's settings) (default: standard)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe's random steps (default: 0)")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for predictions.csv (default: current folder)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="where embeddings of an image folder are stored (default: OUT/embeddings)")
    p.add_argument("--device", default="auto", help="device for embedding images: auto, cpu, cuda, mps (default: auto)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="images per forward pass when embedding")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="image-decoding workers when embedding")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _is_embeddings(path: Path) -> bool:
    from ..embeddings import find_stores

    return path.is_dir() and bool(find_stores(path))


def load_or_embed(new: str, labelled, cache: Path, **options):
    """Embeddings of ``new``: loaded when it is a store, else extracted like ``labelled`` (cached in ``cache``)."""
    from ..embeddings import load_embeddings

    path = Path(new).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist; pass an embedding store, an image folder or a CSV manifest")
    if _is_embeddings(path):
        emb = load_embeddings(path)
        check_compatible(labelled.meta, emb.meta)
        return emb
    from ..extract import extract_like

    return extract_like(labelled.meta, path, out=cache, **options)


def check_compatible(train_meta: dict, new_meta: dict) -> None:
    """Raise :class:`UserError` when two stores were not made with the same model and settings."""
    from ..extract import settings_from_meta

    try:
        a, b = settings_from_meta(train_meta), settings_from_meta(new_meta)
    except UserError:
        return  # one of them does not record its settings; the feature length is still checked
    diff = [k for k in _SETTINGS if a.get(k) != b.get(k)]
    if diff:
        listing = ", ".join(f"{k}: {b.get(k)!r} here vs {a.get(k)!r} for the probe" for k in diff)
        raise UserError(f"the new embeddings were made differently from the labelled ones ({listing}); "
                        "pass the image folder instead so it is embedded the same way")


def predictions_frame(probe, emb) -> pd.DataFrame:
    """path, predicted_class, probability, top2/top3 class and probability (and true_class when labelled)."""
    top = probe.top_k(np.asarray(emb.features), k=3)
    n = len(emb)
    out = pd.DataFrame({"path": emb.paths})
    out["predicted_class"] = top["class_1"]
    out["probability"] = top["probability_1"]
    for j in (2, 3):
        out[f"top{j}_class"] = top[f"class_{j}"] if f"class_{j}" in top else [""] * n
        out[f"top{j}_probability"] = top[f"probability_{j}"] if f"probability_{j}" in top else [np.nan] * n
    if emb.has_labels:
        out["true_class"] = [emb.class_names[l] if l >= 0 else "" for l in emb.labels]
    return out


def run(args: argparse.Namespace) -> int:
    from ..embeddings import load_embeddings
    from ..probes import fit_probe
    from ..report import write_csv

    labelled = load_embeddings(args.probe_from)
    # fitted first: a labelled store the probe cannot use fails before NEW is embedded (which can take hours)
    probe = fit_probe(labelled, probe=args.probe, protocol=args.protocol, seed=args.seed)
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out / "embeddings"
    options = {"device": args.device, "progress": not args.no_progress}
    if args.batch_size:
        options["batch_size"] = args.batch_size
    if args.workers is not None:
        options["workers"] = args.workers
    new = load_or_embed(args.new, labelled, cache, **options)
    if new.dim != labelled.dim:
        raise UserError(f"the new embeddings have {new.dim} features per image but the labelled ones {labelled.dim}; "
                        "they were made with different models")
    if len(new) == 0:
        raise UserError(f"no images to classify in {args.new}")
    frame = predictions_frame(probe, new)
    path = write_csv(frame, out / "predictions.csv")
    print(f"palaeo-ssl classify: {len(frame)} images classified with a {probe.display_name} probe "
          f"({args.protocol}) trained on {int((labelled.labels >= 0).sum())} labelled images, "
          f"{len(probe.class_names)} classes")
    counts = frame["predicted_class"].value_counts()
    for name, count in counts.head(10).items():
        print(f"  {name:30s} {count:7d}  mean probability {frame.loc[frame.predicted_class == name, 'probability'].mean():.2f}")
    if len(counts) > 10:
        print(f"  ... and {len(counts) - 10} more classes")
    if "true_class" in frame:
        known = frame["true_class"].isin(probe.class_names)
        if known.any():
            acc = float((frame.loc[known, "true_class"] == frame.loc[known, "predicted_class"]).mean())
            print(f"  {int(known.sum())} images carry a known label: {100 * acc:.1f}% agree with the prediction")
    print(f"wrote {path}")
    return 0
