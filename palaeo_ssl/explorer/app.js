/*
 * The explorer page's script (palaeo_ssl/explorer/app.js): the plot, hover, selection and neighbours.
 *
 * Inlined into the page by render.py and admitted by the page's
 * Content-Security-Policy through its SHA-256 hash, so any edit here changes
 * the hash (render.py computes it; nothing to update by hand). labelling.js
 * (the labelling panel) runs after it and uses window.palaeoExplorer.
 *
 * It reads the JSON block #explorer-data (built by payload.py) and draws it
 * with plotly. A folder page (large sets, see folder.py) keeps the bulky
 * per-specimen data in sidecar scripts: the specimens part comes with a
 * <script src> before this script, the nearest-neighbour chunks are added on
 * demand, and thumbnails are <img> files loaded when shown. Each part pushes
 * {set: [[key path, value], ...]} or {rows: first row, neighbours, neighbour_sim}
 * onto window.palaeoExplorerParts.
 *
 * Safety: user strings (file names, class, clustering and score names, names
 * typed in the labelling panel) reach the DOM only as text (textContent or an
 * attribute value), and reach plotly, which decodes HTML entities and drops
 * tags, only entity-encoded with esc().
 *
 * window.palaeoExplorer = {data, select(i), colourBy(k), ...} is the hook the
 * labelling panel, the browser tests and benchmarks/explorer_scale.py use.
 */
(function () {
  "use strict";
  var timings = {start: performance.now()};  // ms since navigation: this script starts, the data is read, drawn
  var D = JSON.parse(document.getElementById("explorer-data").textContent);
  var N = D.x.length;
  var TYPE = D.webgl ? "scattergl" : "scatter";
  var SIZE = N > 50000 ? 3 : (N > 5000 ? 4 : (N > 1000 ? 6 : 9));
  var plotEl = document.getElementById("plot");
  var tip = document.getElementById("tooltip");
  var sel = document.getElementById("colour-by");
  var current = 0, selected = -1;  // index into modes; selected point (-1 = none)
  var targetListeners = [];

  // ---- small helpers
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "n/a";
    return Number.isInteger(v) ? String(v) : Number(v).toFixed(3);
  }
  function loadError(text) {
    var p = document.getElementById("load-error");
    p.textContent = text;
    p.hidden = false;
  }

  // ---- the parts of a folder page
  function applyParts() {
    var parts = window.palaeoExplorerParts || [];
    while (parts.length) {
      var p = parts.shift(), r;
      (p.set || []).forEach(function (kv) {
        var o = D, path = kv[0];
        for (var j = 0; j < path.length - 1; j++) o = o[path[j]];
        o[path[path.length - 1]] = kv[1];
      });
      if (p.rows !== undefined) {
        for (r = 0; r < p.neighbours.length; r++) {
          D.neighbours[p.rows + r] = p.neighbours[r];
          if (D.neighbour_sim) D.neighbour_sim[p.rows + r] = p.neighbour_sim[r];
        }
      }
    }
  }
  timings.parsed = performance.now();
  var NB = D.parts && D.parts.neighbours;  // {size: rows per chunk, files: [url, ...], sim: bool} or undefined
  if (NB) {
    D.neighbours = new Array(N);
    D.neighbour_sim = NB.sim ? new Array(N) : null;
  }
  applyParts();
  if (D.paths === null) {  // the specimens part did not load (the folder beside the page is missing)
    loadError("This page's data (" + decodeURI(D.parts.specimens) + ") could not be loaded: keep the folder " +
              decodeURI(D.parts.folder) + " beside the page.");
    D.paths = D.x.map(function (_, i) { return "specimen " + i; });
    D.thumb_folder = null;
    D.clusters.forEach(function (c) { c.values = c.values || D.labels.map(function () { return -1; }); });
    D.scores.forEach(function (s) { s.values = s.values || D.labels.map(function () { return null; }); });
    ["outlier", "suspect", "predicted"].forEach(function (k) { if (D[k] === undefined) D[k] = null; });
  }
  var chunkLoads = {};
  // a promise that resolves once point i's neighbour row is loaded (at once on a one-file page)
  function ensureNeighbours(i) {
    if (!NB || D.neighbours[i] !== undefined) return Promise.resolve();
    var c = Math.floor(i / NB.size);
    if (!chunkLoads[c]) {
      chunkLoads[c] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = NB.files[c];
        s.onload = function () { applyParts(); resolve(); };
        s.onerror = function () { delete chunkLoads[c]; reject(new Error(decodeURI(NB.files[c]))); };
        document.head.appendChild(s);
      });
    }
    return chunkLoads[c];
  }

  // ---- names, labels and thumbnails
  function nameOf(i) {
    var p = D.paths[i];
    return p.slice(Math.max(p.lastIndexOf("/"), p.lastIndexOf("\\")) + 1);
  }
  function labelOf(i) { var l = D.labels[i]; return l >= 0 ? D.class_names[l] : "unlabelled"; }
  var thumbOk = null;
  if (D.thumb_folder) {
    thumbOk = new Uint8Array(N).fill(1);
    (D.thumb_folder.missing || []).forEach(function (r) { thumbOk.fill(0, r[0], r[1]); });
  }
  function thumbSrc(i) {
    if (D.thumbs) return D.thumbs[i];
    if (thumbOk && thumbOk[i]) {
      return D.thumb_folder.url + "/" + Math.floor(i / D.thumb_folder.per_folder) + "/" + i + ".jpg";
    }
    return null;
  }
  function thumb(i, px) {
    var t = thumbSrc(i), e;
    if (t) {
      e = el("img", "thumb");
      e.src = t;
      e.alt = nameOf(i);
    } else {
      e = el("div", "thumb nothumb", "no thumbnail");
    }
    if (px) { e.style.width = px + "px"; e.style.height = px + "px"; }
    return e;
  }
  // the lines under a specimen's name: label, predicted class, cluster (when coloured by one), scores
  function details(i) {
    var out = ["label: " + labelOf(i)], m = modes[current];
    if (D.predicted) {
      var p = D.predicted[i];
      out.push("predicted: " + (p >= 0 ? D.class_names[p] : "unassigned"));
    }
    if (m.cluster) {
      var c = m.values[i];
      out.push("cluster: " + (c >= 0 ? m.names[c] : "noise"));
    }
    if (D.suspect) out.push("suspect-label score: " + fmt(D.suspect[i]));
    if (D.outlier) out.push("outlier score: " + fmt(D.outlier[i]));
    D.scores.forEach(function (s) { out.push(s.name + ": " + fmt(s.values[i])); });
    return out;
  }

  // ---- colourings: class, predicted class, each clustering, then the scores that exist
  var modes = [{label: "Class", kind: "cat", values: D.labels, names: D.class_names,
                colors: D.class_colors, missing: "unlabelled", labels: true}];
  if (D.predicted) {
    modes.push({label: "Predicted class", kind: "cat", values: D.predicted, names: D.class_names,
                colors: D.class_colors, missing: "unassigned"});
  }
  D.clusters.forEach(function (c) {
    modes.push({label: "Cluster: " + c.name, kind: "cat", values: c.values, names: c.names,
                colors: c.colors, missing: "noise", cluster: c});
  });
  if (D.outlier) modes.push({label: "Outlier score", kind: "num", values: D.outlier, title: "outlier score"});
  if (D.suspect) modes.push({label: "Suspect-label score", kind: "num", values: D.suspect, title: "suspect score"});
  D.scores.forEach(function (s) {
    modes.push({label: "Score: " + s.name, kind: "num", values: s.values, title: s.name, ascending: s.ascending});
  });
  modes.forEach(function (m, k) {
    var o = el("option", null, m.label);
    o.value = String(k);
    sel.appendChild(o);
  });

  // ---- plotly traces
  // customdata holds each point's index into D, so hover and click know the specimen.
  function pointsTrace(idx, extra) {
    var t = {type: TYPE, mode: "markers", hoverinfo: "none", customdata: idx,
             x: idx.map(function (i) { return D.x[i]; }), y: idx.map(function (i) { return D.y[i]; })};
    Object.keys(extra).forEach(function (k) { t[k] = extra[k]; });
    return t;
  }
  var LINE = N > 50000 ? {width: 0} : {width: 0.5, color: "rgba(0,0,0,0.45)"};
  function buildTraces(m) {
    var traces = [], i;
    if (m.kind === "cat") {
      // one trace per category (legend entry), in name order, the missing ones (-1) last
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
      // a score: grey for the points without one, a colour bar for the others; the most notable drawn on
      // top (the highest, or the lowest for a rank, whose colour scale is then reversed)
      var has = [], none = [], sign = m.ascending ? -1 : 1;
      for (i = 0; i < N; i++) (m.values[i] === null ? none : has).push(i);
      has.sort(function (a, b) { return sign * (m.values[a] - m.values[b]); });
      if (none.length) traces.push(pointsTrace(none, {name: "not scored (" + none.length + ")",
        marker: {color: "#d0d0d0", size: SIZE, line: LINE}}));
      traces.push(pointsTrace(has, {name: esc(m.title), showlegend: false,
        marker: {color: has.map(function (j) { return m.values[j]; }), colorscale: "Viridis", showscale: true,
                 reversescale: !!m.ascending, colorbar: {title: {text: esc(m.title), side: "right"}},
                 size: SIZE, line: LINE}}));
    }
    // the last trace rings the selection and its neighbours (filled in by highlight())
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
                modeBarButtonsToRemove: D.labelling ? [] : ["select2d", "lasso2d"],
                toImageButtonOptions: {format: "png", filename: "morphospace", scale: 2}};

  function draw() {
    var traces = buildTraces(modes[current]);
    // plotly hides a legend with a single entry; show it whenever there is an entry (e.g. "unlabelled (N)")
    layout.showlegend = traces.some(function (t) { return t.showlegend !== false; });
    layout.selections = [];  // a lasso or box outline belongs to the traces it was drawn on
    return Plotly.react(plotEl, traces, layout, config).then(highlight);
  }

  // ---- hover tooltip: thumbnail, name, label, cluster and scores, kept inside the window
  function showTip(i, ev) {
    tip.replaceChildren();
    tip.appendChild(thumb(i));
    tip.appendChild(el("div", "name", nameOf(i)));
    details(i).forEach(function (line) { tip.appendChild(el("div", "sub", line)); });
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
  // a point's neighbours, its own index and -1 (none) skipped: [{j: index, sim: similarity or null}]
  function neighboursOf(i) {
    var row = D.neighbours && D.neighbours[i];
    if (!row) return [];
    var out = [], sims = D.neighbour_sim ? D.neighbour_sim[i] : null;
    for (var k = 0; k < row.length; k++) {
      if (row[k] < 0 || row[k] === i) continue;
      out.push({j: row[k], sim: sims ? sims[k] : null});
    }
    return out;
  }
  // ring the selection (black) and its neighbours (orange) in the last trace
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
  function card(i) {
    var c = el("div", "card");
    c.appendChild(thumb(i, D.thumb_size));
    var meta = el("div", "meta");
    meta.appendChild(el("div", "name", nameOf(i)));
    meta.appendChild(el("div", "sub", D.paths[i]));
    details(i).forEach(function (line) { meta.appendChild(el("div", "sub", line)); });
    c.appendChild(meta);
    return c;
  }
  function listNeighbours(i) {
    var list = document.getElementById("neighbours");
    list.replaceChildren();
    if (!D.neighbours) {
      list.appendChild(el("li", "sub", "nearest neighbours were not computed"));
      return;
    }
    neighboursOf(i).forEach(function (nb, k) {
      var li = el("li", "neighbour");
      li.dataset.index = String(nb.j);
      li.title = D.paths[nb.j];
      li.appendChild(thumb(nb.j));
      var m = el("div", "meta");
      m.appendChild(el("div", "name", (k + 1) + ". " + nameOf(nb.j)));
      m.appendChild(el("div", "sub", labelOf(nb.j)));
      m.appendChild(el("div", "sim", "similarity " + fmt(nb.sim)));
      li.appendChild(m);
      li.addEventListener("click", function () { selectPoint(nb.j, true); });
      list.appendChild(li);
    });
  }
  // select point i (-1 clears): its card and its neighbour list in the side panel; it becomes what the
  // labelling panel labels (unless asTarget is false)
  function selectPoint(i, asTarget) {
    selected = i;
    var box = document.getElementById("selection"), cardEl = document.getElementById("selected-card");
    cardEl.replaceChildren();
    document.getElementById("neighbours").replaceChildren();
    if (asTarget !== false) setTargets(i >= 0 ? [i] : []);
    if (i < 0) {
      box.hidden = true;
      document.getElementById("hint").hidden = false;
      return highlight();
    }
    cardEl.appendChild(card(i));
    box.hidden = false;
    document.getElementById("hint").hidden = true;
    return ensureNeighbours(i).then(function () {
      if (selected !== i) return null;
      listNeighbours(i);
      return highlight();
    }, function (err) {
      var list = document.getElementById("neighbours");
      list.replaceChildren(el("li", "sub", "the nearest neighbours (" + err.message + ") could not be loaded: " +
                                          "keep the folder " + decodeURI(D.parts.folder) + " beside the page"));
      return highlight();
    });
  }
  // the specimens the labelling panel acts on: a clicked point or a lasso/box selection
  function setTargets(idx) {
    targetListeners.forEach(function (fn) { fn(idx.slice()); });
  }
  // set labels[idx[k]] = values[k] (a class index or -1); redraws when the plot is coloured by class
  function setLabels(idx, values) {
    idx.forEach(function (i, k) { D.labels[i] = values[k]; });
    if (selected >= 0) {
      document.getElementById("selected-card").replaceChildren(card(selected));
      if (D.neighbours && D.neighbours[selected]) listNeighbours(selected);
    }
    return modes[current].labels ? draw() : Promise.resolve();
  }
  // a new class name: its index (its colour continues the palette by the golden angle)
  function addClass(name) {
    D.class_names.push(String(name));
    D.class_colors.push("hsl(" + Math.round((D.class_colors.length * 137.508) % 360) + ",62%,42%)");
    return D.class_names.length - 1;
  }

  // ---- events
  sel.addEventListener("change", function () { current = +sel.value; hideTip(); draw(); });
  document.getElementById("clear").addEventListener("click", function () { selectPoint(-1); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && e.target.tagName !== "INPUT") selectPoint(-1);
  });

  function pointIndex(p) {
    return (p && p.customdata !== undefined && p.customdata !== null) ? +p.customdata : -1;
  }
  draw().then(function () {
    plotEl.on("plotly_hover", function (ev) {
      var i = pointIndex(ev.points && ev.points[0]);
      if (i >= 0) showTip(i, ev.event);
    });
    plotEl.on("plotly_unhover", hideTip);
    plotEl.on("plotly_click", function (ev) {
      var i = pointIndex(ev.points && ev.points[0]);
      if (i >= 0) selectPoint(i);
    });
    plotEl.on("plotly_selected", function (ev) {
      if (!ev || !ev.points) return;
      var seen = {}, idx = [];
      ev.points.forEach(function (p) {
        var i = pointIndex(p);
        if (i >= 0 && !seen[i]) { seen[i] = true; idx.push(i); }
      });
      setTargets(idx);
    });
    plotEl.on("plotly_deselect", function () { setTargets(selected >= 0 ? [selected] : []); });
    timings.drawn = performance.now();
    document.body.dataset.ready = "1";  // the browser tests wait for this
  });
  window.palaeoExplorer = {
    data: D, timings: timings, select: selectPoint, nameOf: nameOf, labelOf: labelOf, setLabels: setLabels, addClass: addClass,
    onTargets: function (fn) { targetListeners.push(fn); },
    colourBy: function (k) { sel.value = String(k); current = k; return draw(); }
  };
})();
