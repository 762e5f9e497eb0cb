"""One cache helper: canonical keys, atomic writes, and one identity of an embeddings store."""

from __future__ import annotations

import dataclasses
import json
import os
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


# ---------------------------------------------------------------------- identity: the features and the rows held
def _store(tmp_path, seed=0, n=8):
    rng = np.random.default_rng(seed)
    emb = Embeddings(rng.normal(size=(n, 4)).astype(np.float32), [f"{i}.png" for i in range(n)],
                     np.array([0, 1] * (n // 2 - 1) + [-1, -1]), ["a", "b"])
    return emb, emb.save(tmp_path / "store")


def test_identity_of_a_resaved_store_follows_its_features(tmp_path):
    emb, folder = _store(tmp_path)
    before = load_embeddings(folder).identity()
    Embeddings(emb.features[::-1].copy(), emb.paths, emb.labels, emb.class_names).save(folder)  # same index
    assert load_embeddings(folder).identity() != before
    # a features.npy replaced by hand (not through palaeo-ssl) is digested anew, not named by the old record
    np.save(folder / "features.npy", emb.features)
    assert load_embeddings(folder).identity() == before


def test_a_subset_is_not_the_whole(tmp_path):
    _, folder = _store(tmp_path)
    whole = load_embeddings(folder)
    part = whole.labelled()
    assert len(part) < len(whole) and part.identity() != whole.identity()
    assert whole.subset(np.arange(len(whole))[::-1]).identity() != whole.identity()  # the order counts
    assert whole.subset(np.arange(len(whole))).identity() == whole.subset(np.arange(len(whole))).identity()
    assert part.identity() == load_embeddings(folder).labelled().identity()


def test_a_store_is_named_by_the_digest_written_with_its_features(tmp_path, monkeypatch):
    """The identity of a store never reads its features again: the digest was made while they were written."""
    import palaeo_ssl.embeddings as embmod

    emb, folder = _store(tmp_path)
    record = json.loads((folder / "meta.json").read_text())["features_digest"]
    assert record["sha256"] == array_digest(emb.features, 64)
    assert record["size"] == (folder / "features.npy").stat().st_size
    expected = load_embeddings(folder).identity()
    real = embmod.array_digest

    def no_features(x, *a, **k):
        assert np.asarray(x).ndim < 2, "the features were read to name the store"
        return real(x, *a, **k)

    monkeypatch.setattr(embmod, "array_digest", no_features)
    loaded = load_embeddings(folder)
    assert loaded.identity() == expected and loaded.labelled().identity() != expected


# ---------------------------------------------------------------------- files a lab can share
def test_every_write_gets_the_mode_of_an_ordinary_new_file_under_umask_022(tmp_path):
    from palaeo_ssl.cache import atomic_save_npz

    old = os.umask(0o022)
    try:
        emb, folder = _store(tmp_path)
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "b.json", {"a": 1})
        atomic_save_npy(tmp_path / "c.npy", np.zeros(3))
        atomic_save_npz(tmp_path / "d.npz", {"a": np.zeros(3)})
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*")}
    assert modes == {**{k: "0o644" for k in modes}, "store": "0o755"}, modes
    os.umask(0o077)  # a private umask is obeyed as well
    try:
        atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
