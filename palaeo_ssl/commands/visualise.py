"""``palaeo-ssl visualise``: what the model sees in one specimen (PCA colours, foreground, attention, correspondences)."""

from __future__ import annotations

import argparse

from .options import add_option, defaults, library_kwargs


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "show what the model sees in one specimen: PCA colours, foreground, attention, correspondences"


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
    from ..backbone import DEVICES, DTYPES
    from ..patches.visualise import BACKGROUNDS, run_visualise, visualise_specimen

    library = defaults(visualise_specimen, run_visualise)
    p = subparsers.add_parser(
        "visualise", aliases=["visualize"],
        help=HELP,
        description=(
            "Run the model on one image at its own aspect ratio and write, as PNG and PDF: pca_rgb and foreground "
            "(bare pictures at the photograph's pixel size, to lay over it), overlay, attention_cls and "
            "attention_heads (models with a class token: not SigLIP, not a ConvNeXt), and, where asked, pca_shared_basis (--basis) and correspondence (--point / --compare). "
            "visualise.json records the settings and the numbers behind the figures."
        ),
    )
    p.add_argument("image", metavar="IMAGE", help="the specimen's image file")
    add_option(p, library, "model", help="model alias, Hugging Face id or local folder (default {default})")
    add_option(p, library, "out", help="folder for the figures (created if needed)")
    add_option(p, library, "size", type=int,
               help="longer image side fed to the model, in pixels, a multiple of the patch size "
                    "(default {default}); the shorter side keeps the aspect ratio")
    add_option(p, library, "basis", nargs="+", metavar="IMG",
               help="further images: fit one PCA colour basis on all of them and IMAGE, so that the same colour "
                    "means the same feature in every specimen (writes pca_shared_basis)")
    add_option(p, library, "point", type=_point, metavar="X,Y",
               help="pixel of IMAGE (from the top-left corner) whose patch is compared with every other patch "
                    "(writes correspondence; default with --compare: the foreground's centre)")
    add_option(p, library, "compare", metavar="IMG",
               help="a second image: find the patch most similar to the chosen patch of IMAGE in it "
                    "(writes correspondence)")
    add_option(p, library, "threshold", type=_threshold,
               help="foreground cut on the [0, 1] first-principal-component score: '{default}' (default) or a number")
    p.add_argument("--invert-foreground", dest="invert_foreground", action="store_true",
                   help="take the other side of the first principal component as the object "
                        "(when the automatic choice picks the background)")
    add_option(p, library, "background", choices=BACKGROUNDS,
               help="how pca_rgb draws background patches: {default} (default) or the greyed photograph")
    add_option(p, library, "device",
               help=f"where to run the model: {', '.join(DEVICES)} or cuda:N (default {{default}})")
    add_option(p, library, "dtype", choices=DTYPES,
               help="model precision (default {default}: bfloat16 on GPUs that support it, float32 on CPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..patches.visualise import run_visualise

    res = run_visualise(args.image, args.out, **library_kwargs(
        args, "background", "model", "size", "basis", "point", "compare", "threshold", "invert_foreground",
        "device", "dtype"))
    view, s = res.view, res.record
    corr, other = res.correspondence, res.other
    fg = view.foreground
    h, w = view.grid
    print(f"{view.name}: {view.image_size[0]}x{view.image_size[1]} px -> model input "
          f"{s['input_size'][0]}x{s['input_size'][1]} ({h}x{w} patches of {s['patch_size']} px), "
          f"{s['model_id']} on {s['device']} ({s['dtype']})")
    if s.get("attention"):
        print(f"attention maps: none ({s['attention']})")
    print(f"foreground: {fg.fraction:.0%} of patches ({fg.method} cut {fg.threshold:.2f} on the PC1 score, "
          f"PC1 explains {fg.explained_variance:.0%} of patch variance)")
    if corr is not None and corr.best is not None:
        print(f"correspondence: patch {corr.query} of {view.name} best matches patch {corr.best} of "
              f"{other.name} (cosine {corr.best_similarity:.3f})")
    print(f"wrote {len(s['files'])} figures (PNG + PDF) and visualise.json to {args.out} in {s['seconds']:.1f} s:")
    print("  " + ", ".join(s["files"]))
    return 0
