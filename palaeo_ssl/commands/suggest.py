"""``palaeo-ssl suggest``: which specimens to label next, and which look unlike anything labelled."""

from __future__ import annotations

import argparse

from .options import add_option, defaults, library_kwargs


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "suggest which specimens to label next (and list those unlike any labelled class)"


def register(sub) -> None:
    from ..labels import STRATEGIES, run_suggest

    library = defaults(run_suggest)
    p = sub.add_parser(
        "suggest",
        help=HELP,
        description=(
            "Pick --budget unlabelled specimens of an embedding store to label next. Without labels: the most "
            "typical specimen of each of BUDGET k-means clusters (typical) or a greedy cover of the space "
            "(diverse); with labels: clusters holding no labelled specimen first, then the specimens the "
            "standard logistic regression is least sure of, one per cluster per round (uncertain). Writes "
            "OUT/suggestions.csv (rank, path, strategy, reason), a contact sheet suggestions.png in rank order, "
            "and to_label.csv: fill in its label column and pass it as DATA to any command; its labels are "
            "added to the dataset's (a label the dataset already has is never overwritten: a conflict is "
            "reported). With labels, also novelty.csv: every unlabelled specimen by its distance to the "
            "labelled ones, and a contact sheet novelty.png of the 25 most distant."
        ),
    )
    p.add_argument("embeddings", metavar="EMBEDDINGS",
                   help="an embedding store, or the --out folder of 'palaeo-ssl extract' or 'palaeo-ssl run'")
    add_option(p, library, "budget", type=int, metavar="N", help="how many specimens to suggest")
    add_option(p, library, "out", help="folder for the suggestions")
    add_option(p, library, "strategy", choices=STRATEGIES,
               help="auto: typical without labels, uncertain with labels of two or more classes "
                    "(default: {default})")
    add_option(p, library, "seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..labels import run_suggest

    res = run_suggest(args.embeddings, **library_kwargs(args, "budget", "out", "strategy", "seed"))
    result = res["result"]
    emb = result.embeddings
    n_lab = int((emb.labels >= 0).sum())
    print(f"palaeo-ssl suggest: {len(result.index)} of {len(emb) - n_lab} unlabelled specimens suggested "
          f"({result.strategy}" + (f", chosen by auto" if result.requested == "auto" else "") +
          f"; {n_lab} labelled) in {res['timings']['suggest']:.1f} s")
    for r in result.table.head(10).itertuples():
        print(f"  {r.rank:4d}  {r.path}  ({r.reason})")
    if len(result.table) > 10:
        print(f"  ... {len(result.table) - 10} more in suggestions.csv")
    if result.novelty is not None:
        top = result.novelty.table.head(3)
        print("  most unlike any labelled class: " + ", ".join(f"{p} ({d:.3f})" for p, d in zip(top.path, top.novelty)))
    for path in res["files"]:
        if path.suffix != ".pdf":
            print(f"wrote {path}")
    print("next: fill in the label column of to_label.csv and pass it as DATA, e.g. "
          "'palaeo-ssl run OUT/to_label.csv' (labels are added to the dataset's)")
    return 0
