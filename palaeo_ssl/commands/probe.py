"""``palaeo-ssl probe``: cross-validated probes, learning curve and few-shot on an embedding store."""

from __future__ import annotations

import argparse

from ..errors import UserError
from . import comma_list


_floats = comma_list(float, "numbers")
_ints = comma_list(int, "integers")


def register(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="cross-validated linear/kNN/centroid probes, learning curve and few-shot",
        description=(
            "Train probes on frozen embeddings and measure how well they separate the classes: "
            "cross-validation at several data fractions, few-shot episodes, per-class metrics and a "
            "confusion matrix. Writes CSV and LaTeX tables, PNG/PDF figures and probe_run.json into OUT."
        ),
    )
    p.add_argument("embeddings", metavar="EMBEDDINGS",
                   help="an embedding store, or the --out folder of 'palaeo-ssl extract' (only labelled images are used)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the tables and figures")
    p.add_argument("--protocol", choices=("paper", "standard"), default="standard",
                   help="paper: exactly the protocol of Rodgers (2025), comparable with its published tables; "
                        "standard: repeated stratified (grouped by specimen) K-fold with nested learning-curve "
                        "subsets, tuned logistic regression, DINO-style kNN, intervals and paired comparisons "
                        "(default: standard)")
    p.add_argument("--probes", default=None, metavar="LIST",
                   help="comma-separated probes among logreg, knn, centroid (default: logreg,knn for paper; "
                        "all three for standard)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every random step; with --protocol paper, 0 reproduces the reference's seeds "
                        "(42 + repeat) (default: 0)")
    p.add_argument("--literature-best", type=float, default=None, metavar="X",
                   help="best published top-1 accuracy (fraction, e.g. 0.874), drawn as a line on the figures")
    p.add_argument("--fractions", type=_floats, default=None, metavar="LIST",
                   help="data fractions of the learning curve (default: 0.1,0.3,0.5,0.7,1.0)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="cross-validation repeats (default: 10 for paper, 5 for standard)")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="folds per repeat (default: 5)")
    p.add_argument("--shots", type=_ints, default=None, metavar="LIST",
                   help="labelled images per class in few-shot (default: 1,2,3,5,10,20)")
    p.add_argument("--episodes", type=int, default=50, metavar="N", help="few-shot episodes per shots value (default: 50)")
    p.add_argument("--query", type=int, default=15, metavar="Q",
                   help="standard few-shot: query images per class and episode (default: 15)")
    p.add_argument("--no-few-shot", action="store_true", help="skip the few-shot analysis")
    p.add_argument("--jobs", type=int, default=-1, metavar="N",
                   help="worker processes (default: -1, every CPU; results do not depend on it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..probes import FRACTIONS, SHOTS, run_probe_report
    from ..probes.classifiers import parse_probes

    if args.literature_best is not None and not 0 < args.literature_best <= 1:
        raise UserError("--literature-best is a fraction in (0, 1], e.g. 0.874 for 87.4%")
    if args.repeats is not None and args.repeats < 1:
        raise UserError("--repeats must be at least 1")
    if args.episodes < 1:
        raise UserError("--episodes must be at least 1")
    if args.query < 1:
        raise UserError("--query must be at least 1")
    probes = parse_probes(args.probes, args.protocol)
    fractions = args.fractions or list(FRACTIONS)
    shots = args.shots or list(SHOTS)
    res = run_probe_report(
        args.embeddings, args.out, protocol=args.protocol, probes=probes, seed=args.seed,
        literature_best=args.literature_best, few_shot=not args.no_few_shot, fractions=fractions,
        n_repeats=args.repeats, n_splits=args.folds, shots=shots, episodes=args.episodes, n_query=args.query,
        n_jobs=args.jobs, progress=not args.no_progress,
    )
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
