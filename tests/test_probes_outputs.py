"""``palaeo-ssl probe`` and ``palaeo-ssl classify``: every file read back, TeX compiled, figures checked."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from palaeo_ssl import Embeddings, load_embeddings
from palaeo_ssl.cli import main
from palaeo_ssl.probes import run_probe_report
from palaeo_ssl.report import compile_tex

from conftest import LABELLED_STORE_CLASSES as NAMES  # noqa: E402
REFERENCE_CV_COLUMNS = ["train_fraction", "classifier", "n_folds_used"] + [
    f"{s}_{m}" for m in ("top1_accuracy", "top2_accuracy", "top3_accuracy", "f1_macro", "f1_weighted",
                         "precision_macro", "recall_macro", "specificity_macro", "balanced_accuracy")
    for s in ("mean", "std")]
REFERENCE_FS_COLUMNS = ["few_shot_values", "classifier", "n_repeats_successful",
                        "mean_top1_accuracy", "std_top1_accuracy", "mean_top2_accuracy", "std_top2_accuracy",
                        "mean_top3_accuracy", "std_top3_accuracy"] + [
    c for m in ("f1_macro", "f1_weighted", "precision_macro", "recall_macro", "specificity_macro",
                "balanced_accuracy") for c in (m, f"{m}_std")]


@pytest.fixture(scope="module")
def store(labelled_store):
    return labelled_store


def _compile_all(folder):
    if shutil.which("pdflatex") is None:
        return
    for tex in sorted(folder.glob("*.tex")):
        ok, log = compile_tex(tex)
        assert ok, f"{tex.name} does not compile:\n{log}"


def _check_figures(folder, stems):
    for stem in stems:
        png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
        assert pdf.stat().st_size > 1000
        with Image.open(png) as im:
            assert im.size[0] > 300 and im.size[1] > 300


def _in_unit(df, cols):
    v = df[cols].to_numpy(dtype=float)
    v = v[~np.isnan(v)]
    assert v.size and (v >= 0).all() and (v <= 1).all()


@pytest.mark.slow
def test_probe_report_paper_writes_reference_tables(store, tmp_path):
    out = tmp_path / "paper"
    report = run_probe_report(store, out, protocol="paper", n_repeats=2, episodes=3, shots=[1, 2, 5], n_jobs=1,
                              literature_best=0.9)
    assert sorted(p.name for p in report.files) == sorted(p.name for p in out.iterdir())

    cv = pd.read_csv(out / "classification_cv_results.csv")
    assert list(cv.columns) == REFERENCE_CV_COLUMNS
    assert sorted(set(cv["train_fraction"])) == [0.1, 0.3, 0.5, 0.7, 1.0]
    assert set(cv["classifier"]) == {"Logistic Regression", "k-Nearest Neighbours"}
    _in_unit(cv, [c for c in cv.columns if c.startswith("mean_")])
    assert (cv.loc[cv["train_fraction"] >= 0.3, "n_folds_used"] == 10).all()  # 2 repeats x 5 folds
    assert (cv["n_folds_used"] <= 10).all()

    fs = pd.read_csv(out / "few_shot_cv_results.csv")
    assert list(fs.columns) == REFERENCE_FS_COLUMNS
    assert fs["few_shot_values"].tolist() == [1, 1, 2, 2, 5, 5]
    assert fs["classifier"].tolist()[:2] == ["k-Nearest Neighbours", "Logistic Regression"]
    _in_unit(fs, ["mean_top1_accuracy", "f1_macro", "balanced_accuracy"])

    per_class = pd.read_csv(out / "per_class_metrics.csv", keep_default_na=False)
    assert list(per_class.columns) == ["classifier", "class_name", "precision", "recall", "f1", "support",
                                       "n_predicted"]
    assert per_class.groupby("classifier")["class_name"].apply(list).iloc[0] == NAMES
    assert (per_class.groupby("classifier")["support"].sum() == 100).all()
    _in_unit(per_class, ["precision", "recall", "f1"])

    cm = pd.read_csv(out / "confusion_matrix.csv", keep_default_na=False)
    assert list(cm.columns) == ["classifier", "true_class", "predicted_class", "count", "row_fraction"]
    assert (cm.groupby("classifier")["count"].sum() == 100).all()  # the 5 test folds of repeat 0 cover every image
    np.testing.assert_allclose(cm.groupby(["classifier", "true_class"])["row_fraction"].sum(), 1.0)

    tex = (out / "classification_cv_results.tex").read_text()
    assert tex.splitlines()[0] == "% requires: booktabs, graphicx"
    assert r"\toprule" in tex and r"$\pm$" in tex
    blocks = tex.split(r"\midrule")[1:]
    assert len(blocks) == 5 and all(r"\textbf" in b for b in blocks)  # best value bolded within every fraction
    per_class_tex = (out / "per_class_metrics.tex").read_text()
    assert r"50\% \& more" in per_class_tex and r"Globigerina\_bulloides" in per_class_tex
    assert r"x\textasciicircum{}y \{z\}" in per_class_tex
    _compile_all(out)
    _check_figures(out, ["accuracy_with_data", "few_shot_accuracy", "confusion_matrix"])
    run = json.loads((out / "probe_run.json").read_text())
    assert run["protocol"] == "paper" and run["n_classes"] == 4 and run["literature_best"] == 0.9
    assert run["logreg_fits"] == cv.loc[cv["classifier"] == "Logistic Regression", "n_folds_used"].sum()
    skipped = pd.read_csv(out / "skipped_splits.csv")
    assert run["n_folds_skipped"] == len(skipped) == 50 - run["logreg_fits"]


@pytest.mark.slow
def test_probe_report_standard_writes_intervals_and_paired_comparisons(store, tmp_path):
    out = tmp_path / "standard"
    run_probe_report(store, out, probes="knn,centroid", n_repeats=2, fractions=[0.5, 1], shots=[1, 3], episodes=4,
                     n_jobs=1)
    cv = pd.read_csv(out / "classification_cv_results.csv", keep_default_na=False)
    assert list(cv.columns[:3]) == ["train_fraction", "classifier", "n_folds_used"]
    assert set(REFERENCE_CV_COLUMNS) <= set(cv.columns)
    assert {"ci_low_top1_accuracy", "ci_high_top1_accuracy", "mean_cohen_kappa", "min_classes_trained"} <= set(cv.columns)
    assert (cv["n_folds_used"] == 10).all()
    lo, mean, hi = (cv[c].astype(float) for c in ("ci_low_top1_accuracy", "mean_top1_accuracy", "ci_high_top1_accuracy"))
    assert ((lo <= mean) & (mean <= hi)).all()
    paired = pd.read_csv(out / "classification_paired_comparison.csv")
    assert set(paired["classifier_a"]) == {"k-Nearest Neighbours"} and set(paired["classifier_b"]) == {"Nearest Centroid"}
    assert len(paired) == 4  # 2 fractions x 2 metrics
    fs = pd.read_csv(out / "few_shot_cv_results.csv", keep_default_na=False)
    assert set(REFERENCE_FS_COLUMNS) <= set(fs.columns) and "ci_low_top1_accuracy" in fs
    assert (fs["n_repeats_successful"] == 4).all()
    assert (pd.read_csv(out / "few_shot_paired_comparison.csv")["n_pairs"] == 4).all()
    episodes = pd.read_csv(out / "few_shot_episodes.csv")
    assert len(episodes) == 2 * 4 * 2
    _compile_all(out)
    _check_figures(out, ["accuracy_with_data", "few_shot_accuracy", "confusion_matrix"])


def test_probe_cli_bad_input_exits_2(store, tmp_path, capsys):
    emb = load_embeddings(store)
    unlabelled = Embeddings(np.asarray(emb.features), emb.paths, np.full(len(emb), -1), emb.class_names,
                            meta=emb.meta).save(tmp_path / "unlabelled")
    assert main(["probe", str(unlabelled), "--out", str(tmp_path / "o"), "--jobs", "1"]) == 2
    assert "no labels" in capsys.readouterr().err
    assert main(["probe", str(store), "--out", str(tmp_path / "o"), "--probes", "svm"]) == 2
    assert "unknown probe" in capsys.readouterr().err
    for option, value, message in (("--folds", "1", "--folds must be an integer >= 2, not 1"),
                                   ("--jobs", "0", "--jobs")):
        assert main(["probe", str(store), "--out", str(tmp_path / "o"), "--protocol", "paper", "--repeats", "1",
                     "--no-progress", option, value]) == 2
        assert message in capsys.readouterr().err


def test_confusion_matrix_figure_stays_readable_at_50_classes():
    from palaeo_ssl.plots.probes import confusion_matrix

    rng = np.random.default_rng(0)
    big = rng.integers(0, 20, size=(50, 50)) + np.diag(np.full(50, 200))
    fig = confusion_matrix(big, [f"Very long taxon name number {i}" for i in range(50)])
    ax = fig.axes[0]
    assert len(ax.get_xticklabels()) == 50 and len(ax.texts) == 0  # no unreadable annotations
    assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= 7
    assert all(len(t.get_text()) <= 28 for t in ax.get_yticklabels())
    w, h = fig.get_size_inches()
    assert h >= 13
    small = confusion_matrix(np.array([[5, 1], [0, 6]]), ["a", "b"])
    assert [t.get_text() for t in small.axes[0].texts] == ["83", "17", "100"]


def test_comma_list_options_reject_bad_lists(tmp_path, capsys):
    from palaeo_ssl.cli import main

    for option, value, what in (("--fractions", "0.5,x", "numbers"), ("--shots", "1,2.5", "integers"),
                                ("--shots", ",", "integers")):
        with pytest.raises(SystemExit) as exc:
            main(["probe", str(tmp_path), "--out", str(tmp_path / "o"), option, value])
        assert exc.value.code == 2
        assert f"expected comma-separated {what}" in capsys.readouterr().err


def test_accuracy_figures_carry_reference_lines_labels_and_range():
    from palaeo_ssl.plots.probes import accuracy_with_data, few_shot_accuracy

    cv = pd.DataFrame({"train_fraction": [0.5, 1.0], "classifier": ["Logistic Regression"] * 2,
                       "mean_top1_accuracy": [0.7, 0.8], "std_top1_accuracy": [0.05, 0.04]})
    fs = pd.DataFrame({"few_shot_values": [1, 5], "classifier": ["Nearest Centroid"] * 2,
                       "mean_top1_accuracy": [0.4, 0.6], "std_top1_accuracy": [0.1, 0.05]})
    for fig, xlabel in ((accuracy_with_data(cv, baseline=0.3, literature=0.9, title="t"), "Data used (%)"),
                        (few_shot_accuracy(fs, baseline=0.3, literature=0.9, title="t"), "Labelled images per class")):
        ax = fig.axes[0]
        assert ax.get_xlabel() == xlabel and ax.get_ylabel() == "Top-1 accuracy (%)" and ax.get_title() == "t"
        assert ax.get_ylim() == (0, 101)
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert {"Best in literature", "Majority class"} <= set(labels)
        levels = {line.get_label(): line.get_ydata()[0] for line in ax.lines}
        assert levels["Best in literature"] == pytest.approx(90) and levels["Majority class"] == pytest.approx(30)
    assert fig.axes[0].get_xscale() == "log"


def test_probe_report_from_the_library(store, tmp_path):
    """The probe stage without the command (whose tests compile the LaTeX and are slow): computed, written, read."""
    from palaeo_ssl.probes import ProbeConfig, compute_probe_report, write_probe_report

    config = ProbeConfig(protocol="paper", fractions=(0.5, 1.0), n_repeats=1, shots=(1, 2), episodes=2,
                         literature_best=0.9)
    result = compute_probe_report(store, config, n_jobs=1)
    assert result.few_shot is not None and set(result.timings) >= {"cross-validation", "few-shot", "total"}
    files = write_probe_report(result, tmp_path)
    assert all(f.is_file() for f in files) and set(files) == set(result.files)
    cv = pd.read_csv(tmp_path / "classification_cv_results.csv")
    assert list(cv.columns) == REFERENCE_CV_COLUMNS and sorted(set(cv["train_fraction"])) == [0.5, 1.0]
    _in_unit(cv, [c for c in cv.columns if c.startswith("mean_")])
    fs = pd.read_csv(tmp_path / "few_shot_cv_results.csv")
    assert list(fs.columns) == REFERENCE_FS_COLUMNS and fs["few_shot_values"].tolist() == [1, 1, 2, 2]
    per_class = pd.read_csv(tmp_path / "per_class_metrics.csv", keep_default_na=False)
    assert (per_class.groupby("classifier")["support"].sum() == 100).all()
    tex = (tmp_path / "per_class_metrics.tex").read_text()
    assert tex.startswith("% requires:") and r"50\% \& more" in tex and r"x\textasciicircum{}y \{z\}" in tex
    assert r"\toprule" in (tmp_path / "classification_cv_results.tex").read_text()
    for stem in ("accuracy_with_data", "few_shot_accuracy", "confusion_matrix"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    run = json.loads((tmp_path / "probe_run.json").read_text())
    assert run["protocol"] == "paper" and run["n_classes"] == 4 and run["literature_best"] == 0.9
