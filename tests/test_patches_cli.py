"""``palaeo-ssl visualise`` end to end with the tiny random model: files written and read back.

Random weights see nothing: these tests check files, sizes and bookkeeping, never what the maps show.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from palaeo_ssl.cli import main

ALWAYS = ("pca_rgb", "foreground", "overlay", "attention_cls", "attention_heads")


def object_image(path, size, seed=0):
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.fromarray((rng.random((h, w, 3)) * 40).astype(np.uint8))
    ImageDraw.Draw(img).ellipse([w * 0.2, h * 0.15, w * 0.8, h * 0.85], fill=(220, 200, 150))
    img.save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("specimens")
    return {
        "tall": object_image(d / "tall.png", (59, 218)),
        "wide": object_image(d / "wide.jpg", (300, 180), seed=1),
        "other": object_image(d / "other.png", (120, 120), seed=2),
    }


def run_full(tiny_model, images, out):
    return main(["visualise", str(images["tall"]), "--model", str(tiny_model), "--out", str(out), "--device", "cpu",
                 "--basis", str(images["wide"]), str(images["other"]), "--compare", str(images["wide"]),
                 "--point", "30,100"])


def test_visualise_writes_every_figure_and_reads_back(tiny_model, images, tmp_path, capsys):
    out = tmp_path / "vis"
    assert run_full(tiny_model, images, out) == 0
    printed = capsys.readouterr().out
    assert "28x8 patches" in printed and "wrote 7 figures" in printed
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
    assert info["grid"] == [28, 8] and info["input_size"] == [128, 448] and info["image_size"] == [59, 218]
    assert info["num_register_tokens"] == 2 and info["foreground"]["method"] == "otsu"
    assert info["shared_basis"] == ["tall.png", "wide.jpg", "other.png"]
    corr = info["correspondence"]
    assert corr["query_patch"] == [12, 4] and corr["point"] == [30.0, 100.0]   # 100 px of 218 -> row 12 of 28
    assert -1 <= corr["best_similarity"] <= 1 and len(corr["best_patch"]) == 2
    assert set(info["files"]) == set(ALWAYS) | {"pca_shared_basis", "correspondence"}


def test_visualise_files_equal_the_library_computation(tiny_model, images, tmp_path):
    """Only the always-written figures without --basis/--point/--compare; the bare pictures are exactly what
    palaeo_ssl.patches computes (deterministic: a second, independent computation gives the same pixels)."""
    from palaeo_ssl import patches as P
    from palaeo_ssl.backbone import load_backbone

    out = tmp_path / "run"
    assert main(["visualise", str(images["wide"]), "--model", str(tiny_model), "--out", str(out),
                 "--size", "224", "--background", "grey"]) == 0
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


@pytest.mark.parametrize("extra, message", [
    (["--point", "500,10"], "outside the image"),
    (["--size", "100"], "try --size 96"),
])
def test_visualise_bad_input_exits_2_with_advice(tiny_model, images, tmp_path, capsys, extra, message):
    code = main(["visualise", str(images["tall"]), "--model", str(tiny_model), "--out", str(tmp_path / "o")] + extra)
    assert code == 2
    assert message in capsys.readouterr().err


def test_visualise_missing_or_broken_image_exits_2(tiny_model, tmp_path, capsys):
    assert main(["visualise", str(tmp_path / "nope.png"), "--model", str(tiny_model), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["visualise", str(broken), "--model", str(tiny_model), "--out", str(tmp_path)]) == 2
    assert "could not read image" in capsys.readouterr().err


def test_visualise_rejects_malformed_options(images, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["visualise", str(images["tall"]), "--out", str(tmp_path), "--point", "12"])
    assert exc.value.code == 2 and "X,Y" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["visualise", str(images["tall"]), "--out", str(tmp_path), "--threshold", "high"])
    assert exc.value.code == 2 and "otsu" in capsys.readouterr().err


def test_visualise_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["visualise", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--model", "--out", "--size", "--basis", "--point", "--compare", "--threshold", "--background",
                "--invert-foreground", "--device", "--dtype"):
        assert opt in text
