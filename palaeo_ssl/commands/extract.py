"""``palaeo-ssl extract``: embed a folder or manifest of images into a cached store."""

from __future__ import annotations

import argparse

from .options import EXTRACTION, EXTRACTION_SPEED, add_data_argument, add_extraction_options, add_option, defaults, library_kwargs


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "embed every image of a folder or manifest (cached, resumable)"


def register(sub) -> None:
    from ..extract import extract_embeddings

    library = defaults(extract_embeddings)
    p = sub.add_parser(
        "extract",
        help=HELP,
        description=(
            "Embed every image under DATA with a frozen backbone and store the features under OUT. "
            "Reruns compute only new or changed images; an interrupted run resumes. Unreadable files are "
            "skipped and listed in OUT/skipped.csv."
        ),
    )
    add_data_argument(p)
    add_option(p, library, "out", required=True, metavar="OUT", help="output folder for the embedding store")
    add_extraction_options(p, library)
    for param in EXTRACTION_SPEED:
        add_option(p, library, param)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..extract import ExtractionSummary, extract_embeddings

    emb = extract_embeddings(args.data, out=args.out, **library_kwargs(args, *EXTRACTION, *EXTRACTION_SPEED,
                                                                             "strict", "progress"))
    summary = ExtractionSummary(**emb.meta["extraction"])
    print(summary.text())
    print(f"embeddings written to {summary.store}")
    return 0
