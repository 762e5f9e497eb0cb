"""``palaeo-ssl morphospace``: projections, clustering, disparity, outliers and suspect labels of a store."""

from __future__ import annotations

import argparse

from ..errors import UserError
from . import comma_list
from .options import add_option, add_protocol, defaults, library_kwargs


_names = comma_list(str, "class names")


#: the one line ``palaeo-ssl --help`` shows for this command
HELP = "projections, clusters, disparity with intervals, outliers and suspect labels"


def register(sub) -> None:
    from ..morphospace import run_morphospace

    library = defaults(run_morphospace)
    p = sub.add_parser(
        "morphospace",
        help=HELP,
        description=(
            "Analyse the morphospace of an embedding store without using the labels for fitting: PCA, UMAP and "
            "t-SNE projections (cached in OUT/projections.npz), clusterings scored against the labels, disparity "
            "with bootstrap intervals, per-class disparity, rarefaction, a distance histogram, per-image outlier "
            "scores and a ranked list of likely mislabelled images. Writes CSV and LaTeX tables, PNG/PDF figures "
            "and morphospace.json into OUT."
        ),
    )
    p.add_argument("embeddings", metavar="EMBEDDINGS",
                   help="an embedding store, or the --out folder of 'palaeo-ssl extract'")
    add_option(p, library, "out", help="folder for the tables and figures (created if needed)")
    add_protocol(p, "paper: the clusterings of Rodgers (2025) (KMeans with known and silhouette-chosen K, "
                    "Bayesian GMM, HDBSCAN with 2%% of N), comparable with its clustering_metrics.csv; "
                    "standard: those plus HDBSCAN with a size rule that scales, Ward, and stability over 5 "
                    "seeds (default: {default})")
    add_option(p, library, "seed")
    add_option(p, library, "taxonomy")
    add_option(p, library, "k_neighbours", type=int, metavar="K",
               help="nearest neighbours for the outlier and suspect-label scores (default: {default})")
    add_option(p, library, "n_boot", type=int, metavar="N",
               help="bootstrap replicates for the disparity intervals (default: {default})")
    add_option(p, library, "n_boot_std", type=int, metavar="N",
               help="bootstrap replicates for the std of pairwise distances, which needs a D x D Gram matrix "
                    "per replicate (default: {default})")
    # 0 here is "all images", None in the library (where 0 never silently means anything)
    tsne_max = library["tsne_max_points"]
    add_option(p, library, "tsne_max_points", type=int, metavar="N", default=0 if tsne_max is None else tsne_max,
               help="t-SNE runs on a seeded random subsample of N images above N (stated on the figure); "
                    "0 = all images (default: {default})")
    add_option(p, library, "rarefaction_max", type=int, metavar="N",
               help="largest subsample size of the rarefaction curves (default: {default})")
    p.add_argument("--compare-classes", type=_names, default=None, metavar="A,B,...",
                   help="permutation test of the disparity of these classes against those of --vs")
    p.add_argument("--vs", type=_names, default=None, metavar="C,D,...", help="the second group of --compare-classes")
    p.add_argument("--groups", default=None, metavar="CSV",
                   help="permutation test between two groups given by a column of this CSV manifest "
                        "(a 'path' column as in the store's index, and --group-column)")
    p.add_argument("--group-column", default=None, metavar="COLUMN", help="the column of --groups that names the group")
    p.add_argument("--group-values", nargs=2, default=None, metavar=("A", "B"),
                   help="the two values of --group-column to compare (needed when it holds more than two)")
    add_option(p, library, "n_permutations", type=int, metavar="N",
               help="permutations of the disparity test (default: {default})")
    add_option(p, library, "threads", type=int, metavar="N",
               help="BLAS/OpenMP threads (default: {default}; multi-threaded BLAS on the many small fits is several "
                    "times slower on a busy machine, raise it on an idle many-core one)")
    p.add_argument("--no-figures", dest="figures", action="store_false", help="write the tables only")
    add_option(p, library, "progress", help="hide the progress bar")
    p.set_defaults(func=run)


def _compare(args: argparse.Namespace) -> dict | None:
    """The permutation test the flags ask for (their combinations are checked here; the values by the library)."""
    compare = None
    if args.compare_classes or args.vs:
        if not (args.compare_classes and args.vs):
            raise UserError("--compare-classes and --vs go together: name the classes of both groups")
        compare = {"classes": (args.compare_classes, args.vs)}
    if args.group_values and not args.groups:
        raise UserError("--group-values needs --groups and --group-column (the CSV and the column it names values of)")
    if args.groups or args.group_column:
        if compare:
            raise UserError("use either --compare-classes/--vs or --groups/--group-column, not both")
        if not (args.groups and args.group_column):
            raise UserError("--groups needs --group-column (the column that names each image's group)")
        compare = {"table": args.groups, "column": args.group_column, "values": args.group_values}
    return compare


def run(args: argparse.Namespace) -> int:
    from ..morphospace import run_morphospace

    options = library_kwargs(args, "protocol", "seed", "k_neighbours", "n_boot", "n_boot_std", "rarefaction_max",
                             "n_permutations", "threads", "figures", "progress", "taxonomy")
    res = run_morphospace(args.embeddings, args.out, compare=_compare(args),
                          tsne_max_points=args.tsne_max_points or None,  # --tsne-max 0: all images
                          **options)
    print(summary_text(res, args.out))
    return 0


def summary_text(res, out) -> str:
    """One screen: counts, the best clustering per space, disparity with its interval, suspects, time."""
    info = res.info
    t = res.tables
    lines = [f"morphospace of {info['dataset']}: {info['n_images']} images x {info['n_features']} features, "
             f"{info['n_labelled']} labelled in {info['n_classes']} classes ({info['protocol']} protocol, seed {info['seed']})"]
    m = t["morphology"].iloc[0]
    lines.append(f"  mean pairwise cosine distance {m['mean_pairwise_distance']:.4f} "
                 f"[95% CI {m['mean_pairwise_distance_ci_low']:.4f}, {m['mean_pairwise_distance_ci_high']:.4f}], "
                 f"effective rank {m['effective_rank']:.1f}")
    ct = t["clustering"]
    if len(ct) and ct["ARI"].notna().any():
        for pipe, sub in ct.groupby("Pipeline", sort=False):
            best = sub.loc[sub["ARI"].idxmax()]
            lines.append(f"  {pipe}: best ARI {best['ARI']:.3f} ({best['Algorithm']}, {int(best['n_clusters'])} clusters, "
                         f"noise {best['Noise Fraction']:.0%})")
    elif len(ct):
        lines.append(f"  {len(ct)} clusterings (no labels to score them against)")
    sus = t["suspect_labels"]
    if info["n_labelled"]:
        lines.append(f"  {len(sus)} images whose label disagrees with their nearest neighbours (suspect_labels.csv)")
    top = t["outliers"].head(3)
    lines.append("  most outlying: " + ", ".join(f"{p} (LOF {s:.2f})" for p, s in zip(top["path"], top["outlier_score"])))
    if "disparity_test" in t:
        d = t["disparity_test"].iloc[0]
        lines.append(f"  disparity {d['group_a']} - {d['group_b']}: {d['difference']:+.4f} (p = {d['p_value']:.3g}, "
                     f"{int(d['n_permutations'])} permutations)")
    lines.append(f"  {len(res.files)} files in {out} ({res.timings['total']:.0f} s, peak memory "
                 f"{res.peak_rss_mb:.0f} MiB)")
    return "\n".join(lines)
