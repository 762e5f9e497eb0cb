"""The morphospace without labels: projections, clustering, disparity, outliers, suspect labels.

(Retrieval of a new image, which needs the model, is :func:`palaeo_ssl.retrieval.find_similar`.)

Submodules, one concern each (all functions take arrays and a ``seed`` and
return arrays or DataFrames):

* :mod:`.projections` - PCA, UMAP, t-SNE and the clustering spaces, cached per folder;
* :mod:`.clustering` - the reference's clusterings and the standard additions, with metrics and stability;
* :mod:`.disparity` - O(N·D) disparity, bootstrap intervals, rarefaction, permutation test, distance histogram;
* :mod:`.outliers` - outlier scores, suspect labels and nearest-neighbour retrieval;
* :mod:`.run` - the stage: ``compute_morphospace`` -> :class:`MorphospaceResult`, ``write_morphospace``,
  and ``run_morphospace`` (both, timed; ``palaeo-ssl morphospace``).
"""

from __future__ import annotations

from .clustering import ClusteringResult, cluster_morphospace, clustering_scores, stability
from .disparity import (
    bootstrap_disparity,
    disparity_per_class,
    disparity_summary,
    disparity_table,
    distance_histogram,
    effective_rank,
    mean_pairwise_distance,
    pairwise_distance_std,
    permutation_test,
    rarefaction,
)
from .outliers import (
    local_outlier_factor,
    nearest_neighbours,
    neighbour_label_scores,
    neighbourhood_table,
    similar_table,
    suspect_labels,
)
from .projections import compute_projections, knn_graph, pca_projection, tsne_projection, umap_projection
from .run import (MorphospaceConfig, MorphospaceResult, SharedMorphospace, compute_morphospace,
                  compute_shared_morphospace, explorer_inputs, explorer_inputs_from_folder, groups_from_classes,
                  groups_from_column, run_morphospace, write_morphospace)

__all__ = [
    "ClusteringResult", "bootstrap_disparity", "cluster_morphospace", "clustering_scores", "compute_projections",
    "disparity_per_class", "disparity_summary", "disparity_table", "distance_histogram", "effective_rank",
    "explorer_inputs", "explorer_inputs_from_folder", "groups_from_classes", "groups_from_column", "knn_graph", "local_outlier_factor",
    "mean_pairwise_distance", "nearest_neighbours", "pairwise_distance_std", "neighbour_label_scores", "neighbourhood_table",
    "pca_projection", "permutation_test", "rarefaction", "run_morphospace", "MorphospaceConfig", "MorphospaceResult", "compute_morphospace", "write_morphospace",
    "SharedMorphospace", "compute_shared_morphospace",
    "similar_table", "stability", "suspect_labels", "tsne_projection", "umap_projection",
]
