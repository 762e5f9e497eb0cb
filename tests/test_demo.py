"""The marking of random-weight runs."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from palaeo_ssl.backbone import RANDOM_WEIGHTS_KEY, RANDOM_WEIGHTS_NOTICE, describe_model


def pdf_text_lines(path: Path) -> list[str]:
    """The text lines drawn in a matplotlib PDF (its content streams, decompressed; one line per TJ operator)."""
    raw = path.read_bytes()
    content = b""
    for m in re.finditer(rb"stream\r?\n(.*?)endstream", raw, re.S):
        try:
            content += zlib.decompress(m.group(1))
        except zlib.error:
            pass
    return [b"".join(re.findall(rb"\((.*?)(?<!\\)\)", m.group(1))).decode("latin-1")
            for m in re.finditer(rb"\[(.*?)\]\s*TJ", content, re.S)]


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
