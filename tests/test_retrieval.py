"""Retrieval of the stored specimens most similar to a new image (palaeo_ssl.retrieval)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from palaeo_ssl import Embeddings
from palaeo_ssl.cli import main
from palaeo_ssl.errors import UserError
from palaeo_ssl.params import ParameterError
from palaeo_ssl.retrieval import SimilarResult, find_similar, write_similar


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """12 labelled random vectors (no images, no model)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 4)
    x = rng.normal(size=(12, 6)).astype(np.float32)
    return Embeddings(x, [f"c{c}/img_{i}.png" for i, c in enumerate(y)], y, ["c0", "c1", "c2"]).save(
        tmp_path_factory.mktemp("retrieval") / "store")


def test_a_bad_k_is_refused_before_the_image_is_looked_at(store, tmp_path):
    with pytest.raises(ParameterError, match="k must be an integer >= 1") as exc:
        find_similar(store, tmp_path / "nothing.png", k=0)
    assert exc.value.param == "k" and exc.value.message_for("-k").startswith("-k must be")


def test_given_features_rank_the_store_without_a_model(store, tmp_path):
    from palaeo_ssl import load_embeddings

    emb = load_embeddings(store)
    res = find_similar(store, tmp_path / "query.png", k=3, query_features=np.asarray(emb.features[5]))
    assert isinstance(res, SimilarResult) and res.files == []
    assert list(res.table.columns) == ["rank", "index", "path", "class_name", "similarity"]
    assert res.table.loc[0, "index"] == 5 and res.table.loc[0, "similarity"] == pytest.approx(1.0, abs=1e-5)
    assert res.hits[0] == emb.image_path(5) and len(res.hits) == 3
    with pytest.raises(UserError, match="dimensions"):
        find_similar(store, tmp_path / "query.png", query_features=np.ones(4))
    with pytest.raises(UserError, match="no image at"):
        find_similar(store, tmp_path / "nothing.png")


@pytest.fixture(scope="module")
def extracted(tiny_model, tmp_path_factory):
    """(image folder, store) of 12 synthetic images embedded with the tiny model."""
    import palaeo_ssl
    from palaeo_ssl.testing import make_class_folder_dataset

    root = tmp_path_factory.mktemp("similar")
    data = make_class_folder_dataset(root / "data", n_classes=3, per_class=4)
    palaeo_ssl.extract_embeddings(data, model=str(tiny_model), out=root / "emb", progress=False, workers=0)
    return data, root / "emb"


@pytest.mark.slow
def test_similar_embeds_a_new_image_with_the_store_settings(extracted, tmp_path):
    data, emb = extracted
    query = data / "class_1" / "img_002.png"
    out = tmp_path / "sim"
    res = find_similar(emb, query, k=4, out=out)
    assert res.files == [out / "similar_img_002.csv", out / "similar_img_002.png", out / "similar_img_002.pdf"]
    table = pd.read_csv(out / "similar_img_002.csv", keep_default_na=False)
    assert len(table) == 4 and table.loc[0, "path"] == "class_1/img_002.png"  # the image itself comes first
    assert table.loc[0, "similarity"] == pytest.approx(1.0, abs=1e-4)
    assert (np.diff(table["similarity"]) <= 1e-7).all() and table.loc[0, "class_name"] == "class_1"
    assert (out / "similar_img_002.png").stat().st_size > 1000 and (out / "similar_img_002.pdf").is_file()
    # the writer alone gives the same files from the result
    again = write_similar(res, tmp_path / "again")
    assert [p.name for p in again] == [p.name for p in res.files]
    pd.testing.assert_frame_equal(pd.read_csv(again[0], keep_default_na=False), table)
    with pytest.raises(UserError, match="no image at"):
        find_similar(emb, tmp_path / "nothing.png")


@pytest.mark.slow
def test_similar_command_smoke(extracted, tmp_path, capsys):
    """The one end-to-end run of the command: the ranking printed, the files listed."""
    data, emb = extracted
    query = data / "class_1" / "img_002.png"
    assert main(["similar", str(emb), str(query), "-k", "4", "--out", str(tmp_path / "sim")]) == 0
    text = capsys.readouterr().out
    assert "class_1/img_002.png" in text and "written: " in text and "similar_img_002.csv" in text
    assert main(["similar", str(emb), str(tmp_path / "nothing.png")]) == 2
    assert "no image at" in capsys.readouterr().err
