"""The labelling stage of `palaeo-ssl run` on data/example_few_labels.csv (25 of 100 images labelled).

Random weights (the tiny test model): these tests check files, shapes and the template's round trip,
never accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from palaeo_ssl.images import discover
from palaeo_ssl.labels import explorer_columns_from_folder
from palaeo_ssl.pipeline import describe_file, run_pipeline

REPO = Path(__file__).resolve().parents[1]
FEW_LABELS = REPO / "data" / "example_few_labels.csv"
LABEL_FILES = ["suggestions.csv", "suggestions.png", "to_label.csv", "novelty.csv", "novelty.png", "predictions.csv",
               "risk_coverage.csv", "risk_coverage.png", "calibration.json"]


def test_example_manifest_has_most_labels_removed():
    images = discover(FEW_LABELS)
    assert len(images) == 100 and int((images.labels >= 0).sum()) == 25
    assert np.bincount(images.labels[images.labels >= 0]).tolist() == [5] * 5


def test_every_labelling_file_has_a_description():
    generic = describe_file("somewhere/unknown.xyz")
    for name in LABEL_FILES:
        assert describe_file(f"labels/{name}") != generic, name


@pytest.mark.slow
def test_run_on_a_dataset_with_unlabelled_images_writes_the_labelling_stage(tiny_model, tmp_path):
    out = tmp_path / "run"
    result = run_pipeline(FEW_LABELS, model=str(tiny_model), out=out, protocol="standard", episodes=3, repeats=2,
                          progress=False, workers=0, label_budget=10, explorer=False)
    for name in LABEL_FILES:
        assert (out / "labels" / name).is_file(), name
    assert "labels" in result.manifest["stages"]
    sug = pd.read_csv(out / "labels" / "suggestions.csv")
    assert len(sug) == 10 and sug["path"].is_unique
    emb = result.embeddings
    unlabelled = {p for p, l in zip(emb.paths, emb.labels) if l < 0}
    assert set(sug["path"]) <= unlabelled
    assert len(pd.read_csv(out / "labels" / "novelty.csv")) == 75
    pred = pd.read_csv(out / "labels" / "predictions.csv", keep_default_na=False)
    assert len(pred) == 75 and set(pred["path"]) == unlabelled
    cols = result.labels.explorer
    assert set(cols["scores"]) == {"suggestion rank", "novelty", "confidence"}
    assert all(v.shape == (100,) for v in cols["scores"].values()) and cols["predicted"].shape == (100,)
    assert (cols["predicted"][emb.labels >= 0] == -1).all()
    readme = (out / "README.md").read_text()
    assert "labels/to_label.csv" in readme

    # the user fills in the template: its labels join the dataset's when it is given as DATA
    template = pd.read_csv(out / "labels" / "to_label.csv", dtype=str, keep_default_na=False)
    template["label"] = [Path(p).parent.name for p in template["path"]]
    filled = tmp_path / "filled.csv"
    template.to_csv(filled, index=False)
    images = discover(filled)
    assert int((images.labels >= 0).sum()) == 35 and len(images) == 100

    again = run_pipeline(FEW_LABELS, model=str(tiny_model), out=out, protocol="standard", episodes=3, repeats=2,
                         progress=False, workers=0, label_budget=10, explorer=False)
    assert again.stages["labels"].reused and again.labels is None

    # a run that reuses the labelling stage reads the explorer's colourings back from its files
    from_disk = explorer_columns_from_folder(emb, out / "labels")
    assert set(from_disk["scores"]) == set(cols["scores"])
    for name, values in cols["scores"].items():
        np.testing.assert_allclose(from_disk["scores"][name], values, rtol=1e-6, equal_nan=True, err_msg=name)
    assert (from_disk["predicted"] == cols["predicted"]).all()
    with_page = run_pipeline(FEW_LABELS, model=str(tiny_model), out=out, protocol="standard", episodes=3, repeats=2,
                             progress=False, workers=0, label_budget=10)
    assert with_page.stages["labels"].reused and not with_page.stages["explorer"].reused
    page = (out / "explorer.html").read_text()
    for name in ("suggestion rank", "novelty", "confidence"):
        assert name in page, name
