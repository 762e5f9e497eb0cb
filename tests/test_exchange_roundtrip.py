"""End to end: classify, export to EcoTaxa, a colleague validates some rows, the TSV comes back, classify retrains."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from palaeo_ssl.cli import main
from palaeo_ssl.embeddings import load_embeddings

pytestmark = pytest.mark.slow


def _images(folder: Path, n: int, seed: int, tint: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(start, start + n):
        a = (rng.random((24, 24, 3)) * 80).astype("uint8")
        a[..., tint] += 170
        Image.fromarray(a).save(folder / f"img{i:02d}.png")


def _validate(tsv: Path, decisions: dict[str, str]) -> None:
    """What a colleague does in EcoTaxa (or a spreadsheet): set these objects' category, status validated."""
    text = tsv.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"'))
    col = {c: i for i, c in enumerate(rows[0])}
    for r in rows[2:]:
        if r[col["object_id"]] in decisions:
            r[col["object_annotation_category"]] = decisions[r[col["object_id"]]]
            r[col["object_annotation_status"]] = "validated"
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t", quotechar='"', lineterminator="\n").writerows(rows)
    tsv.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))


def test_predictions_validated_in_ecotaxa_come_back_and_classify_retrains(tiny_model, tmp_path, capsys):
    labelled, new = tmp_path / "labelled", tmp_path / "new"
    _images(labelled / "red_form", 8, 0, 0)
    _images(labelled / "blue form, \"B\"", 8, 1, 2)
    _images(new, 6, 2, 0)
    _images(new, 6, 3, 2, start=6)  # a flat folder of 12 new, unlabelled images
    model = ["--model", str(tiny_model), "--no-progress"]
    assert main(["extract", str(labelled), "--out", str(tmp_path / "e_labelled"), *model]) == 0
    results = tmp_path / "classified"
    assert main(["classify", str(new), "--probe-from", str(tmp_path / "e_labelled"), "--out", str(results),
                 "--abstain", "--target-accuracy", "0.9", "--no-progress"]) == 0
    assert main(["export", str(results), "--format", "ecotaxa", "--out", str(tmp_path / "to_ecotaxa"),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "12 images of new as ecotaxa" in printed
    tsv = tmp_path / "to_ecotaxa" / "ecotaxa_new.tsv"
    pred = pd.read_csv(results / "predictions.csv", keep_default_na=False)
    decisions = {"img00.png": "red_form", "img01.png": "red_form", "img06.png": 'blue form, "B"',
                 "img07.png": "Nova species"}
    _validate(tsv, decisions)

    # back in: the validated labels are added to the images classify embedded (its store, features reused)
    store_out = results / "embeddings"
    assert main(["extract", str(tsv), "--out", str(store_out), *model]) == 0
    assert "12 embedded (0 computed now, 12 reused from the cache)" in capsys.readouterr().out
    emb = load_embeddings(store_out)
    assert len(emb) == 12 and emb.meta["dataset"] == "new"
    got = {p: emb.class_names[l] for p, l in zip(emb.paths, emb.labels) if l >= 0}
    assert got == decisions

    accepted = tmp_path / "accepted"
    assert main(["extract", str(tsv), "--out", str(accepted), *model, "--accept-predicted"]) == 0
    emb2 = load_embeddings(accepted)
    assigned = pred[(pred["predicted_class"] != "unassigned")].set_index("path")["predicted_class"].to_dict()
    got2 = {p: emb2.class_names[l] for p, l in zip(emb2.paths, emb2.labels) if l >= 0}
    assert got2 == {**assigned, **decisions} and emb2.meta["accept_predicted"] is True

    # classify retrains on the new labels (three classes now, one of them new)
    again = tmp_path / "retrained"
    assert main(["classify", str(tsv), "--probe-from", str(store_out), "--out", str(again), "--probe", "centroid",
                 "--cache", str(store_out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "trained on 4 labelled images, 3 classes" in text
    out = pd.read_csv(again / "predictions.csv", keep_default_na=False)
    assert set(out["predicted_class"]) <= {"red_form", 'blue form, "B"', "Nova species"}
    assert len(out) == 12 and (out.set_index("path").loc[list(decisions), "true_class"] == pd.Series(decisions)).all()
    assert (out["true_class"] != "").sum() == 4  # the TSV as NEW: its validated labels are the known ones
    record = json.loads((results / "calibration.json").read_text())
    assert record["probe"] == "logreg"
