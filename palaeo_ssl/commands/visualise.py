"""``palaeo-ssl visualise``: what the model sees in one specimen (PCA colours, foreground, attention, correspondences)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in pixels (e.g. 120,340); got {text!r}") from None
    return x, y


def _threshold(text: str) -> float | str:
    if text.lower() == "otsu":
        return "otsu"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'otsu' or a number between 0 and 1; got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"the threshold is on the scaled [0, 1) foreground score; got {value}")
    return value


def register(subparsers) -> None:
    from ..backbone import DEFAULT_MODEL, DEVICES, DTYPES
    from ..patches import DEFAULT_SIZE

    p = subparsers.add_parser(
        "visualise", aliases=["visualize"],
        help="show what the model sees in one specimen: PCA colours, foreground, attention, correspondences",
        description=(
            "Run the model on one image at its own aspect ratio and write, as PNG and PDF: pca_rgb and foreground "
            "(bare pictures at the photograph's pixel size, to lay over it), overlay, attention_cls, attention_heads, "
            "and, where asked, pca_shared_basis (--basis) and correspondence (--point / --compare). "
            "visualise.json records the settings and the numbers behind the figures."
        ),
    )
    p.add_argument("image", metavar="IMAGE", help="the specimen's image file")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model alias, Hugging Face id or local folder (default {DEFAULT_MODEL})")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the figures (created if needed)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE,
                   help=f"longer image side fed to the model, in pixels, a multiple of the patch size "
                        f"(default {DEFAULT_SIZE}); the shorter side keeps the aspect ratio")
    p.add_argument("--basis", nargs="+", metavar="IMG", default=None,
                   help="further images: fit one PCA colour basis on all of them and IMAGE, so that the same colour "
                        "means the same feature in every specimen (writes pca_shared_basis)")
    p.add_argument("--point", type=_point, default=None, metavar="X,Y",
                   help="pixel of IMAGE (from the top-left corner) whose patch is compared with every other patch "
                        "(writes correspondence; default with --compare: the foreground's centre)")
    p.add_argument("--compare", metavar="IMG", default=None,
                   help="a second image: find the patch most similar to the chosen patch of IMAGE in it "
                        "(writes correspondence)")
    p.add_argument("--threshold", type=_threshold, default="otsu",
                   help="foreground cut on the [0, 1] first-principal-component score: 'otsu' (default) or a number")
    p.add_argument("--invert-foreground", action="store_true",
                   help="take the other side of the first principal component as the object "
                        "(when the automatic choice picks the background)")
    p.add_argument("--background", choices=("black", "grey"), default="black",
                   help="how pca_rgb draws background patches: black (default) or the greyed photograph")
    p.add_argument("--device", default="auto", help=f"where to run the model: {', '.join(DEVICES)} or cuda:N (default auto)")
    p.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="model precision (default auto: bfloat16 on GPUs that support it, float32 on CPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backbone import dtype_name, load_backbone
    from ..errors import UserError
    from ..patches import load_rgb, match, shared_basis, view_specimen
    from ..plots.patches import write_specimen_figures
    from ..report import library_versions, write_json

    t0 = time.perf_counter()
    images = [args.image] + list(args.basis or []) + ([args.compare] if args.compare else [])
    pictures = {p: load_rgb(p) for p in dict.fromkeys(images)}  # fail fast on a bad path, before loading the model
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; give a folder")
    backbone = load_backbone(args.model, args.device, args.dtype)
    orientation = "flip" if args.invert_foreground else "auto"
    kw = dict(size=args.size, threshold=args.threshold, orientation=orientation)

    view = view_specimen(backbone, pictures[args.image], attention=True, name=Path(args.image).name, **kw)
    others = {}
    for p in dict.fromkeys(images[1:]):
        if p != args.image:
            others[p] = view_specimen(backbone, pictures[p], attention=False, name=Path(p).name, **kw)

    basis = None
    if args.basis:
        views = [view] + [others[p] for p in dict.fromkeys(args.basis) if p != args.image]
        _, colours = shared_basis(views)
        basis = (views, colours)
    corr = other = None
    if args.point is not None or args.compare:
        other = (view if args.compare == args.image else others[args.compare]) if args.compare else None
        corr = match(view, args.point, other)

    files = write_specimen_figures(view, out, background=args.background, basis=basis, corr=corr, other=other)
    fg = view.foreground
    summary = {
        "image": str(Path(args.image).resolve()),
        "model_id": backbone.model_id, "revision": backbone.revision,
        "device": str(backbone.device), "dtype": dtype_name(backbone.dtype),
        "size": args.size, "image_size": list(view.image_size),
        "input_size": [view.tokens.input_image.shape[1], view.tokens.input_image.shape[0]],
        "patch_size": backbone.patch_size, "grid": list(view.grid),
        "num_register_tokens": backbone.num_register_tokens,
        "foreground": {"method": fg.method, "threshold": fg.threshold, "flipped": fg.flipped,
                       "fraction": fg.fraction, "pc1_explained_variance": fg.explained_variance},
        "background": args.background,
        "shared_basis": [v.name for v in basis[0]] if basis else None,
        "correspondence": None if corr is None else {
            "query_patch": list(corr.query), "query_xy": list(corr.query_xy),
            "point": list(args.point) if args.point else "foreground centre",
            "compare": args.compare, "best_patch": list(corr.best) if corr.best else None,
            "best_xy": list(corr.best_xy) if corr.best_xy else None, "best_similarity": corr.best_similarity,
        },
        "files": {k: [p.name for p in v] for k, v in files.items()},
        "seconds": round(time.perf_counter() - t0, 2),
        # distribution names as keys (what visualise.json has always recorded)
        "versions": library_versions(("palaeo-ssl", "torch", "transformers", "numpy", "scikit-learn",
                                      "matplotlib", "pillow")),
    }
    write_json(out / "visualise.json", summary)

    h, w = view.grid
    print(f"{view.name}: {view.image_size[0]}x{view.image_size[1]} px -> model input "
          f"{summary['input_size'][0]}x{summary['input_size'][1]} ({h}x{w} patches of {backbone.patch_size} px), "
          f"{backbone.model_id} on {backbone.device} ({summary['dtype']})")
    print(f"foreground: {fg.fraction:.0%} of patches ({fg.method} cut {fg.threshold:.2f} on the PC1 score, "
          f"PC1 explains {fg.explained_variance:.0%} of patch variance)")
    if corr is not None and corr.best is not None:
        print(f"correspondence: patch {corr.query} of {view.name} best matches patch {corr.best} of "
              f"{other.name} (cosine {corr.best_similarity:.3f})")
    print(f"wrote {len(files)} figures (PNG + PDF) and visualise.json to {out} in {summary['seconds']:.1f} s:")
    print("  " + ", ".join(files))
    return 0
