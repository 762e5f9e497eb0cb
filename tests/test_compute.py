"""One compute context: threads for torch and BLAS and scikit-learn's working memory, restored on exit."""

from __future__ import annotations

import sklearn
import torch
from threadpoolctl import threadpool_info

from palaeo_ssl.compute import compute_context, one_blas_thread, usable_cpus


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_torch_threads_set_and_restored():
    before = torch.get_num_threads()
    with compute_context(torch_threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with compute_context(torch_threads=-1):
        assert torch.get_num_threads() == usable_cpus()
    assert torch.get_num_threads() == before


def test_blas_and_working_memory_set_and_restored():
    before_blas = _blas_threads()
    before_wm = sklearn.get_config()["working_memory"]
    with compute_context(blas=1, working_memory_mb=64):
        assert all(n == 1 for n in _blas_threads())
        assert sklearn.get_config()["working_memory"] == 64
    assert _blas_threads() == before_blas and sklearn.get_config()["working_memory"] == before_wm
    with one_blas_thread(active=False):
        assert _blas_threads() == before_blas


def test_restored_after_an_exception():
    before = torch.get_num_threads()
    try:
        with compute_context(torch_threads=1, blas=1):
            raise KeyError("x")
    except KeyError:
        pass
    assert torch.get_num_threads() == before


def test_extraction_leaves_torch_threads_as_they_were(tiny_model, tmp_path):
    from palaeo_ssl.extract import extract_embeddings
    from palaeo_ssl.synthetic import make_example_dataset

    data = make_example_dataset(tmp_path / "data", n_per_class=1, seed=0, size=32)
    torch.set_num_threads(1)
    try:
        extract_embeddings(data, model=str(tiny_model), out=tmp_path / "out", workers=0, progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(usable_cpus())
