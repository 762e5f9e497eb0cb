"""``palaeo-ssl classify``: label new images with a probe trained on labelled embeddings."""

from __future__ import annotations

import argparse

from .options import add_option, add_protocol, defaults, library_kwargs


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "classify new images or embeddings with a probe trained on labelled embeddings"


def register(sub) -> None:
    from ..probes.predictions import classify

    library = defaults(classify)
    p = sub.add_parser(
        "classify",
        help=HELP,
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
    add_option(p, library, "labelled", metavar="LABELLED_EMBEDDINGS",
               help="embedding store whose labelled images train the probe")
    add_option(p, library, "probe", help="logreg, knn or centroid (default: {default})")
    add_protocol(p, "probe setting: standard (tuned C on standardised features; DINO-style kNN) or paper "
                    "(the reference's settings) (default: {default})")
    add_option(p, library, "seed", help="seed of the probe's random steps (default: {default})")
    add_option(p, library, "out", default=".", help="folder for predictions.csv (default: current folder)")
    add_option(p, library, "cache", metavar="DIR",
               help="where embeddings of an image folder are stored (default: OUT/embeddings)")
    add_option(p, library, "device", help="device for embedding images: auto, cpu, cuda, mps (default: {default})")
    add_option(p, library, "batch_size", help="images per forward pass when embedding")
    add_option(p, library, "workers", help="image-decoding workers when embedding")
    add_option(p, library, "progress", help="hide the progress bar")
    g = p.add_argument_group("abstention (calibrated probabilities; 'unassigned' below a threshold)")
    g.add_argument("--abstain", dest="abstain", action="store_true",
                   help="calibrate the probabilities on the labelled images by cross-validation and write "
                        "'unassigned' (with the best guess beside it) under the threshold; also writes "
                        "risk_coverage.csv/.png and calibration.json (threshold: --target-accuracy 0.95 unless given)")
    add_option(g, library, "min_probability", type=float, metavar="P",
               help="threshold: keep predictions whose calibrated probability is at least P (implies --abstain)")
    add_option(g, library, "target_accuracy", type=float, metavar="A",
               help="threshold: the largest fraction of predictions whose cross-validated accuracy reaches A, "
                    "e.g. 0.95 (implies --abstain)")
    add_option(g, library, "calibration", choices=("temperature", "isotonic"),
               help="temperature: one temperature on the log-probabilities (keeps the ranking); isotonic: a "
                    "monotone map of the top probability to the observed accuracy (default: {default})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..probes.predictions import run_classify

    res = run_classify(args.new, args.labelled, args.out, **library_kwargs(
        args, "probe", "protocol", "seed", "cache", "device", "batch_size", "workers", "progress", "abstain",
        "min_probability", "target_accuracy", "calibration"))
    result, frame = res["result"], res["result"].predictions
    print(f"palaeo-ssl classify: {len(frame)} images classified with a {result.probe.display_name} probe "
          f"({result.protocol}) trained on {result.n_labelled} labelled images, "
          f"{len(result.probe.class_names)} classes")
    counts = result.counts
    for name, count in counts.head(10).items():
        print(f"  {name:30s} {count:7d}  mean probability {frame.loc[frame.predicted_class == name, 'probability'].mean():.2f}")
    if len(counts) > 10:
        print(f"  ... and {len(counts) - 10} more classes")
    ab = result.abstention
    if ab is not None:
        chosen = (f"target accuracy {ab.target_accuracy:.2f}" if ab.target_accuracy is not None
                  else f"minimum probability {ab.min_probability:.2f}")
        state = (f"temperature {ab.calibrator.temperature:.4g}" if ab.calibrator.method == "temperature"
                 else "isotonic map")
        print(f"  calibrated by {ab.n_splits}-fold cross-validation on the labelled images ({state}); expected "
              f"calibration error {ab.ece_before:.3f} before, {ab.ece_after:.3f} after")
        print(f"  threshold {min(ab.threshold, 1.0):.3f} from the {chosen}: cross-validated accuracy "
              f"{ab.cv_accuracy:.3f} on {100 * ab.cv_coverage:.0f}% of the labelled images; "
              f"{result.n_unassigned} of {len(frame)} new images left unassigned")
    if result.agreement is not None:
        print(f"  {result.n_known} images carry a known label: {100 * result.agreement:.1f}% agree with the prediction")
    for path in res["files"]:
        print(f"wrote {path}")
    return 0
