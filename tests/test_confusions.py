"""Readable confusions with many taxa: most-confused pairs, centroid order, genus level, accuracy per rank."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from palaeo_ssl import Embeddings
from palaeo_ssl.probes import run_probe_report
from palaeo_ssl.probes.confusions import (FULL_MATRIX_MAX_CLASSES, centroid_order, class_centroids,
                                          most_confused_pairs, rank_accuracy)
from palaeo_ssl.taxonomy import from_class_names
from palaeo_ssl.testing import pdf_text_lines

NAMES = ["Alba_x", "alba_y", "Cena_a", "Cena_b"]
#: rows true, columns predicted; the off-diagonal cells in order: (1->0) 6, (2->3) 4 (share 4/10 > 4/13), (0->1) 4,
#: (3->2) 2, (0->2) 1
CM = np.array([[8, 4, 1, 0],
               [6, 7, 0, 0],
               [0, 0, 6, 4],
               [0, 0, 2, 8]])


def test_most_confused_pairs_of_a_matrix_built_by_hand():
    pairs = most_confused_pairs(CM, NAMES, top=4, taxonomy=from_class_names(NAMES))
    got = list(zip(pairs["true_class"], pairs["predicted_class"], pairs["count"], pairs["reverse_count"]))
    assert got == [("alba_y", "Alba_x", 6, 4), ("Cena_a", "Cena_b", 4, 2), ("Alba_x", "alba_y", 4, 6),
                   ("Cena_b", "Cena_a", 2, 4)]
    assert pairs["rank"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(pairs["share_of_true"], [6 / 13, 4 / 10, 4 / 13, 2 / 10])
    # Alba_x and alba_y are one genus (case-insensitive), shown in the spelling of the first sorted
    assert pairs["true_genus"].tolist() == ["Alba", "Cena", "Alba", "Cena"] and pairs["same_genus"].all()
    assert len(most_confused_pairs(CM, NAMES, top=30)) == 5  # zero cells are never listed
    assert most_confused_pairs(np.eye(3, dtype=int) * 5, ["a", "b", "c"]).empty


def test_accuracy_at_each_rank_from_the_confusion_matrix():
    rows = {r["rank"]: r for r in rank_accuracy(CM, from_class_names(NAMES))}
    assert rows["class"]["n_groups"] == 4 and rows["genus"]["n_groups"] == 2
    assert rows["class"]["top1_accuracy"] == pytest.approx(29 / 46)
    assert rows["class"]["balanced_accuracy"] == pytest.approx(np.mean([8 / 13, 7 / 13, 6 / 10, 8 / 10]))
    assert rows["genus"]["top1_accuracy"] == pytest.approx(45 / 46)  # only Alba_x -> Cena_a crosses genera
    assert rows["genus"]["balanced_accuracy"] == pytest.approx(np.mean([25 / 26, 20 / 20]))


def test_centroids_block_by_block_and_their_order(tmp_path):
    rng = np.random.default_rng(0)
    d = 16
    a, b = rng.normal(size=d), rng.normal(size=d)
    # classes 0, 3, 5 near direction a; 1, 2, 4 near b
    centres = np.stack([a, b, b, a, b, a]) + 0.05 * rng.normal(size=(6, d))
    y = rng.integers(0, 6, size=500)
    y[:6] = np.arange(6)
    x = (centres[y] + 0.05 * rng.normal(size=(500, d))).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    mm = np.load(tmp_path / "f.npy", mmap_mode="r")
    labels = y.copy()
    labels[7] = -1
    c = class_centroids(mm, labels, 7, block=64)  # class 6 has no image
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for k in range(6):
        np.testing.assert_allclose(c[k], unit[labels == k].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert not c[6].any()
    order = centroid_order(c).tolist()
    assert sorted(order) == list(range(7)) and order[-1] == 6  # the empty class goes last
    first = set(order[:3])
    assert first in ({0, 3, 5}, {1, 2, 4})  # each group of similar centroids sits together


def _many_class_store(tmp_path, n_classes=FULL_MATRIX_MAX_CLASSES + 4, per_class=6, images=True):
    rng = np.random.default_rng(1)
    names = [f"{'Gen' if k % 2 else 'gen'}{k // 4:02d}_sp{k:03d}" for k in range(n_classes)]  # mixed case genera
    y = np.repeat(np.arange(n_classes), per_class)
    x = (rng.normal(size=(n_classes, 24))[y] * 0.8 + rng.normal(size=(y.size, 24))).astype(np.float32)
    paths = [f"{names[c]}/img_{i}.png" for i, c in enumerate(y)]
    root = tmp_path / "images"
    if images:
        for p in paths[::per_class]:  # the first image of every class exists: a solid red square
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 40), (230, 20, 20)).save(root / p)
    emb = Embeddings(x, paths, y, names, meta={"data_root": str(root)})
    return emb.save(tmp_path / "store"), names


@pytest.mark.slow
def test_many_classes_write_pairs_ordered_and_genus_matrices(tmp_path):
    store, names = _many_class_store(tmp_path)
    out = tmp_path / "out"
    rep = run_probe_report(store, out, protocol="paper", probes="knn", fractions=[1.0], n_repeats=1,
                           few_shot=False, n_jobs=1)
    assert not (out / "confusion_matrix.png").exists()  # the unreadable full figure is replaced
    cm = rep.cv.confusion["k-Nearest Neighbours"]
    pairs = pd.read_csv(out / "confusion_pairs.csv")
    expected = most_confused_pairs(cm, rep.cv.class_names)
    assert pairs["true_class"].tolist() == expected["true_class"].tolist()
    assert pairs["count"].tolist() == expected["count"].tolist() and len(pairs) == min(30, len(expected))
    assert "same_genus" in pairs and "true_label" not in pairs
    # the ordered matrix holds the same counts, rows and columns permuted alike
    ordered = pd.read_csv(out / "confusion_matrix_clustered.csv")
    order = [rep.cv.class_names.index(n) for n in ordered["true_class"]]
    assert sorted(order) == list(range(len(names))) and list(ordered.columns[2:]) == ordered["true_class"].tolist()
    np.testing.assert_array_equal(ordered.iloc[:, 2:].to_numpy(), cm[np.ix_(order, order)])
    # genus level: gen00 and Gen00 are one genus; 16 genera, counts summed
    genus = pd.read_csv(out / "confusion_matrix_genus.csv")
    assert len(genus) == 16 and genus.iloc[:, 1:].to_numpy().sum() == cm.sum()
    assert genus["true_genus"].str.lower().is_unique
    by_rank = pd.read_csv(out / "accuracy_by_rank.csv")
    acc = by_rank.set_index("rank")["top1_accuracy"]
    assert acc["genus"] >= acc["class"] and acc["class"] == pytest.approx(np.trace(cm) / cm.sum())
    assert by_rank["rank_source"].str.contains("first word").all()
    # figures read back: sizes, the title in the PDF, the red thumbnails in the pairs figure
    for stem in ("confusion_pairs", "confusion_matrix_clustered", "confusion_matrix_genus"):
        with Image.open(out / f"{stem}.png") as im:
            assert im.size[0] > 800 and im.size[1] > 300
    assert any("Most-confused pairs" in line for line in pdf_text_lines(out / "confusion_pairs.pdf"))
    assert any("genus level" in line for line in pdf_text_lines(out / "confusion_matrix_genus.pdf"))
    px = np.asarray(Image.open(out / "confusion_pairs.png").convert("RGB")).astype(int)
    red = (px[..., 0] > 200) & (px[..., 1] < 60) & (px[..., 2] < 60)
    assert red.sum() > 1000
    run = json.loads((out / "probe_run.json").read_text())
    assert run["confusions"]["full_matrix_max_classes"] == FULL_MATRIX_MAX_CLASSES
    assert run["confusions"]["views"].startswith("most-confused pairs")
    assert "taxonomy" not in run or run["taxonomy"] is None


@pytest.mark.slow
def test_pairs_figure_without_images_and_taxonomy_csv(tmp_path):
    store, names = _many_class_store(tmp_path, images=False)
    csv = tmp_path / "tax.csv"
    csv.write_text("class,family\n" + "".join(f"{n},{'F1' if i < 30 else 'F2'}\n" for i, n in enumerate(names)))
    out = tmp_path / "out"
    run_probe_report(store, out, protocol="paper", probes="knn", fractions=[1.0], n_repeats=1, few_shot=False,
                     n_jobs=1, taxonomy=csv)
    px = np.asarray(Image.open(out / "confusion_pairs.png").convert("RGB")).astype(int)
    assert not ((px[..., 0] > 200) & (px[..., 1] < 60) & (px[..., 2] < 60)).any()
    assert (out / "confusion_matrix_family.csv").is_file() and not (out / "confusion_matrix_genus.csv").exists()
    fam = pd.read_csv(out / "confusion_matrix_family.csv")
    assert fam["true_family"].tolist() == ["F1", "F2"]
    assert set(pd.read_csv(out / "accuracy_by_rank.csv")["rank"]) == {"class", "family"}


def test_few_classes_keep_the_full_matrix(tmp_path, labelled_store):
    out = tmp_path / "out"
    run_probe_report(labelled_store, out, protocol="paper", probes="knn", fractions=[1.0], n_repeats=1,
                     few_shot=False, n_jobs=1)
    assert (out / "confusion_matrix.png").is_file() and not (out / "confusion_pairs.csv").exists()
    # four classes, each its own genus: no higher rank groups anything, so no rank table
    assert not (out / "accuracy_by_rank.csv").exists()
