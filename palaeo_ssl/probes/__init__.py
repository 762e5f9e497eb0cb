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
The probe stage: ``compute_probe_report(emb, ProbeConfig(...))`` returns a
:class:`ProbeReport`, ``write_probe_report(report, folder)`` writes the tables and
figures of ``palaeo-ssl probe``, and ``run_probe_report`` does both. Protocols
are objects from one registry (:mod:`palaeo_ssl.protocol`); every function
defaults to ``DEFAULT_PROTOCOL`` ("standard").
"""

from ..protocol import DEFAULT_PROTOCOL, PROTOCOLS, get_protocol
from .classifiers import C_GRID, DISPLAY_NAMES, PROBES, CentroidProbe, KNNProbe, make_probe, parse_probes
from .fewshot import FewShotResult, few_shot, run_few_shot
from .fitted import FittedProbe, fit_probe
from .metrics import ALL_METRICS, METRICS, label_metrics, majority_baseline
from .outputs import (ProbeConfig, ProbeReport, compute_probe_report, run_probe_report, write_cv_outputs,
                      write_few_shot_outputs, write_probe_report)
from .protocols import CVResult, cross_validate, run_cross_validation
from .splits import FRACTIONS, SHOTS

__all__ = [
    "ALL_METRICS", "C_GRID", "CVResult", "CentroidProbe", "DEFAULT_PROTOCOL", "DISPLAY_NAMES", "FRACTIONS",
    "FewShotResult", "ProbeConfig", "ProbeReport", "compute_probe_report", "write_probe_report", "get_protocol",
    "FittedProbe", "KNNProbe", "METRICS", "PROBES", "PROTOCOLS", "SHOTS", "cross_validate", "few_shot",
    "fit_probe", "label_metrics", "majority_baseline", "make_probe", "parse_probes", "run_cross_validation",
    "run_few_shot", "run_probe_report", "write_cv_outputs", "write_few_shot_outputs",
]
