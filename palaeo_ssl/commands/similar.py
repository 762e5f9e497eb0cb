"""``palaeo-ssl similar``: the stored specimens most similar to a new image."""

from __future__ import annotations

import argparse

from .options import add_option, defaults, library_kwargs


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "find the stored specimens most similar to a new image"


def register(sub) -> None:
    from ..retrieval import find_similar

    library = defaults(find_similar)
    p = sub.add_parser(
        "similar",
        help=HELP,
        description=(
            "Embed IMAGE with the model and settings recorded in the embedding store and list the K stored "
            "images with the highest cosine similarity. With --out, also write the list as CSV and a contact "
            "sheet (PNG and PDF) with the query first."
        ),
    )
    p.add_argument("embeddings", metavar="EMBEDDINGS",
                   help="an embedding store, or the --out folder of 'palaeo-ssl extract'")
    p.add_argument("image", metavar="IMAGE", help="the new image file")
    add_option(p, library, "k", type=int, metavar="K", help="how many similar specimens to list (default: {default})")
    add_option(p, library, "out", help="folder for similar_<image>.csv and the contact sheet similar_<image>.png/.pdf")
    add_option(p, library, "device", help="where to run the model: auto, cpu, cuda, cuda:N or mps (default: {default})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..retrieval import find_similar

    res = find_similar(args.embeddings, args.image, **library_kwargs(args, "k", "out", "device"))
    table = res.table
    width = max([len(p) for p in table["path"]] + [4])
    print(f"stored specimens most similar to {args.image} (cosine similarity):")
    print(f"{'rank':>4}  {'path':<{width}}  {'class':<20} similarity")
    for r in table.itertuples():
        print(f"{r.rank:>4}  {r.path:<{width}}  {(r.class_name or '-'):<20} {r.similarity:.4f}")
    for f in res.files:
        if f.suffix in (".csv", ".png"):
            print(f"written: {f}")
    return 0
