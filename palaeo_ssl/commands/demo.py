"""``palaeo-ssl demo``: the whole pipeline on the example dataset, with the real weights when they can be had."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from ..backbone import DEFAULT_MODEL
    from ..demo import DEMO_DATA, DEMO_OUT, SMOKE_SUFFIX

    p = sub.add_parser(
        "demo",
        help="the whole pipeline on data/example (real DINOv3 weights if available, else a marked random-weight check)",
        description=(
            "Run everything (embeddings, probes, few-shot, morphospace, explorer, report) on the example dataset. "
            "With access to the real weights (a token of an account that accepted the DINOv3 licence, a cached copy "
            f"or --model FOLDER) the results land in {DEMO_OUT}. Without, one line says why and how to get them, "
            f"and the same pipeline runs on a tiny random-weight model into {DEMO_OUT}{SMOKE_SUFFIX}: every output "
            "of that run says 'random weights: a pipeline check, not a result'."
        ),
    )
    p.add_argument("--data", default=DEMO_DATA, metavar="DATA", help=f"the images (default: {DEMO_DATA})")
    p.add_argument("--out", default=DEMO_OUT, metavar="OUT",
                   help=f"results folder (default: {DEMO_OUT}; a random-weight run writes to OUT{SMOKE_SUFFIX})")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model alias, Hugging Face id or local folder (default: {DEFAULT_MODEL})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backbone import RANDOM_WEIGHTS_NOTICE
    from ..demo import run_demo

    res = run_demo(args.data, out=args.out, model=args.model, progress=not args.no_progress)
    out = res.plan.out
    print(f"\nresults in {out}" + (f"  ({RANDOM_WEIGHTS_NOTICE})" if res.plan.random_weights else ""))
    for name, what in (("README.md", "what every file shows"), ("explorer.html", "the explorer, open in a browser"),
                       ("manifest.json", "versions, settings, timings")):
        if (out / name).exists():
            print(f"  {out / name}: {what}")
    return 0
