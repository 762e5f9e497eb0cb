"""palaeo-ssl: frozen self-supervised vision models for palaeontological images."""

from __future__ import annotations

__version__ = "0.1.0"

from .embeddings import Embeddings, load_embeddings
from .errors import UserError
from .models import DEFAULT_MODEL

__all__ = ["Embeddings", "load_embeddings", "extract_embeddings", "UserError", "__version__"]


def extract_embeddings(data, model: str = DEFAULT_MODEL, out=None, **options):
    """Compute (or reuse cached) embeddings for every image under ``data``.

    See :func:`palaeo_ssl.extract.extract_embeddings` for the options.
    """
    from .extract import extract_embeddings as _extract

    return _extract(data, model=model, out=out, **options)
