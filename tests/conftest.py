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


#: class names of ``labelled_store``: LaTeX specials and a genus_species name, so every writer escapes
LABELLED_STORE_CLASSES = ["Globigerina_bulloides", "50% & more", "A#b~c", "x^y {z}"]


@pytest.fixture(scope="session")
def labelled_store(tmp_path_factory) -> Path:
    """A store of 100 images x 12 features in 4 separable classes (seeded), for probe tests."""
    import numpy as np

    from palaeo_ssl import Embeddings

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    x = (rng.normal(size=(4, 12))[y] * 1.2 + rng.normal(size=(100, 12))).astype(np.float32)
    names = LABELLED_STORE_CLASSES
    emb = Embeddings(x, [f"{names[c]}/img_{i}.png" for i, c in enumerate(y)], y, names)
    return emb.save(tmp_path_factory.mktemp("probe_store") / "store")
