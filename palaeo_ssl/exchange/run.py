"""``palaeo-ssl export``: identifications read from a source (compute), written in one format (writer), timed."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from ..params import Options, validate_params
from .dwca import BASES

log = logging.getLogger(__name__)

#: the formats ``export`` writes
FORMATS = ("ecotaxa", "dwca", "csv")


_CHECKS = {"format": [Options(FORMATS)], "basis_of_record": [Options(BASES)]}


@validate_params(_CHECKS)
def write_identifications(ids, out: str | os.PathLike, format: str, *, images: bool = True,
                          link_images: bool = False, media_base_url: str | None = None,
                          basis_of_record: str = "FossilSpecimen", title: str | None = None,
                          progress: bool = True) -> list[Path]:
    """Write ``ids`` into the folder ``out`` as ``format``: ``ecotaxa`` (``ecotaxa_<name>.tsv`` and the
    images), ``dwca`` (``<name>_dwca.zip`` and the images) or ``csv`` (``<name>_identifications.csv``).
    The images are copied into ``out/images``, linked there with ``link_images``, or not written with
    ``images`` False (paths lead to them where they are); ``media_base_url``, ``basis_of_record`` and
    ``title`` are for ``dwca``. Returns the paths written."""
    from .dwca import write_dwca
    from .ecotaxa import write_ecotaxa
    from .table import write_table

    if format == "ecotaxa":
        return write_ecotaxa(ids, out, images=images, link_images=link_images, progress=progress)
    if format == "dwca":
        return write_dwca(ids, out, images=images, link_images=link_images, media_base_url=media_base_url,
                          basis_of_record=basis_of_record, title=title, progress=progress)
    return write_table(ids, out)


@validate_params(_CHECKS)
def run_export(source: str | os.PathLike, format: str, out: str | os.PathLike, *,
               store: str | os.PathLike | None = None, taxonomy: str | os.PathLike | None = None,
               images: bool = True, link_images: bool = False, media_base_url: str | None = None,
               basis_of_record: str = "FossilSpecimen", title: str | None = None,
               progress: bool = True) -> dict[str, Any]:
    """:func:`~palaeo_ssl.exchange.sources.read_source` then :func:`write_identifications`, timed.

    Returns ``{"result": Identifications, "files": [paths], "timings": {"read", "write", "total": seconds}}``.
    """
    from .sources import read_source

    t0 = time.perf_counter()
    ids = read_source(source, store=store, taxonomy=taxonomy)
    if ids.random_weights:
        log.warning("the predictions come from a model with random weights: they say nothing about the fossils, "
                    "and the export says so")
    t1 = time.perf_counter()
    files = write_identifications(ids, out, format, images=images, link_images=link_images,
                                  media_base_url=media_base_url,
                                  basis_of_record=basis_of_record, title=title, progress=progress)
    t2 = time.perf_counter()
    return {"result": ids, "files": files, "timings": {"read": t1 - t0, "write": t2 - t1, "total": t2 - t0}}


__all__ = ["FORMATS", "run_export", "write_identifications"]
