"""Few or no labels: which specimens to label next, calibrated predictions that abstain, and novelty.

Main entry points::

    from palaeo_ssl.labels import suggest, write_suggestions
    result = suggest("results/run/embeddings", budget=200)      # typical / diverse / uncertain / random
    write_suggestions(result, "to_label/")                     # suggestions.csv, to_label.csv, novelty.csv, sheets

    from palaeo_ssl.probes.predictions import classify
    classify(new, labelled, target_accuracy=0.95)              # calibrated, 'unassigned' under the threshold

The strategies work on arrays (:func:`select`), as do novelty (:func:`novelty_scores`) and
calibration (:func:`fit_abstention`); :func:`compute_labels` is the labelling stage of a run and
:func:`explorer_columns` gives the explorer its colourings.
"""

from .calibration import (METHODS, Abstention, Calibrator, choose_threshold, cross_validated_proba,
                          expected_calibration_error, fit_abstention, risk_coverage)
from .novelty import NoveltyResult, compute_novelty, novelty_scores, write_novelty
from .run import (LabelsConfig, LabelsResult, compute_labels, explorer_columns, explorer_columns_from_folder,
                  has_unlabelled, write_labels)
from .strategies import STRATEGIES, Selection, select
from .suggest import Suggestions, run_suggest, suggest, write_suggestions
from .template import TEMPLATE_FILE, TemplateMerge, merge_template, read_template, template_frame, write_template

__all__ = [
    "METHODS", "STRATEGIES", "TEMPLATE_FILE", "Abstention", "Calibrator", "LabelsConfig", "LabelsResult",
    "NoveltyResult", "Selection", "Suggestions", "TemplateMerge", "choose_threshold", "compute_labels",
    "compute_novelty", "cross_validated_proba", "expected_calibration_error", "explorer_columns", "explorer_columns_from_folder", "fit_abstention",
    "has_unlabelled", "merge_template", "novelty_scores", "read_template", "risk_coverage", "run_suggest", "select",
    "suggest", "template_frame", "write_labels", "write_novelty", "write_suggestions", "write_template",
]
