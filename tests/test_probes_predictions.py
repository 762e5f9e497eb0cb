"""Classifying new images with a probe fitted on labelled embeddings (palaeo_ssl.probes.predictions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from palaeo_ssl import Embeddings, load_embeddings
from palaeo_ssl.errors import UserError
from palaeo_ssl.params import ParameterError
from palaeo_ssl.probes.predictions import ClassifyResult, classify, run_classify, write_predictions

from conftest import LABELLED_STORE_CLASSES as NAMES  # noqa: E402
COLUMNS = ["path", "predicted_class", "probability", "top2_class", "top2_probability", "top3_class",
           "top3_probability", "true_class"]


@pytest.fixture(scope="module")
def store(labelled_store):
    return labelled_store


def test_classify_store_writes_predictions(store, tmp_path):
    result = classify(store, store, probe="centroid")
    assert isinstance(result, ClassifyResult) and result.n_labelled == 100 and result.protocol == "standard"
    assert list(result.predictions.columns) == COLUMNS
    assert result.counts.sum() == 100 and result.n_known == 100 and result.agreement > 0.8
    files = write_predictions(result, tmp_path / "pred")
    assert files == [tmp_path / "pred" / "predictions.csv"]
    pred = pd.read_csv(files[0], keep_default_na=False)
    assert list(pred.columns) == COLUMNS
    assert len(pred) == 100 and set(pred["predicted_class"]) <= set(NAMES)
    assert ((pred["probability"] >= pred["top2_probability"]) & (pred["top2_probability"] >= pred["top3_probability"])).all()
    assert (pred["predicted_class"] == pred["true_class"]).mean() > 0.8
    assert (pred["predicted_class"] == pred["true_class"]).mean() == pytest.approx(result.agreement)


def test_classify_checks_its_parameters_before_fitting(store):
    with pytest.raises(ParameterError) as exc:
        classify(store, store, batch_size=0)
    assert exc.value.param == "batch_size"
    with pytest.raises(ParameterError) as exc:
        classify(store, store, protocol="nope")
    assert exc.value.param == "protocol"


@pytest.mark.slow
def test_classify_image_folder_embeds_like_the_labelled_store(tiny_model, tmp_path):
    from palaeo_ssl import extract_embeddings
    from palaeo_ssl.extract import settings_from_meta
    from palaeo_ssl.testing import make_class_folder_dataset

    labelled_images = make_class_folder_dataset(tmp_path / "labelled", n_classes=3, per_class=4, seed=1)
    new_images = make_class_folder_dataset(tmp_path / "new", n_classes=3, per_class=2, seed=2)
    extract_embeddings(labelled_images, model=str(tiny_model), out=tmp_path / "lab", pooling="mean", image_size=32,
                       progress=False, workers=0)
    out = tmp_path / "pred"
    res = run_classify(new_images, tmp_path / "lab", out, progress=False, workers=0)
    assert res["files"] == [out / "predictions.csv"]
    pred = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(pred) == 6 and pred["path"].str.endswith(".png").all()
    assert np.isfinite(pred["probability"]).all()
    new_emb = load_embeddings(out / "embeddings")  # run_classify caches in OUT/embeddings
    assert settings_from_meta(new_emb.meta) == settings_from_meta(load_embeddings(tmp_path / "lab").meta)
    # a store made with other settings is refused
    other = load_embeddings(tmp_path / "lab")
    other.meta["pooling"] = "cls"
    other.save(tmp_path / "other")
    with pytest.raises(UserError, match="made differently"):
        classify(tmp_path / "other", tmp_path / "lab")
    # a labelled store without labels fails before any new image is embedded
    lab = load_embeddings(tmp_path / "lab")
    Embeddings(np.asarray(lab.features), lab.paths, np.full(len(lab), -1), lab.class_names,
               meta=lab.meta).save(tmp_path / "unlabelled")
    with pytest.raises(UserError, match="no labels"):
        run_classify(new_images, tmp_path / "unlabelled", tmp_path / "y", progress=False, workers=0)
    assert not (tmp_path / "y" / "embeddings").exists()


def test_classify_missing_new_data(store, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        classify(tmp_path / "nothing", store)
