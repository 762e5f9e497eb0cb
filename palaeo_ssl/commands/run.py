"""``palaeo-ssl run``: from a folder of images to a paper-ready results folder."""

from __future__ import annotations

import argparse

from ..errors import UserError
from .extract import add_data_argument, add_model_options, add_run_flags, extract_kwargs


def register(sub) -> None:
    from ..reference import DATASETS

    p = sub.add_parser(
        "run",
        help="everything for one dataset: embeddings, probes, few-shot, morphospace, explorer, report",
        description=(
            "Embed DATA (cached), then run the cross-validated probes and few-shot analysis, the morphospace "
            "analysis (projections, clustering, disparity, outliers, suspect labels) and the interactive "
            "explorer, writing everything into OUT with manifest.json and a README.md that explains every file. "
            "A rerun reuses every stage whose inputs did not change."
        ),
    )
    add_data_argument(p)
    p.add_argument("--out", required=True, metavar="OUT", help="results folder, e.g. results/my_dataset")
    p.add_argument("--protocol", choices=("paper", "standard", "both"), default="both",
                   help="paper: exactly Rodgers (2025); standard: the sound protocol; both: each in its own "
                        "sub-folder (default: both)")
    p.add_argument("--reference", choices=list(DATASETS), default=None,
                   help="a dataset of Rodgers (2025): set this run's key figures beside the published ones "
                        "(reference_comparison.csv)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random step (default: 0)")
    p.add_argument("--episodes", type=int, default=50, metavar="N",
                   help="few-shot episodes per shots value (default: 50)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="cross-validation repeats (default: 10 for paper, 5 for standard)")
    p.add_argument("--literature-best", type=float, default=None, metavar="X",
                   help="best published top-1 accuracy (fraction) drawn on the figures (default: the paper's "
                        "CNN figure when --reference is given)")
    p.add_argument("--no-explorer", action="store_true", help="do not write explorer.html")
    p.add_argument("--force", action="store_true", help="recompute every analysis stage (embeddings stay cached)")
    add_model_options(p)
    add_run_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import run_pipeline

    if args.episodes < 1:
        raise UserError("--episodes must be at least 1")
    if args.repeats is not None and args.repeats < 1:  # as `probe`: 0 would silently mean the default
        raise UserError("--repeats must be at least 1")
    if args.literature_best is not None and not 0 < args.literature_best <= 1:
        raise UserError("--literature-best is a fraction in (0, 1], e.g. 0.874")
    res = run_pipeline(args.data, out=args.out, protocol=args.protocol, reference=args.reference, seed=args.seed,
                       episodes=args.episodes, repeats=args.repeats, literature_best=args.literature_best,
                       explorer=not args.no_explorer, force=args.force, progress=not args.no_progress,
                       strict=args.strict, **extract_kwargs(args))
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
          + (f", and {res.out / 'explorer.html'} in a browser" if not args.no_explorer else ""))
    return 0
