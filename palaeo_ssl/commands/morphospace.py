"""``palaeo-ssl morphospace``: projections, clustering, disparity, outliers and suspect labels of a store."""

from __future__ import annotations

import argparse

from ..errors import UserError
from . import comma_list


_names = comma_list(str, "class names")


def register(sub) -> None:
    p = sub.add_parser(
        "morphospace",
        help="projections, clusters, disparity with intervals, outliers and suspect labels",
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
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the tables and figures (created if needed)")
    p.add_argument("--protocol", choices=("paper", "standard"), default="standard",
                   help="paper: the clusterings of Rodgers (2025) (KMeans with known and silhouette-chosen K, "
                        "Bayesian GMM, HDBSCAN with 2%% of N), comparable with its clustering_metrics.csv; "
                        "standard: those plus HDBSCAN with a size rule that scales, Ward, and stability over 5 "
                        "seeds (default: standard)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random step (default: 0)")
    p.add_argument("--neighbours", type=int, default=10, metavar="K",
                   help="nearest neighbours for the outlier and suspect-label scores (default: 10)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="N",
                   help="bootstrap replicates for the disparity intervals (default: 200)")
    p.add_argument("--bootstrap-std", type=int, default=20, metavar="N",
                   help="bootstrap replicates for the std of pairwise distances, which needs a D x D Gram matrix "
                        "per replicate (default: 20)")
    p.add_argument("--tsne-max", type=int, default=20000, metavar="N",
                   help="t-SNE runs on a seeded random subsample of N images above N (stated on the figure); "
                        "0 = all images (default: 20000)")
    p.add_argument("--rarefaction-max", type=int, default=500, metavar="N",
                   help="largest subsample size of the rarefaction curves (default: 500)")
    p.add_argument("--compare-classes", type=_names, default=None, metavar="A,B,...",
                   help="permutation test of the disparity of these classes against those of --vs")
    p.add_argument("--vs", type=_names, default=None, metavar="C,D,...", help="the second group of --compare-classes")
    p.add_argument("--groups", default=None, metavar="CSV",
                   help="permutation test between two groups given by a column of this CSV manifest "
                        "(a 'path' column as in the store's index, and --group-column)")
    p.add_argument("--group-column", default=None, metavar="COLUMN", help="the column of --groups that names the group")
    p.add_argument("--group-values", nargs=2, default=None, metavar=("A", "B"),
                   help="the two values of --group-column to compare (needed when it holds more than two)")
    p.add_argument("--permutations", type=int, default=999, metavar="N",
                   help="permutations of the disparity test (default: 999)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="BLAS/OpenMP threads (default: 1; multi-threaded BLAS on the many small fits is several "
                        "times slower on a busy machine, raise it on an idle many-core one)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..morphospace import run_morphospace

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
    for opt in ("neighbours", "bootstrap", "bootstrap_std", "permutations", "threads", "rarefaction_max"):
        if getattr(args, opt) < 1:
            raise UserError(f"--{opt.replace('_', '-')} must be at least 1")
    if args.tsne_max < 0:
        raise UserError("--tsne-max must be 0 (all images) or a positive number")
    res = run_morphospace(
        args.embeddings, args.out, protocol=args.protocol, seed=args.seed, k_neighbours=args.neighbours,
        n_boot=args.bootstrap, n_boot_std=args.bootstrap_std, tsne_max_points=args.tsne_max or None,
        rarefaction_max=args.rarefaction_max, compare=compare, n_permutations=args.permutations,
        threads=args.threads, figures=not args.no_figures, progress=not args.no_progress,
    )
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
