"""One cache helper: canonical keys, atomic writes, and one identity of an embeddings store."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from palaeo_ssl import Embeddings, load_embeddings
from palaeo_ssl.cache import (array_digest, atomic_save_npy, atomic_write_json, atomic_write_text, canonical_json,
                              key_hash, read_json)


def test_key_hash_is_canonical():
    a = {"b": 1, "a": (1, 2), "p": Path("/x"), "n": np.int64(3)}
    b = {"n": 3, "p": "/x", "a": [1, 2], "b": 1}
    assert key_hash(a) == key_hash(b) and len(key_hash(a)) == 16 and len(key_hash(a, 24)) == 24
    assert key_hash({"b": 2}) != key_hash({"b": 1})
    assert json.loads(canonical_json(a)) == {"a": [1, 2], "b": 1, "n": 3, "p": "/x"}


def test_a_config_dataclass_is_its_own_key():
    @dataclasses.dataclass(frozen=True)
    class Config:
        seed: int = 0
        shots: tuple = (1, 2)

    assert key_hash(Config()) == key_hash({"seed": 0, "shots": [1, 2]})
    assert key_hash(Config(seed=1)) != key_hash(Config())


def test_store_key_unchanged_by_the_move():
    """Store folders made before the cache helper keep their names (the same JSON, the same hash)."""
    import hashlib

    from palaeo_ssl.store import store_key

    settings = {"model_id": "m", "image_size": 224, "background": [0, 0, 0], "mean": [0.4, 0.5]}
    old = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    assert store_key(settings) == old


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(tmp_path / "a.txt", "two")
    atomic_write_json(tmp_path / "b.json", {"x": np.float32(1.5), "t": (1, 2)})
    atomic_save_npy(tmp_path / "c.npy", np.arange(6).reshape(2, 3))
    assert (tmp_path / "a.txt").read_text() == "two"
    assert read_json(tmp_path / "b.json") == {"x": 1.5, "t": [1, 2]}
    assert np.load(tmp_path / "c.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.npy"]
    (tmp_path / "bad.json").write_text("{half")
    assert read_json(tmp_path / "bad.json") is None and read_json(tmp_path / "missing.json") is None


def test_a_failed_write_keeps_the_old_file(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "kept")

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        atomic_write_text(tmp_path / "a.txt", Boom())  # type: ignore[arg-type]
    assert (tmp_path / "a.txt").read_text() == "kept" and len(list(tmp_path.iterdir())) == 1


def test_embeddings_identity_one_definition(tmp_path):
    rng = np.random.default_rng(0)
    emb = Embeddings(rng.normal(size=(6, 4)).astype(np.float32), [f"{i}.png" for i in range(6)],
                     np.array([0, 0, 1, 1, -1, 1]), ["a", "b"])
    same = Embeddings(emb.features.copy(), list(emb.paths), emb.labels.copy(), ["a", "b"])
    assert emb.identity() == same.identity()
    relabelled = Embeddings(emb.features, emb.paths, np.array([0, 0, 1, 1, 1, 1]), ["a", "b"])
    assert relabelled.identity() != emb.identity()
    assert array_digest(emb.features) != array_digest(emb.features[::-1].copy())
    # a store on disk: its index and settings, stable across loads
    folder = emb.save(tmp_path / "store")
    assert load_embeddings(folder).identity() == load_embeddings(folder).identity()


def test_code_version_names_the_package_and_the_numeric_libraries():
    from importlib import metadata

    import palaeo_ssl
    from palaeo_ssl.cache import NUMERIC_LIBRARIES, code_version

    v = code_version()
    assert v["palaeo_ssl"] == palaeo_ssl.__version__
    assert set(v) == {"palaeo_ssl", *NUMERIC_LIBRARIES}
    assert v["scikit-learn"] == metadata.version("scikit-learn") and v["numpy"] == metadata.version("numpy")
