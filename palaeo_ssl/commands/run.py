"""``palaeo-ssl run``: from a folder of images to a paper-ready results folder."""

from __future__ import annotations

import argparse

from .options import (EXTRACTION, EXTRACTION_SPEED, add_data_argument, add_extraction_options, add_option, add_protocol, defaults,
                      library_kwargs)


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "everything for one dataset: embeddings, probes, few-shot, morphospace, explorer, report"


def register(sub) -> None:
    from ..extract import extract_embeddings
    from ..pipeline import Pipeline, run_pipeline
    from ..reference import DATASETS

    library = defaults(run_pipeline, Pipeline, extract_embeddings)
    p = sub.add_parser(
        "run",
        help=HELP,
        description=(
            "Embed DATA (cached), then run the cross-validated probes and few-shot analysis, the morphospace "
            "analysis (projections, clustering, disparity, outliers, suspect labels) and the interactive "
            "explorer, writing everything into OUT with manifest.json and a README.md that explains every file. "
            "A rerun reuses every stage whose inputs did not change."
        ),
    )
    add_data_argument(p)
    add_option(p, library, "out", required=True, metavar="OUT", help="results folder, e.g. results/my_dataset")
    add_protocol(p, "paper: exactly Rodgers (2025); standard: the sound protocol; both: each in its own "
                    "sub-folder (default: {default})", with_all=True)
    add_option(p, library, "reference", choices=list(DATASETS),
               help="a dataset of Rodgers (2025): set this run's key figures beside the published ones "
                    "(reference_comparison.csv)")
    add_option(p, library, "seed")
    add_option(p, library, "episodes")
    add_option(p, library, "repeats")
    add_option(p, library, "literature_best",
               help="best published top-1 accuracy (fraction) drawn on the figures (default: the paper's "
                    "CNN figure when --reference is given)")
    add_option(p, library, "taxonomy")
    add_option(p, library, "max_train_images", help="as probe's --max-train; with --protocol both it applies to the "
                                                    "standard protocol only (default: 10000)")
    add_option(p, library, "probe_device")
    p.add_argument("--no-explorer", dest="explorer", action="store_false", help="do not write explorer.html")
    p.add_argument("--force", action="store_true", help="recompute every analysis stage (embeddings stay cached)")
    add_option(p, library, "label_budget", type=int, metavar="N",
               help="when DATA has unlabelled images: how many to suggest for labelling next "
                    "(labels/suggestions.csv, labels/to_label.csv) (default: {default})")
    add_extraction_options(p, library)
    for param in EXTRACTION_SPEED:
        add_option(p, library, param)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import run_pipeline

    res = run_pipeline(args.data, out=args.out, **library_kwargs(
        args, "protocol", "reference", "seed", "episodes", "repeats", "literature_best", "taxonomy", "explorer",
        "max_train_images", "probe_device", "force", "progress", "strict", "label_budget", "accept_predicted",
        *EXTRACTION,
        *EXTRACTION_SPEED))
    m = res.manifest
    print(f"\nresults in {res.out}")
    print(f"  {m['counts']['images']} images, {m['counts']['labelled']} labelled, {m['counts']['classes']} classes, "
          f"{m['counts']['skipped']} skipped")
    for name, s in m["stages"].items():
        took = "reused" if s["reused"] else f"{s['seconds']:.1f} s"
        print(f"  {name:<22} {took}")
    if res.comparison is not None:
        cmp = res.comparison
        sub = cmp[(cmp.section == "classification") & (cmp.metric == "top-1 accuracy")].dropna()
        for _, r in sub.iterrows():
            print(f"  {r['setting']:<12} {r['method']:<22} published {r['published']:.3f}  this run "
                  f"{r['this_run']:.3f}  ({r['difference']:+.3f})")
    print(f"  open {res.out / 'README.md'} for what every file shows"
          + (f", and {res.out / 'explorer.html'} in a browser" if args.explorer else ""))
    return 0
