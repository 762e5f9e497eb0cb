/*
 * The explorer page's script (palaeo_ssl/explorer/app.js).
 *
 * Inlined into the page by render.py and admitted by the page's
 * Content-Security-Policy through its SHA-256 hash, so any edit here changes
 * the hash (render.py computes it; nothing to update by hand).
 *
 * It reads the JSON block #explorer-data (built by payload.py) and draws it
 * with plotly. Safety: user strings (file names, class and clustering names)
 * reach the DOM only as text (textContent), and reach plotly, which decodes
 * HTML entities and drops tags, only entity-encoded with esc().
 *
 * window.palaeoExplorer = {data, select(i), colourBy(k)} is the hook the
 * browser tests and benchmarks/explorer_scale.py use.
 */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("explorer-data").textContent);
  var N = D.x.length;
  var TYPE = D.webgl ? "scattergl" : "scatter";
  var SIZE = N > 5000 ? 4 : (N > 1000 ? 6 : 9);
  var plotEl = document.getElementById("plot");
  var tip = document.getElementById("tooltip");
  var sel = document.getElementById("colour-by");
  var current = 0, selected = -1;  // index into modes; selected point (-1 = none)

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
  function fmt(v) { return (v === null || v === undefined) ? "n/a" : Number(v).toFixed(3); }
  function labelOf(i) { var l = D.labels[i]; return l >= 0 ? D.class_names[l] : "unlabelled"; }
  function thumb(i, px) {
    var t = D.thumbs[i], e;
    if (t) {
      e = el("img", "thumb");
      e.src = t;
      e.alt = D.names[i];
    } else {
      e = el("div", "thumb nothumb", "no thumbnail");
    }
    if (px) { e.style.width = px + "px"; e.style.height = px + "px"; }
    return e;
  }

  // ---- colourings: class, each clustering, then the scores that exist
  var modes = [{label: "Class", kind: "cat", values: D.labels, names: D.class_names,
                colors: D.class_colors, missing: "unlabelled"}];
  D.clusters.forEach(function (c) {
    modes.push({label: "Cluster: " + c.name, kind: "cat", values: c.values, names: c.names,
                colors: c.colors, missing: "noise", cluster: c});
  });
  if (D.outlier) modes.push({label: "Outlier score", kind: "num", values: D.outlier, title: "outlier score"});
  if (D.suspect) modes.push({label: "Suspect-label score", kind: "num", values: D.suspect, title: "suspect score"});
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
  var LINE = {width: 0.5, color: "rgba(0,0,0,0.45)"};
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
      // a score: grey for the points without one, a colour bar for the others
      var has = [], none = [];
      for (i = 0; i < N; i++) (m.values[i] === null ? none : has).push(i);
      has.sort(function (a, b) { return m.values[a] - m.values[b]; });  // highest drawn on top
      if (none.length) traces.push(pointsTrace(none, {name: "not scored (" + none.length + ")",
        marker: {color: "#d0d0d0", size: SIZE, line: LINE}}));
      traces.push(pointsTrace(has, {name: esc(m.title), showlegend: false,
        marker: {color: has.map(function (j) { return m.values[j]; }), colorscale: "Viridis", showscale: true,
                 colorbar: {title: {text: esc(m.title), side: "right"}}, size: SIZE, line: LINE}}));
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
                modeBarButtonsToRemove: ["select2d", "lasso2d"],
                toImageButtonOptions: {format: "png", filename: "morphospace", scale: 2}};

  function draw() {
    var traces = buildTraces(modes[current]);
    // plotly hides a legend with a single entry; show it whenever there is an entry (e.g. "unlabelled (N)")
    layout.showlegend = traces.some(function (t) { return t.showlegend !== false; });
    return Plotly.react(plotEl, traces, layout, config).then(highlight);
  }

  // ---- hover tooltip: thumbnail, name, label, cluster and scores, kept inside the window
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
  // a point's neighbours, its own index and -1 (none) skipped: [{j: index, sim: similarity or null}]
  function neighboursOf(i) {
    if (!D.neighbours) return [];
    var out = [], row = D.neighbours[i], sims = D.neighbour_sim ? D.neighbour_sim[i] : null;
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
  // select point i (-1 clears): its card and its neighbour list in the side panel
  function selectPoint(i) {
    selected = i;
    var box = document.getElementById("selection"), card = document.getElementById("selected-card");
    var list = document.getElementById("neighbours");
    card.replaceChildren();
    list.replaceChildren();
    if (i < 0) {
      box.hidden = true;
      document.getElementById("hint").hidden = false;
      return highlight();
    }
    var c = el("div", "card");
    c.appendChild(thumb(i, D.thumb_size));
    var meta = el("div", "meta");
    meta.appendChild(el("div", "name", D.names[i]));
    meta.appendChild(el("div", "sub", D.paths[i]));
    meta.appendChild(el("div", "sub", "label: " + labelOf(i)));
    if (D.suspect) meta.appendChild(el("div", "sub", "suspect-label score: " + fmt(D.suspect[i])));
    if (D.outlier) meta.appendChild(el("div", "sub", "outlier score: " + fmt(D.outlier[i])));
    c.appendChild(meta);
    card.appendChild(c);
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
    box.hidden = false;
    document.getElementById("hint").hidden = true;
    return highlight();
  }

  // ---- events
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
    document.body.dataset.ready = "1";  // the browser tests wait for this
  });
  window.palaeoExplorer = {data: D, select: selectPoint,
                           colourBy: function (k) { sel.value = String(k); current = k; return draw(); }};
})();
