"""``to_label.csv``: the manifest template of the specimens to label, and reading it back.

The template has the columns of a manifest, ``path,label``, and a third,
``dataset``:

* ``path`` is the absolute path of each image (so the file works from wherever
  it is saved or moved to, as long as the images stay where they are);
* ``label`` is empty, for the user to fill in (a row left empty stays unlabelled);
* ``dataset`` names the dataset the embeddings were made from (the ``data`` the
  store's ``meta.json`` records: a class folder, a flat folder or a manifest).

Given as DATA to any command, a filled template is that dataset *with the new
labels added* (:func:`palaeo_ssl.images.discover`): every image of the dataset
is kept, an image it has unlabelled takes the template's label, an image it
already labels keeps its label, and a different label in the template is
reported as a conflict, never written over. A path that is not an image of the
dataset is refused with the list of such paths. When the store does not record
its dataset (embeddings made elsewhere), ``dataset`` is empty and the filled
template is a plain manifest of the listed images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..embeddings import Embeddings
from ..images import TEMPLATE_DATASET_COLUMN, TemplateMerge, merge_template  # noqa: F401  (re-exported)

TEMPLATE_FILE = "to_label.csv"


def template_frame(emb: Embeddings, rows: Sequence[int]) -> pd.DataFrame:
    """The template's rows for the specimens ``rows`` of ``emb``, in that order, labels empty."""
    dataset = emb.meta.get("data") or ""
    paths = []
    for i in rows:
        p = emb.image_path(int(i))
        paths.append(p.as_posix() if p.is_absolute() or emb.data_root is None else p.resolve().as_posix())
    return pd.DataFrame({"path": paths, "label": [""] * len(paths),
                         TEMPLATE_DATASET_COLUMN: [str(dataset)] * len(paths)})


def write_template(emb: Embeddings, rows: Sequence[int], out: str | os.PathLike) -> Path:
    """Write ``out/to_label.csv`` for ``rows`` of ``emb``; returns its path."""
    from ..report import write_csv

    return write_csv(template_frame(emb, rows), Path(out) / TEMPLATE_FILE)


def read_template(template: str | os.PathLike) -> TemplateMerge:
    """The labels a filled template adds to its dataset: new labels, agreements and conflicts
    (see :func:`palaeo_ssl.images.merge_template`)."""
    return merge_template(Path(template))


__all__ = ["TEMPLATE_DATASET_COLUMN", "TEMPLATE_FILE", "TemplateMerge", "merge_template", "read_template",
           "template_frame", "write_template"]
