"""The labelling template (to_label.csv) read back as DATA, and the CLI of suggest and classify --abstain."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from palaeo_ssl import Embeddings
from palaeo_ssl.cli import main
from palaeo_ssl.errors import UserError
from palaeo_ssl.images import discover, merge_template


def make_dataset(root: Path, per_class: int = 12, loose: int = 18, seed: int = 0) -> tuple[Path, Embeddings]:
    """Class folders a/ and b/ plus unlabelled images in the root, and a store of their features."""
    rng = np.random.default_rng(seed)
    data = root / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
    for i in range(per_class):
        for c in ("a", "b"):
            Image.fromarray((rng.random((12, 12, 3)) * 255).astype("uint8")).save(data / c / f"{c}{i:02d}.png")
    for i in range(loose):
        Image.fromarray((rng.random((12, 12, 3)) * 255).astype("uint8")).save(data / f"u{i:02d}.png")
    images = discover(data)
    centres = {"a": np.ones(8), "b": -np.ones(8)}
    x = np.stack([centres[Path(p).parts[0]] if len(Path(p).parts) > 1 else centres["a" if i % 2 else "b"]
                  for i, p in enumerate(images.rel_paths)]) + rng.normal(size=(len(images), 8)) * 0.8
    emb = Embeddings(x.astype(np.float32), images.rel_paths, images.labels, images.class_names,
                     meta={"data": str(data.resolve()), "data_root": str(images.root), "dataset": images.name})
    emb.save(root / "store")
    return data, emb


def test_filled_template_round_trips_into_the_dataset_labels_with_conflicts_reported(tmp_path, caplog):
    data, emb = make_dataset(tmp_path)
    assert main(["suggest", str(tmp_path / "store"), "--budget", "5", "--out", str(tmp_path / "s"),
                 "--strategy", "typical"]) == 0
    template = pd.read_csv(tmp_path / "s" / "to_label.csv", dtype=str, keep_default_na=False)
    assert list(template.columns) == ["path", "label", "dataset"]
    assert (template["label"] == "").all() and len(template) == 5
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in template["path"])
    assert set(template["dataset"]) == {str(data.resolve())}
    suggested = pd.read_csv(tmp_path / "s" / "suggestions.csv")
    assert [str(Path(p).relative_to(data.resolve())) for p in template["path"]] == suggested["path"].tolist()

    # fill in: two new labels (one a new class), one row left empty, plus a row for an image the dataset
    # already labels with a different class (a conflict) and one with the same class (agreement)
    filled = template.copy()
    filled.loc[0, "label"] = "a"
    filled.loc[1, "label"] = "c_new"
    extra = pd.DataFrame({"path": [str(data / "a" / "a00.png"), str(data / "b" / "b00.png")], "label": ["b", "b"],
                          "dataset": [str(data.resolve())] * 2})
    moved = tmp_path / "elsewhere" / "filled.csv"  # the template works from wherever it is saved
    moved.parent.mkdir()
    pd.concat([filled, extra]).to_csv(moved, index=False)
    with caplog.at_level(logging.WARNING, logger="palaeo_ssl.images"):
        merged = merge_template(moved)
    assert merged.conflicts == [("a/a00.png", "a", "b")]
    assert merged.agreed == 1
    assert sorted(merged.added) == sorted([(str(Path(template.path[0]).relative_to(data.resolve())), "a"),
                                           (str(Path(template.path[1]).relative_to(data.resolve())), "c_new")])
    assert "not applied" in caplog.text and "a/a00.png" in caplog.text

    images = discover(moved)  # what every command reads as DATA
    base = discover(data)
    assert images.rel_paths == base.rel_paths and images.root == base.root and images.name == base.name
    assert images.class_names == ["a", "b", "c_new"]
    got = dict(zip(images.rel_paths, [images.class_names[l] if l >= 0 else "" for l in images.labels]))
    for rel, lab in zip(base.rel_paths, base.labels):  # every old label kept, conflict not written over
        if lab >= 0:
            assert got[rel] == base.class_names[lab]
    for rel, lab in merged.added:
        assert got[rel] == lab
    assert sum(1 for v in got.values() if v) == int((base.labels >= 0).sum()) + 2


def test_template_of_an_earlier_round_chains_to_the_original_dataset(tmp_path):
    data, emb = make_dataset(tmp_path)
    round1 = tmp_path / "r1.csv"
    pd.DataFrame({"path": [str(data / "u00.png")], "label": ["a"], "dataset": [str(data)]}).to_csv(round1, index=False)
    round2 = tmp_path / "r2.csv"
    pd.DataFrame({"path": [str(data / "u01.png")], "label": ["b"], "dataset": [str(round1)]}).to_csv(round2, index=False)
    images = discover(round2)
    got = dict(zip(images.rel_paths, images.labels))
    assert images.class_names[got["u00.png"]] == "a" and images.class_names[got["u01.png"]] == "b"


def test_template_with_unknown_paths_or_a_missing_dataset_is_refused(tmp_path):
    data, emb = make_dataset(tmp_path)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"path": [str(data / "u00.png"), str(tmp_path / "nowhere.png")], "label": ["a", "b"],
                  "dataset": [str(data)] * 2}).to_csv(bad, index=False)
    with pytest.raises(UserError, match=r"1 path\(s\) are not images of its dataset"):
        discover(bad)
    gone = tmp_path / "gone.csv"
    pd.DataFrame({"path": [str(data / "u00.png")], "label": ["a"], "dataset": [str(tmp_path / "moved_away")]}).to_csv(
        gone, index=False)
    with pytest.raises(UserError, match="does not exist any more"):
        discover(gone)


def test_cli_messages_for_budget_store_without_features_and_unknown_template_paths(tmp_path, capsys):
    data, emb = make_dataset(tmp_path)
    n_unl = int((emb.labels < 0).sum())
    assert main(["suggest", str(tmp_path / "store"), "--budget", str(n_unl + 1), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"--budget {n_unl + 1} is larger than the {n_unl} unlabelled specimens" in err
    empty = tmp_path / "not_a_store"
    empty.mkdir()
    assert main(["suggest", str(empty), "--budget", "3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no embedding store" in err and "palaeo-ssl extract" in err
    (tmp_path / "store" / "features.npy").unlink()  # a store whose features are gone
    assert main(["suggest", str(tmp_path / "store"), "--budget", "3", "--out", str(tmp_path / "o")]) == 2
    assert "no embedding store" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"path": [str(tmp_path / "nowhere.png")], "label": ["a"], "dataset": [str(data)]}).to_csv(bad, index=False)
    assert main(["extract", str(bad), "--out", str(tmp_path / "e"), "--model", str(tmp_path / "no_model")]) == 2
    err = capsys.readouterr().err
    assert "not images of its dataset" in err and "nowhere.png" in err


@pytest.mark.slow
def test_cli_suggest_writes_every_file_and_classify_abstains(tmp_path, capsys):
    data, emb = make_dataset(tmp_path)
    out = tmp_path / "s"
    assert main(["suggest", str(tmp_path / "store"), "--budget", "6", "--out", str(out), "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert "6 of 18 unlabelled specimens suggested (uncertain, chosen by auto" in text
    for name in ("suggestions.csv", "suggestions.png", "suggestions.pdf", "to_label.csv", "novelty.csv",
                 "novelty.png"):
        assert (out / name).is_file(), name
    sug = pd.read_csv(out / "suggestions.csv")
    assert sug["rank"].tolist() == list(range(1, 7)) and sug["path"].is_unique
    assert set(sug["path"]) <= {p for p, l in zip(emb.paths, emb.labels) if l < 0}
    nov = pd.read_csv(out / "novelty.csv")
    assert len(nov) == 18 and {"distance_a", "distance_b"} <= set(nov.columns)
    again = tmp_path / "s2"
    assert main(["suggest", str(tmp_path / "store"), "--budget", "6", "--out", str(again), "--seed", "2"]) == 0
    assert pd.read_csv(again / "suggestions.csv")["path"].tolist() == sug["path"].tolist()

    cls = tmp_path / "c"
    assert main(["classify", str(tmp_path / "store"), "--probe-from", str(tmp_path / "store"), "--out", str(cls),
                 "--min-probability", "0.999"]) == 0
    text = capsys.readouterr().out
    assert "expected calibration error" in text and "left unassigned" in text
    pred = pd.read_csv(cls / "predictions.csv", keep_default_na=False)
    assert {"predicted_class", "best_guess", "probability", "uncalibrated_probability"} <= set(pred.columns)
    low = pred["probability"] < 0.999
    assert (pred.loc[low, "predicted_class"] == "unassigned").all()
    assert (pred.loc[~low, "predicted_class"] == pred.loc[~low, "best_guess"]).all()
    assert set(pred["best_guess"]) <= {"a", "b"}
    record = json.loads((cls / "calibration.json").read_text())
    assert record["method"] == "temperature" and record["min_probability"] == 0.999
    assert record["n_unassigned"] == int(low.sum())
    rc = pd.read_csv(cls / "risk_coverage.csv")
    assert list(rc.columns) == ["min_probability", "n_kept", "coverage", "accuracy", "risk"]
    assert rc["coverage"].iloc[-1] == pytest.approx(1.0) and (cls / "risk_coverage.png").is_file()
    assert main(["classify", str(tmp_path / "store"), "--probe-from", str(tmp_path / "store"), "--out", str(cls),
                 "--min-probability", "0.9", "--target-accuracy", "0.9"]) == 2
    assert "--min-probability" in capsys.readouterr().err
