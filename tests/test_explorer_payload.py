"""The explorer's data payload (what the page's script receives), its input checks and its rendering helpers."""

from __future__ import annotations

import base64
import html
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from palaeo_ssl.explorer import SINGLE_FILE_MAX, WEBGL_THRESHOLD, companion_folder, write_explorer
from palaeo_ssl.explorer.checks import check_inputs
from palaeo_ssl.explorer.folder import split_payload
from palaeo_ssl.explorer.payload import build_payload, false_ranges
from palaeo_ssl.explorer.render import notice_html, read_asset, safe_json
from palaeo_ssl.explorer.thumbnails import write_thumbnails


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
    (dict(predicted=[0, 1, 2, 0, 0]), r"predicted must be -1 \(unassigned\) or an index into class_names"),
    (dict(predicted=[0, 1]), "predicted has 2 values for 5 points"),
    (dict(scores={"novelty": np.zeros(4)}), "score 'novelty' has 4 values for 5 points"),
    (dict(scores={" ": np.zeros(5)}), "a score needs a name"),
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


def _part(text: str) -> dict:
    """The object a sidecar script hands to the page."""
    head = "(window.palaeoExplorerParts = window.palaeoExplorerParts || []).push("
    assert text.startswith(head) and text.endswith(");\n")
    return json.loads(text[len(head):-3])


def _apply(page: dict, part: dict) -> None:
    """What app.js does with a part (a reference implementation for the tests)."""
    for path, value in part.get("set", []):
        obj = page
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    if "rows" in part:
        for r, row in enumerate(part["neighbours"]):
            page["neighbours"][part["rows"] + r] = row
            if part["neighbour_sim"] is not None:
                page["neighbour_sim"][part["rows"] + r] = part["neighbour_sim"][r]


def _page_payload(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def _csp(text: str) -> str:
    return html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text).group(1))


def test_false_ranges():
    assert false_ranges(np.array([True, False, False, True, False])) == [[1, 3], [4, 5]]
    assert false_ranges(np.ones(3, bool)) == [] and false_ranges(np.zeros(2, bool)) == [[0, 2]]
    assert false_ranges(np.array([], bool)) == []


def test_scores_and_predicted_in_the_payload(tmp_path):
    p = build_payload(_inputs(tmp_path, image_files=None, predicted=[1, -1, 0, 0, 1],
                              scores={"suggestion rank": [1, 2, np.nan, 4, 5], "confidence": [0.123456789, 1e-7, 0.5,
                                                                                              np.inf, 2.0]}),
                      labelling=False, data_root="/data/forams")
    assert p["predicted"] == [1, -1, 0, 0, 1]
    rank, conf = p["scores"]
    assert rank == {"name": "suggestion rank", "values": [1.0, 2.0, None, 4.0, 5.0], "ascending": True}
    assert conf["name"] == "confidence" and conf["ascending"] is False
    assert conf["values"] == [0.12346, 1e-7, 0.5, None, 2.0]  # 5 significant digits: a small score keeps its order
    assert p["labelling"] is False and p["data_root"] == "/data/forams"


def test_write_thumbnails_files_and_flags(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((30, 90, 3), 120, np.uint8)).save(good)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    files = [good, None, tmp_path / "bad.jpg", str(good)] + [None] * 998 + [good]
    ok = write_thumbnails(files, tmp_path / "t", size=30, workers=2)
    assert ok.tolist() == [True, False, False, True] + [False] * 998 + [True]
    assert sorted(p.relative_to(tmp_path / "t").as_posix() for p in (tmp_path / "t").rglob("*.jpg")) == \
        ["0/0.jpg", "0/3.jpg", "1/1002.jpg"]
    with Image.open(tmp_path / "t" / "1" / "1002.jpg") as im:
        assert im.format == "JPEG" and im.size == (30, 10)
    assert (tmp_path / "t/0/3.jpg").read_bytes() == (tmp_path / "t/0/0.jpg").read_bytes()


def test_split_payload_moves_the_bulky_entries(tmp_path):
    full = build_payload(_inputs(tmp_path, predicted=[0, 1, -1, 0, 1], scores={"novelty": np.arange(5.0)}),
                         thumb_folder=("f/thumbnails", np.array([True, True, False, False, True])))
    assert full["thumbs"] is None and full["thumb_folder"] == {"url": "f/thumbnails", "per_folder": 1000,
                                                               "missing": [[2, 4]]}
    page, files = split_payload(full, "f", chunk=2)
    # the page keeps what the first drawing needs; the rest is null until its part is applied
    assert page["x"] == full["x"] and page["labels"] == full["labels"]
    for key in ("paths", "outlier", "predicted", "neighbours", "neighbour_sim"):
        assert page[key] is None, key
    assert page["clusters"][0]["values"] is None and page["scores"][0]["values"] is None
    assert page["thumb_folder"]["missing"] is None and full["thumb_folder"]["missing"] == [[2, 4]]  # not mutated
    assert page["parts"] == {"folder": "f", "specimens": "f/data/specimens.js",
                             "neighbours": {"size": 2, "files": [f"f/data/neighbours_{c}.js" for c in range(3)],
                                            "sim": True}}
    assert sorted(files) == ["neighbours_0.js", "neighbours_1.js", "neighbours_2.js", "specimens.js"]
    # applying every part gives back the full payload, exactly
    page = json.loads(json.dumps(page))
    page["neighbours"], page["neighbour_sim"] = [None] * 5, [None] * 5
    for text in files.values():
        _apply(page, _part(text))
    page["parts"] = None
    assert page == json.loads(json.dumps(full))


def test_folder_page_on_disk(tmp_path):
    inputs = dict(paths=["a/one.png", "a/two.png", "b/three.jpg", "four.png", "b/c/five.png"], class_names=["a", "b"],
                  labels=[0, 0, 1, -1, 1], neighbours=np.array([[0, 1], [1, 0], [2, 3], [3, 2], [4, 0]]),
                  outlier_score=np.arange(5.0))
    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(good)
    files = [good, good, tmp_path / "missing.png", None, good]
    out = tmp_path / "my page #1.html"
    write_explorer(out, np.arange(10.0).reshape(5, 2), **inputs, image_files=files, single_file=False,
                   data_root=tmp_path)
    folder = companion_folder(out)
    assert folder == tmp_path / "my page #1_files"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "data/neighbours_0.js", "data/specimens.js", "thumbnails/0/0.jpg", "thumbnails/0/1.jpg", "thumbnails/0/4.jpg"]
    text = out.read_text(encoding="utf-8")
    data = _page_payload(text)
    url = "my%20page%20%231_files"
    assert data["paths"] is None and data["parts"]["specimens"] == f"{url}/data/specimens.js"
    assert data["thumb_folder"]["url"] == f"{url}/thumbnails" and data["data_root"] == str(tmp_path)
    assert re.findall(r"<script src=\"([^\"]*)\"></script>", text) == [f"{url}/data/specimens.js"]
    csp = _csp(text)
    script_src = csp.split("script-src", 1)[1].split(";")[0]
    assert "'self'" in script_src and "'unsafe-inline'" not in script_src and "img-src 'self' data: blob:" in csp
    part = _part((folder / "data" / "specimens.js").read_text(encoding="utf-8"))
    assert dict((tuple(k), v) for k, v in part["set"])[("thumb_folder", "missing")] == [[2, 4]]

    # the same page as one file: the folder is removed, no 'self' in the policy, no script src
    write_explorer(out, np.arange(10.0).reshape(5, 2), **inputs, image_files=files, single_file=True)
    assert not folder.exists()
    text = out.read_text(encoding="utf-8")
    assert "'self'" not in _csp(text) and not re.search(r"<script[^>]*\ssrc\s*=", text)
    assert _page_payload(text)["parts"] is None


def test_single_file_switch(tmp_path):
    def page(n):
        rng = np.random.default_rng(n)
        out = write_explorer(tmp_path / f"{n}.html", rng.normal(size=(n, 2)), paths=[f"s{i}.png" for i in range(n)],
                             class_names=["a"], labels=np.zeros(n, int))
        return _page_payload(out.read_text(encoding="utf-8")), companion_folder(out)

    small, folder = page(SINGLE_FILE_MAX)
    assert small["parts"] is None and len(small["paths"]) == SINGLE_FILE_MAX and not folder.exists()
    big, folder = page(SINGLE_FILE_MAX + 1)
    assert big["parts"]["specimens"].endswith("/data/specimens.js") and big["paths"] is None
    assert big["thumbs"] is None and big["thumb_folder"] is None  # no images: nothing per specimen for them
    assert (folder / "data" / "specimens.js").is_file() and not (folder / "thumbnails").exists()


def test_a_companion_folder_the_explorer_did_not_write_is_never_cleared(tmp_path):
    """``<page>_files`` of something else (a page a browser saved) is reported and left whole; the explorer's own
    folder is replaced, a file browser's hidden files notwithstanding."""
    from palaeo_ssl.errors import UserError

    coords = np.arange(10.0).reshape(5, 2)
    page = tmp_path / "page.html"
    theirs = companion_folder(page)
    (theirs / "data").mkdir(parents=True)
    (theirs / "data" / "their_notes.txt").write_text("not the explorer's")
    with pytest.raises(UserError, match="no explorer page wrote"):
        write_explorer(page, coords, paths=[f"{i}.png" for i in range(5)], class_names=["a"], labels=[0] * 5, single_file=False)
    assert (theirs / "data" / "their_notes.txt").read_text() == "not the explorer's" and not page.exists()
    ours = tmp_path / "ours.html"
    write_explorer(ours, coords, paths=[f"{i}.png" for i in range(5)], class_names=["a"], labels=[0] * 5, single_file=False)
    (companion_folder(ours) / ".DS_Store").write_bytes(b"\0")
    write_explorer(ours, coords, paths=[f"{i}.png" for i in range(5)], class_names=["a"], labels=[0] * 5, single_file=True)
    assert not (companion_folder(ours) / "data").exists()
