"""``palaeo-ssl probe``: cross-validated probes, learning curve and few-shot on an embedding store."""

from __future__ import annotations

import argparse

from . import comma_list
from ..protocol import choices, get_protocol
from .options import add_option, add_protocol, defaults, library_kwargs


_floats = comma_list(float, "numbers")
_ints = comma_list(int, "integers")


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "cross-validated linear/kNN/centroid probes, learning curve and few-shot"


def register(sub) -> None:
    from ..probes import run_probe_report

    library = defaults(run_probe_report)
    p = sub.add_parser(
        "probe",
        help=HELP,
        description=(
            "Train probes on frozen embeddings and measure how well they separate the classes: "
            "cross-validation at several data fractions, few-shot episodes, per-class metrics and a "
            "confusion matrix. Writes CSV and LaTeX tables, PNG/PDF figures and probe_run.json into OUT."
        ),
    )
    p.add_argument("embeddings", metavar="EMBEDDINGS",
                   help="an embedding store, or the --out folder of 'palaeo-ssl extract' (only labelled images are used)")
    add_option(p, library, "out", required=True, help="folder for the tables and figures")
    add_protocol(p, "paper: exactly the protocol of Rodgers (2025), comparable with its published tables; "
                    "standard: repeated stratified (grouped by specimen) K-fold with nested learning-curve "
                    "subsets, tuned logistic regression, DINO-style kNN, intervals and paired comparisons "
                    "(default: {default})")
    add_option(p, library, "probes", metavar="LIST",
               help="comma-separated probes among logreg, knn, centroid (default: logreg,knn for paper; "
                    "all three for standard)")
    add_option(p, library, "seed",
               help="seed of every random step; with --protocol paper, 0 reproduces the reference's seeds "
                    "(42 + repeat) (default: {default})")
    add_option(p, library, "literature_best")
    add_option(p, library, "taxonomy")
    add_option(p, library, "fractions", type=_floats, metavar="LIST",
               help="data fractions of the learning curve (default: {default})")
    add_option(p, library, "n_repeats")
    add_option(p, library, "n_splits", type=int, metavar="K",
               help="folds per repeat, at least 2 (default: the protocol's: "
                    + ", ".join(f"{get_protocol(n).cv_folds} for {n}" for n in choices()) + ")")
    add_option(p, library, "shots", type=_ints, metavar="LIST",
               help="labelled images per class in few-shot (default: {default})")
    add_option(p, library, "episodes")
    add_option(p, library, "max_train_images")
    add_option(p, library, "probe_device")
    add_option(p, library, "n_query", type=int, metavar="Q",
               help="standard few-shot: query images per class and episode (default: {default})")
    p.add_argument("--no-few-shot", dest="few_shot", action="store_false", help="skip the few-shot analysis")
    add_option(p, library, "n_jobs", type=int, metavar="N",
               help="worker processes (default: {default}, every CPU; results do not depend on it)")
    add_option(p, library, "progress")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..probes import run_probe_report

    res = run_probe_report(args.embeddings, args.out, **library_kwargs(
        args, "protocol", "probes", "seed", "literature_best", "few_shot", "fractions", "n_repeats", "n_splits",
        "shots", "episodes", "n_query", "n_jobs", "progress", "taxonomy", "max_train_images", "probe_device"))
    _summary(res, args)
    return 0


def _summary(res, args: argparse.Namespace) -> None:
    cv, fs, info = res.cv, res.few_shot, res.info
    print(f"palaeo-ssl probe ({args.protocol} protocol): {info['n_labelled_images']} labelled images, "
          f"{info['n_classes']} classes; majority-class baseline {100 * cv.baseline:.1f}%")
    t = cv.table
    print("\ntop-1 accuracy (%) by data fraction, mean ± std")
    names = list(dict.fromkeys(t["classifier"]))
    print("  fraction  " + "  ".join(f"{n:>22}" for n in names))
    for frac, g in t.groupby("train_fraction", sort=True):
        cells = []
        for n in names:
            row = g[g["classifier"] == n]
            cells.append(f"{100 * row['mean_top1_accuracy'].iloc[0]:15.1f} ± {100 * row['std_top1_accuracy'].iloc[0]:4.1f}"
                         if len(row) else f"{'--':>22}")
        print(f"  {frac:8g}  " + "  ".join(cells))
    if info["n_folds_skipped"]:
        print(f"  {info['n_folds_skipped']} fold(s) skipped because their training part lacked a class "
              "(see skipped_splits.csv)")
    if info["logreg_fits_at_max_iter"]:
        print(f"  {info['logreg_fits_at_max_iter']} of {info['logreg_fits']} logistic-regression fits stopped at "
              "max_iter=1000 before converging")
    if fs is not None and len(fs.table):
        ft = fs.table
        print("\nfew-shot top-1 accuracy (%), mean over episodes")
        print("  shots  " + "  ".join(f"{n:>22}" for n in names if n in set(ft["classifier"])))
        for k, g in ft.groupby("few_shot_values", sort=True):
            cells = [f"{100 * g[g['classifier'] == n]['mean_top1_accuracy'].iloc[0]:22.1f}"
                     for n in names if n in set(g["classifier"])]
            print(f"  {k:5d}  " + "  ".join(cells))
    timings = res.timings
    print("\ntime: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"wrote {len(res.files)} files to {args.out}")
