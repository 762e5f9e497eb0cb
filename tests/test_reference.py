"""The carried published figures and the comparison table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from palaeo_ssl.errors import UserError
from palaeo_ssl.reference import DATA_FILE, DATASETS, build_data_file, compare, key_figures, published

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "rodgers2025"


def test_data_file_covers_every_dataset():
    table = pd.read_csv(DATA_FILE)
    assert set(table["dataset"]) == set(DATASETS)
    for ds in DATASETS:
        sub = published(ds)
        assert {"classification", "few-shot", "clustering", "disparity"} <= set(sub["section"])
        assert sub["value"].notna().all()


def test_data_file_matches_published_tables(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/reference is not present")
    rebuilt = pd.read_csv(build_data_file(SHARED, tmp_path / "kf.csv"))
    carried = pd.read_csv(DATA_FILE)
    pd.testing.assert_frame_equal(rebuilt, carried)
    # spot-check one number against the raw table
    raw = pd.read_csv(SHARED / "pollen" / "classification_cv_results.csv")
    full_lr = raw[(raw.train_fraction == 1.0) & (raw.classifier == "Logistic Regression")]["mean_top1_accuracy"].item()
    ours = published("pollen")
    got = ours[(ours.setting == "full data") & (ours.method == "Logistic Regression")
               & (ours.metric == "top-1 accuracy")]["value"].item()
    assert abs(got - full_lr) < 1e-5


def test_compare_lines_up_and_differences():
    pub = published("radiolaria")
    lr = pub[(pub.section == "classification") & (pub.setting == "full data")
             & (pub.method == "Logistic Regression") & (pub.metric == "top-1 accuracy")]["value"].item()
    run_cls = pd.DataFrame({"train_fraction": [1.0], "classifier": ["Logistic Regression"],
                            "mean_top1_accuracy": [lr + 0.05], "mean_balanced_accuracy": [0.5]})
    cmp = compare("radiolaria", {"classification": run_cls})
    row = cmp[(cmp.setting == "full data") & (cmp.method == "Logistic Regression") & (cmp.metric == "top-1 accuracy")]
    assert np.isclose(row["difference"].item(), 0.05)
    assert list(cmp.columns) == ["section", "setting", "method", "metric", "published", "this_run", "difference"]
    assert cmp[cmp.section == "clustering"]["this_run"].isna().all()  # not in this run


def test_unknown_dataset():
    with pytest.raises(UserError, match="choose one of"):
        published("trilobites")


def test_key_figures_empty_inputs():
    assert key_figures().empty
