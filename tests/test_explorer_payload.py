"""The explorer's data payload (what the page's script receives), its input checks and its rendering helpers."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from palaeo_ssl.explorer import WEBGL_THRESHOLD
from palaeo_ssl.explorer.checks import check_inputs
from palaeo_ssl.explorer.payload import build_payload
from palaeo_ssl.explorer.render import notice_html, read_asset, safe_json


def _inputs(tmp_path, **over):
    """5 points: two readable images, one unreadable file, one missing image and one point without a file."""
    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(good)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    kw = dict(
        coords=np.array([[0.123456789, 1.0], [2.0, -3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]]),
        paths=["a/one.png", "a\\two.png", "b/three.jpg", "four.png", "b/c/five.png"],
        class_names=["a", "b"],
        labels=np.array([0, 0, 1, -1, 1]),
        image_files=[str(good), str(good), str(tmp_path / "bad.jpg"), str(tmp_path / "missing.png"), None],
        clusters={"kmeans": np.array([7, 3, -1, 3, 7]), 2: [0, 0, 0, 0, 0]},
        outlier_score=np.array([0.5, np.nan, 1.0, 0.25, np.inf]),
        suspect_score=None,
        neighbours=np.array([[0, 1], [0, 2], [-1, 3], [4, 0], [3, -1]]),
        neighbour_sim=np.array([[1.0, 0.987654], [0.5, np.nan], [0.0, 0.1], [0.2, 0.3], [0.4, 0.0]]),
    )
    kw.update(over)
    coords = kw.pop("coords")
    return check_inputs(coords, **kw)


def test_payload_for_a_small_input(tmp_path):
    p = build_payload(_inputs(tmp_path), title="T", thumb_size=32, workers=1)
    assert list(p) == ["title", "axis_titles", "webgl", "x", "y", "paths", "labels", "class_names",
                       "class_colors", "clusters", "outlier", "suspect", "scores", "predicted", "neighbours",
                       "neighbour_sim", "thumbs", "thumb_size", "thumb_folder", "labelling", "data_root", "parts"]
    assert p["title"] == "T" and p["axis_titles"] == ["UMAP 1", "UMAP 2"] and p["webgl"] is False
    assert p["x"] == [0.12346, 2.0, 4.0, 6.0, 8.0] and p["y"] == [1.0, -3.0, 5.0, 7.0, 9.0]
    assert p["paths"] == ["a/one.png", "a\\two.png", "b/three.jpg", "four.png", "b/c/five.png"]
    assert p["scores"] == [] and p["predicted"] is None and p["labelling"] is True and p["data_root"] is None
    assert p["thumb_folder"] is None and p["parts"] is None
    assert p["labels"] == [0, 0, 1, -1, 1] and p["class_names"] == ["a", "b"]
    assert len(p["class_colors"]) == 2 and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in p["class_colors"])
    # clusterings: renumbered in sorted order of the original labels, noise stays -1, names keep the originals
    k, two = p["clusters"]
    assert k["name"] == "kmeans" and k["values"] == [1, 0, -1, 0, 1] and k["names"] == ["cluster 3", "cluster 7"]
    assert len(k["colors"]) == 2
    assert two["name"] == "2" and two["values"] == [0] * 5 and two["names"] == ["cluster 0"]
    # NaN and infinite scores become null; an absent score is null
    assert p["outlier"] == [0.5, None, 1.0, 0.25, None] and p["suspect"] is None
    assert p["neighbours"] == [[0, 1], [0, 2], [-1, 3], [4, 0], [3, -1]]
    assert p["neighbour_sim"][0] == [1.0, 0.9877] and p["neighbour_sim"][1] == [0.5, None]
    # thumbnails: JPEG data URLs fitted in 32 px for readable files; null for unreadable, missing or no file
    t = p["thumbs"]
    assert t[2] is None and t[3] is None and t[4] is None
    head, b64 = t[0].split(",", 1)
    assert head == "data:image/jpeg;base64" and t[1] == t[0]
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        assert im.format == "JPEG" and im.size == (32, 16)
    assert p["thumb_size"] == 32
    json.dumps(p, allow_nan=False)  # strictly JSON-able


def test_payload_without_thumbnails_or_optional_parts(tmp_path):
    p = build_payload(_inputs(tmp_path, image_files=None, clusters=None, outlier_score=None, neighbours=None,
                              neighbour_sim=None))
    assert p["thumbs"] == [None] * 5 and p["clusters"] == []
    assert p["outlier"] is None and p["neighbours"] is None and p["neighbour_sim"] is None
    assert build_payload(_inputs(tmp_path), thumb_size=0)["thumbs"] == [None] * 5  # thumb_size=0: none decoded


def test_webgl_switch():
    n = WEBGL_THRESHOLD + 1
    big = check_inputs(np.zeros((n, 2)), paths=["p"] * n, class_names=[], labels=np.full(n, -1))
    assert build_payload(big)["webgl"] is True
    assert build_payload(big, webgl=False)["webgl"] is False
    small = check_inputs(np.zeros((2, 2)), paths=["p", "q"], class_names=[], labels=[-1, -1])
    assert build_payload(small)["webgl"] is False and build_payload(small, webgl=True)["webgl"] is True


@pytest.mark.parametrize("over, match", [
    (dict(clusters={"km": [0, 1]}), "clustering 'km' has 2 labels for 5 points"),
    (dict(outlier_score=[1.0]), "outlier_score has 1 values for 5 points"),
    (dict(suspect_score=np.zeros(6)), "suspect_score has 6 values for 5 points"),
    (dict(image_files=["x"]), "1 image files for 5 points"),
    (dict(neighbours=None), "neighbour_sim given without neighbours"),
    (dict(neighbours=np.array([[5]] * 5), neighbour_sim=None), r"indices in \[0, N\)"),
])
def test_checks_name_the_argument(tmp_path, over, match):
    with pytest.raises(ValueError, match=match):
        _inputs(tmp_path, **over)


def test_render_helpers_and_package_files():
    text = safe_json({"s": "</script><!-- & \u2028\u2029"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"s": "</script><!-- & \u2028\u2029"}
    assert notice_html(None) == "" and notice_html("") == ""
    assert notice_html("a <b> & c") == '<p id="notice" role="note">a &lt;b&gt; &amp; c</p>\n  '
    # the page's three files ship as package data and hold what the renderer expects
    page, app, css = read_asset("page.html"), read_asset("app.js"), read_asset("style.css")
    assert set(re.findall(r"\$\{(\w+)\}", page)) == {"csp", "title", "notice", "css", "count", "data", "parts",
                                                      "plotly_js", "app_js", "labelling_js"}
    assert "palaeoExplorer" in app and "</script" not in app.lower()
    labelling = read_asset("labelling.js")
    assert "palaeoExplorer" in labelling and "</script" not in labelling.lower()
    assert "innerHTML" not in app + labelling and "insertAdjacentHTML" not in app + labelling
    assert "#notice" in css and "</style" not in css.lower()
