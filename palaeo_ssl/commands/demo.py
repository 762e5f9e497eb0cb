"""``palaeo-ssl demo``: the whole pipeline on the example dataset, with the real weights when they can be had."""

from __future__ import annotations

import argparse


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "the whole pipeline on data/example (real DINOv3 weights if available, else a marked random-weight check)"


def register(sub) -> None:
    from ..demo import DEMO_OUT, SMOKE_SUFFIX, run_demo
    from .options import add_option, defaults

    p = sub.add_parser(
        "demo",
        help=HELP,
        description=(
            "Run everything (embeddings, probes, few-shot, morphospace, explorer, report) on the example dataset. "
            "With access to the real weights (a token of an account that accepted the DINOv3 licence, a cached copy "
            f"or --model FOLDER) the results land in {DEMO_OUT}. Without, one line says why and how to get them, "
            f"and the same pipeline runs on a tiny random-weight model into {DEMO_OUT}{SMOKE_SUFFIX}: every output "
            "of that run says 'random weights: a pipeline check, not a result'."
        ),
    )
    library = defaults(run_demo)
    p.add_argument("data", metavar="DATA", nargs="?", default=library["data"],
                   help="the images (default: {})".format(library["data"]))
    add_option(p, library, "out", help=f"results folder (default: {{default}}; a random-weight run writes to "
                                        f"OUT{SMOKE_SUFFIX})")
    add_option(p, library, "model", help="model alias, Hugging Face id or local folder (default: {default})")
    add_option(p, library, "progress")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import RANDOM_WEIGHTS_NOTICE
    from ..demo import run_demo
    from .options import library_kwargs

    res = run_demo(args.data, **library_kwargs(args, "out", "model", "progress"))
    out = res.plan.out
    print(f"\nresults in {out}" + (f"  ({RANDOM_WEIGHTS_NOTICE})" if res.plan.random_weights else ""))
    for name, what in (("README.md", "what every file shows"), ("explorer.html", "the explorer, open in a browser"),
                       ("manifest.json", "versions, settings, timings")):
        if (out / name).exists():
            print(f"  {out / name}: {what}")
    return 0
