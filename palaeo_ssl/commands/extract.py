"""``palaeo-ssl extract``: embed a folder or manifest of images into a cached store."""

from __future__ import annotations

import argparse

from ..backbone import ALIASES, DEFAULT_MODEL, DEVICES, DTYPES, POOLINGS, PREPROCESSINGS


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that embeds images."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model alias ({', '.join(ALIASES)}), Hugging Face id, or local folder "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--pooling", choices=POOLINGS, default="cls",
                   help="cls: the CLS/pooler feature (the paper's); mean: mean of patch tokens without CLS and "
                        "registers; cls+mean: both concatenated (default: cls)")
    p.add_argument("--preprocess", choices=PREPROCESSINGS, default="processor",
                   help="processor: squash to a square as the model's processor (the paper's); pad: keep the aspect "
                        "ratio and pad with --background (default: processor)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="input side in pixels, a multiple of the patch size (default: the processor's, 224)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="images per forward pass (default: 32 on CPU, 64 on GPU)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="image-decoding worker processes (default: 1 on a CPU with 2 or more cores, else 0; "
                        "on GPU one per core but one, at most 8; 0 = in-process)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto picks CUDA, then Apple MPS, then CPU (default: auto)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="auto: bfloat16 on GPUs that support it, float32 on CPU; bfloat16 on CPU is allowed "
                        "and faster on CPUs with bf16 instructions (default: auto)")
    p.add_argument("--background", default="black",
                   help="colour for transparent pixels and --preprocess pad: black, white, grey, #rrggbb or r,g,b "
                        "(default: black)")


def add_data_argument(p: argparse.ArgumentParser) -> None:
    """The DATA positional of every command that reads a dataset."""
    p.add_argument("data", metavar="DATA",
                   help="folder with one sub-folder per class, a flat folder (unlabelled), or a CSV manifest "
                        "with columns path,label[,specimen] (paths relative to the manifest)")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """--strict and --no-progress, as every command that extracts takes them."""
    p.add_argument("--strict", action="store_true",
                   help="exit with code 2 if any file could not be read (the readable images are still embedded "
                        "and saved)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def extract_kwargs(args: argparse.Namespace) -> dict:
    return dict(model=args.model, pooling=args.pooling, preprocess=args.preprocess, image_size=args.image_size,
                batch_size=args.batch_size, workers=args.workers, device=args.device, dtype=args.dtype,
                background=args.background)


def register(sub) -> None:
    p = sub.add_parser(
        "extract",
        help="embed every image of a folder or manifest (cached, resumable)",
        description=(
            "Embed every image under DATA with a frozen backbone and store the features under OUT. "
            "Reruns compute only new or changed images; an interrupted run resumes. Unreadable files are "
            "skipped and listed in OUT/skipped.csv."
        ),
    )
    add_data_argument(p)
    p.add_argument("--out", required=True, metavar="OUT", help="output folder for the embedding store")
    add_model_options(p)
    add_run_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..extract import ExtractionSummary, extract_embeddings

    emb = extract_embeddings(args.data, out=args.out, strict=args.strict, progress=not args.no_progress,
                             **extract_kwargs(args))
    summary = ExtractionSummary(**emb.meta["extraction"])
    print(summary.text())
    print(f"embeddings written to {summary.store}")
    return 0
