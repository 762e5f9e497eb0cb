"""``palaeo-ssl export``: labels and predictions for EcoTaxa, a Darwin Core Archive, or a plain CSV."""

from __future__ import annotations

import argparse

from .options import add_option, defaults, library_kwargs

#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "labels and predictions for EcoTaxa, GBIF / collection databases (Darwin Core) or a CSV"


def register(sub) -> None:
    from ..exchange import FORMATS, run_export
    from ..exchange.dwca import BASES

    library = defaults(run_export)
    p = sub.add_parser(
        "export",
        help=HELP,
        description=(
            "Write the identifications in SOURCE for another tool: ecotaxa, a folder to zip and upload to EcoTaxa "
            "(ecotaxa_<name>.tsv and the images; predictions as 'predicted' with their probability, labels as "
            "'validated', abstentions with their best guess); dwca, a Darwin Core Archive <name>_dwca.zip "
            "(occurrences with identifications, multimedia, meta.xml, eml.xml) for GBIF or a collection database; "
            "csv, <name>_identifications.csv, the manifest every command reads plus the prediction columns. "
            "Any of them given back as DATA adds its validated labels to the dataset."
        ),
    )
    p.add_argument("source", metavar="SOURCE",
                   help="a results folder of 'palaeo-ssl classify' (predictions.csv), of 'palaeo-ssl suggest' (a "
                        "filled to_label.csv), a labels CSV downloaded from the explorer, or any DATA")
    add_option(p, library, "format", required=True, choices=FORMATS, help="ecotaxa, dwca or csv")
    add_option(p, library, "out", required=True, metavar="DIR", help="folder to write into (created if needed)")
    images = p.add_mutually_exclusive_group()
    images.add_argument("--link-images", dest="link_images", action="store_true",
                        help="link the images into DIR/images instead of copying them (symbolic links)")
    images.add_argument("--no-images", dest="images", action="store_false",
                        help="write no images: paths lead from DIR to the images where they are (for use on this "
                             "machine; EcoTaxa and GBIF need the images with the files)")
    add_option(p, library, "store", metavar="STORE",
               help="classify results: the store classify read, when it is not SOURCE/embeddings (classify was "
                    "given a store rather than a folder of images)")
    add_option(p, library, "taxonomy", help="CSV of higher ranks, columns class,genus[,family,...]: written to the "
                                            "Darwin Core ranks (kingdom ... subgenus) where given")
    d = p.add_argument_group("Darwin Core (--format dwca)")
    add_option(d, library, "media_base_url", metavar="URL",
               help="where the images will be published: multimedia identifiers become URL/images/<path> "
                    "(default: paths relative to the archive's folder)")
    add_option(d, library, "basis_of_record", choices=BASES, metavar="TERM",
               help="basisOfRecord of every occurrence: " + ", ".join(BASES) + " (default: {default})")
    add_option(d, library, "title", metavar="TEXT", help="the dataset's title in eml.xml (default: '<name>: "
                                                         "identifications by palaeo-ssl')")
    add_option(p, library, "progress")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..exchange import run_export

    res = run_export(args.source, args.format, args.out, **library_kwargs(
        args, "store", "taxonomy", "images", "link_images", "media_base_url", "basis_of_record", "title",
        "progress"))
    ids, c = res["result"], res["result"].counts()
    print(f"palaeo-ssl export: {len(ids)} images of {ids.name} as {args.format}: {c['human']} identified by a "
          f"person, {c['machine']} by palaeo-ssl, {c['abstained']} left as a best guess, {c['none']} without "
          f"identification ({res['timings']['total']:.1f} s)")
    for path in res["files"]:
        print(f"wrote {path}")
    if args.format == "ecotaxa":
        print("  zip that folder and import it into an EcoTaxa project (EcoTaxa asks you to map class names it "
              "does not know to its taxonomy)")
    return 0
