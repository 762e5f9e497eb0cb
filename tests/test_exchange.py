"""Labels and predictions out to EcoTaxa, Darwin Core Archives and CSV, and back in as DATA."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import shutil
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from palaeo_ssl import Embeddings
from palaeo_ssl.cli import main
from palaeo_ssl.errors import UserError
from palaeo_ssl.exchange import (HUMAN, MACHINE, import_identifications, read_exchange, read_source,
                                 write_identifications)
from palaeo_ssl.exchange.dwca import PREDICTED, VALIDATED
from palaeo_ssl.images import discover

#: class names no format may change: a tab, quotes and a comma, a newline, non-ASCII, markup
HOSTILE = ["Tab\tspecies", 'Quoted "name", with comma', "Line\nbreak", "Ünïcødé µ-fossil ✓",
           "<b>Markup</b> & <script>alert(1)</script>"]


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((10, 10, 3)) * 255).astype("uint8")).save(path)


def make_dataset(root: Path, per_class: int = 3, loose: int = 4) -> Path:
    """A manifest of images in sub-folders, labelled with the hostile names, with specimens, plus unlabelled ones."""
    data = root / "data"
    rows = []
    for c, name in enumerate(HOSTILE):
        for i in range(per_class):
            rel = f"c{c}/img {i}.png"
            _png(data / rel, c * 10 + i)
            rows.append({"path": rel, "label": name, "specimen": f"S{c}-{i // 2} \"q\""})
    for i in range(loose):
        rel = f"loose/u{i}.png"
        _png(data / rel, 100 + i)
        rows.append({"path": rel, "label": "", "specimen": ""})
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    return data / "manifest.csv"


def labels_of(images) -> dict[str, str | None]:
    return {Path(f).resolve().as_posix(): (images.class_names[l] if l >= 0 else None)
            for f, l in zip(images.files, images.labels)}


def make_predictions(root: Path, manifest: Path, threshold: float = 0.6, store: Path | None = None) -> Path:
    """A results folder as 'palaeo-ssl classify --abstain' writes it, for the images of ``manifest``: its
    embeddings store in out/embeddings (or at ``store``), predictions.csv, calibration.json."""
    images = discover(manifest)
    n = len(images)
    rng = np.random.default_rng(1)
    emb = Embeddings(rng.normal(size=(n, 4)).astype(np.float32), images.rel_paths, images.labels,
                     images.class_names, specimens=images.specimens,
                     meta={"data": str(manifest.resolve()), "data_root": str(images.root), "dataset": images.name,
                           "model_id": "facebook/dinov3-vits16-pretrain-lvd1689m", "created": "2026-01-01T00:00:00"})
    out = root / "classified"
    out.mkdir(parents=True, exist_ok=True)
    emb.save(store or (out / "embeddings" / "store"))
    guess = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    prob = np.round(np.linspace(0.99, 0.3, n), 4)
    prob[-1] = 0.1234567890123  # full precision must survive
    predicted = [g if p >= threshold else "unassigned" for g, p in zip(guess, prob)]
    true = [images.class_names[l] if (l >= 0 and i % 4 == 0) else "" for i, l in enumerate(images.labels)]
    pred = pd.DataFrame({"path": images.rel_paths, "predicted_class": predicted, "probability": prob,
                         "best_guess": guess, "uncalibrated_probability": prob, "top2_class": guess[::-1],
                         "top2_probability": 0.01, "top3_class": "", "top3_probability": np.nan, "true_class": true})
    pred.to_csv(out / "predictions.csv", index=False)
    (out / "calibration.json").write_text(json.dumps({"method": "temperature", "threshold": threshold,
                                                      "probe": "logreg", "protocol": "standard"}))
    return out


@pytest.fixture()
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path)


@pytest.fixture()
def classified(tmp_path, dataset) -> Path:
    return make_predictions(tmp_path, dataset)


def ecotaxa_rows(tsv: Path) -> tuple[list[str], dict[str, str], list[dict[str, str]]]:
    """The TSV read exactly as EcoTaxa's importer opens it (ecotaxa_back py/BO/TSVFile.py, TSVFile.open):
    Latin-1 unless a UTF-8 byte-order mark starts it, csv.DictReader with tab and '"', the type line second."""
    fh = open(tsv, encoding="latin_1")
    if fh.read(3) == "ï»¿":
        fh.close()
        fh = open(tsv, encoding="utf-8-sig")
    else:
        fh.seek(0)
    with fh:
        rdr = csv.DictReader(fh, delimiter="\t", quotechar='"')
        types = next(rdr)
        return list(rdr.fieldnames), types, list(rdr)


# ------------------------------------------------------------------------------ sources
def test_classify_folder_gives_predictions_abstentions_and_labels(classified, dataset):
    ids = read_source(classified)
    pred = pd.read_csv(classified / "predictions.csv", keep_default_na=False)
    f = ids.frame
    assert len(ids) == len(pred) and f["path"].tolist() == pred["path"].tolist()
    human = pred["true_class"] != ""
    assigned = ~human & (pred["predicted_class"] != "unassigned")
    assert (f.loc[human, "status"] == HUMAN).all() and (f.loc[human, "label"] == pred.loc[human, "true_class"]).all()
    assert (f.loc[assigned, "status"] == MACHINE).all()
    assert (f.loc[assigned, "label"] == pred.loc[assigned, "predicted_class"]).all()
    abstained = ~human & ~assigned
    assert abstained.any() and (f.loc[abstained, "label"] == "").all()
    assert (f.loc[abstained, "status"] == MACHINE).all()
    assert f["best_guess"].tolist() == pred["best_guess"].tolist()
    assert np.array_equal(f["probability"].to_numpy(), pred["probability"].to_numpy())
    assert ids.threshold == 0.6 and ids.probe == "logreg" and ids.model.startswith("facebook/dinov3")
    assert ids.dataset == str(dataset.resolve()) and ids.root == dataset.parent.resolve()
    assert dt.datetime.fromisoformat(ids.identified).tzinfo is not None
    assert f.loc[0, "specimen"] == 'S0-0 "q"' and Path(f.loc[0, "file"]).is_file()
    c = ids.counts()
    assert c["human"] == human.sum() and c["machine"] == assigned.sum() and c["abstained"] == abstained.sum()


def test_classify_folder_without_its_store_asks_for_it(tmp_path, dataset):
    out = make_predictions(tmp_path, dataset, store=tmp_path / "elsewhere" / "store")
    with pytest.raises(UserError, match="--store STORE"):
        read_source(out)
    ids = read_source(out, store=tmp_path / "elsewhere")
    assert len(ids) == len(discover(dataset))


def test_suggest_folder_exports_its_dataset_with_the_filled_labels(tmp_path, dataset):
    images = discover(dataset)
    folder = tmp_path / "suggested"
    folder.mkdir()
    loose = [f for f, l in zip(images.files, images.labels) if l < 0]
    pd.DataFrame({"rank": [1]}).to_csv(folder / "suggestions.csv", index=False)
    pd.DataFrame({"path": [str(loose[0]), str(loose[1])], "label": [HOSTILE[2], ""],
                  "dataset": str(dataset.resolve())}).to_csv(folder / "to_label.csv", index=False)
    ids = read_source(folder)
    assert len(ids) == len(images) and ids.counts()["human"] == int((images.labels >= 0).sum()) + 1
    row = ids.frame[ids.frame["file"] == str(loose[0])].iloc[0]
    assert row["label"] == HOSTILE[2] and row["status"] == HUMAN


# ------------------------------------------------------------------------------ EcoTaxa
def test_ecotaxa_folder_is_what_ecotaxas_importer_reads(classified, dataset):
    ids = read_source(classified)
    out = classified.parent / "to_ecotaxa"
    tsv, = write_identifications(ids, out, "ecotaxa", progress=False)
    assert tsv.name == "ecotaxa_manifest.tsv" and tsv.read_bytes().startswith(b"\xef\xbb\xbf")
    cols, types, rows = ecotaxa_rows(tsv)
    assert cols[:4] == ["img_file_name", "object_id", "object_annotation_category", "object_annotation_status"]
    assert all(c.split("_", 1)[0] in ("img", "object", "process") for c in cols)  # EcoTaxa's table prefixes
    assert types["object_palaeo_ssl_probability"] == "[f]" and set(types.values()) == {"[t]", "[f]"}
    assert len(rows) == len(ids)
    f = ids.frame
    for r, (_, x) in zip(rows, f.iterrows()):
        assert r["object_id"] == x["path"]
        image = tsv.parent / r["img_file_name"]
        assert image.read_bytes() == Path(x["file"]).read_bytes()
        assert r["object_palaeo_ssl_best_guess"] == x["best_guess"]
        assert float(r["object_palaeo_ssl_probability"]) == x["probability"]
        if x["status"] == HUMAN:
            assert (r["object_annotation_status"], r["object_annotation_category"]) == ("validated", x["label"])
        elif x["label"]:
            assert (r["object_annotation_status"], r["object_annotation_category"]) == ("predicted", x["label"])
            assert dt.datetime.strptime(r["object_annotation_date"] + r["object_annotation_time"], "%Y%m%d%H%M%S")
        else:  # an abstention: no category (EcoTaxa's "to be classified"), the best guess in its own column
            assert r["object_annotation_status"] == r["object_annotation_category"] == ""
        # EcoTaxa's rule: a status needs a category and a category a status
        assert bool(r["object_annotation_status"]) == bool(r["object_annotation_category"])
    assert {r["object_annotation_category"] for r in rows} - {""} == set(HOSTILE)
    assert rows[0]["process_model"] == ids.model and rows[0]["process_dataset"] == str(dataset.resolve())
    assert rows[0]["object_palaeo_ssl_specimen"] == 'S0-0 "q"'


def test_ecotaxa_images_linked_or_left_where_they_are(classified):
    ids = read_source(classified)
    linked = classified.parent / "linked"
    tsv, = write_identifications(ids, linked, "ecotaxa", link_images=True, progress=False)
    _, _, rows = ecotaxa_rows(tsv)
    first = tsv.parent / rows[0]["img_file_name"]
    assert first.is_symlink() and first.resolve() == Path(ids.frame.loc[0, "file"]).resolve()
    plain = classified.parent / "plain"
    tsv, = write_identifications(ids, plain, "ecotaxa", images=False, progress=False)
    _, _, rows = ecotaxa_rows(tsv)
    assert not (plain / "images").exists() and rows[0]["img_file_name"].startswith("../")
    assert all((tsv.parent / r["img_file_name"]).resolve() == Path(x).resolve()
               for r, x in zip(rows, ids.frame["file"]))


def _ecotaxa_export(folder: Path, rows: list[dict], quoting=csv.QUOTE_NONNUMERIC, encoding="utf-8-sig",
                    name="export_1234_20260101_1200.tsv") -> Path:
    """A TSV as EcoTaxa's export writes it (ForProject.py: csv.DictWriter, tab, '"', QUOTE_NONNUMERIC, UTF-8 with
    a byte-order mark, no type line), images in a sub-folder per sample."""
    cols = ["object_id", "object_lat", "object_lon", "object_date", "object_annotation_category",
            "object_annotation_status", "object_annotation_hierarchy", "object_annotation_person_name",
            "object_annotation_date", "object_annotation_time", "img_file_name", "img_rank", "sample_id",
            "sample_dataportal_descriptor"]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w", encoding=encoding, newline="") as fh:
        w = csv.DictWriter(fh, cols, delimiter="\t", quotechar='"', lineterminator="\n", quoting=quoting)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return folder / name


def test_reads_ecotaxas_exports_validated_become_labels(tmp_path, caplog):
    folder = tmp_path / "export"
    rows = []
    states = ["validated", "predicted", "dubious", "", "validated", "discarded"]
    for i, state in enumerate(states):
        _png(folder / "s1" / f"obj{i}.jpg", i)
        rows.append({"object_id": f"obj{i}", "object_lat": 43.6 + i, "object_lon": 7.7, "object_date": "20140607",
                     "object_annotation_category": HOSTILE[i % 5] if state else "", "object_annotation_status": state,
                     "object_annotation_hierarchy": "living>Eukaryota>" + HOSTILE[i % 5],
                     "object_annotation_person_name": "A. Colleague", "img_file_name": f"s1/obj{i}.jpg",
                     "img_rank": 0, "sample_id": "s1",
                     "sample_dataportal_descriptor": '<descriptor domain="bio-imaging" trait="x" />'})
    tsv = _ecotaxa_export(folder, rows)
    with caplog.at_level(logging.INFO):
        images = discover(tsv)
    got = labels_of(images)
    want = {(folder / "s1" / f"obj{i}.jpg").resolve().as_posix(): (HOSTILE[i % 5] if s == "validated" else None)
            for i, s in enumerate(states)}
    assert got == want and images.missing == []
    assert "1 machine identification(s) left unlabelled" in caplog.text
    got = labels_of(discover(tsv, accept_predicted=True))
    assert got[(folder / "s1" / "obj1.jpg").resolve().as_posix()] == HOSTILE[1]
    assert got[(folder / "s1" / "obj2.jpg").resolve().as_posix()] is None  # dubious: never a label


def test_reads_unquoted_import_files_and_latin1(tmp_path):
    """An import TSV as in ecotaxar's example (values never quoted, a '"' inside an XML value) and a Latin-1 file
    without a byte-order mark, as EcoTaxa reads it."""
    folder = tmp_path / "imp"
    _png(folder / "a.jpg", 1)
    _png(folder / "b.jpg", 2)
    text = ("img_file_name\tobject_id\tobject_annotation_category\tobject_annotation_status\tsample_id\t"
            "sample_dataportal_descriptor\n[t]\t[t]\t[t]\t[t]\t[t]\t[t]\n"
            'a.jpg\ta\tCalanidae\tvalidated\ts\t<d domain="bio-imaging" trait="x" />\n'
            'b.jpg\tb\tPélagique µ\tvalidated\ts\t<d domain="bio-imaging" />\n')
    (folder / "ecotaxa_x.tsv").write_bytes(text.encode("latin-1"))
    got = labels_of(discover(folder / "ecotaxa_x.tsv"))
    assert sorted(v for v in got.values()) == ["Calanidae", "Pélagique µ"]


def test_a_manifest_tsv_stays_a_manifest(tmp_path):
    _png(tmp_path / "a.png", 0)
    (tmp_path / "m.tsv").write_text("path\tlabel\na.png\tx\n")
    images = discover(tmp_path / "m.tsv")
    assert images.layout == "manifest" and images.class_names == ["x"]


# ------------------------------------------------------------------------------ Darwin Core
def _taxonomy(tmp_path: Path) -> Path:
    t = pd.DataFrame({"class": HOSTILE, "genus": [f"Genus{i}" for i in range(5)],
                      "family": ["Fam, A"] * 3 + ["Fam B"] * 2, "morphogroup": ["x"] * 5})
    t.to_csv(tmp_path / "taxonomy.csv", index=False)
    return tmp_path / "taxonomy.csv"


def test_darwin_core_archive_reads_without_warnings(tmp_path, classified):
    from dwca.read import DwCAReader

    ids = read_source(classified, taxonomy=_taxonomy(tmp_path))
    out = tmp_path / "to_gbif"
    archive, = write_identifications(ids, out, "dwca", progress=False)
    assert archive.name == "manifest_dwca.zip"
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["eml.xml", "meta.xml", "multimedia.csv", "occurrence.csv"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with DwCAReader(str(archive)) as r:
            assert r.descriptor.core.type == "http://rs.tdwg.org/dwc/terms/Occurrence"
            assert [e.type for e in r.descriptor.extensions] == ["http://rs.gbif.org/terms/1.0/Multimedia"]
            core = [(row, row.extensions) for row in r]
            title = r.metadata.find("dataset/title").text
            methods = r.metadata.find("dataset/methods/methodStep/description/para").text
    assert title == "manifest: identifications by palaeo-ssl" and ids.model in methods and "cf." in methods
    f = ids.frame
    assert len(core) == len(f)
    dwc = "http://rs.tdwg.org/dwc/terms/"
    for (row, media), (_, x) in zip(core, f.iterrows()):
        d = {k.replace(dwc, ""): v for k, v in row.data.items()}
        assert d["occurrenceID"] == x["path"] and d["basisOfRecord"] == "FossilSpecimen"
        assert d["catalogNumber"] == x["specimen"]
        assert len(media) == 1
        ident = media[0].data["http://purl.org/dc/terms/identifier"]
        assert (archive.parent / ident).read_bytes() == Path(x["file"]).read_bytes()
        assert media[0].data["http://purl.org/dc/terms/type"] == "StillImage"
        assert media[0].data["http://purl.org/dc/terms/format"] == "image/png"
        extra = json.loads(d["dynamicProperties"])
        assert extra["bestGuess"] == x["best_guess"] and extra["probability"] == x["probability"]
        if x["status"] == HUMAN:
            assert (d["scientificName"], d["identificationVerificationStatus"]) == (x["label"], VALIDATED)
            assert d["identifiedBy"] == "" and d["identificationQualifier"] == ""
        else:
            assert d["identificationVerificationStatus"] == PREDICTED
            assert d["identifiedBy"].startswith("palaeo-ssl") and ids.model in d["identifiedBy"]
            assert "logreg probe" in d["identifiedBy"]
            assert dt.datetime.fromisoformat(d["dateIdentified"]) and d["dateIdentified"] == ids.identified
            assert d["scientificName"] == x["best_guess"]
            assert d["identificationQualifier"] == ("" if x["label"] else "cf.")
            assert ("abstained" in d["identificationRemarks"]) == (not x["label"])
        name = d["scientificName"]
        k = HOSTILE.index(name)
        assert d["genus"] == f"Genus{k}" and d["family"] == ("Fam, A" if k < 3 else "Fam B")
        assert "morphogroup" not in d


def test_media_base_url_makes_urls_and_the_archive_still_reads_back(tmp_path, dataset):
    ids = read_source(dataset)
    out = tmp_path / "pub"
    archive, = write_identifications(ids, out, "dwca", media_base_url="https://example.org/fossils/",
                                     title=HOSTILE[4] + " \x01 " + HOSTILE[2], progress=False)
    eml = ET.fromstring(zipfile.ZipFile(archive).read("eml.xml"))
    assert eml.find("dataset/title").text == HOSTILE[4] + " \ufffd " + HOSTILE[2]  # XML 1.0 has no \x01
    occ = pd.read_csv(zipfile.ZipFile(archive).open("multimedia.csv"), dtype=str, keep_default_na=False)
    assert occ["identifier"].str.startswith("https://example.org/fossils/images/").all()
    assert "img%200.png" in occ["identifier"].iloc[0]
    shutil.move(dataset.parent, tmp_path / "gone")  # the dataset is not here: images found under the URL's path
    back = discover(archive)
    assert len(back) == len(ids) and back.missing == []
    assert sorted(labels_of(back).values(), key=str) == sorted((x or None for x in ids.frame["label"]), key=str)


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("fmt", ["ecotaxa", "dwca", "csv"])
def test_labels_round_trip_exactly_in_every_format(tmp_path, dataset, fmt):
    original = discover(dataset)
    ids = read_source(dataset)
    path, = write_identifications(ids, tmp_path / fmt, fmt, progress=False)
    back = discover(path)  # merged into the dataset the file names: the same images, the same labels
    assert back.root == original.root and back.rel_paths == original.rel_paths and back.name == original.name
    assert labels_of(back) == labels_of(original) and back.missing == []
    assert sorted(back.class_names) == sorted(HOSTILE)
    if fmt == "csv":
        return
    # on a colleague's machine the dataset is not there: the images beside the file, the same labels
    shutil.move(dataset.parent, tmp_path / "moved_away")
    alone = discover(path)
    assert len(alone) == len(original) and alone.missing == []
    copies = (tmp_path / fmt / "images").resolve()
    by_path = {Path(f).relative_to(copies).as_posix(): label for f, label in labels_of(alone).items()}
    assert by_path == {r: (original.class_names[l] if l >= 0 else None)
                       for r, l in zip(original.rel_paths, original.labels)}


@pytest.mark.parametrize("fmt", ["ecotaxa", "dwca", "csv"])
def test_predictions_round_trip_exactly_in_every_format(classified, fmt):
    ids = read_source(classified)
    path, = write_identifications(ids, classified.parent / fmt, fmt, progress=False)
    back = read_exchange(path)
    cols = ["path" if fmt != "csv" else "file", "label", "status", "best_guess", "specimen"]  # csv: absolute paths
    assert back.frame[cols].equals(ids.frame[cols])
    assert np.array_equal(back.frame["probability"].to_numpy(), ids.frame["probability"].to_numpy())
    assert [Path(f).read_bytes() for f in back.frame["file"]] == [Path(f).read_bytes() for f in ids.frame["file"]]
    assert back.dataset == ids.dataset
    if fmt != "csv":
        assert (back.model, back.probe, back.threshold, back.identified) == (ids.model, ids.probe, ids.threshold,
                                                                             ids.identified)


def test_colleagues_validations_added_and_conflicts_unknown_missing_listed(tmp_path, classified, dataset, caplog):
    ids = read_source(classified)
    tsv, = write_identifications(ids, tmp_path / "x", "ecotaxa", progress=False)
    original = discover(dataset)
    text = tsv.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    head = rows[0]
    col = {c: i for i, c in enumerate(head)}
    f = ids.frame
    abst = int(np.flatnonzero(ids.abstained & ~(original.labels >= 0))[0])
    machine = int(np.flatnonzero(ids.assigned)[0])
    human = int(np.flatnonzero(ids.human)[0])
    # a colleague validates an abstention with a new name, changes a labelled image's class, adds a row for an
    # image that is not in the dataset and deletes one image file
    r = rows[2 + abst]
    r[col["object_annotation_category"]], r[col["object_annotation_status"]] = "Nova <i>sp.</i>\tA", "validated"
    other = next(h for h in HOSTILE if h != f.loc[human, "label"])
    rows[2 + human][col["object_annotation_category"]] = other
    extra = list(rows[2 + machine])
    extra[col["object_id"]], extra[col["img_file_name"]] = "not/in/dataset.png", "images/stray.png"
    _png(tsv.parent / "images" / "stray.png", 9)
    rows.append(extra)
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t", lineterminator="\n").writerows(rows)
    tsv.write_text("\ufeff" + buf.getvalue(), encoding="utf-8")
    with caplog.at_level(logging.INFO):
        res = import_identifications(read_exchange(tsv), tsv)
    assert res.dataset == dataset.resolve() or res.dataset == dataset
    assert res.added == [(f.loc[abst, "path"], "Nova <i>sp.</i>\tA")]
    assert res.conflicts == [(f.loc[human, "path"], f.loc[human, "label"], other)]
    assert res.unknown == ["not/in/dataset.png"] and res.predicted == int(ids.assigned.sum()) + 1
    assert res.images.missing[-1] == ("not/in/dataset.png", f"not an image of the dataset {res.dataset} "
                                                            "(listed in ecotaxa_manifest.tsv)")
    assert "differ from the dataset's and were not applied" in caplog.text
    assert "not images of the dataset" in caplog.text
    labels = labels_of(res.images)
    assert labels[Path(f.loc[human, "file"]).resolve().as_posix()] == f.loc[human, "label"]  # never overwritten
    # the dataset is gone: the images beside the file; one of them deleted is listed as missing
    shutil.move(dataset.parent, tmp_path / "gone")
    (tsv.parent / "images" / f.loc[machine, "path"]).unlink()
    alone = discover(tsv, accept_predicted=True)
    assert [m for m, _ in alone.missing] == [("images/" + f.loc[machine, "path"])]
    assert alone.missing[0][1] == "image not found (listed in ecotaxa_manifest.tsv)"
    got = labels_of(alone)
    assert got[(tsv.parent / "images" / f.loc[abst, "path"]).resolve().as_posix()] == "Nova <i>sp.</i>\tA"
    assert got[(tsv.parent / "images" / "stray.png").resolve().as_posix()] == f.loc[machine, "label"]


def test_accept_predicted_takes_the_machines_classes_never_abstentions(classified, dataset):
    ids = read_source(classified)
    for fmt in ("ecotaxa", "dwca", "csv"):
        path, = write_identifications(ids, classified.parent / f"a_{fmt}", fmt, progress=False)
        plain, accepted = discover(path), discover(path, accept_predicted=True)
        assert plain.rel_paths == accepted.rel_paths == discover(dataset).rel_paths
        pl, ac = labels_of(plain), labels_of(accepted)
        for _, x in ids.frame.iterrows():
            key = Path(x["file"]).resolve().as_posix()
            if x["status"] == MACHINE and x["label"]:
                assert ac[key] == (pl[key] or x["label"])  # added where the dataset had no label, else kept
            elif x["status"] == MACHINE:
                assert ac[key] == pl[key]


def test_names_with_whitespace_at_an_end_are_refused(tmp_path):
    for i, name in enumerate([" leading", "trailing\t"]):
        _png(tmp_path / "d" / name / f"x{i}.png", i)
    ids = read_source(tmp_path / "d")
    for fmt in ("ecotaxa", "dwca", "csv"):
        with pytest.raises(UserError, match=r"2 class name\(s\) start or end with whitespace.*rename them"):
            write_identifications(ids, tmp_path / fmt, fmt, progress=False)
        assert not any((tmp_path / fmt).glob("*.*"))


def test_dwca_unpacked_folder_is_data_too(tmp_path, dataset):
    ids = read_source(dataset)
    archive, = write_identifications(ids, tmp_path / "g", "dwca", progress=False)
    unpacked = tmp_path / "g" / "unpacked"
    zipfile.ZipFile(archive).extractall(unpacked)
    assert labels_of(discover(unpacked)) == labels_of(discover(dataset))


def test_not_an_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "photos.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("a.txt", "x")
        z.writestr("b.txt", "y")
    with pytest.raises(UserError, match="not a Darwin Core Archive.*unzip it and pass its .tsv"):
        discover(bad)


# ------------------------------------------------------------------------------ the command
def test_cli_export_every_format_and_bad_input(tmp_path, classified, capsys):
    for fmt in ("ecotaxa", "dwca", "csv"):
        assert main(["export", str(classified), "--format", fmt, "--out", str(tmp_path / fmt), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "palaeo-ssl export:" in out and "wrote" in out
    assert "by palaeo-ssl" in out and "left as a best guess" in out
    with pytest.raises(SystemExit) as exc:
        main(["export", str(classified), "--format", "xml", "--out", str(tmp_path / "x")])
    assert exc.value.code == 2 and "invalid choice: 'xml'" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nowhere"), "--format", "csv", "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    shutil.rmtree(classified / "embeddings")
    assert main(["export", str(classified), "--format", "csv", "--out", str(tmp_path / "x")]) == 2
    assert "--store STORE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(classified), "--format", "dwca", "--out", str(tmp_path / "x"), "--basis-of-record",
              "Fossil"])


def test_accept_predicted_reaches_extraction_from_extract_and_run(tmp_path):
    from palaeo_ssl.cli import build_parser
    from palaeo_ssl.pipeline import Pipeline

    for command in ("extract", "run"):
        args = build_parser(command).parse_args([command, "data.tsv", "--out", "o", "--accept-predicted"])
        assert args.accept_predicted is True
        assert build_parser(command).parse_args([command, "d", "--out", "o"]).accept_predicted is False
    run = Pipeline("data.tsv", out=tmp_path / "o", accept_predicted=True)
    assert run.extract_options == {"accept_predicted": True}  # handed to extract_embeddings as it is


def test_a_museums_archive_with_audubon_core_media_is_data(tmp_path):
    """An archive from elsewhere: tab-separated without quotes, no verification status (a curator's
    identifications), Audubon Core media; 'cf.' identifications are no labels."""
    folder = tmp_path / "museum"
    for i in range(3):
        _png(folder / "media" / f"m{i}.jpg", i)
    meta = """<?xml version="1.0" encoding="UTF-8"?>
<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="eml.xml">
 <core encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" ignoreHeaderLines="1"
       rowType="http://rs.tdwg.org/dwc/terms/Occurrence">
  <files><location>occurrence.txt</location></files>
  <id index="0"/>
  <field index="1" term="http://rs.tdwg.org/dwc/terms/catalogNumber"/>
  <field index="2" term="http://rs.tdwg.org/dwc/terms/scientificName"/>
  <field index="3" term="http://rs.tdwg.org/dwc/terms/identificationQualifier"/>
 </core>
 <extension encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy="" ignoreHeaderLines="1"
       rowType="http://rs.tdwg.org/ac/terms/Multimedia">
  <files><location>multimedia.txt</location></files>
  <coreid index="0"/>
  <field index="1" term="http://rs.tdwg.org/ac/terms/accessURI"/>
 </extension>
</archive>"""
    (folder / "meta.xml").write_text(meta)
    (folder / "eml.xml").write_text('<eml:eml xmlns:eml="eml://ecoinformatics.org/eml-2.1.1"><dataset>'
                                    "<title>Museum</title></dataset></eml:eml>")
    (folder / "occurrence.txt").write_text("id\tcatalogNumber\tscientificName\tidentificationQualifier\n"
                                           "o1\tNHM 1\tFusulina cylindrica\t\no2\tNHM 2\tSchwagerina sp.\tcf.\n"
                                           "o3\tNHM 3\tFusulina cylindrica\t\n")
    (folder / "multimedia.txt").write_text("coreid\taccessURI\no1\tmedia/m0.jpg\no2\tmedia/m1.jpg\n"
                                           "o3\tmedia/m2.jpg\no3\tmedia/gone.jpg\n")
    images = discover(folder)  # the unpacked folder; its images relative to it
    got = {Path(f).name: (images.class_names[l] if l >= 0 else None) for f, l in zip(images.files, images.labels)}
    assert got == {"m0.jpg": "Fusulina cylindrica", "m1.jpg": None, "m2.jpg": "Fusulina cylindrica"}
    assert images.specimens == ["NHM 1", "NHM 2", "NHM 3"]
    assert [m for m, _ in images.missing] == ["media/gone.jpg"]


def test_missing_images_are_left_out_with_a_warning_and_none_at_all_is_an_error(tmp_path, dataset, caplog):
    ids = read_source(dataset)
    gone = Path(ids.frame.loc[0, "file"])
    gone.unlink()
    with caplog.at_level(logging.WARNING):
        tsv, = write_identifications(ids, tmp_path / "some", "ecotaxa", progress=False)
    assert "1 image(s) not found, left out of the EcoTaxa folder" in caplog.text
    assert len(ecotaxa_rows(tsv)[2]) == len(ids) - 1
    for f in ids.frame["file"][1:]:
        Path(f).unlink()
    with pytest.raises(UserError, match="none of the 19 images .* was found"):
        write_identifications(ids, tmp_path / "none", "dwca", progress=False)
