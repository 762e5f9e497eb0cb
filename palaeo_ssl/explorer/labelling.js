/*
 * The explorer's labelling panel (palaeo_ssl/explorer/labelling.js), inlined after app.js and admitted
 * by the page's Content-Security-Policy through its SHA-256 hash.
 *
 * Click a specimen, or select several with the plot's lasso or box tool; type an existing or a new
 * class name; Assign. Undo takes back the last assignment. "Download labels" saves every specimen's
 * label (the original ones and those assigned here) as a CSV manifest, path,label, the format
 * palaeo_ssl.images.discover reads: an empty label means unlabelled. Paths are absolute when the page
 * knows the dataset's folder (data_root), otherwise relative to it. "Download for EcoTaxa" saves the
 * same labels as an EcoTaxa TSV (ecotaxa_labels.tsv, the import format palaeo_ssl.exchange.ecotaxa
 * writes): a type line, img_file_name relative to the dataset's folder (save it there and zip the
 * folder for EcoTaxa), object_id the same path, labels as validated identifications, values quoted
 * as Python's csv module and EcoTaxa do, UTF-8 with a byte-order mark; palaeo-ssl reads it back as DATA.
 *
 * What the user types reaches the page only as text: textContent, an <option>'s value, and plotly's
 * legend through app.js's esc().
 */
(function () {
  "use strict";
  var X = window.palaeoExplorer, D = X.data, N = D.x.length;
  if (!D.labelling) return;
  var input = document.getElementById("label-name");
  var datalist = document.getElementById("label-classes");
  var assignBtn = document.getElementById("assign");
  var undoBtn = document.getElementById("undo");
  var targetsEl = document.getElementById("targets");
  var statusEl = document.getElementById("label-status");
  var original = D.labels.slice();
  var targets = [], history = [], savedAt = 0;  // savedAt: history length at the last download

  function refreshClasses() {
    datalist.replaceChildren();
    D.class_names.forEach(function (c) {
      var o = document.createElement("option");
      o.value = c;
      datalist.appendChild(o);
    });
  }
  function changed() {
    var n = 0;
    for (var i = 0; i < N; i++) if (D.labels[i] !== original[i]) n++;
    return n;
  }
  function refresh() {
    if (!targets.length) {
      targetsEl.textContent = "Click a specimen, or select several with the lasso or box tool of the plot.";
    } else if (targets.length === 1) {
      targetsEl.textContent = "1 specimen: " + X.nameOf(targets[0]) + " (" + X.labelOf(targets[0]) + ")";
    } else {
      targetsEl.textContent = targets.length + " specimens selected";
    }
    assignBtn.disabled = !targets.length || !input.value.trim();
    undoBtn.disabled = !history.length;
    var last = history[history.length - 1];
    undoBtn.textContent = last ? "Undo (" + last.name + " \u2192 " + last.idx.length + ")" : "Undo";
    var n = changed();
    statusEl.textContent = n ? n + (n === 1 ? " specimen" : " specimens") + " labelled differently from the " +
      "data" + (history.length !== savedAt ? " (not downloaded yet)" : "") : "no labels changed yet";
  }

  function assign() {
    var name = input.value.trim();
    if (!name || !targets.length) return null;
    var k = D.class_names.indexOf(name);
    if (k < 0) {
      k = X.addClass(name);
      refreshClasses();
    }
    var idx = targets.slice();
    history.push({idx: idx, prev: idx.map(function (i) { return D.labels[i]; }), name: name});
    var done = X.setLabels(idx, idx.map(function () { return k; }));
    refresh();
    return done;
  }
  function undo() {
    var h = history.pop();
    if (!h) return null;
    if (savedAt > history.length) savedAt = -1;  // the download no longer matches any state
    var done = X.setLabels(h.idx, h.prev);
    refresh();
    return done;
  }

  // ---- the CSV manifest
  function csvField(s) {
    s = String(s);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function fullPath(rel) {
    var root = D.data_root;
    if (!root || /^([\/\\]|[A-Za-z]:[\/\\])/.test(rel)) return rel;  // no root, or already absolute
    var sep = root.indexOf("/") < 0 && root.indexOf("\\") >= 0 ? "\\" : "/";
    return root.replace(/[\/\\]+$/, "") + sep + rel;
  }
  function csv() {
    var rows = ["path,label"];
    for (var i = 0; i < N; i++) {
      var l = D.labels[i];
      rows.push(csvField(fullPath(D.paths[i])) + "," + (l >= 0 ? csvField(D.class_names[l]) : ""));
    }
    return rows.join("\n") + "\n";
  }
  // ---- the EcoTaxa TSV
  function tsvField(s) {
    s = String(s);
    return /[\t"\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function ecotaxa() {
    var cols = ["img_file_name", "object_id", "object_annotation_category", "object_annotation_status"];
    var root = D.data_root ? ["process_id", "process_data_root"] : [];
    var rows = [cols.concat(root).join("\t"), cols.concat(root).map(function () { return "[t]"; }).join("\t")];
    var tail = D.data_root ? ["palaeo-ssl", tsvField(D.data_root)] : [];
    for (var i = 0; i < N; i++) {
      var l = D.labels[i], p = tsvField(D.paths[i]);
      rows.push([p, p, l >= 0 ? tsvField(D.class_names[l]) : "", l >= 0 ? "validated" : ""].concat(tail).join("\t"));
    }
    return "\ufeff" + rows.join("\n") + "\n";
  }

  function save(text, type, name) {
    var url = URL.createObjectURL(new Blob([text], {type: type}));
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
    savedAt = history.length;
    refresh();
  }
  function download() { save(csv(), "text/csv;charset=utf-8", "labels.csv"); }
  function downloadEcotaxa() { save(ecotaxa(), "text/tab-separated-values;charset=utf-8", "ecotaxa_labels.tsv"); }

  X.onTargets(function (idx) { targets = idx; refresh(); });
  input.addEventListener("input", refresh);
  input.addEventListener("keydown", function (e) { if (e.key === "Enter") assign(); });
  assignBtn.addEventListener("click", assign);
  undoBtn.addEventListener("click", undo);
  document.getElementById("download").addEventListener("click", download);
  document.getElementById("download-ecotaxa").addEventListener("click", downloadEcotaxa);
  document.getElementById("root-note").textContent = (D.data_root
    ? "The CSV lists absolute paths: give it as the data of any palaeo-ssl command, wherever it is saved. "
    : "The CSV lists paths relative to the dataset's folder: save it there before using it. ") +
    "The EcoTaxa TSV lists paths relative to the dataset's folder: save it there and zip the folder to import " +
    "it into EcoTaxa" + (D.data_root ? "; palaeo-ssl reads it from anywhere." : ".");
  window.addEventListener("beforeunload", function (e) {
    if (history.length && history.length !== savedAt) { e.preventDefault(); e.returnValue = ""; }
  });
  refreshClasses();
  refresh();
  document.getElementById("labelling").hidden = false;
  X.labelling = {assign: assign, undo: undo, csv: csv, ecotaxa: ecotaxa, download: download,
                 downloadEcotaxa: downloadEcotaxa};
})();
