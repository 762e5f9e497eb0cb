"""`palaeo-ssl run` and notebook 01 on data/example with the tiny random model.

Random weights: these tests check files, reuse and resumption, never accuracy.
Every test that runs the pipeline is ``slow``; the tests that only read a run's
files share one run (``paper_run``), and the rerun tests start from it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from palaeo_ssl.cli import main
from palaeo_ssl.pipeline import run_pipeline

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "example"
NOTEBOOK = REPO / "notebooks" / "01_analyse_dataset.ipynb"

# Files every paper-protocol run must write (relative to the results folder).
EXPECTED = [
    "manifest.json",
    "README.md",
    "explorer.html",
    "embeddings/skipped.csv",
    "probes/classification_cv_results.csv",
    "probes/classification_cv_results.tex",
    "probes/few_shot_cv_results.csv",
    "probes/few_shot_cv_results.tex",
    "probes/per_class_metrics.csv",
    "probes/confusion_matrix.csv",
    "probes/accuracy_with_data.png",
    "probes/accuracy_with_data.pdf",
    "probes/few_shot_accuracy.png",
    "probes/few_shot_accuracy.pdf",
    "probes/confusion_matrix.png",
    "probes/confusion_matrix.pdf",
    "morphospace/clustering_metrics.csv",
    "morphospace/clustering_metrics.tex",
    "morphospace/morphology_report.csv",
    "morphospace/morphology_report.tex",
    "morphospace/disparity_per_class.csv",
    "morphospace/rarefaction.csv",
    "morphospace/outliers.csv",
    "morphospace/suspect_labels.csv",
    "morphospace/pca.png",
    "morphospace/umap.png",
    "morphospace/tsne.png",
    "morphospace/dist_hist.png",
    "morphospace/rarefaction.png",
    "morphospace/outliers.png",
    "morphospace/suspect_labels.png",
    "reference_comparison.csv",
    "reference_comparison.tex",
]
FAST = ["--episodes", "3", "--repeats", "2", "--no-progress", "--workers", "0"]
#: the shared run's options (the library's names for FAST, plus the paper protocol and a reference)
PAPER_RUN = dict(protocol="paper", reference="radiolaria", episodes=3, repeats=2, progress=False, workers=0)


@pytest.fixture(scope="module")
def paper_run(tiny_model, tmp_path_factory):
    """One paper-protocol run of data/example, shared by every test that reads or reruns it."""
    out = tmp_path_factory.mktemp("run") / "example"
    umask = os.umask(0o022)  # a lab's usual umask: every file it writes must be readable by colleagues
    try:
        result = run_pipeline(EXAMPLE, model=str(tiny_model), out=out, **PAPER_RUN)
    finally:
        os.umask(umask)
    assert result.out == out and set(result.probes) == {"paper"}
    return out


@pytest.mark.slow
def test_run_writes_every_file(paper_run):
    out = paper_run
    for rel in EXPECTED:
        p = out / rel
        assert p.is_file() and p.stat().st_size > 0, rel
    assert list(out.glob("morphospace/umap_clusters_*.png"))
    stores = list((out / "embeddings").glob("*/features.npy"))
    assert len(stores) == 1
    # written under umask 022: every file and folder readable by the group and others (atomic writes included)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    wrong = {k: oct(m) for k, m in modes.items() if m != (0o755 if (out / k).is_dir() else 0o644)}
    assert len(modes) > 40 and not wrong, wrong


@pytest.mark.slow
def test_manifest_and_readme(paper_run):
    out = paper_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["images"] == 100 and m["counts"]["classes"] == 5 and m["counts"]["skipped"] == 0
    assert m["model"]["revision"] == "local" and m["dtype"] == "float32" and m["device"] == "cpu"
    assert m["model"]["family"] == "dinov3-vit" and m["model"]["licence"] == "DINOv3 License"
    assert m["seeds"]["all_stages"] == 0 and m["protocols"] == ["paper"]
    assert {"torch", "transformers", "sklearn", "palaeo_ssl"} <= set(m["versions"])
    assert {"extract", "probes_paper", "morphospace_paper", "explorer"} <= set(m["stages"])
    assert all(s["seconds"] >= 0 for s in m["stages"].values())
    readme = (out / "README.md").read_text()
    assert "Built with DINOv3 (see LICENSE_DINOv3.md" in readme
    listed = {line.split("`")[1] for line in readme.splitlines() if line.startswith("- `")}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*")
               if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)}
    assert on_disk <= listed
    for line in readme.splitlines():
        if line.startswith("- `"):
            assert len(line.split(": ", 1)[1]) > 10  # every file has a description


@pytest.mark.slow
def test_random_weight_run_is_marked_everywhere(paper_run):
    """The tiny test model is marked as random weights, so every output of the run says so."""
    from palaeo_ssl.models import RANDOM_WEIGHTS_NOTICE
    from palaeo_ssl.testing import pdf_text_lines

    out = paper_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["random_weights"] is True and m["note"].startswith(RANDOM_WEIGHTS_NOTICE)
    assert RANDOM_WEIGHTS_NOTICE in (out / "README.md").read_text().splitlines()[2]
    pdfs = sorted(out.rglob("*.pdf"))
    assert len(pdfs) > 10 and all(RANDOM_WEIGHTS_NOTICE in pdf_text_lines(p) for p in pdfs)
    assert RANDOM_WEIGHTS_NOTICE in (out / "explorer.html").read_text()


@pytest.mark.slow
def test_reference_comparison(paper_run):
    out = paper_run
    cmp = pd.read_csv(out / "reference_comparison.csv")
    assert list(cmp.columns) == ["section", "setting", "method", "metric", "published", "this_run", "difference"]
    full = cmp[(cmp.setting == "full data") & (cmp.metric == "top-1 accuracy")]
    assert len(full) == 2 and full["this_run"].between(0, 1).all()
    assert (full["difference"] - (full["this_run"] - full["published"])).abs().max() < 1e-9
    assert cmp[cmp.section == "clustering"]["this_run"].notna().any()
    assert cmp[cmp.section == "disparity"]["this_run"].notna().all()


@pytest.mark.slow
def test_second_run_recomputes_nothing(paper_run, tiny_model):
    out = paper_run
    before = {p: p.stat().st_mtime_ns for p in (out / "probes").glob("*.csv")}
    again = run_pipeline(EXAMPLE, model=str(tiny_model), out=out, **PAPER_RUN)
    assert again.probes == {"paper": None} and again.morphospace == {"paper": None}  # nothing recomputed
    m = json.loads((out / "manifest.json").read_text())
    assert all(s["reused"] for s in m["stages"].values()), m["stages"]
    assert m["stages"]["extract"]["computed"] == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "probes").glob("*.csv")} == before


@pytest.mark.slow
def test_one_more_image_redoes_only_what_changed(tiny_model, tmp_path):
    import shutil

    # a copy of the data is another collection than data/example (its features are never taken from
    # data/example's store, whatever their fingerprints): its first run computes them, the rerun one image
    data = tmp_path / "example"
    shutil.copytree(EXAMPLE, data)
    out = tmp_path / "res"
    args = ["run", str(data), "--model", str(tiny_model), "--out", str(out), "--protocol", "paper",
            "--reference", "radiolaria", "--no-explorer", *FAST]
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["stages"]["extract"]["computed"] == 100
    shutil.copy(data / "diatom" / sorted(p.name for p in (data / "diatom").iterdir())[0],
                data / "diatom" / "one_more.jpg")
    assert main(args) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["extract"]["computed"] == 1
    assert not m["stages"]["probes_paper"]["reused"] and m["counts"]["images"] == 101
    assert len(list((out / "embeddings").glob("*/meta.json"))) == 1  # the same store, extended


_KILL_RUNNER = """
import sys
from palaeo_ssl.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_after_extraction_resumes_at_next_stage(tiny_model, tmp_path):
    out = tmp_path / "res"
    args = ["run", str(EXAMPLE), "--model", str(tiny_model), "--out", str(out), "--protocol", "standard",
            "--no-explorer", *FAST]
    proc = subprocess.Popen([sys.executable, "-c", _KILL_RUNNER, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = out / ".stages" / "extract.json"
    deadline = time.time() + 300
    while time.time() < deadline and not marker.is_file() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.is_file(), "extraction never finished"
    assert not (out / "manifest.json").exists()
    assert main(args) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["extract"]["reused"] and m["stages"]["extract"]["computed"] == 0
    assert (out / "probes" / "classification_cv_results.csv").is_file()


def test_bad_reference_and_protocol(tmp_path, tiny_model, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(EXAMPLE), "--out", str(tmp_path), "--reference", "trilobites"])
    assert exc.value.code == 2
    assert main(["run", str(EXAMPLE), "--model", str(tiny_model), "--out", str(tmp_path), "--protocol",
                 "standard", "--reference", "pollen"]) == 2
    assert "--reference compares with the paper's tables, so it needs the paper protocol" in capsys.readouterr().err


def test_stages_run_once_per_key_and_again_when_a_file_is_gone(tmp_path):
    """The bookkeeping behind reuse and resumption, without a run (the runs above are slow)."""
    from palaeo_ssl.pipeline import Stages

    calls = []

    def compute():
        calls.append(1)
        table = tmp_path / "probes" / "table.csv"
        table.parent.mkdir(exist_ok=True)
        table.write_text("a,b\n1,2\n")
        return [table], {"call": len(calls)}

    first = Stages(tmp_path).run("probes_paper", {"emb": "abc", "seed": 0}, compute)
    assert not first.reused and first.files == ["probes/table.csv"] and len(calls) == 1
    again = Stages(tmp_path).run("probes_paper", {"emb": "abc", "seed": 0}, compute)  # a later run, same key
    assert again.reused and again.files == first.files and again.info["call"] == 1 and len(calls) == 1
    assert not Stages(tmp_path).run("probes_paper", {"emb": "abc", "seed": 1}, compute).reused  # another key
    (tmp_path / "probes" / "table.csv").unlink()
    assert not Stages(tmp_path).run("probes_paper", {"emb": "abc", "seed": 1}, compute).reused  # a file is gone
    assert not Stages(tmp_path, force=True).run("probes_paper", {"emb": "abc", "seed": 1}, compute).reused
    assert len(calls) == 4


def test_every_file_a_run_writes_has_a_description():
    from palaeo_ssl.pipeline import describe_file

    generic = describe_file("somewhere/unknown.xyz")
    for rel in EXPECTED + ["morphospace/umap_clusters_hdbscan.png", "embeddings/store/features.npy"]:
        assert describe_file(rel) != generic and len(describe_file(rel)) > 10, rel


@pytest.mark.slow
def test_notebook_01_runs_headless(tiny_model, tmp_path):
    papermill = pytest.importorskip("papermill")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("DATA", "MODEL", "OUT", "POOLING", "PROTOCOL", "SEED"):
        assert f"{name} =" in tagged[0].source
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    out = tmp_path / "nb_results"
    executed = papermill.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3", cwd=str(NOTEBOOK.parent),
        progress_bar=False,
        parameters=dict(DATA=str(EXAMPLE), MODEL=str(tiny_model), OUT=str(out), POOLING="cls", PROTOCOL="paper",
                        SEED=0, REFERENCE="radiolaria", EPISODES=3, REPEATS=2),
    )
    for cell in executed.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.get("outputs", []) if o.output_type == "error"], cell.source
    for rel in EXPECTED:
        assert (out / rel).is_file(), rel
    shown = sum(1 for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert shown >= 10


def test_a_stage_made_by_other_code_is_recomputed(tmp_path, monkeypatch):
    import palaeo_ssl
    from palaeo_ssl import cache
    from palaeo_ssl.pipeline import Stages

    calls = []

    def compute():
        calls.append(1)
        (tmp_path / "t.csv").write_text("a\n1\n")
        return [tmp_path / "t.csv"], {}

    assert not Stages(tmp_path).run("probes_paper", {"emb": "abc"}, compute).reused
    assert Stages(tmp_path).run("probes_paper", {"emb": "abc"}, compute).reused
    monkeypatch.setattr(palaeo_ssl, "__version__", "999.0")  # an upgrade of palaeo-ssl
    cache.code_version.cache_clear()
    try:
        assert not Stages(tmp_path).run("probes_paper", {"emb": "abc"}, compute).reused
        assert Stages(tmp_path).run("probes_paper", {"emb": "abc"}, compute).reused
    finally:
        monkeypatch.undo()
        cache.code_version.cache_clear()
    assert not Stages(tmp_path).run("probes_paper", {"emb": "abc"}, compute).reused  # and back
    assert len(calls) == 3


@pytest.mark.slow
def test_both_protocols_compute_the_shared_morphospace_once(tmp_path, monkeypatch):
    """Projections, disparity (bootstrap, rarefaction) and outliers once for both protocols; a rerun nothing."""
    from collections import Counter

    import numpy as np

    from palaeo_ssl import Embeddings
    from palaeo_ssl.morphospace import projections
    from palaeo_ssl.morphospace import run as mrun
    from palaeo_ssl.pipeline import Pipeline

    def first_axes(features, *, n_components=2, **_):  # UMAP and t-SNE stand-ins: the computation is not under test
        x = np.asarray(projections.unit_rows(features))
        u, s, _vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
        return (u[:, :n_components] * s[:n_components]).astype(np.float32)

    monkeypatch.setattr(projections, "umap_projection", first_axes)
    monkeypatch.setattr(projections, "tsne_projection", lambda f, **k: {
        "coords": first_axes(f), "index": np.arange(len(f)), "perplexity": np.asarray(20.0)})
    monkeypatch.setattr(mrun, "_write_figures", lambda *a, **k: [])
    calls: Counter = Counter()

    def count(module, name):
        real = getattr(module, name)

        def counted(*a, **k):
            calls[name] += 1
            return real(*a, **k)

        monkeypatch.setattr(module, name, counted)

    for module, name in ((mrun.pj, "compute_projections"), (mrun.dp, "disparity_table"), (mrun.dp, "rarefaction"),
                         (mrun.dp, "disparity_per_class"), (mrun.ol, "neighbourhood_table"),
                         (mrun.cl, "cluster_morphospace")):
        count(module, name)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 15)
    emb = Embeddings((rng.normal(size=(3, 12))[y] * 2 + rng.normal(size=(45, 12))).astype(np.float32),
                     [f"img_{i}.png" for i in range(45)], y, ["a", "b", "c"])

    def morphospace():
        pipe = Pipeline(tmp_path / "data", out=tmp_path / "run", protocol="both", progress=False)
        pipe.emb, pipe.ident = emb, emb.identity()
        return pipe, pipe.morphospace()

    pipe, tables = morphospace()
    assert set(tables) == {"paper", "standard"}
    assert calls == {"compute_projections": 1, "disparity_table": 1, "rarefaction": 1, "disparity_per_class": 1,
                     "neighbourhood_table": 1, "cluster_morphospace": 2}, calls
    out = tmp_path / "run" / "morphospace"
    assert (out / "projections.npz").is_file() and not list(out.glob("*/projections.npz"))
    for name in ("morphology_report.csv", "rarefaction.csv", "outliers.csv", "suspect_labels.csv"):
        assert (out / "paper" / name).read_bytes() == (out / "standard" / name).read_bytes(), name
    assert len(pd.read_csv(out / "standard" / "clustering_metrics.csv")) > len(
        pd.read_csv(out / "paper" / "clustering_metrics.csv"))  # the clusterings are the protocols' own
    calls.clear()
    pipe, _ = morphospace()  # a rerun with nothing new
    assert not calls and all(r.reused for r in pipe.stages.records.values())


def test_files_of_earlier_runs_are_listed_apart_never_deleted(tmp_path):
    """A results folder reused with other inputs or code keeps the earlier files (palaeo-ssl deletes nothing),
    and its README does not present them as this run's."""
    from palaeo_ssl.pipeline import write_results_readme

    for rel in ("probes/classification_cv_results.csv", "morphospace/paper/projections.npz", "manifest.json",
                "embeddings/old_store/features.npy", "embeddings/new_store/features.npy", "explorer_files/data/x.js"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    manifest = {"data": "d", "palaeo_ssl_version": "1", "created": "now", "model": {"id": "m", "pooling": "cls"},
                "dtype": "float32", "device": "cpu", "protocols": ["paper"], "seeds": {"all_stages": 0},
                "counts": {"images": 1, "labelled": 1, "classes": 1, "skipped": 0},
                "stages": {"extract": {"seconds": 1.0, "reused": True, "files": ["embeddings/new_store/features.npy"]},
                           "probes_paper": {"seconds": 1.0, "reused": False,
                                            "files": ["probes/classification_cv_results.csv"]},
                           "explorer": {"seconds": 1.0, "reused": False, "files": ["explorer.html", "explorer_files"]}}}
    text = write_results_readme(tmp_path, manifest).read_text()
    current, earlier = text.split("## Files left from earlier runs")
    for rel in ("probes/classification_cv_results.csv", "embeddings/new_store/features.npy", "explorer_files/",
                "manifest.json", "README.md"):
        assert f"- `{rel}`: " in current and rel not in earlier, rel
    for rel in ("morphospace/paper/projections.npz", "embeddings/old_store/features.npy"):
        assert f"- `{rel}`: " in earlier and rel not in current, rel
    assert (tmp_path / "embeddings/old_store/features.npy").is_file()
