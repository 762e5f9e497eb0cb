"""`palaeo-ssl demo` (the main job of a fresh checkout) and the marking of random-weight runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import palaeo_ssl.demo as demo
from palaeo_ssl.backbone import RANDOM_WEIGHTS_KEY, RANDOM_WEIGHTS_NOTICE, check_model_access, describe_model
from palaeo_ssl.errors import ModelLoadError
from palaeo_ssl.testing import pdf_text_lines

REPO = Path(__file__).resolve().parents[1]


def red_pixels(path: Path) -> int:
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((a[..., 0] > 150) & (a[..., 1] < 60) & (a[..., 2] < 60)).sum())


# ---------------------------------------------------------------------- the marker, end to end through extraction
def test_tiny_model_is_marked_and_extraction_records_it(tiny_model, tmp_path):
    from palaeo_ssl import extract_embeddings, load_embeddings
    from palaeo_ssl.testing import make_class_folder_dataset

    assert json.loads((tiny_model / "config.json").read_text())[RANDOM_WEIGHTS_KEY] is True
    assert describe_model(str(tiny_model)).random_weights
    data = make_class_folder_dataset(tmp_path / "data", n_classes=2, per_class=2)
    emb = extract_embeddings(data, model=str(tiny_model), out=tmp_path / "out", progress=False, workers=0)
    assert emb.meta["random_weights"] is True
    assert json.loads((Path(emb.meta["store_path"]) / "meta.json").read_text())["random_weights"] is True
    assert load_embeddings(tmp_path / "out").meta["random_weights"] is True


def test_a_model_without_the_marker_is_not_random(tiny_model, tmp_path):
    import shutil

    real = tmp_path / "real"
    shutil.copytree(tiny_model, real)
    cfg = json.loads((real / "config.json").read_text())
    del cfg[RANDOM_WEIGHTS_KEY]
    (real / "config.json").write_text(json.dumps(cfg))
    assert not describe_model(str(real)).random_weights


# ---------------------------------------------------------------------- figure_notice
def _figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), layout="constrained")
    ax.plot([0, 1], [0, 1])
    ax.set_title("a title")
    return fig


def test_figure_notice_stamps_every_saved_figure(tmp_path):
    from palaeo_ssl.plots import active_notices, figure_notice, save_figure

    save_figure(_figure(), tmp_path / "plain", dpi=50)
    with figure_notice(RANDOM_WEIGHTS_NOTICE):
        with figure_notice(RANDOM_WEIGHTS_NOTICE):  # nested: once
            assert active_notices() == (RANDOM_WEIGHTS_NOTICE,)
            save_figure(_figure(), tmp_path / "stamped", dpi=50)
        with figure_notice(None):  # None adds nothing
            save_figure(_figure(), tmp_path / "stamped2", dpi=50)
    assert active_notices() == ()
    save_figure(_figure(), tmp_path / "after", dpi=50)

    for stem in ("stamped", "stamped2"):
        assert RANDOM_WEIGHTS_NOTICE in pdf_text_lines(tmp_path / f"{stem}.pdf")
        assert "a title" in pdf_text_lines(tmp_path / f"{stem}.pdf")
        assert red_pixels(tmp_path / f"{stem}.png") > 50
    for stem in ("plain", "after"):
        assert RANDOM_WEIGHTS_NOTICE not in pdf_text_lines(tmp_path / f"{stem}.pdf")
        assert "a title" in pdf_text_lines(tmp_path / f"{stem}.pdf")
        assert red_pixels(tmp_path / f"{stem}.png") == 0


# ---------------------------------------------------------------------- the demo's decision
def test_without_access_the_demo_falls_back_with_one_line(tmp_path):
    # conftest: HF_HUB_OFFLINE=1 and nothing cached
    with pytest.raises(ModelLoadError) as err:
        check_model_access("dinov3-vits16")
    assert err.value.kind == "offline"
    plan = demo.plan_demo("dinov3-vits16", out=tmp_path / "example", smoke_model_folder=tmp_path / "smoke-model")
    assert plan.random_weights and plan.out == tmp_path / "example-smoke"
    assert plan.model == str(tmp_path / "smoke-model")
    msg = plan.message
    assert "\n" not in msg
    for part in ("HF_HUB_OFFLINE=1", "accept the licence at https://huggingface.co/facebook/dinov3-vits16-pretrain-lvd1689m",
                 "hf auth login", "HF_TOKEN", "--model", str(tmp_path / "example-smoke"), "a pipeline check, not a result"):
        assert part in msg, part


def test_with_access_the_demo_runs_the_model_itself(tiny_model, tmp_path):
    plan = demo.plan_demo(str(tiny_model), out=tmp_path / "example")
    assert plan == demo.DemoPlan(model=str(tiny_model), out=tmp_path / "example", random_weights=False)


@pytest.mark.parametrize("kind, text", [
    ("gated", "You are trying to access a gated repo. 403 Client Error"),
    ("token", "401 Client Error: Unauthorized"),
])
def test_fallback_message_says_why(kind, text):
    from palaeo_ssl.backbone import ALIASES, _explain_load_error

    err = _explain_load_error("dinov3-vitb16", ALIASES["dinov3-vitb16"], OSError(text))
    assert err.kind == kind
    msg = demo.fallback_message("dinov3-vitb16", err, "results/example-smoke")
    assert err.reason in msg and "https://huggingface.co/facebook/dinov3-vitb16-pretrain-lvd1689m" in msg


def test_a_folder_without_weights_is_no_access(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="holds no weights"):
        check_model_access(str(folder))
    assert demo.model_page(str(folder)).endswith("facebook/dinov3-vits16-pretrain-lvd1689m")


def test_smoke_model_is_built_once(tmp_path):
    folder = demo.smoke_model(tmp_path / "m")
    assert describe_model(str(folder)).random_weights
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert demo.smoke_model(tmp_path / "m") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind


def test_run_demo_calls_the_pipeline_with_the_fallback(tmp_path, monkeypatch, caplog):
    import palaeo_ssl.pipeline
    from palaeo_ssl.plots import active_notices

    calls = []

    def fake_run_pipeline(data, model, out, progress):
        calls.append(dict(data=data, model=model, out=out, progress=progress, notices=active_notices()))
        return {"out": out}

    monkeypatch.setattr(palaeo_ssl.pipeline, "run_pipeline", fake_run_pipeline)
    with caplog.at_level("WARNING", logger="palaeo_ssl"):
        res = demo.run_demo(REPO / "data" / "example", out=tmp_path / "example", progress=False,
                            smoke_model_folder=tmp_path / "smoke-model")
    assert res.plan.random_weights and res.result == {"out": tmp_path / "example-smoke"}
    assert calls == [dict(data=REPO / "data" / "example", model=str(tmp_path / "smoke-model"),
                          out=tmp_path / "example-smoke", progress=False, notices=())]
    assert describe_model(str(tmp_path / "smoke-model")).random_weights
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].getMessage() == res.plan.message


def test_run_demo_with_the_real_model_marks_nothing(tiny_model, tmp_path, monkeypatch, caplog):
    import palaeo_ssl.pipeline
    from palaeo_ssl.plots import active_notices

    calls = []
    monkeypatch.setattr(palaeo_ssl.pipeline, "run_pipeline",
                        lambda data, model, out, progress: calls.append((model, out, active_notices())))
    with caplog.at_level("WARNING", logger="palaeo_ssl"):
        demo.run_demo(REPO / "data" / "example", out=tmp_path / "example", model=str(tiny_model), progress=False)
    assert calls == [(str(tiny_model), tmp_path / "example", ())]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_demo_command_without_data_says_what_to_do(tmp_path, capsys):
    from palaeo_ssl.cli import main

    assert main(["demo", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "run from the repository root" in capsys.readouterr().err


def test_demo_command_falls_back_says_so_and_keeps_the_smoke_model_in_the_cache(tmp_path, monkeypatch, capsys):
    """The command's wiring (the pipeline itself is replaced: its marking is tested on a real run in
    test_pipeline.py::test_random_weight_run_is_marked_everywhere)."""
    import palaeo_ssl.pipeline
    from palaeo_ssl.cli import main

    calls = []
    monkeypatch.setattr(palaeo_ssl.pipeline, "run_pipeline", lambda data, model, out, progress: calls.append(model))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "example"
    assert main(["demo", str(REPO / "data" / "example"), "--out", str(out), "--no-progress"]) == 0
    assert "a pipeline check, not a result" in capsys.readouterr().out
    smoke = tmp_path / "cache" / "palaeo-ssl" / "models" / demo.SMOKE_MODEL_NAME
    assert calls == [str(smoke)] and json.loads((smoke / "config.json").read_text())[RANDOM_WEIGHTS_KEY] is True


def test_the_smoke_model_is_rebuilt_by_other_code(tmp_path):
    """The cached smoke model records the versions that built it; other versions build it anew (and the store,
    keyed by the model folder's files, is then computed anew too)."""
    folder = demo.smoke_model(tmp_path / "smoke")
    weights = (folder / "model.safetensors").stat().st_mtime_ns
    assert demo.smoke_model(folder) == folder and (folder / "model.safetensors").stat().st_mtime_ns == weights
    built_by = json.loads((folder / demo.SMOKE_BUILT_BY).read_text())
    (folder / demo.SMOKE_BUILT_BY).write_text(json.dumps({**built_by, "palaeo_ssl": "0.0.0"}))
    demo.smoke_model(folder)
    assert json.loads((folder / demo.SMOKE_BUILT_BY).read_text()) == built_by
    assert (folder / "model.safetensors").stat().st_mtime_ns != weights
