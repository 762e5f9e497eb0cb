"""The interactive morphospace explorer: one self-contained HTML file.

:func:`write_explorer` writes a page that opens from disk with no server and no
internet: plotly's JavaScript, the data and downscaled JPEG thumbnails are all
inlined. Points can be coloured by class, by each clustering, by outlier score
or by suspect-label score (a drop-down switch); hovering a point shows its
thumbnail, file name, label and scores; clicking a point (or a neighbour in the
list) lists its nearest neighbours with thumbnails and cosine similarities and
rings them on the plot.

Safety: every user string (file names, class and clustering names, the title)
reaches the page either HTML-escaped, or inside a JSON block in which ``<``,
``>``, ``&`` and the JavaScript line separators are ``\\uXXXX``-escaped (so
``</script>`` cannot end it), and the page's script only ever puts those
strings into the DOM as text (``textContent``) or into plotly as
entity-encoded text. A Content-Security-Policy admits only the page's own two
scripts (by SHA-256 hash) and ``data:`` images, so inline event handlers and
network requests are refused by the browser as well.

Drawing: SVG ``scatter`` up to :data:`WEBGL_THRESHOLD` points (reliable hover
and crisp export), WebGL ``scattergl`` above it (fast for tens of thousands).

Size: plotly.js is ~4.8 MB; each 96 px JPEG thumbnail (quality 70) adds about
3-5 kB (base64), so 20,000 specimens make a page of roughly 70-100 MB. Pass
``thumb_size=64`` or ``image_files=None`` for very large datasets.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .embeddings import atomic_write_text

#: Above this many points the explorer draws with WebGL (``scattergl``) instead of SVG.
WEBGL_THRESHOLD = 2500

_NOISE_COLOR = "#b0b0b0"


# ----------------------------------------------------------------------------- thumbnails
def thumbnail_data_url(path: str | os.PathLike, size: int = 96, quality: int = 70) -> str | None:
    """A ``data:image/jpeg;base64,...`` URL of the image at ``path`` downscaled to fit ``size`` x ``size`` pixels.

    Decodes with :func:`palaeo_ssl.images.load_image` (EXIF orientation, any
    mode -> RGB, JPEG draft decoding). Returns None for a file that cannot be
    read, so one bad image never breaks the page.
    """
    from PIL import Image

    from .images import load_image

    try:
        img = load_image(path, draft_size=size)
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
    except Exception:  # noqa: BLE001 - unreadable files just get no thumbnail
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_data_urls(files: Sequence[str | os.PathLike | None], size: int = 96, quality: int = 70,
                        workers: int | None = None) -> list[str | None]:
    """:func:`thumbnail_data_url` for each file (None entries stay None), decoded in a thread pool, in order."""
    workers = workers or min(8, os.cpu_count() or 1)

    def one(f):
        return None if f is None else thumbnail_data_url(f, size, quality)

    if workers <= 1 or len(files) < 8:
        return [one(f) for f in files]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, files))


# ----------------------------------------------------------------------------- payload
def _hex_colors(n: int) -> list[str]:
    from matplotlib.colors import to_hex

    from .plots import class_colors

    return [to_hex(c) for c in class_colors(n)]


def _score_list(score, n: int, name: str) -> list[float | None] | None:
    if score is None:
        return None
    a = np.asarray(score, dtype=np.float64).reshape(-1)
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} values for {n} points")
    return [None if not np.isfinite(v) else round(float(v), 5) for v in a]


def _clusterings(clusters: Mapping[str, np.ndarray] | None, n: int) -> list[dict]:
    out = []
    for name, values in (clusters or {}).items():
        v = np.asarray(values).reshape(-1)
        if v.shape[0] != n:
            raise ValueError(f"clustering {name!r} has {v.shape[0]} labels for {n} points")
        v = v.astype(np.int64)
        uniq = sorted(int(u) for u in np.unique(v) if u >= 0)
        lookup = {u: k for k, u in enumerate(uniq)}
        out.append({
            "name": str(name),
            "values": [lookup.get(int(x), -1) for x in v],
            "names": [f"cluster {u}" for u in uniq],
            "colors": _hex_colors(len(uniq)),
        })
    return out


def _safe_json(obj) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``<``, ``>``, ``&`` or U+2028/9 left raw."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text


def _csp_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


# ----------------------------------------------------------------------------- writer
def write_explorer(
    path: str | os.PathLike,
    coords: np.ndarray,
    *,
    paths: Sequence[str],
    class_names: Sequence[str],
    labels: np.ndarray,
    image_files: Sequence[str | os.PathLike | None] | None = None,
    clusters: Mapping[str, np.ndarray] | None = None,
    outlier_score: np.ndarray | None = None,
    suspect_score: np.ndarray | None = None,
    neighbours: np.ndarray | None = None,
    neighbour_sim: np.ndarray | None = None,
    title: str = "Morphospace explorer",
    thumb_size: int = 96,
    thumb_quality: int = 70,
    axis_titles: tuple[str, str] = ("UMAP 1", "UMAP 2"),
    webgl: bool | None = None,
    workers: int | None = None,
) -> Path:
    """Write the interactive explorer to ``path`` (an ``.html`` file) and return it.

    Parameters
    ----------
    coords : (N, 2) float, the 2-D projection (e.g. UMAP), finite
    paths : N str, each specimen's path relative to the data root (shown; its last part is the file name)
    class_names : the name of each label value
    labels : (N,) int, index into ``class_names``; -1 = unlabelled
    image_files : N absolute image paths (None entries allowed) for the thumbnails, or None for no thumbnails
    clusters : {clustering name: (N,) int cluster labels, -1 = noise}, each becomes a colouring
    outlier_score : (N,) float, higher = more outlying (NaN = not scored)
    suspect_score : (N,) float, how likely the label is wrong (NaN = not scored)
    neighbours : (N, k) int, indices of each point's nearest neighbours, nearest first (-1 = none);
        a point's own index is skipped when listed
    neighbour_sim : (N, k) float, the similarity (e.g. cosine) of each neighbour
    title : page title
    thumb_size : thumbnail side in pixels (fit within a square, aspect kept); thumb_quality: JPEG quality
    axis_titles : the two axis titles
    webgl : draw with WebGL; default: only above :data:`WEBGL_THRESHOLD` points
    workers : threads decoding thumbnails (default: up to 8)

    Raises ValueError when the arrays disagree in length or hold invalid values.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {coords.shape}")
    n = coords.shape[0]
    if not np.isfinite(coords).all():
        raise ValueError("coords contain NaN or infinite values")
    paths = [str(p) for p in paths]
    if len(paths) != n:
        raise ValueError(f"{len(paths)} paths for {n} points")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if labels.shape[0] != n:
        raise ValueError(f"{labels.shape[0]} labels for {n} points")
    class_names = [str(c) for c in class_names]
    if n and (labels.min() < -1 or labels.max() >= len(class_names)):
        raise ValueError("labels must be -1 (unlabelled) or an index into class_names")
    if image_files is not None and len(image_files) != n:
        raise ValueError(f"{len(image_files)} image files for {n} points")
    nb = sim = None
    if neighbours is not None:
        nb = np.asarray(neighbours).astype(np.int64)
        if nb.ndim != 2 or nb.shape[0] != n:
            raise ValueError(f"neighbours must have shape (N, k) with N={n}, got {nb.shape}")
        if nb.size and (nb.min() < -1 or nb.max() >= n):
            raise ValueError("neighbours must hold point indices in [0, N) or -1")
        if neighbour_sim is not None:
            sim = np.asarray(neighbour_sim, dtype=np.float64)
            if sim.shape != nb.shape:
                raise ValueError(f"neighbour_sim has shape {sim.shape}, neighbours {nb.shape}")
    elif neighbour_sim is not None:
        raise ValueError("neighbour_sim given without neighbours")

    thumbs = (thumbnail_data_urls(image_files, thumb_size, thumb_quality, workers)
              if image_files is not None and thumb_size else [None] * n)
    payload = {
        "title": str(title),
        "axis_titles": [str(a) for a in axis_titles],
        "webgl": bool(n > WEBGL_THRESHOLD if webgl is None else webgl),
        "x": [round(float(v), 5) for v in coords[:, 0]],
        "y": [round(float(v), 5) for v in coords[:, 1]],
        "paths": paths,
        "names": [p.replace("\\", "/").rsplit("/", 1)[-1] for p in paths],
        "labels": labels.tolist(),
        "class_names": class_names,
        "class_colors": _hex_colors(len(class_names)),
        "clusters": _clusterings(clusters, n),
        "outlier": _score_list(outlier_score, n, "outlier_score"),
        "suspect": _score_list(suspect_score, n, "suspect_score"),
        "neighbours": nb.tolist() if nb is not None else None,
        "neighbour_sim": ([[None if not np.isfinite(v) else round(float(v), 4) for v in row] for row in sim]
                          if sim is not None else None),
        "thumbs": thumbs,
        "thumb_size": int(thumb_size),
    }
    from plotly.offline import get_plotlyjs

    plotly_js = get_plotlyjs()
    if "</script" in plotly_js.lower():  # never true for plotly's own bundle; guards the inlining
        raise RuntimeError("plotly.js bundle contains '</script' and cannot be inlined safely")
    csp = (
        "default-src 'none'; "
        f"script-src {_csp_hash(plotly_js)} {_csp_hash(_APP_JS)} 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; worker-src blob:"
    )
    page = _PAGE.format(
        csp=html.escape(csp, quote=True),
        title=html.escape(str(title)),
        css=_CSS,
        count=n,
        data=_safe_json(payload),
        plotly_js=plotly_js,
        app_js=_APP_JS,
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return out


# ----------------------------------------------------------------------------- page template
# Only html.escape()d text, the safe JSON and static code go into the template.
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="palaeo-ssl explorer">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header>
  <h1>{title}</h1>
  <label for="colour-by">Colour by</label> <select id="colour-by"></select>
  <span id="count">{count} specimens</span>
</header>
<main>
  <div id="plot"></div>
  <aside id="panel">
    <p id="hint">Hover a point to see the specimen; click it to list its nearest neighbours.</p>
    <section id="selection" hidden>
      <h2>Selected specimen</h2>
      <div id="selected-card"></div>
      <h3>Nearest neighbours</h3>
      <ol id="neighbours"></ol>
      <button type="button" id="clear">Clear selection</button>
    </section>
  </aside>
</main>
<div id="tooltip" role="tooltip" hidden></div>
<script type="application/json" id="explorer-data">{data}</script>
<script>{plotly_js}</script>
<script>{app_js}</script>
</body>
</html>
"""

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;background:#fafafa}
header{display:flex;align-items:center;gap:.6em;padding:.5em 1em;border-bottom:1px solid #ddd;background:#fff;flex-wrap:wrap}
header h1{font-size:1.15em;margin:0 1em 0 0;font-weight:600}
#count{color:#666;margin-left:auto}
main{display:flex;height:calc(100vh - 3.2em);min-height:420px}
#plot{flex:1 1 auto;min-width:0}
#panel{flex:0 0 330px;overflow-y:auto;border-left:1px solid #ddd;background:#fff;padding:.6em .9em}
#panel h2{font-size:1.05em;margin:.2em 0 .5em}
#panel h3{font-size:.95em;margin:.9em 0 .4em}
#hint{color:#666}
.card{display:flex;gap:.6em;align-items:flex-start}
.card .meta{min-width:0;overflow-wrap:anywhere}
.name{font-weight:600;overflow-wrap:anywhere}
.sub{color:#555;font-size:.9em;overflow-wrap:anywhere}
.thumb{display:block;border:1px solid #ccc;background:#eee;object-fit:contain;flex:0 0 auto}
.nothumb{display:flex;align-items:center;justify-content:center;color:#888;font-size:.8em;text-align:center}
#neighbours{list-style:none;padding:0;margin:0}
#neighbours li{display:flex;gap:.5em;align-items:center;padding:.3em;border-radius:4px;cursor:pointer}
#neighbours li:hover{background:#eef3fb}
#neighbours .thumb{width:56px;height:56px}
.sim{font-variant-numeric:tabular-nums;color:#333}
#tooltip{position:fixed;z-index:10;pointer-events:none;background:#fff;border:1px solid #999;border-radius:4px;
 box-shadow:0 2px 8px rgba(0,0,0,.25);padding:.4em;max-width:260px}
#tooltip .thumb{margin-bottom:.3em}
button{margin-top:.8em}
"""

# The page's script. It reads the JSON block and writes user strings only via textContent
# or, for plotly (which decodes HTML entities and drops tags), entity-encoded with esc().
_APP_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("explorer-data").textContent);
  var N = D.x.length;
  var TYPE = D.webgl ? "scattergl" : "scatter";
  var SIZE = N > 5000 ? 4 : (N > 1000 ? 6 : 9);
  var plotEl = document.getElementById("plot");
  var tip = document.getElementById("tooltip");
  var sel = document.getElementById("colour-by");
  var current = 0, selected = -1;

  function esc(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(v) { return (v === null || v === undefined) ? "n/a" : Number(v).toFixed(3); }
  function labelOf(i) { var l = D.labels[i]; return l >= 0 ? D.class_names[l] : "unlabelled"; }
  function thumb(i, px) {
    var t = D.thumbs[i], e;
    if (t) { e = el("img", "thumb"); e.src = t; e.alt = D.names[i]; }
    else { e = el("div", "thumb nothumb", "no thumbnail"); }
    if (px) { e.style.width = px + "px"; e.style.height = px + "px"; }
    return e;
  }

  // ---- colourings
  var modes = [{label: "Class", kind: "cat", values: D.labels, names: D.class_names,
                colors: D.class_colors, missing: "unlabelled"}];
  D.clusters.forEach(function (c) {
    modes.push({label: "Cluster: " + c.name, kind: "cat", values: c.values, names: c.names,
                colors: c.colors, missing: "noise", cluster: c});
  });
  if (D.outlier) modes.push({label: "Outlier score", kind: "num", values: D.outlier, title: "outlier score"});
  if (D.suspect) modes.push({label: "Suspect-label score", kind: "num", values: D.suspect, title: "suspect score"});
  modes.forEach(function (m, k) { var o = el("option", null, m.label); o.value = String(k); sel.appendChild(o); });

  function pointsTrace(idx, extra) {
    var t = {type: TYPE, mode: "markers", hoverinfo: "none", customdata: idx,
             x: idx.map(function (i) { return D.x[i]; }), y: idx.map(function (i) { return D.y[i]; })};
    Object.keys(extra).forEach(function (k) { t[k] = extra[k]; });
    return t;
  }
  var LINE = {width: 0.5, color: "rgba(0,0,0,0.45)"};
  function buildTraces(m) {
    var traces = [], i;
    if (m.kind === "cat") {
      var groups = {};
      for (i = 0; i < N; i++) { var v = m.values[i]; (groups[v] = groups[v] || []).push(i); }
      var order = m.names.map(function (_, k) { return k; });
      order.push(-1);
      order.forEach(function (v) {
        var idx = groups[v];
        if (!idx) return;
        var name = v >= 0 ? m.names[v] : m.missing;
        traces.push(pointsTrace(idx, {name: esc(name) + " (" + idx.length + ")",
          marker: {color: v >= 0 ? m.colors[v] : "#b0b0b0", size: SIZE, line: LINE}}));
      });
    } else {
      var has = [], none = [];
      for (i = 0; i < N; i++) (m.values[i] === null ? none : has).push(i);
      has.sort(function (a, b) { return m.values[a] - m.values[b]; });  // highest drawn on top
      if (none.length) traces.push(pointsTrace(none, {name: "not scored (" + none.length + ")",
        marker: {color: "#d0d0d0", size: SIZE, line: LINE}}));
      traces.push(pointsTrace(has, {name: esc(m.title), showlegend: false,
        marker: {color: has.map(function (j) { return m.values[j]; }), colorscale: "Viridis", showscale: true,
                 colorbar: {title: {text: esc(m.title), side: "right"}}, size: SIZE, line: LINE}}));
    }
    traces.push({type: TYPE, mode: "markers", x: [], y: [], hoverinfo: "skip", showlegend: false,
                 name: "selection", marker: {symbol: "circle-open", size: [], color: [], line: {width: 2.5}}});
    return traces;
  }
  var layout = {
    margin: {l: 50, r: 10, t: 34, b: 45}, hovermode: "closest", dragmode: "zoom", uirevision: "keep",
    xaxis: {title: {text: esc(D.axis_titles[0])}, zeroline: false},
    yaxis: {title: {text: esc(D.axis_titles[1])}, zeroline: false},
    legend: {itemsizing: "constant"}, paper_bgcolor: "#fafafa", plot_bgcolor: "#fff"
  };
  var config = {responsive: true, displaylogo: false, scrollZoom: true,
                modeBarButtonsToRemove: ["select2d", "lasso2d"],
                toImageButtonOptions: {format: "png", filename: "morphospace", scale: 2}};

  function draw() {
    var traces = buildTraces(modes[current]);
    // plotly hides a legend with a single entry; show it whenever there is an entry (e.g. "unlabelled (N)")
    layout.showlegend = traces.some(function (t) { return t.showlegend !== false; });
    return Plotly.react(plotEl, traces, layout, config).then(highlight);
  }

  // ---- hover tooltip
  function showTip(i, ev) {
    tip.replaceChildren();
    tip.appendChild(thumb(i));
    tip.appendChild(el("div", "name", D.names[i]));
    tip.appendChild(el("div", "sub", "label: " + labelOf(i)));
    var m = modes[current];
    if (m.cluster) {
      var c = m.values[i];
      tip.appendChild(el("div", "sub", "cluster: " + (c >= 0 ? m.names[c] : "noise")));
    }
    if (D.suspect) tip.appendChild(el("div", "sub", "suspect-label score: " + fmt(D.suspect[i])));
    if (D.outlier) tip.appendChild(el("div", "sub", "outlier score: " + fmt(D.outlier[i])));
    tip.dataset.index = String(i);
    tip.hidden = false;
    var x = (ev && ev.clientX) || 0, y = (ev && ev.clientY) || 0;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = x + 16 + w > window.innerWidth ? x - 16 - w : x + 16;
    var top = y + 16 + h > window.innerHeight ? y - 16 - h : y + 16;
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, top) + "px";
  }
  function hideTip() { tip.hidden = true; }

  // ---- selection and neighbours
  function neighboursOf(i) {
    if (!D.neighbours) return [];
    var out = [], row = D.neighbours[i], sims = D.neighbour_sim ? D.neighbour_sim[i] : null;
    for (var k = 0; k < row.length; k++) {
      if (row[k] < 0 || row[k] === i) continue;
      out.push({j: row[k], sim: sims ? sims[k] : null});
    }
    return out;
  }
  function highlight() {
    var last = plotEl.data.length - 1, xs = [], ys = [], size = [], color = [];
    if (selected >= 0) {
      neighboursOf(selected).forEach(function (nb) {
        xs.push(D.x[nb.j]); ys.push(D.y[nb.j]); size.push(SIZE + 7); color.push("#e8590c");
      });
      xs.push(D.x[selected]); ys.push(D.y[selected]); size.push(SIZE + 11); color.push("#000");
    }
    return Plotly.restyle(plotEl, {x: [xs], y: [ys], "marker.size": [size], "marker.color": [color]}, [last]);
  }
  function selectPoint(i) {
    selected = i;
    var box = document.getElementById("selection"), card = document.getElementById("selected-card");
    var list = document.getElementById("neighbours");
    card.replaceChildren(); list.replaceChildren();
    if (i < 0) { box.hidden = true; document.getElementById("hint").hidden = false; return highlight(); }
    var c = el("div", "card"); c.appendChild(thumb(i, D.thumb_size));
    var meta = el("div", "meta");
    meta.appendChild(el("div", "name", D.names[i]));
    meta.appendChild(el("div", "sub", D.paths[i]));
    meta.appendChild(el("div", "sub", "label: " + labelOf(i)));
    if (D.suspect) meta.appendChild(el("div", "sub", "suspect-label score: " + fmt(D.suspect[i])));
    if (D.outlier) meta.appendChild(el("div", "sub", "outlier score: " + fmt(D.outlier[i])));
    c.appendChild(meta); card.appendChild(c);
    var nbs = neighboursOf(i);
    if (!D.neighbours) list.appendChild(el("li", "sub", "nearest neighbours were not computed"));
    nbs.forEach(function (nb, k) {
      var li = el("li", "neighbour");
      li.dataset.index = String(nb.j);
      li.title = D.paths[nb.j];
      li.appendChild(thumb(nb.j));
      var m = el("div", "meta");
      m.appendChild(el("div", "name", (k + 1) + ". " + D.names[nb.j]));
      m.appendChild(el("div", "sub", labelOf(nb.j)));
      m.appendChild(el("div", "sim", "similarity " + fmt(nb.sim)));
      li.appendChild(m);
      li.addEventListener("click", function () { selectPoint(nb.j); });
      list.appendChild(li);
    });
    box.hidden = false; document.getElementById("hint").hidden = true;
    return highlight();
  }

  sel.addEventListener("change", function () { current = +sel.value; hideTip(); draw(); });
  document.getElementById("clear").addEventListener("click", function () { selectPoint(-1); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") selectPoint(-1); });

  draw().then(function () {
    plotEl.on("plotly_hover", function (ev) {
      var p = ev.points && ev.points[0];
      if (p && p.customdata !== undefined && p.customdata !== null) showTip(+p.customdata, ev.event);
    });
    plotEl.on("plotly_unhover", hideTip);
    plotEl.on("plotly_click", function (ev) {
      var p = ev.points && ev.points[0];
      if (p && p.customdata !== undefined && p.customdata !== null) selectPoint(+p.customdata);
    });
    document.body.dataset.ready = "1";
  });
  window.palaeoExplorer = {data: D, select: selectPoint,
                           colourBy: function (k) { sel.value = String(k); current = k; return draw(); }};
})();
"""
