"""Shared fixtures. Nothing here reaches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
FUSULINIDS = REPO.parent / "shared" / "data" / "fusulinids"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random DINOv3 checkpoint (2 layers, 2 registers, hidden 32) in a temp folder."""
    from palaeo_ssl.testing import make_tiny_dinov3

    return make_tiny_dinov3(tmp_path_factory.mktemp("tiny_dinov3"))


@pytest.fixture(scope="session")
def fusulinids() -> Path:
    """The 119 real fusulinid images in ../shared/data (skipped when absent)."""
    if not FUSULINIDS.is_dir():
        pytest.skip("../shared/data/fusulinids is not present")
    return FUSULINIDS


@pytest.fixture()
def one_blas_thread():
    """BLAS on one thread, as 'palaeo-ssl morphospace' runs (--threads 1): many small fits thrash on a shared CPU."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield
