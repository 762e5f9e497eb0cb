"""Shards of one extraction (cluster array jobs): assignment, shared store, progress, consolidation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from palaeo_ssl import extract_embeddings, load_embeddings
from palaeo_ssl.errors import UserError
from palaeo_ssl.params import ParameterError
from palaeo_ssl.shards import (ShardSummary, parse_shard, shard_of, shard_states, shard_tag,
                               unconsolidated_message)
from palaeo_ssl.store import EmbeddingStore, _gather
from palaeo_ssl.testing import kill_when_written, make_class_folder_dataset

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "examples" / "cluster"
PINNED = [0, 740, 2]  # shard_of of three paths, computed once: a change here moves images between shards


def _extract(data, model, out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("workers", 0)
    kw.setdefault("batch_size", 4)
    kw.setdefault("chunk_size", 4)
    return extract_embeddings(data, model=str(model), out=out, **kw)


def _same_store(a, b):
    assert a.paths == b.paths
    assert list(a.labels) == list(b.labels)
    assert np.array_equal(np.asarray(a.features), np.asarray(b.features))  # exactly, float32 on the CPU


@pytest.fixture()
def dataset(tmp_path):
    return make_class_folder_dataset(tmp_path / "data", n_classes=3, per_class=8)


# ---------------------------------------------------------------------- assignment
def test_parse_shard_accepts_i_of_n_and_names_the_parameter():
    assert parse_shard("3/4") == (3, 4)
    assert parse_shard(" 0 / 1 ") == (0, 1)
    assert parse_shard((1, 2)) == (1, 2)
    assert parse_shard(None) is None
    for bad in ("4/4", "1/0", "-1/4", "a/b", "3", (1,), "{1}/2"):
        with pytest.raises(ParameterError, match=r"shard must be I/N"):
            parse_shard(bad)


def test_assignment_is_stable_balanced_and_unmoved_by_new_images():
    paths = [f"class_{c}/img_{i:05d}.png" for c in range(4) for i in range(1000)]
    first = [shard_of(p, 8) for p in paths]
    counts = np.bincount(first, minlength=8)
    assert counts.min() > 400 and counts.max() < 600  # 500 expected per shard
    more = paths + [f"class_9/new_{i}.jpg" for i in range(500)]
    assert [shard_of(p, 8) for p in more][:len(paths)] == first
    # a hash of the path alone (BLAKE2b), the same on every machine and Python: pinned values
    assert [shard_of("a/b.png", 4), shard_of("a/b.png", 1000), shard_of("class_0/img_00000.png", 7)] == PINNED
    assert shard_of("a/b.png", 1) == 0
    assert shard_tag(2, 4) == "s0002of0004"


def test_concurrent_writers_never_share_a_chunk_name(tmp_path):
    settings = {"model_id": "m", "preprocess": "processor", "image_size": 16, "pooling": "cls", "dtype": "float32"}
    a = EmbeddingStore(tmp_path, "d", settings, writer=shard_tag(0, 2))
    b = EmbeddingStore(tmp_path, "d", settings, writer=shard_tag(1, 2))
    c = EmbeddingStore(tmp_path, "d", settings, writer=shard_tag(1, 2))  # the same shard started twice
    stems = {s.write_chunk([(f"{w}.png", 1, 1)], np.full((1, 3), k, np.float32)).name
             for k, (w, s) in enumerate([("a", a), ("b", b), ("c", c), ("a2", a)])}
    assert len(stems) == 4
    have, _ = a.lookup()
    assert have == {("a.png", 1, 1), ("b.png", 1, 1), ("c.png", 1, 1), ("a2.png", 1, 1)}


def test_gather_streams_rows_from_many_sources(tmp_path):
    rng = np.random.default_rng(0)
    srcs = []
    for k in range(5):
        arr = rng.normal(size=(7 + k, 6)).astype(np.float32)
        np.save(tmp_path / f"s{k}.npy", arr)
        srcs.append(arr)
    pairs = [(k, r) for k in range(5) for r in range(7 + k)]
    order = rng.permutation(len(pairs))[:30]
    src = np.array([pairs[i][0] for i in order])
    row = np.array([pairs[i][1] for i in order])
    target = tmp_path / "out.npy"
    _gather(target, [tmp_path / f"s{k}.npy" for k in range(5)], src, row, 6, block=3, release_every=48)
    expected = np.stack([srcs[s][r] for s, r in zip(src, row)])
    assert np.array_equal(np.load(target), expected)


# ---------------------------------------------------------------------- shards into one store
@pytest.mark.slow
def test_shards_then_consolidation_equal_one_process(dataset, tiny_model, tmp_path):
    reference = _extract(dataset, tiny_model, tmp_path / "ref")
    out = tmp_path / "sharded"
    done = [_extract(dataset, tiny_model, out, shard=f"{i}/4") for i in range(3)]
    assert all(isinstance(s, ShardSummary) for s in done)
    assert sum(s.computed for s in done) < len(reference)
    assert "not finished yet: shard 3/4" in done[-1].text()
    store = Path(done[0].store)
    assert not (store / "meta.json").exists()  # a shard never consolidates

    # every command that meets the store says which shard is incomplete
    message = unconsolidated_message(store)
    assert "3 of 4 complete" in message and "3/4 not started" in message
    with pytest.raises(UserError, match="3/4 not started"):
        load_embeddings(out)

    last = _extract(dataset, tiny_model, out, shard="3/4")
    assert sum(s.computed for s in done) + last.computed == len(reference)
    assert [s.complete for s in shard_states(store)] == [True] * 4
    merged = _extract(dataset, tiny_model, out)
    assert merged.meta["extraction"]["computed"] == 0
    _same_store(merged, reference)
    assert not (store / "chunks").exists() and not (store / "shards").exists()
    assert pd.read_csv(store / "index.csv")["path"].tolist() == reference.paths


@pytest.mark.slow
def test_consolidation_computes_what_an_unfinished_shard_left(dataset, tiny_model, tmp_path, caplog):
    reference = _extract(dataset, tiny_model, tmp_path / "ref")
    out = tmp_path / "sharded"
    s0 = _extract(dataset, tiny_model, out, shard="0/2")
    with caplog.at_level("WARNING"):
        merged = _extract(dataset, tiny_model, out)
    assert "1/2 not started" in caplog.text
    assert merged.meta["extraction"]["computed"] == len(reference) - s0.computed
    _same_store(merged, reference)


@pytest.mark.slow
def test_a_shard_after_consolidation_adds_only_new_images(dataset, tiny_model, tmp_path):
    from palaeo_ssl.testing import write_synthetic_image

    out = tmp_path / "out"
    _extract(dataset, tiny_model, out)
    new = [f"class_0/new_{k}.png" for k in range(6)]
    for k, rel in enumerate(new):
        write_synthetic_image(dataset / rel, seed=100 + k)
    runs = [_extract(dataset, tiny_model, out, shard=f"{i}/2") for i in range(2)]
    assert sum(r.computed for r in runs) == len(new)
    assert [r.computed for r in runs] == [sum(shard_of(p, 2) == i for p in new) for i in range(2)]
    merged = _extract(dataset, tiny_model, out)
    assert merged.meta["extraction"]["computed"] == 0 and len(merged) == 24 + len(new)
    _same_store(merged, _extract(dataset, tiny_model, tmp_path / "ref"))


# ---------------------------------------------------------------------- processes: kill, scripts
def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PALAEO_SSL=f"{sys.executable} -m palaeo_ssl", OMP_NUM_THREADS="1")
    return env


_SHARD_RUNNER = """
import sys, palaeo_ssl
palaeo_ssl.extract_embeddings(sys.argv[1], model=sys.argv[2], out=sys.argv[3], shard="1/2", workers=0, batch_size=2,
                              chunk_size=4, progress=False)
"""


@pytest.mark.slow
def test_a_killed_shard_redoes_only_its_missing_chunks(tmp_path, tiny_model):
    data = make_class_folder_dataset(tmp_path / "data", n_classes=4, per_class=30, size=(96, 96))
    out = tmp_path / "out"
    chunks = kill_when_written([sys.executable, "-c", _SHARD_RUNNER, str(data), str(tiny_model), str(out)], out,
                               "*/chunks/chunk_s0001of0002-*.csv", 2, env=_env())
    assert len(chunks) >= 2, "the shard never wrote a chunk before being killed"
    store = next(out.glob("*/"))
    states = shard_states(store)
    assert [(s.shard, s.complete) for s in states] == [(0, False), (1, False)]
    written = states[1].rows_written
    assert 0 < written < states[1].todo_at_start
    assert "1/2 incomplete" in unconsolidated_message(store)

    again = _extract(data, tiny_model, out, shard="1/2")
    assert again.computed == again.assigned - written  # only what the killed run had not written
    assert shard_states(store)[1].complete
    _extract(data, tiny_model, out, shard="0/2")
    merged = _extract(data, tiny_model, out)
    assert merged.meta["extraction"]["computed"] == 0
    _same_store(merged, _extract(data, tiny_model, tmp_path / "ref"))


@pytest.mark.slow
def test_xargs_script_runs_four_shard_processes_and_consolidates(dataset, tiny_model, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(CLUSTER / "shards_xargs.sh"), "4", str(dataset), str(out),
                           "--model", str(tiny_model), "--workers", "0", "--batch-size", "4"],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("shard:") == 4
    assert "24 embedded (0 computed now, 24 reused from the cache)" in proc.stdout
    _same_store(load_embeddings(out), _extract(dataset, tiny_model, tmp_path / "ref"))


@pytest.mark.slow
def test_slurm_script_with_array_task_ids(dataset, tiny_model, tmp_path):
    out = tmp_path / "out"
    script = str(CLUSTER / "slurm_array.sh")
    args = [str(dataset), str(out), "--model", str(tiny_model), "--workers", "0", "--batch-size", "4"]
    no_task = subprocess.run(["bash", script] + args, env=_env(), capture_output=True, text=True)
    assert no_task.returncode != 0 and "sbatch --array" in no_task.stderr
    for task in (5, 6, 7):  # an array submitted as --array=5-7 (SLURM_ARRAY_TASK_COUNT unset: old SLURM)
        env = dict(_env(), SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_MIN="5", SLURM_ARRAY_TASK_MAX="7")
        proc = subprocess.run(["bash", script] + args, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert f"shard:    {task - 5}/3" in proc.stdout
    merged = _extract(dataset, tiny_model, out)
    assert merged.meta["extraction"]["computed"] == 0
    _same_store(merged, _extract(dataset, tiny_model, tmp_path / "ref"))


def test_consolidation_keeps_chunks_written_while_it_ran(tmp_path, monkeypatch):
    """A shard still writing while the store is consolidated loses nothing: only the chunks read are removed."""
    from palaeo_ssl import store as store_mod

    settings = {"model_id": "m", "preprocess": "processor", "image_size": 16, "pooling": "cls", "dtype": "float32"}
    main = EmbeddingStore(tmp_path, "d", settings)
    late = EmbeddingStore(tmp_path, "d", settings, writer=shard_tag(1, 2))
    main.write_chunk([("a.png", 1, 1), ("b.png", 1, 1)], np.arange(6, dtype=np.float32).reshape(2, 3))
    real_gather = store_mod._gather
    written = []

    def gather_while_a_shard_writes(*args, **kwargs):
        written.append(late.write_chunk([("c.png", 1, 1)], np.full((1, 3), 9, np.float32)))
        return real_gather(*args, **kwargs)

    monkeypatch.setattr(store_mod, "_gather", gather_while_a_shard_writes)
    emb, skipped = main.consolidate([("a.png", 1, 1), ("b.png", 1, 1)], np.array([-1, -1]), [], None, {}, 3)
    assert emb.paths == ["a.png", "b.png"] and not skipped
    assert np.array_equal(np.asarray(emb.features), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert sorted(p.name for p in main.chunk_dir.iterdir()) == [written[0].name + ".csv", written[0].name + ".npy"]
    have, _ = main.lookup()
    assert ("c.png", 1, 1) in have
