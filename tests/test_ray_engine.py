"""engine="ray": decoding as Ray tasks, embedding in an actor pool, chunks written by the driver, on a 2-CPU local Ray."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from palaeo_ssl import extract_embeddings
from palaeo_ssl.backbone import load_backbone, make_preprocessing
from palaeo_ssl.engines.ray_data import MIN_BATCHES_PER_ACTOR, _decode_batch, batch_size_for
from palaeo_ssl.loading import decode_image, normalise
from palaeo_ssl.params import ParameterError
from palaeo_ssl.testing import kill_when_written, make_class_folder_dataset

REPO = Path(__file__).resolve().parents[1]

#: Ray's features against the local engine's: the same decoding and normalisation functions
#: (palaeo_ssl.loading), batches of other sizes
RAY_VS_LOCAL_ATOL = 1e-5
#: Ray's features against the same decoding and normalisation run in this process: the pipeline itself adds nothing
RAY_VS_SAME_STEPS_ATOL = 1e-5


def _ray_or_skip():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        if os.environ.get("PALAEO_SSL_REQUIRE_RAY"):
            raise
        pytest.skip("Ray is not installed (pip install -r requirements-cluster.txt)")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs, shared by the tests of this module."""
    _ray_or_skip()
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=300 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    data = make_class_folder_dataset(tmp_path_factory.mktemp("ray") / "data", n_classes=3, per_class=6,
                                     size=(80, 56))
    (data / "class_0" / "broken.png").write_bytes(b"not an image")
    return data


def _kw(model, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 4)
    kw.setdefault("chunk_size", 4)
    return dict(model=str(model), **kw)


# ---------------------------------------------------------------------- the two swappable steps (no Ray needed)
def test_batches_are_small_enough_that_every_actor_gets_several():
    # 119 images on 2 actors: batches of 32 would give 4 batches (3 on one actor, 1 on the other)
    for n in (16, 119, 476, 500, 511):
        bs = batch_size_for(n, 2, 32, "cpu")
        assert 1 <= bs <= 32 and -(-n // bs) >= 2 * MIN_BATCHES_PER_ACTOR, (n, bs)
    assert batch_size_for(119, 2, 32, "cpu") == 7
    assert batch_size_for(100_000, 2, None, "cpu") == 32  # large runs keep the requested batch
    assert batch_size_for(100_000, 4, None, "cuda") == 64
    assert batch_size_for(100_000, 2, 8, "cpu") == 8
    assert batch_size_for(3, 2, 32, "cpu") == 1  # never 0


def test_decode_batch_gives_uint8_at_input_size_and_reasons(images, tiny_model):
    bb = load_backbone(str(tiny_model), device="cpu", dtype="float32")
    files = sorted(str(p) for p in images.rglob("*.png"))
    for mode in ("processor", "pad"):
        prep = make_preprocessing(bb.info, mode, 32, (255, 255, 255))
        ok, pixels, bad = _decode_batch(files, prep)
        assert pixels.dtype == np.uint8 and pixels.shape == (len(files) - 1, 3, 32, 32)
        assert [files[i] for i, _ in bad] == [str(images / "class_0" / "broken.png")]
        assert bad[0][1]  # a reason for skipped.csv
        # the local engine's own decoding, pixel for pixel, and its normalisation
        local = torch.stack([decode_image(files[i], prep) for i in ok])
        assert torch.equal(torch.from_numpy(pixels), local)


def test_ray_options_need_engine_ray(images, tiny_model, tmp_path):
    with pytest.raises(ParameterError, match="actors is for the Ray engine only"):
        extract_embeddings(images, out=tmp_path, actors=2, **_kw(tiny_model))
    with pytest.raises(ParameterError, match="engine must be"):
        extract_embeddings(images, out=tmp_path, engine="spark", **_kw(tiny_model))


# ---------------------------------------------------------------------- on a local Ray
@pytest.mark.slow
def test_ray_engine_matches_local_and_resumes(ray_cluster, images, tiny_model, tmp_path):
    out = tmp_path / "ray"
    emb = extract_embeddings(images, out=out, engine="ray", actors=2, **_kw(tiny_model))
    assert emb.meta["extraction"]["computed"] == 18 and len(emb) == 18
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["path"].tolist() == ["class_0/broken.png"]

    local = extract_embeddings(images, out=tmp_path / "local", workers=0, **_kw(tiny_model))
    assert emb.paths == local.paths and list(emb.labels) == list(local.labels)
    assert np.abs(np.asarray(emb.features) - np.asarray(local.features)).max() <= RAY_VS_LOCAL_ATOL

    bb = load_backbone(str(tiny_model), device="cpu", dtype="float32")
    prep = make_preprocessing(bb.info, "processor", None, (0, 0, 0))
    ok, pixels, _ = _decode_batch([str(images / p) for p in emb.paths], prep)
    same_steps = bb.embed(normalise(torch.from_numpy(pixels), prep), "cls").numpy()
    assert len(ok) == len(emb)
    assert np.abs(np.asarray(emb.features) - same_steps).max() <= RAY_VS_SAME_STEPS_ATOL

    again = extract_embeddings(images, out=out, engine="ray", **_kw(tiny_model))
    assert again.meta["extraction"]["computed"] == 0  # cached, as the local engine's store


@pytest.mark.slow
def test_more_gpus_than_the_cluster_has_is_refused(ray_cluster, images, tiny_model, tmp_path):
    with pytest.raises(ParameterError, match="gpus_per_actor = 1, but the Ray cluster has 0 GPUs"):
        extract_embeddings(images, out=tmp_path, engine="ray", gpus_per_actor=1, **_kw(tiny_model))


_RAY_RUNNER = """
import sys, palaeo_ssl
palaeo_ssl.extract_embeddings(sys.argv[1], model=sys.argv[2], out=sys.argv[3], engine="ray", address=sys.argv[4],
                              batch_size=2, chunk_size=4, progress=False)
"""


@pytest.mark.slow
def test_a_killed_ray_run_loses_only_the_batches_in_flight(ray_cluster, tiny_model, tmp_path):
    data = make_class_folder_dataset(tmp_path / "data", n_classes=4, per_class=20, size=(64, 64))
    out = tmp_path / "out"
    address = ray_cluster.get_runtime_context().gcs_address
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    chunks = kill_when_written([sys.executable, "-c", _RAY_RUNNER, str(data), str(tiny_model), str(out), address],
                               out, "*/chunks/chunk_*.csv", 2, timeout=240, env=env)
    assert len(chunks) >= 2, "the Ray run never wrote a chunk before being killed"
    store = next(out.glob("*/"))
    assert not (store / "meta.json").exists()
    written = sum(len(pd.read_csv(c)) for c in store.glob("chunks/chunk_*.csv"))
    assert 0 < written < 80

    resumed = extract_embeddings(data, out=out, engine="ray", **_kw(tiny_model))
    assert resumed.meta["extraction"]["computed"] == 80 - written  # only what the killed run had not written
    assert len(resumed) == 80


def test_without_ray_the_message_says_how_to_install_it(monkeypatch, images, tiny_model, tmp_path):
    from palaeo_ssl.errors import UserError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    with pytest.raises(UserError, match="pip install -r requirements-cluster.txt"):
        extract_embeddings(images, out=tmp_path, engine="ray", **_kw(tiny_model))
