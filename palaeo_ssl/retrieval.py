"""The stored specimens most similar to a new image (``palaeo-ssl similar``).

:func:`find_similar` embeds the image with the store's own model and settings
and ranks the stored images by cosine similarity (a :class:`SimilarResult`);
:func:`write_similar` writes the ranking as CSV and a contact sheet with the
query first. The ranking itself is
:func:`palaeo_ssl.morphospace.outliers.similar_table`.

    >>> res = find_similar("results/run/embeddings", "new_specimen.jpg", k=10)  # doctest: +SKIP
    >>> res.table[["rank", "path", "class_name", "similarity"]]               # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .embeddings import Embeddings, load_embeddings
from .errors import UserError
from .params import POSITIVE_INT, validate_params


@dataclass
class SimilarResult:
    """``table``: rank, index, path, class_name, similarity of the ``k`` nearest stored images;
    ``query``: the new image's (D,) features; ``image``: the new image;
    ``hits``: the stored images' files in rank order (relative paths where the store does
    not record its images' folder); ``files``: what :func:`write_similar` wrote (empty until then)."""

    table: pd.DataFrame
    query: np.ndarray
    image: Path
    hits: list[Path]
    files: list[Path] = field(default_factory=list)


def _stem(text: str) -> str:
    """File-name form of an image name: ``"Img 002 (b)"`` -> ``"img_002_b"``."""
    out = "".join(ch.lower() if ch.isalnum() else "_" for ch in text)
    return "_".join(p for p in out.split("_") if p)


@validate_params({"k": POSITIVE_INT})
def find_similar(
    embeddings: Embeddings | str | Path,
    image: str | Path,
    k: int = 10,
    *,
    out: str | Path | None = None,
    device: str = "auto",
    query_features: np.ndarray | None = None,
) -> SimilarResult:
    """The ``k`` stored specimens most similar to a new image.

    The image is embedded with the store's own model and settings
    (:func:`palaeo_ssl.extract.embed_like`) unless ``query_features`` (D,) are
    given. Returns a :class:`SimilarResult` whose ``table`` has the columns
    rank, index, path, class_name, similarity (cosine, -1..1); with ``out`` it
    also writes ``similar_<image name>.csv`` and a contact sheet
    ``similar_<image name>.png/.pdf`` (the query first, see :func:`write_similar`).
    """
    from .morphospace.outliers import similar_table

    emb = load_embeddings(embeddings)
    image = Path(image)
    if query_features is None:
        if not image.is_file():
            raise UserError(f"no image at {image}")
        from .extract import embed_like

        query_features = embed_like(emb.meta, [image], device=device)[0]
    q = np.asarray(query_features, dtype=np.float32).reshape(-1)
    if q.shape[0] != emb.dim:
        raise UserError(f"the new image's features have {q.shape[0]} dimensions but the store's have {emb.dim}; "
                        "the store's meta.json does not describe how its features were made")
    table = similar_table(np.asarray(emb.features), q, paths=emb.paths,
                          labels=emb.labels if emb.has_labels else None, class_names=emb.class_names, k=k)
    result = SimilarResult(table=table, query=q, image=image, hits=[emb.image_path(int(i)) for i in table["index"]])
    if out is not None:
        write_similar(result, out)
    return result


def write_similar(result: SimilarResult, out: str | os.PathLike) -> list[Path]:
    """Write ``similar_<image name>.csv`` and the contact sheet ``similar_<image name>.png/.pdf`` into ``out``.

    The sheet shows the query first, then each hit with its rank, file name,
    class and similarity. Returns the paths (also kept in ``result.files``).
    """
    from . import report
    from .plots.morphospace import plot_contact_sheet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    image = result.image
    stem = out / f"similar_{_stem(image.stem) or 'image'}"
    files = [report.write_csv(result.table, stem.with_suffix(".csv"))]
    caps = [f"query\n{image.name}"] + [
        f"#{r.rank} {Path(r.path).name}\n{r.class_name or 'unlabelled'}\nsimilarity {r.similarity:.3f}"
        for r in result.table.itertuples()]
    tiles = [image] + list(result.hits)
    files += plot_contact_sheet(tiles, caps, stem, title=f"Stored specimens most similar to {image.name} (cosine)",
                                ncols=min(6, len(tiles)))
    result.files = files
    return files


__all__ = ["SimilarResult", "find_similar", "write_similar"]
