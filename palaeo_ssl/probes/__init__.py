"""Probes on frozen embeddings: cross-validated linear, kNN and nearest-centroid classification,
learning curves and few-shot episodes, in the reference protocol of Rodgers (2025) (``paper``)
and a sound one (``standard``).

Main entry points::

    from palaeo_ssl.probes import cross_validate, few_shot, fit_probe
    table = cross_validate(emb, protocol="paper")          # classification_cv_results
    shots = few_shot(emb, protocol="standard", episodes=50)  # few_shot_cv_results
    probe = fit_probe(emb, "logreg"); probe.predict(new_features)

``run_cross_validation`` / ``run_few_shot`` return every intermediate result
(fold-level scores, confusion matrices, paired comparisons, timings);
``run_probe_report`` writes the tables and figures of ``palaeo-ssl probe``.
"""

from .classifiers import C_GRID, DISPLAY_NAMES, PROBES, PROTOCOLS, CentroidProbe, KNNProbe, make_probe, parse_probes
from .fewshot import FewShotResult, few_shot, run_few_shot
from .fitted import FittedProbe, fit_probe
from .metrics import ALL_METRICS, METRICS, label_metrics, majority_baseline
from .outputs import run_probe_report, write_cv_outputs, write_few_shot_outputs
from .protocols import CVResult, cross_validate, run_cross_validation
from .splits import FRACTIONS, SHOTS

__all__ = [
    "ALL_METRICS", "C_GRID", "CVResult", "CentroidProbe", "DISPLAY_NAMES", "FRACTIONS", "FewShotResult",
    "FittedProbe", "KNNProbe", "METRICS", "PROBES", "PROTOCOLS", "SHOTS", "cross_validate", "few_shot",
    "fit_probe", "label_metrics", "majority_baseline", "make_probe", "parse_probes", "run_cross_validation",
    "run_few_shot", "run_probe_report", "write_cv_outputs", "write_few_shot_outputs",
]
