"""Where identifications to export come from: a ``classify`` results folder, a ``suggest`` folder, or any DATA.

* a results folder of ``palaeo-ssl classify`` (it holds ``predictions.csv``): the machine's prediction of
  every image (abstentions keep their best guess), a person's label where the new images had one; the
  model, probe and threshold from ``calibration.json`` and the store the images were embedded into
  (``SOURCE/embeddings``, or ``store`` when ``classify`` read a store made elsewhere);
* a ``suggest`` folder (it holds ``to_label.csv``) or a filled ``to_label.csv``: its dataset with the labels
  added;
* anything else DATA can be: a class folder, a manifest or the labels CSV the explorer downloads (a
  person's labels), or an EcoTaxa TSV, a Darwin Core Archive or a CSV of identifications (read as they are,
  predictions included: converting one format into another).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..cache import read_json
from ..errors import UserError
from .model import HUMAN, MACHINE, NONE, Identifications, file_time, join_root

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
CALIBRATION_FILE = "calibration.json"
SUGGESTIONS_FILE = "suggestions.csv"


def from_images(images, dataset: str | None, source: str) -> Identifications:
    """A person's identifications of the images of an :class:`~palaeo_ssl.images.ImageList` (its labels)."""
    labels = np.asarray(images.labels)
    names = np.asarray(list(images.class_names) + [""], dtype=object)
    label = names[np.where(labels >= 0, labels, len(names) - 1)]
    frame = pd.DataFrame({"path": images.rel_paths, "file": [str(f) for f in images.files], "label": label,
                          "status": np.where(labels >= 0, HUMAN, NONE),
                          "specimen": images.specimens if images.specimens is not None else ""})
    if images.missing:
        log.warning("%d image(s) listed in %s are missing and are not exported", len(images.missing), source)
    return Identifications(frame, name=images.name, root=images.root, dataset=dataset, source=source)


def _store_for(predictions: pd.DataFrame, folder: Path, store: str | os.PathLike | None) -> Path:
    """The store ``classify`` embedded the predicted images into: the one among ``store`` (or
    ``folder/embeddings``) that holds every predicted path, the newest when several do."""
    from ..embeddings import INDEX_FILE, META_FILE, find_stores

    where = Path(store).expanduser() if store is not None else folder / "embeddings"
    stores = find_stores(where) if where.is_dir() else []
    wanted = set(predictions["path"])
    fits = []
    for s in stores:
        paths = pd.read_csv(s / INDEX_FILE, usecols=["path"], dtype=str, keep_default_na=False)["path"]
        if wanted <= set(paths):
            fits.append((str((read_json(s / META_FILE) or {}).get("created", "")), s))
    if not fits:
        hint = (f"{where} holds no embedding store with these images" if store is not None or where.is_dir()
                else f"{folder} has no embeddings/ folder (classify read a store made elsewhere)")
        raise UserError(f"cannot tell where the images of {folder / PREDICTIONS_FILE} are: {hint}; pass the store "
                        "classify read with --store STORE")
    return sorted(fits)[-1][1]


def read_predictions(folder: str | os.PathLike, store: str | os.PathLike | None = None) -> Identifications:
    """The identifications of a ``classify`` results folder (see the module docstring)."""
    from ..embeddings import INDEX_FILE, META_FILE

    folder = Path(folder)
    pred_file = folder / PREDICTIONS_FILE
    pred = pd.read_csv(pred_file, dtype=str, keep_default_na=False)
    need = {"path", "predicted_class", "probability"} - set(pred.columns)
    if need:
        raise UserError(f"{pred_file} lacks the column(s) {', '.join(sorted(need))}: is it the predictions.csv "
                        "of 'palaeo-ssl classify'?")
    found = _store_for(pred, folder, store)
    meta = read_json(found / META_FILE) or {}
    index = pd.read_csv(found / INDEX_FILE, dtype=str, keep_default_na=False)
    specimen = dict(zip(index["path"], index["specimen"])) if "specimen" in index else {}
    cal = read_json(folder / CALIBRATION_FILE) or {}
    predicted, prob = pred["predicted_class"], pd.to_numeric(pred["probability"], errors="coerce")
    guess = pred["best_guess"] if "best_guess" in pred else predicted
    assigned = predicted == guess  # with abstention, an unassigned row's class is 'unassigned', its guess beside
    true = pred["true_class"] if "true_class" in pred else pd.Series([""] * len(pred))
    status = np.where(true != "", HUMAN, MACHINE)
    label = np.where(true != "", true, np.where(assigned, predicted, ""))
    root = Path(meta["data_root"]) if meta.get("data_root") else None
    frame = pd.DataFrame({"path": pred["path"], "file": join_root(root, pred["path"]), "label": label,
                          "status": status, "probability": prob, "best_guess": guess,
                          "specimen": [specimen.get(p, "") for p in pred["path"]]})
    threshold = cal.get("threshold") if "best_guess" in pred else None
    return Identifications(frame, name=meta.get("dataset") or folder.name, root=root, dataset=meta.get("data"),
                           model=meta.get("model_id"), probe=cal.get("probe"),
                           threshold=None if threshold is None else min(float(threshold), 1.0),
                           identified=file_time(pred_file), source=str(folder),
                           random_weights=bool(meta.get("random_weights")))


def read_source(source: str | os.PathLike, *, store: str | os.PathLike | None = None,
                taxonomy: str | os.PathLike | None = None) -> Identifications:
    """The identifications in ``source``: a ``classify`` or ``suggest`` results folder, or any DATA (see the
    module docstring). ``store``: the store ``classify`` read, when not in ``source/embeddings``;
    ``taxonomy``: a CSV of higher ranks (``class,genus[,family,...]``) for the classes."""
    from ..images import discover
    from ..labels.template import TEMPLATE_FILE
    from ..taxonomy import read_taxonomy
    from .merge import exchange_format, read_exchange

    p = Path(source).expanduser()
    if not p.exists():
        raise UserError(f"{p} does not exist: pass a results folder of 'palaeo-ssl classify' or 'suggest', a labels "
                        "CSV, or any DATA (image folder, manifest, EcoTaxa TSV, Darwin Core Archive)")
    if p.is_file() and p.name == PREDICTIONS_FILE:
        p = p.parent
    if p.is_dir() and (p / PREDICTIONS_FILE).is_file():
        ids = read_predictions(p, store)
    else:
        if p.is_dir() and (p / TEMPLATE_FILE).is_file() and (p / SUGGESTIONS_FILE).is_file():
            p = p / TEMPLATE_FILE
        fmt = exchange_format(p)
        if fmt:
            ids = read_exchange(p, fmt)
        else:
            ids = from_images(discover(p), str(p.resolve()), str(p))
    if taxonomy is not None:
        ids.taxonomy = read_taxonomy(taxonomy, ids.class_names())
    if not len(ids):
        raise UserError(f"{p} holds no images to export")
    return ids


__all__ = ["CALIBRATION_FILE", "PREDICTIONS_FILE", "from_images", "read_predictions", "read_source"]
