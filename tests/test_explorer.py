"""The self-contained HTML morphospace explorer: file contents, escaping, and a real headless browser."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from palaeo_ssl.explorer import SINGLE_FILE_MAX, WEBGL_THRESHOLD, companion_folder, write_explorer
from palaeo_ssl.images import discover
from palaeo_ssl.synthetic import make_example_dataset

XSS_NAME = "<img src=x onerror=alert(1)>.jpg"
XSS_CLASS = "<script>alert(2)</script> & \"ostracod\""
NOTICE = "random weights: a pipeline check, not a result <img src=x onerror=alert(3)> & </p><b>"
XSS_SCORE = "<i>novelty</i> & co"
#: a class name typed into the labelling panel: markup, a comma and quotes (CSV quoting), an ampersand
XSS_TYPED = 'Fusulina <img src=x onerror=alert(5)>, "nova" & co'

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str | None:
    for cand in (os.environ.get("PALAEO_SSL_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                 "/usr/bin/chromium"):
        if cand and Path(cand).is_file():
            return cand
    return None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """30 synthetic specimens with real thumbnails: one named like an XSS payload, one corrupt file."""
    root = make_example_dataset(tmp_path_factory.mktemp("explorer_ds"), n_per_class=6, seed=2, size=64)
    files = sorted(root.rglob("*.jpg"))
    xss = files[0].parent / XSS_NAME
    files[0].rename(xss)
    files[0] = xss
    files[7].write_bytes(b"this is not an image")
    class_names = sorted(p.name for p in root.iterdir())
    labels = np.array([class_names.index(f.parent.name) for f in files])
    labels[5] = -1
    class_names = [XSS_CLASS if c == "ostracod" else c for c in class_names]
    n = len(files)
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 10, (n, 2))
    coords[0] = [20.0, 20.0]  # the XSS-named specimen sits alone in the top-right corner
    feats = rng.normal(size=(n, 8))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    sim = feats @ feats.T
    nb = np.argsort(-sim, axis=1)[:, :6]  # includes each point itself first: the page skips it
    return dict(
        coords=coords, paths=[f.relative_to(root).as_posix() for f in files], class_names=class_names, labels=labels,
        image_files=[str(f) for f in files], clusters={"kmeans K=4": rng.integers(-1, 4, n)},
        outlier_score=rng.random(n), suspect_score=np.where(labels >= 0, rng.random(n), np.nan),
        neighbours=nb, neighbour_sim=np.take_along_axis(sim, nb, 1), title="Explorer <test> & co",
        scores={"suggestion rank": np.where(labels < 0, 1.0, np.arange(n, dtype=float)),
                "confidence": rng.random(n), XSS_SCORE: np.where(np.arange(n) % 3 == 0, np.nan, rng.random(n))},
        predicted=np.where(np.arange(n) == 4, -1, rng.integers(0, len(class_names), n)), data_root=str(root),
    )


@pytest.fixture(scope="module")
def page_path(inputs, tmp_path_factory):
    return write_explorer(tmp_path_factory.mktemp("explorer") / "explorer.html", **inputs, notice=NOTICE)


def _payload(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S)
    assert m, "data block not found"
    return json.loads(m.group(1))


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def test_self_contained_no_external_references(page_path):
    text = page_path.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(text)
    for tag, attrs in parser.tags:
        for key in ("src", "href", "data", "action"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), f"<{tag} {key}={value}> loads from the network"
        if tag == "script":
            assert "src" not in attrs, "scripts must be inlined"
    assert not re.search(r"<script[^>]*\ssrc\s*=", text, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?https?:", text, re.I)
    # exactly four script blocks: the data, plotly.js, the page's code and the labelling panel's
    assert len(parser.scripts) == 4 and text.lower().count("</script") == 4
    assert "Plotly" in parser.scripts[1] and len(parser.scripts[1]) > 1_000_000
    assert "palaeoExplorer =" in parser.scripts[2] and "labels.csv" in parser.scripts[3]


def test_user_strings_escaped_and_data_round_trips(page_path, inputs):
    text = page_path.read_text(encoding="utf-8")
    assert "<img src=x" not in text and "<script>alert" not in text
    assert "<title>Explorer &lt;test&gt; &amp; co</title>" in text
    data = _payload(text)
    assert data["paths"][0].endswith("/" + XSS_NAME)
    assert data["paths"] == inputs["paths"]
    assert XSS_CLASS in data["class_names"]
    assert data["labels"] == inputs["labels"].tolist()
    np.testing.assert_allclose(data["x"], inputs["coords"][:, 0], atol=1e-5)
    np.testing.assert_allclose(data["y"], inputs["coords"][:, 1], atol=1e-5)
    assert data["suspect"][5] is None and data["suspect"][0] == pytest.approx(inputs["suspect_score"][0], abs=1e-5)
    assert data["neighbours"] == inputs["neighbours"].tolist()
    assert [c["name"] for c in data["clusters"]] == ["kmeans K=4"]
    assert set(data["clusters"][0]["values"]) <= {-1, 0, 1, 2, 3}
    assert data["webgl"] is False and len(data["x"]) < WEBGL_THRESHOLD
    # the labelling inputs: scores (5 significant digits, null = not scored), predicted classes, data root
    assert "<i>novelty" not in text
    assert [s["name"] for s in data["scores"]] == ["suggestion rank", "confidence", XSS_SCORE]
    assert [s["ascending"] for s in data["scores"]] == [True, False, False]
    assert data["scores"][0]["values"] == inputs["scores"]["suggestion rank"].tolist()
    novelty = data["scores"][2]["values"]
    assert novelty[0] is None and novelty[1] == pytest.approx(inputs["scores"][XSS_SCORE][1], rel=1e-4)
    assert data["predicted"] == inputs["predicted"].tolist() and data["predicted"][4] == -1
    assert data["data_root"] == inputs["data_root"] and data["labelling"] is True
    assert data["parts"] is None and data["thumb_folder"] is None  # a small set: one file


def test_notice_is_an_escaped_banner_in_the_header(page_path, inputs, tmp_path):
    text = page_path.read_text(encoding="utf-8")
    assert "<img src=x" not in text and "</p><b>" not in text
    banner = ('<p id="notice" role="note">random weights: a pipeline check, not a result '
              "&lt;img src=x onerror=alert(3)&gt; &amp; &lt;/p&gt;&lt;b&gt;</p>")
    assert banner in text
    header = text.split("<header>", 1)[1].split("</header>", 1)[0]
    assert banner in header and header.count('id="notice"') == 1
    assert "notice" not in _payload(text)  # the banner is page text, not data
    # no notice (None or empty): no banner, and otherwise the same page
    kw = dict(inputs, image_files=None)
    plain = write_explorer(tmp_path / "plain.html", **kw).read_text(encoding="utf-8")
    assert 'id="notice"' not in plain
    assert write_explorer(tmp_path / "empty.html", **kw, notice="").read_text(encoding="utf-8") == plain
    noted = write_explorer(tmp_path / "noted.html", **kw, notice=NOTICE).read_text(encoding="utf-8")
    assert noted.replace(banner + "\n  ", "") == plain


def test_csp_admits_exactly_the_inline_scripts(page_path):
    text = page_path.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(text)
    csp = next(a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    for script in parser.scripts[1:]:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
        assert f"'sha256-{digest}'" in csp


def test_thumbnails_downscaled_and_unreadable_file_tolerated(page_path, inputs):
    data = _payload(page_path.read_text(encoding="utf-8"))
    thumbs = data["thumbs"]
    assert thumbs[7] is None  # the corrupt file
    assert all(t is not None for i, t in enumerate(thumbs) if i != 7)
    head, b64 = thumbs[0].split(",", 1)
    assert head == "data:image/jpeg;base64"
    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        assert im.format == "JPEG" and max(im.size) <= 96


def test_no_thumbnails_and_deterministic(inputs, tmp_path):
    kw = dict(inputs, image_files=None)
    a = write_explorer(tmp_path / "a.html", **kw)
    b = write_explorer(tmp_path / "b.html", **kw)
    assert a.read_bytes() == b.read_bytes()
    assert set(_payload(a.read_text(encoding="utf-8"))["thumbs"]) == {None}


def test_invalid_inputs_raise(inputs, tmp_path):
    bad = dict(inputs)
    with pytest.raises(ValueError, match="coords"):
        write_explorer(tmp_path / "x.html", **dict(bad, coords=inputs["coords"][:, :1]))
    with pytest.raises(ValueError, match="paths"):
        write_explorer(tmp_path / "x.html", **dict(bad, paths=inputs["paths"][:-1]))
    with pytest.raises(ValueError, match="labels"):
        write_explorer(tmp_path / "x.html", **dict(bad, labels=np.full(len(inputs["paths"]), 9)))
    with pytest.raises(ValueError, match="neighbour_sim"):
        write_explorer(tmp_path / "x.html", **dict(bad, neighbour_sim=inputs["neighbour_sim"][:, :2]))
    with pytest.raises(ValueError, match="NaN"):
        c = inputs["coords"].copy()
        c[1, 0] = np.nan
        write_explorer(tmp_path / "x.html", **dict(bad, coords=c))
    assert not (tmp_path / "x.html").exists()


# ------------------------------------------------------------------------------ real browser
@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as exc:  # noqa: BLE001 - a browser that cannot start is an environment problem
            pytest.skip(f"chromium could not be started: {exc}")
        yield b
        b.close()


def _open(browser, path: Path, timeout: float = 30_000):
    """Open ``path`` and wait for the page's first drawing (``timeout`` ms: longer for a large page)."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    events = {"console": [], "pageerror": [], "dialog": [], "request": []}
    page.on("console", lambda m: events["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: events["pageerror"].append(str(e)))
    page.on("dialog", lambda d: (events["dialog"].append(d.message), d.dismiss()))
    page.on("request", lambda r: events["request"].append(r.url))
    page.goto(path.as_uri(), timeout=max(timeout, 30_000))
    page.wait_for_selector("body[data-ready='1']", timeout=timeout)
    return page, events


def _assert_clean(page, events):
    errors = [t for kind, t in events["console"] if kind == "error"]
    assert errors == [], errors
    assert events["pageerror"] == []
    assert events["dialog"] == [], "a dialog (alert) fired: user strings were executed"
    assert all(u.startswith(("file:", "data:", "blob:")) for u in events["request"]), events["request"]
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    # the only scripts from files are a folder page's own data files
    assert page.evaluate("Array.from(document.querySelectorAll('script[src]')).map(s => s.getAttribute('src'))"
                         ".filter(u => !/^[^/]+_files\\/data\\/(specimens|neighbours_[0-9]+)\\.js$/.test(u))") == []


@pytest.mark.slow
def test_explorer_in_headless_chromium(browser, page_path, inputs, tmp_path):
    page, events = _open(browser, page_path)
    n = len(inputs["paths"])
    # the notice is a visible banner in the header, shown literally (its markup is text, not elements)
    assert page.is_visible("header #notice")
    assert page.inner_text("#notice") == NOTICE
    note, plot = page.query_selector("#notice").bounding_box(), page.query_selector("#plot").bounding_box()
    assert note["y"] + note["height"] <= plot["y"] and note["width"] > 600
    assert page.evaluate("document.querySelectorAll('#notice *').length") == 0
    # the points are drawn as SVG paths, one per specimen
    points = page.query_selector_all(".scatterlayer .trace path.point")
    assert len(points) == n
    legend = page.eval_on_selector_all(".legendtext", "els => els.map(e => e.textContent)")
    assert any(t.startswith(XSS_CLASS) for t in legend), legend  # shown literally, as text
    assert "unlabelled (1)" in legend

    # hover the lone top-right point (the XSS-named specimen): its thumbnail and name appear
    boxes = [p.bounding_box() for p in points]
    b = max(boxes, key=lambda bb: bb["x"] - bb["y"])
    cx, cy = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
    page.mouse.move(cx - 40, cy + 40)
    page.mouse.move(cx, cy)
    page.wait_for_selector("#tooltip:not([hidden]) img.thumb", timeout=10_000)
    assert page.inner_text("#tooltip .name") == XSS_NAME
    assert page.get_attribute("#tooltip img.thumb", "src").startswith("data:image/jpeg;base64,")
    assert "suspect-label score" in page.inner_text("#tooltip")

    # click it: its card and nearest neighbours (itself skipped) with thumbnails and similarities
    page.mouse.click(cx, cy)
    page.wait_for_selector("#neighbours li.neighbour", timeout=10_000)
    assert page.inner_text("#selected-card .name") == XSS_NAME
    items = page.query_selector_all("#neighbours li.neighbour")
    expected = [int(j) for j in inputs["neighbours"][0] if j != 0]
    assert [int(li.get_attribute("data-index")) for li in items] == expected
    assert all(li.query_selector(".thumb") is not None for li in items)
    sims = [float(s.split()[-1]) for s in page.eval_on_selector_all("#neighbours .sim", "els => els.map(e => e.textContent)")]
    np.testing.assert_allclose(sims, [inputs["neighbour_sim"][0][k] for k, j in enumerate(inputs["neighbours"][0]) if j != 0], atol=6e-4)
    # the selection and its neighbours are ringed on the plot
    assert page.evaluate("document.getElementById('plot').data.slice(-1)[0].x.length") == len(expected) + 1

    # clicking a neighbour selects it; the corrupt image shows a placeholder instead of a thumbnail
    items[0].click()
    page.wait_for_function(f"document.querySelector('#selected-card .name').textContent !== {json.dumps(XSS_NAME)}")
    page.evaluate("palaeoExplorer.select(7)")
    assert page.query_selector("#selected-card .nothumb") is not None

    # switch the colouring: outlier score (colour bar), then the clustering (its legend)
    page.select_option("#colour-by", label="Outlier score")
    page.wait_for_selector(".colorbar", timeout=10_000)
    ringed = page.evaluate("document.getElementById('plot').data.slice(-1)[0].x.length")
    assert ringed == 6  # the selection survives a change of colouring
    assert len(page.query_selector_all(".scatterlayer .trace path.point")) == n + ringed
    page.select_option("#colour-by", label="Cluster: kmeans K=4")
    page.wait_for_function("Array.from(document.querySelectorAll('.legendtext')).some(e => e.textContent.startsWith('cluster 0'))")
    assert page.query_selector(".colorbar") is None

    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with Image.open(shot) as im:
        assert im.size == (1280, 800)
        assert np.asarray(im.convert("L")).std() > 10  # not a blank page
    _assert_clean(page, events)
    page.close()


@pytest.mark.slow
def test_explorer_webgl_mode_in_headless_chromium(browser, inputs, tmp_path):
    path = write_explorer(tmp_path / "gl.html", **dict(inputs, webgl=True, image_files=inputs["image_files"]))
    page, events = _open(browser, path)
    if not page.evaluate("!!document.createElement('canvas').getContext('webgl')"):
        pytest.skip("this chromium has no WebGL")
    assert page.evaluate("document.getElementById('plot').data[0].type") == "scattergl"
    # no SVG points in WebGL mode: hover where plotly places point 0 (data -> pixel through its axes)
    x, y = page.evaluate("""() => {
        const gd = document.getElementById('plot'), fl = gd._fullLayout, r = gd.getBoundingClientRect();
        const d = palaeoExplorer.data;
        return [r.left + fl._size.l + fl.xaxis.l2p(d.x[0]), r.top + fl._size.t + fl.yaxis.l2p(d.y[0])];
    }""")
    page.mouse.move(x - 30, y + 30)
    page.mouse.move(x, y)
    page.wait_for_selector("#tooltip:not([hidden]) img.thumb", timeout=10_000)
    assert page.inner_text("#tooltip .name") == XSS_NAME
    page.mouse.click(x, y)
    page.wait_for_selector("#neighbours li.neighbour", timeout=10_000)
    _assert_clean(page, events)
    page.close()


@pytest.mark.slow
def test_explorer_minimal_inputs_in_headless_chromium(browser, tmp_path):
    """Unlabelled points, no thumbnails, clusterings, scores or neighbours: still a working page."""
    rng = np.random.default_rng(1)
    n = 12
    path = write_explorer(tmp_path / "min.html", rng.normal(size=(n, 2)), paths=[f"flat/img_{i}.png" for i in range(n)],
                          class_names=[], labels=np.full(n, -1))
    page, events = _open(browser, path)
    assert page.query_selector("#notice") is None
    assert page.eval_on_selector_all("#colour-by option", "els => els.map(e => e.textContent)") == ["Class"]
    assert page.eval_on_selector_all(".legendtext", "els => els.map(e => e.textContent)") == [f"unlabelled ({n})"]
    points = page.query_selector_all(".scatterlayer .trace path.point")
    assert len(points) == n
    b = points[3].bounding_box()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
    page.wait_for_selector("#tooltip:not([hidden]) .nothumb", timeout=10_000)
    page.mouse.click(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
    page.wait_for_selector("#neighbours li", timeout=10_000)
    assert page.inner_text("#neighbours") == "nearest neighbours were not computed"
    _assert_clean(page, events)
    page.close()


# ------------------------------------------------------------------------------ labelling in the browser
_POINT_XY = """i => {
    const gd = document.getElementById('plot'), fl = gd._fullLayout, r = gd.getBoundingClientRect();
    const d = palaeoExplorer.data;
    return [r.left + fl._size.l + fl.xaxis.l2p(d.x[i]), r.top + fl._size.t + fl.yaxis.l2p(d.y[i])];
}"""


def _isolated(coords: np.ndarray, k: int, skip=()) -> list[int]:
    """``k`` points whose nearest other point is far (in data units), most isolated first, none in ``skip``."""
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    order = [int(i) for i in np.argsort(-d.min(axis=1)) if int(i) not in skip]
    return order[:k]


def _click_point(page, i: int) -> None:
    x, y = page.evaluate(_POINT_XY, i)
    page.mouse.move(x - 30, y + 30)
    page.mouse.move(x, y)
    page.wait_for_selector(f"#tooltip[data-index='{i}']:not([hidden])", timeout=10_000)  # plotly hovers first
    page.mouse.click(x, y)
    name = page.evaluate("i => palaeoExplorer.nameOf(i)", i)
    page.wait_for_function("n => document.getElementById('targets').textContent.startsWith('1 specimen: ' + n)",
                           arg=name, timeout=10_000)


def _assign(page, name: str) -> None:
    page.fill("#label-name", name)
    page.click("#assign")


@pytest.mark.slow
def test_labelling_click_assign_undo_download_in_headless_chromium(browser, page_path, inputs, tmp_path):
    """Label three specimens by clicking (an existing class, a typed new one, then the new one again), undo a
    wrong assignment, download the CSV and read it back with palaeo_ssl.images.discover."""
    page, events = _open(browser, page_path)
    assert page.is_visible("#labelling")
    assert "absolute paths" in page.inner_text("#root-note")
    assert page.is_disabled("#assign") and page.is_disabled("#undo")
    names = inputs["class_names"]
    a, b, c = _isolated(inputs["coords"], 3, skip={0, 5})  # 0 sits alone; 5 is the unlabelled one
    existing = names[(inputs["labels"][a] + 1) % len(names)]  # a class it does not have yet

    _click_point(page, a)
    _assign(page, existing)
    _click_point(page, b)
    _assign(page, XSS_TYPED)  # a new class, typed
    _click_point(page, c)
    _assign(page, names[0])  # wrong: undone below
    page.wait_for_function("() => !document.getElementById('undo').disabled")
    assert page.evaluate(f"palaeoExplorer.data.labels[{c}]") == 0
    page.click("#undo")
    assert page.evaluate(f"palaeoExplorer.data.labels[{c}]") == int(inputs["labels"][c])
    _assign(page, XSS_TYPED)  # the new class, now in the list
    assert page.evaluate("palaeoExplorer.data.class_names.length") == len(names) + 1

    # the typed name is text everywhere: the legend (coloured by class), the card, the class list
    page.wait_for_function("t => Array.from(document.querySelectorAll('.legendtext')).some("
                           "e => e.textContent === t + ' (2)')", arg=XSS_TYPED, timeout=10_000)
    assert page.inner_text("#selected-card").count("label: " + XSS_TYPED) == 1
    options = page.eval_on_selector_all("#label-classes option", "els => els.map(e => e.value)")
    assert options == list(names) + [XSS_TYPED]
    assert "3 specimens labelled differently" in page.inner_text("#label-status")

    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == "labels.csv"
    csv = tmp_path / "labels.csv"
    download.save_as(csv)
    assert "not downloaded" not in page.inner_text("#label-status")
    _assert_clean(page, events)
    page.close()

    found = discover(csv)
    root = Path(inputs["data_root"])
    assert found.layout == "manifest" and len(found) == len(inputs["paths"]) and found.missing == []
    got = {Path(f): (found.class_names[l] if l >= 0 else None) for f, l in zip(found.files, found.labels)}
    expected = {root / p: (names[l] if l >= 0 else None) for p, l in zip(inputs["paths"], inputs["labels"])}
    expected[root / inputs["paths"][a]] = existing
    expected[root / inputs["paths"][b]] = expected[root / inputs["paths"][c]] = XSS_TYPED
    assert got == expected
    assert expected[root / inputs["paths"][5]] is None and XSS_CLASS in found.class_names


@pytest.mark.slow
def test_labelling_downloads_an_ecotaxa_tsv_read_back_in_headless_chromium(browser, page_path, inputs, tmp_path):
    """Assign a typed name with a tab, quotes, a comma and markup; download the EcoTaxa TSV; it is what EcoTaxa's
    importer reads (UTF-8 with a byte-order mark, tab-separated, '"' quoting, the type line) and palaeo-ssl reads
    it back as DATA, from wherever it is saved, with the same labels."""
    import csv

    typed = XSS_TYPED + "\tvar."
    page, events = _open(browser, page_path)
    a, = _isolated(inputs["coords"], 1, skip={0, 5})
    _click_point(page, a)
    _assign(page, typed)
    assert "Download for EcoTaxa" in page.inner_text("#download-ecotaxa")
    assert "EcoTaxa TSV lists paths relative to the dataset's folder" in page.inner_text("#root-note")
    with page.expect_download() as info:
        page.click("#download-ecotaxa")
    download = info.value
    assert download.suggested_filename == "ecotaxa_labels.tsv"
    tsv = tmp_path / "ecotaxa_labels.tsv"
    download.save_as(tsv)
    assert "not downloaded" not in page.inner_text("#label-status")
    _assert_clean(page, events)
    page.close()

    raw = tsv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with open(tsv, encoding="utf-8-sig", newline="") as fh:  # as EcoTaxa's TSVFile.open reads it
        rows = list(csv.DictReader(fh, delimiter="\t", quotechar='"'))
    assert set(rows[0].values()) == {"[t]"} and len(rows) == len(inputs["paths"]) + 1
    names = inputs["class_names"]
    for i, r in enumerate(rows[1:]):
        assert r["img_file_name"] == r["object_id"] == inputs["paths"][i]
        want = typed if i == a else (names[inputs["labels"][i]] if inputs["labels"][i] >= 0 else "")
        assert r["object_annotation_category"] == want
        assert r["object_annotation_status"] == ("validated" if want else "")
        assert r["process_data_root"] == inputs["data_root"]

    found = discover(tsv)
    root = Path(inputs["data_root"])
    got = {Path(f): (found.class_names[l] if l >= 0 else None) for f, l in zip(found.files, found.labels)}
    expected = {root / p: (names[l] if l >= 0 else None) for p, l in zip(inputs["paths"], inputs["labels"])}
    expected[root / inputs["paths"][a]] = typed
    assert got == expected and found.missing == []


@pytest.mark.slow
def test_labelling_box_selection_and_colourings_in_headless_chromium(browser, page_path, inputs):
    """A box selection labels every specimen inside it; the score and predicted-class colourings draw."""
    page, events = _open(browser, page_path)
    coords = inputs["coords"]
    lo, hi = np.array([2.0, 2.0]), np.array([6.0, 6.0])
    inside = sorted(int(i) for i in np.flatnonzero(((coords >= lo) & (coords <= hi)).all(axis=1)))
    assert len(inside) >= 2
    page.evaluate("Plotly.relayout(document.getElementById('plot'), {dragmode: 'select'})")
    page.evaluate("() => { palaeoExplorer.data.x.push(2.0, 6.0); palaeoExplorer.data.y.push(2.0, 6.0); }")
    n = len(coords)
    (x0, y0), (x1, y1) = page.evaluate(_POINT_XY, n), page.evaluate(_POINT_XY, n + 1)
    page.evaluate("() => { palaeoExplorer.data.x.length -= 2; palaeoExplorer.data.y.length -= 2; }")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    page.wait_for_function(f"document.getElementById('targets').textContent === '{len(inside)} specimens selected'",
                           timeout=10_000)
    _assign(page, "boxed")
    page.wait_for_function("Array.from(document.querySelectorAll('.legendtext')).some("
                           f"e => e.textContent === 'boxed ({len(inside)})')", timeout=10_000)
    labels = page.evaluate("palaeoExplorer.data.labels")
    assert [i for i, l in enumerate(labels) if l == len(inputs["class_names"])] == inside
    csv_rows = page.evaluate("palaeoExplorer.labelling.csv()").splitlines()
    assert csv_rows[0] == "path,label" and len(csv_rows) == n + 1
    assert csv_rows[inside[0] + 1] == str(Path(inputs["data_root"]) / inputs["paths"][inside[0]]) + ",boxed"
    page.click("#undo")
    assert page.evaluate("palaeoExplorer.data.labels") == inputs["labels"].tolist()

    options = page.eval_on_selector_all("#colour-by option", "els => els.map(e => e.textContent)")
    assert options == ["Class", "Predicted class", "Cluster: kmeans K=4", "Outlier score", "Suspect-label score",
                       "Score: suggestion rank", "Score: confidence", "Score: " + XSS_SCORE]
    page.select_option("#colour-by", label="Score: suggestion rank")
    page.wait_for_selector(".colorbar", timeout=10_000)
    trace = page.evaluate("document.getElementById('plot').data[0]")
    assert trace["marker"]["reversescale"] is True
    assert trace["marker"]["color"][-1] == min(inputs["scores"]["suggestion rank"])  # rank 1 drawn on top
    page.select_option("#colour-by", label="Score: " + XSS_SCORE)
    page.wait_for_function("Array.from(document.querySelectorAll('.legendtext')).some("
                           "e => e.textContent === 'not scored (10)')", timeout=10_000)
    assert page.evaluate("document.querySelectorAll('.colorbar i').length") == 0  # the name is text
    page.select_option("#colour-by", label="Predicted class")
    page.wait_for_function("Array.from(document.querySelectorAll('.legendtext')).some("
                           "e => e.textContent === 'unassigned (1)')", timeout=10_000)
    x, y = page.evaluate(_POINT_XY, 0)
    page.mouse.move(x - 30, y + 30)
    page.mouse.move(x, y)
    page.wait_for_selector("#tooltip:not([hidden]) img.thumb", timeout=10_000)
    tip = page.inner_text("#tooltip")
    assert "predicted: " in tip and "suggestion rank: " in tip and XSS_SCORE + ": n/a" in tip
    _assert_clean(page, events)
    page.close()


@pytest.mark.slow
def test_no_labelling_panel_when_switched_off(browser, inputs, tmp_path):
    path = write_explorer(tmp_path / "plain.html", **dict(inputs, image_files=None, labelling=False))
    page, events = _open(browser, path)
    assert not page.is_visible("#labelling")
    assert page.evaluate("palaeoExplorer.labelling") is None
    _assert_clean(page, events)
    page.close()


# ------------------------------------------------------------------------------ a large set: the folder page
def _hover_thumbnail(page, i: int) -> str:
    """Hover point ``i``; wait until its tooltip shows a decoded thumbnail; return the image's URL."""
    x, y = page.evaluate(_POINT_XY, i)
    page.mouse.move(x - 30, y + 30)
    page.mouse.move(x, y)
    page.wait_for_function("i => { const t = document.getElementById('tooltip'), im = t.querySelector('img.thumb');"
                           " return !t.hidden && t.dataset.index === String(i) && im && im.complete"
                           " && im.naturalWidth > 0; }", arg=i, timeout=30_000)
    return page.get_attribute("#tooltip img.thumb", "src")


@pytest.mark.slow
def test_folder_page_at_200000_points_in_headless_chromium(browser, inputs, tmp_path):
    """2 x 10^5 specimens: a page of at most 100 bytes per specimen beyond plotly.js that loads from disk,
    draws with WebGL, shows a thumbnail file on hover and loads neighbour files on click, without errors."""
    from plotly.offline import get_plotlyjs

    n, k = 200_000, 6
    rng = np.random.default_rng(3)
    coords = rng.normal(size=(n, 2))
    coords[0], coords[n - 1] = [8.0, 8.0], [-8.0, 8.0]  # two specimens alone in the top corners
    images = [f for f in inputs["image_files"] if "alert" not in f][:3]
    image_files = [None] * n
    for j, i in enumerate((0, 1234, n - 1)):
        image_files[i] = images[j]
    nb = rng.integers(0, n, (n, k))
    nb[:, 0] = np.arange(n)
    path = write_explorer(
        tmp_path / "large.html", coords, paths=[f"taxon_{i % 20}/specimen_{i:06d}.jpg" for i in range(n)],
        class_names=[f"taxon_{c}" for c in range(20)], labels=np.where(rng.random(n) < 0.2, -1, np.arange(n) % 20),
        image_files=image_files, neighbours=nb, neighbour_sim=rng.random((n, k)),
        outlier_score=rng.random(n), scores={"novelty": rng.random(n)}, data_root="/data")
    assert n > SINGLE_FILE_MAX
    page_bytes = path.stat().st_size - len(get_plotlyjs().encode("utf-8"))
    assert page_bytes <= 100 * n, f"{page_bytes / n:.1f} bytes per specimen"
    folder = companion_folder(path)
    assert sorted(p.relative_to(folder).as_posix() for p in (folder / "thumbnails").rglob("*.jpg")) == [
        "thumbnails/0/0.jpg", "thumbnails/1/1234.jpg", f"thumbnails/{(n - 1) // 1000}/{n - 1}.jpg"]

    page, events = _open(browser, path, timeout=180_000)
    if page.evaluate("!!document.createElement('canvas').getContext('webgl')"):
        assert page.evaluate("document.getElementById('plot').data[0].type") == "scattergl"
    assert page.inner_text("#count") == f"{n} specimens"
    assert _hover_thumbnail(page, 0) == "large_files/thumbnails/0/0.jpg"
    assert page.inner_text("#tooltip .name") == "specimen_000000.jpg"
    page.mouse.click(*page.evaluate(_POINT_XY, 0))
    page.wait_for_selector("#neighbours li.neighbour", timeout=30_000)
    expected = [int(j) for j in nb[0] if j != 0]
    assert [int(li.get_attribute("data-index")) for li in page.query_selector_all("#neighbours li.neighbour")] \
        == expected
    # the last specimen's neighbours live in the last neighbour file, loaded on this click
    assert _hover_thumbnail(page, n - 1) == f"large_files/thumbnails/{(n - 1) // 1000}/{n - 1}.jpg"
    page.mouse.click(*page.evaluate(_POINT_XY, n - 1))
    page.wait_for_function(f"document.querySelector('#neighbours li.neighbour') && "
                           f"document.querySelector('#selected-card .name').textContent === 'specimen_{n - 1:06d}.jpg'",
                           timeout=30_000)
    assert [int(li.get_attribute("data-index")) for li in page.query_selector_all("#neighbours li.neighbour")] \
        == [int(j) for j in nb[n - 1] if j != n - 1]
    loaded = [u.rsplit("/", 1)[-1] for u in events["request"] if "/data/" in u]
    assert loaded == ["specimens.js", "neighbours_0.js", f"neighbours_{(n - 1) // 20_000}.js"]
    page.select_option("#colour-by", label="Score: novelty")
    page.wait_for_selector(".colorbar", timeout=60_000)
    _assert_clean(page, events)
    page.close()


@pytest.mark.slow
def test_folder_page_without_its_folder_says_so(browser, inputs, tmp_path):
    """A folder page copied without the folder beside it draws its points and says what is missing."""
    n = 40
    rng = np.random.default_rng(4)
    path = write_explorer(tmp_path / "a" / "p.html", rng.normal(size=(n, 2)), paths=[f"s{i}.jpg" for i in range(n)],
                          class_names=["a"], labels=np.zeros(n, int), outlier_score=rng.random(n),
                          neighbours=np.tile(np.arange(3), (n, 1)), single_file=False)
    alone = tmp_path / "b" / "p.html"
    alone.parent.mkdir()
    shutil.copy(path, alone)
    page, events = _open(browser, alone)
    assert page.is_visible("#load-error")
    assert "p_files" in page.inner_text("#load-error")
    assert len(page.query_selector_all(".scatterlayer .trace path.point")) == n
    page.evaluate("palaeoExplorer.select(5)")
    page.wait_for_function("document.getElementById('neighbours').textContent.includes('could not be loaded')")
    assert events["pageerror"] == [] and events["dialog"] == []
    # the only console errors are the two files the browser could not find
    errors = [t for kind, t in events["console"] if kind == "error"]
    assert len(errors) == 2 and all("ERR_FILE_NOT_FOUND" in e for e in errors), errors
    page.close()
