"""Contact sheets of specimens of an embedding store (suggestions, novelty), drawn from the store's data root."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..embeddings import Embeddings


def image_files(emb: Embeddings, rows: Sequence[int]) -> list[Path | None]:
    """Absolute image files of ``rows`` (None where the store does not record where its images are;
    a file that is gone is drawn as an unreadable tile, never an error)."""
    if emb.data_root is None:
        return [Path(emb.paths[i]) if Path(emb.paths[i]).is_absolute() else None for i in rows]
    return [emb.image_path(int(i)) for i in rows]


def contact_sheet(emb: Embeddings, rows: np.ndarray | Sequence[int], captions: Sequence[str], stem: Path, *,
                  title: str) -> list[Path]:
    """``stem``.png/.pdf: thumbnails of ``rows`` in order, five per line, each with its caption."""
    from ..plots.morphospace import plot_contact_sheet

    return plot_contact_sheet(image_files(emb, list(rows)), list(captions), stem, title=title,
                              thumb_px=160 if len(rows) > 50 else 220, ncols=10 if len(rows) > 50 else 5)
