"""``palaeo-ssl extract``: embed a folder or manifest of images into a cached store."""

from __future__ import annotations

import argparse

from .options import EXTRACTION, EXTRACTION_SPEED, add_data_argument, add_extraction_options, add_option, defaults, library_kwargs


#: the options of extraction past one machine (``extract`` only)
CLUSTER = ("shard", "engine", "address", "gpus_per_actor", "actors")

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
    cluster = p.add_argument_group("past one machine (README: Shards, Ray)")
    add_option(cluster, library, "shard", metavar="I/N",
               help="embed only shard I of N (0 <= I < N, images assigned by a hash of their path) into the "
                    "shared store, without consolidating: one task of a cluster array job "
                    "(e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); afterwards the same command "
                    "without --shard consolidates and computes whatever is still missing")
    add_option(cluster, library, "engine", choices=("local", "ray"),
               help="local: this process and its decoding workers; ray: a Ray Data pipeline (CPU decoding tasks, "
                    "an actor pool embedding; needs requirements-cluster.txt) (default: {default})")
    add_option(cluster, library, "address", metavar="ADDR",
               help="--engine ray: the Ray cluster to join (ray://HOST:10001, or auto for the one this machine "
                    "belongs to; default: a running local cluster, else a new one here)")
    add_option(cluster, library, "gpus_per_actor", type=float, metavar="G",
               help="--engine ray: GPUs per embedding actor, fractions share a GPU (default: 1 when the cluster "
                    "has GPUs, else CPU actors)")
    add_option(cluster, library, "actors", type=int, metavar="N",
               help="--engine ray: embedding actors (default: one per GPU share; on CPUs 2, or one per 4 CPUs "
                    "past 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..extract import ExtractionSummary, extract_embeddings

    emb = extract_embeddings(args.data, out=args.out, **library_kwargs(args, *EXTRACTION, *EXTRACTION_SPEED,
                                                                        *CLUSTER, "strict", "progress",
                                                                        "accept_predicted"))
    if args.shard is not None:  # a shard: its own summary, nothing consolidated
        print(emb.text())
        return 0
    summary = ExtractionSummary(**emb.meta["extraction"])
    print(summary.text())
    print(f"embeddings written to {summary.store}")
    return 0
