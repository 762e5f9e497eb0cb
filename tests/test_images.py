"""Discovery of the three layouts and robust decoding of awkward files."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from palaeo_ssl.errors import UserError
from palaeo_ssl.images import ImageReadError, discover, load_image, pad_to_square, parse_color, to_rgb
from palaeo_ssl.testing import write_synthetic_image


def test_class_folders_sorted_nested_and_hidden_skipped(tmp_path):
    write_synthetic_image(tmp_path / "b_taxon" / "x.png")
    write_synthetic_image(tmp_path / "a_taxon" / "deeper" / "y.png", seed=1)
    write_synthetic_image(tmp_path / "a_taxon" / "z.png", seed=2)
    (tmp_path / "a_taxon" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "a_taxon" / "._z.png").write_bytes(b"junk")
    (tmp_path / "b_taxon" / "Thumbs.db").write_bytes(b"junk")
    (tmp_path / "@eaDir").mkdir()
    write_synthetic_image(tmp_path / "@eaDir" / "thumb.png", seed=3)
    il = discover(tmp_path)
    assert il.layout == "classes"
    assert il.class_names == ["a_taxon", "b_taxon"]
    assert il.rel_paths == ["a_taxon/deeper/y.png", "a_taxon/z.png", "b_taxon/x.png"]
    assert il.labels.tolist() == [0, 0, 1]


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        write_synthetic_image(tmp_path / f"img {i}.png", seed=i)
    il = discover(tmp_path)
    assert il.layout == "flat"
    assert il.labels.tolist() == [-1, -1, -1]
    assert il.class_names == []


def test_manifest_with_specimens_relative_paths_and_missing(tmp_path):
    write_synthetic_image(tmp_path / "imgs" / "a.png")
    write_synthetic_image(tmp_path / "imgs" / "b.png", seed=1)
    write_synthetic_image(tmp_path / "imgs" / "c.png", seed=2)
    (tmp_path / "m.csv").write_text(
        "path,label,specimen\nimgs/a.png,Zeta,S1\nimgs/b.png,Alpha,S1\nimgs/c.png,,S2\nimgs/gone.png,Alpha,S3\n"
    )
    il = discover(tmp_path / "m.csv")
    assert il.layout == "manifest"
    assert il.class_names == ["Alpha", "Zeta"]
    assert il.rel_paths == ["imgs/a.png", "imgs/b.png", "imgs/c.png"]
    assert il.labels.tolist() == [1, 0, -1]
    assert il.specimens == ["S1", "S1", "S2"]
    assert il.missing == [("imgs/gone.png", "file not found (listed in the manifest)")]


def test_manifest_without_path_column(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.png,x\n")
    with pytest.raises(UserError, match="'path' column"):
        discover(tmp_path / "m.csv")


def test_missing_and_empty_folder_messages(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(UserError, match="no files found"):
        discover(tmp_path)


def test_extensionless_file_is_recognised_by_content(tmp_path):
    write_synthetic_image(tmp_path / "specimen_0042", fmt="PNG")
    img = load_image(tmp_path / "specimen_0042")
    assert img.mode == "RGB" and img.size == (64, 48)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("not an image at all"), "not an image"),
    ],
)
def test_unreadable_files_give_reasons(tmp_path, make, reason):
    p = tmp_path / "bad.jpg"
    make(p)
    with pytest.raises(ImageReadError, match=reason):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    p = write_synthetic_image(tmp_path / "t.jpg", size=(200, 200))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated|cannot decode"):
        load_image(p)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission bits")
def test_permission_denied(tmp_path):
    p = write_synthetic_image(tmp_path / "locked.png")
    p.chmod(0)
    try:
        with pytest.raises(ImageReadError, match="permission"):
            load_image(p)
    finally:
        p.chmod(0o644)


def test_decompression_bomb_guard_kept(tmp_path, monkeypatch):
    p = write_synthetic_image(tmp_path / "big.png", size=(100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="pixel limit"):
        load_image(p)


def test_16bit_scaled_by_actual_range(tmp_path):
    arr = np.linspace(1000, 3000, 64 * 32).reshape(32, 64).astype(np.uint16)
    p = tmp_path / "micro.tif"
    Image.fromarray(arr).save(p)
    img = load_image(p)
    a = np.asarray(img)
    assert a.shape == (32, 64, 3)
    assert a.min() == 0 and a.max() == 255  # stretched, not clipped to 255 everywhere
    assert np.all(np.diff(a[:, :, 0].ravel().astype(int)) >= 0)


def test_float_tiff_scaled(tmp_path):
    arr = np.linspace(-0.5, 0.5, 40 * 20, dtype=np.float32).reshape(20, 40)
    p = tmp_path / "f.tif"
    Image.fromarray(arr, mode="F").save(p)
    a = np.asarray(load_image(p))
    assert a.min() == 0 and a.max() == 255


def test_rgba_composited_on_background(tmp_path):
    arr = np.zeros((10, 10, 4), np.uint8)
    arr[..., 0] = 200
    arr[:5, :, 3] = 255  # top half opaque red, bottom transparent
    p = tmp_path / "cut.png"
    Image.fromarray(arr, "RGBA").save(p)
    white = np.asarray(load_image(p, background=(255, 255, 255)))
    black = np.asarray(load_image(p, background=(0, 0, 0)))
    assert tuple(white[0, 0]) == (200, 0, 0)
    assert tuple(white[9, 9]) == (255, 255, 255)
    assert tuple(black[9, 9]) == (0, 0, 0)


def test_la_palette_cmyk_modes():
    la = Image.new("LA", (4, 4), (100, 0))
    assert tuple(np.asarray(to_rgb(la, (10, 20, 30)))[0, 0]) == (10, 20, 30)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0] + [0] * 765)
    pal.info["transparency"] = 0
    assert tuple(np.asarray(to_rgb(pal, (1, 2, 3)))[0, 0]) == (1, 2, 3)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    assert to_rgb(cmyk).mode == "RGB"
    assert tuple(np.asarray(to_rgb(cmyk))[0, 0]) == (255, 0, 0)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (10, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert load_image(p).size == (20, 40)


def test_multipage_tiff_uses_first_page(tmp_path):
    pages = [Image.new("L", (8, 8), v) for v in (50, 200)]
    p = tmp_path / "stack.tif"
    pages[0].save(p, save_all=True, append_images=pages[1:])
    a = np.asarray(load_image(p))
    assert a.shape == (8, 8, 3) and int(a[0, 0, 0]) == 50  # the first page, not the second (200)
    assert Image.open(p).n_frames == 2


def test_large_jpeg_uses_draft_mode(tmp_path):
    p = write_synthetic_image(tmp_path / "big.jpg", size=(1600, 1200))
    small = load_image(p, draft_size=224)
    assert small.size[0] < 1600 and min(small.size) >= 224
    assert load_image(p).size == (1600, 1200)


def test_pad_to_square_keeps_aspect():
    img = Image.new("RGB", (100, 40), (255, 0, 0))
    sq = pad_to_square(img, (0, 0, 255))
    assert sq.size == (100, 100)
    a = np.asarray(sq)
    assert tuple(a[0, 0]) == (0, 0, 255) and tuple(a[50, 50]) == (255, 0, 0)


def test_parse_color():
    assert parse_color("white") == (255, 255, 255)
    assert parse_color("#ff8000") == (255, 128, 0)
    assert parse_color("1,2,3") == (1, 2, 3)
    with pytest.raises(UserError):
        parse_color("purple-ish")
    assert parse_color((1, 2, 3)) == (1, 2, 3)
    for bad in ((300, 0, 0), (-1, 0, 0), (1, 2)):  # Pillow would clip 300 silently under another store key
        with pytest.raises(UserError, match="0 to 255"):
            parse_color(bad)
