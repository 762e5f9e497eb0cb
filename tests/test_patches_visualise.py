"""The visualise stage (palaeo_ssl.patches.visualise) with the tiny random model: files written and read back.

Random weights see nothing: these tests check files, sizes and bookkeeping, never what the maps show.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from palaeo_ssl.cli import main
from palaeo_ssl.errors import UserError
from palaeo_ssl.params import ParameterError
from palaeo_ssl.patches import run_visualise, visualise_specimen, write_visualisation
from palaeo_ssl.testing import specimen_image

pytestmark = pytest.mark.slow  # each test loads the model and most draw figures

ALWAYS = ("pca_rgb", "foreground", "overlay", "attention_cls", "attention_heads")


def object_image(path, size, seed=0):
    return specimen_image(path, size, seed, box=(0.2, 0.15, 0.8, 0.85))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("specimens")
    return {
        "tall": object_image(d / "tall.png", (59, 218)),
        "wide": object_image(d / "wide.jpg", (300, 180), seed=1),
        "other": object_image(d / "other.png", (120, 120), seed=2),
    }


def test_visualise_writes_every_figure_and_reads_back(tiny_model, images, tmp_path):
    out = tmp_path / "vis"
    res = run_visualise(images["tall"], out, model=str(tiny_model), device="cpu",
                        basis=[images["wide"], images["other"]], compare=images["wide"], point=(30, 100))
    assert res.view.grid == (28, 8) and len(res.record["files"]) == 7
    assert set(res.timings) == {"compute", "figures", "total"}
    assert {p.name for p in res.files} == {f"{n}.{e}" for n in res.record["files"] for e in ("png", "pdf")} \
        | {"visualise.json"}
    for name in ALWAYS + ("pca_shared_basis", "correspondence"):
        png, pdf = out / f"{name}.png", out / f"{name}.pdf"
        assert png.stat().st_size > 0 and pdf.read_bytes()[:5] == b"%PDF-", name
        with Image.open(png) as im:
            im.load()
            assert im.width > 50 and im.height > 50
    # the bare pictures are the photograph's own pixel size (tall, not square) so they overlay it
    with Image.open(out / "pca_rgb.png") as im:
        assert im.size == (59, 218) and im.mode == "RGB"
        rgb = np.asarray(im)
    with Image.open(out / "foreground.png") as im:
        assert im.size == (59, 218) and im.mode == "L"
        mask = np.asarray(im)
    assert set(np.unique(mask)) <= {0, 255} and 0 < (mask == 255).mean() < 1
    assert (rgb[mask == 0] == 0).all()                       # black background
    fg = rgb[mask == 255]
    assert all(int(fg[:, c].max()) - int(fg[:, c].min()) >= 0.9 * 255 for c in range(3))
    info = json.loads((out / "visualise.json").read_text())
    assert info == res.record
    assert info["grid"] == [28, 8] and info["input_size"] == [128, 448] and info["image_size"] == [59, 218]
    assert info["num_register_tokens"] == 2 and info["foreground"]["method"] == "otsu"
    assert info["shared_basis"] == ["tall.png", "wide.jpg", "other.png"]
    corr = info["correspondence"]
    assert corr["query_patch"] == [12, 4] and corr["point"] == [30.0, 100.0]   # 100 px of 218 -> row 12 of 28
    assert -1 <= corr["best_similarity"] <= 1 and len(corr["best_patch"]) == 2
    assert set(info["files"]) == set(ALWAYS) | {"pca_shared_basis", "correspondence"}
    assert list(info) == ["image", "model_id", "revision", "family", "licence", "device", "dtype", "size",
                          "image_size", "input_size", "patch_size", "grid", "num_register_tokens", "attention",
                          "foreground", "background", "shared_basis", "correspondence", "files", "seconds",
                          "versions"]
    assert info["family"] == "dinov3-vit" and info["licence"] == "DINOv3 License" and info["attention"] is None


def test_visualise_files_equal_the_library_computation(tiny_model, images, tmp_path):
    """Only the always-written figures without basis/point/compare; the bare pictures are exactly what
    palaeo_ssl.patches computes (deterministic: a second, independent computation gives the same pixels)."""
    from palaeo_ssl import patches as P
    from palaeo_ssl.backbone import load_backbone

    out = tmp_path / "run"
    result = visualise_specimen(images["wide"], model=str(tiny_model), size=224)
    assert result.correspondence is None and result.basis_views is None
    write_visualisation(result, out, background="grey")
    assert {p.stem for p in out.glob("*.png")} == set(ALWAYS)
    assert {p.stem for p in out.glob("*.pdf")} == set(ALWAYS)
    view = P.view_specimen(load_backbone(str(tiny_model), "cpu", "float32"), images["wide"], size=224, attention=False)
    with Image.open(out / "pca_rgb.png") as im, Image.open(out / "foreground.png") as m:
        rgb, mask = np.asarray(im), np.asarray(m)
    np.testing.assert_array_equal(rgb, view.pca_picture("grey"))
    np.testing.assert_array_equal(mask, view.mask_picture())
    bg = rgb[mask == 0]
    assert (bg[:, 0] == bg[:, 1]).all() and (bg[:, 1] == bg[:, 2]).all() and bg.max() > 0  # greyed photograph
    info = json.loads((out / "visualise.json").read_text())
    assert info["grid"] == [8, 14] and info["correspondence"] is None and info["shared_basis"] is None
    assert info["foreground"]["fraction"] == pytest.approx(view.foreground.fraction)
    assert info["background"] == "grey"


@pytest.mark.parametrize("options, param, message, for_the_cli", [
    ({"point": (500, 10)}, "point", "outside the image", "--point 500,10 lies outside the image"),
    ({"size": 100}, "size", "try size 96", "try --size 96"),
])
def test_visualise_bad_input_names_the_parameter(tiny_model, images, tmp_path, options, param, message, for_the_cli):
    with pytest.raises(ParameterError, match=message) as exc:
        run_visualise(images["tall"], tmp_path / "o", model=str(tiny_model), **options)
    assert exc.value.param == param
    assert for_the_cli in exc.value.message_for("--" + param)


def test_visualise_missing_or_broken_image_is_a_user_error(tiny_model, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        visualise_specimen(tmp_path / "nope.png", model=str(tiny_model))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(UserError, match="could not read image"):
        visualise_specimen(broken, model=str(tiny_model))


def test_visualise_command_smoke(tiny_model, images, tmp_path, capsys):
    """The one end-to-end run of the command: it prints the summary of what the library wrote."""
    out = tmp_path / "vis"
    assert main(["visualise", str(images["tall"]), "--model", str(tiny_model), "--out", str(out), "--device", "cpu",
                 "--compare", str(images["wide"]), "--point", "30,100"]) == 0
    printed = capsys.readouterr().out
    assert "28x8 patches" in printed and "wrote 6 figures" in printed and "correspondence: patch (12, 4)" in printed
    assert (out / "visualise.json").is_file()
