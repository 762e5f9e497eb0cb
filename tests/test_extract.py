"""Backbone loading, preprocessing, pooling, the cached store and the extract command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import palaeo_ssl
from palaeo_ssl import Embeddings, extract_embeddings, load_embeddings
from palaeo_ssl.backbone import ALIASES, load_backbone, pool_tokens, resolve_model_id
from palaeo_ssl.cli import main
from palaeo_ssl.errors import ModelLoadError, UserError
from palaeo_ssl.extract import embed_like
from palaeo_ssl.images import load_image
from palaeo_ssl.loading import decode_image, normalise
from palaeo_ssl.testing import kill_when_written, make_class_folder_dataset, write_synthetic_image


@pytest.fixture(scope="module")
def backbone(tiny_model):
    return load_backbone(str(tiny_model), device="cpu", dtype="float32")


@pytest.fixture()
def dataset(tmp_path):
    return make_class_folder_dataset(tmp_path / "data", n_classes=3, per_class=4)


def _extract(data, model, out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("workers", 0)
    return extract_embeddings(data, model=str(model), out=out, **kw)


# ---------------------------------------------------------------------- backbone
def test_aliases_resolve():
    assert resolve_model_id("dinov3-vits16") == "facebook/dinov3-vits16-pretrain-lvd1689m"
    assert resolve_model_id("dinov3-vitl16") == ALIASES["dinov3-vitl16"]
    assert resolve_model_id("some-org/some-model") == "some-org/some-model"


def test_wrong_model_ids_say_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_backbone(str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(ModelLoadError, match="neither a local folder nor a model"):
        load_backbone("not a valid id!!")
    with pytest.raises(ModelLoadError, match="no network connection"):
        load_backbone("facebook/definitely-not-cached-model")  # HF_HUB_OFFLINE=1 in conftest


def test_gated_message_mentions_licence():
    from palaeo_ssl.backbone import _explain_load_error

    err = _explain_load_error("dinov3-vitl16", ALIASES["dinov3-vitl16"],
                              OSError("You are trying to access a gated repo. 403 Client Error"))
    assert "accept" in str(err) and "HF_TOKEN" in str(err)


def test_no_gpu_gives_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from palaeo_ssl.backbone import resolve_device

    with pytest.raises(UserError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_pooling_shapes_and_register_exclusion(backbone):
    x = torch.randn(2, 3, 64, 96)
    cls = backbone.embed(x, "cls")
    mean = backbone.embed(x, "mean")
    both = backbone.embed(x, "cls+mean")
    assert cls.shape == (2, 32) and mean.shape == (2, 32) and both.shape == (2, 64)
    tokens = backbone.tokens(x)
    n_patches = (64 // 16) * (96 // 16)
    assert tokens.shape == (2, 1 + 2 + n_patches, 32)
    torch.testing.assert_close(cls, tokens[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mean, tokens[:, 3:].mean(1), atol=1e-5, rtol=1e-5)
    # including the register tokens would give a different mean
    assert not torch.allclose(mean, tokens[:, 1:].mean(1), atol=1e-4)
    torch.testing.assert_close(both, torch.cat([cls, mean], 1))


def test_pool_tokens_rejects_unknown():
    with pytest.raises(UserError):
        pool_tokens(torch.zeros(1, 5, 4), None, "max", 1)


def _transform(prep, img, tmp_path):
    """The extraction's own path (uint8 decode and resize, then normalise) for a PIL image."""
    path = tmp_path / "img.png"
    img.save(path)
    return normalise(decode_image(path, prep).unsqueeze(0), prep)[0]


def test_processor_mode_matches_hf_processor(tiny_model, tmp_path, backbone):
    from transformers import AutoImageProcessor

    p = write_synthetic_image(tmp_path / "a.png", size=(90, 50))
    img = load_image(p)
    prep = backbone.preprocessing("processor")
    ours = normalise(decode_image(p, prep).unsqueeze(0), prep)[0]
    ref = AutoImageProcessor.from_pretrained(tiny_model)(images=img, return_tensors="pt")["pixel_values"][0]
    assert ours.shape == ref.shape == (3, 224, 224)
    diff = torch.abs(ours - ref)
    # the resize rounds to uint8: at most one grey level apart, 1 / (255 * min(std)) after normalisation
    one_level = 1 / (255 * min(prep.std))
    assert diff.max().item() <= one_level + 1e-4
    assert diff.mean().item() < 0.01


def test_pad_mode_keeps_aspect_ratio(backbone, tmp_path):
    from PIL import Image

    img = Image.new("RGB", (200, 50), (255, 255, 255))
    t = _transform(backbone.preprocessing("pad", 64, background=(0, 0, 0)), img, tmp_path)
    assert t.shape == (3, 64, 64)
    # the padded bands (top and bottom) hold the background, the centre the white object
    mean, std = torch.tensor(backbone.mean), torch.tensor(backbone.std)
    black = (0 - mean) / std
    white = (1 - mean) / std
    torch.testing.assert_close(t[:, 2, 32], black, atol=1e-4, rtol=0)
    torch.testing.assert_close(t[:, 32, 32], white, atol=1e-4, rtol=0)
    squashed = _transform(backbone.preprocessing("processor", 64), img, tmp_path)
    torch.testing.assert_close(squashed[:, 2, 32], white, atol=1e-4, rtol=0)


def test_bad_batch_size_or_workers_refused_before_loading(dataset, tiny_model, tmp_path, monkeypatch):
    import palaeo_ssl.extract as ex

    def no_load(*a, **k):
        raise AssertionError("the weights were loaded before the options were checked")

    monkeypatch.setattr(ex, "load_backbone", no_load)
    # the library names its own parameters (the command line puts its flags in their place)
    with pytest.raises(UserError, match=r"batch_size must be an integer >= 1, not 0"):
        _extract(dataset, tiny_model, tmp_path / "out", batch_size=0)
    with pytest.raises(UserError, match=r"workers must be an integer >= 0, not -1"):
        _extract(dataset, tiny_model, tmp_path / "out", workers=-1)


def test_image_size_must_be_multiple_of_patch(backbone):
    with pytest.raises(UserError, match="multiple of the model's patch size"):
        backbone.preprocessing("processor", 100)


# ---------------------------------------------------------------------- store behaviour
def test_extract_then_cache_hit(dataset, tiny_model, tmp_path):
    out = tmp_path / "out"
    emb = _extract(dataset, tiny_model, out)
    assert isinstance(emb, Embeddings)
    assert emb.features.shape == (12, 32) and emb.features.dtype == np.float32
    assert emb.class_names == ["class_0", "class_1", "class_2"]
    assert emb.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert emb.meta["extraction"]["computed"] == 12
    t = time.perf_counter()
    again = _extract(dataset, tiny_model, out)
    assert again.meta["extraction"]["computed"] == 0 and again.meta["extraction"]["reused"] == 12
    assert time.perf_counter() - t < 10
    np.testing.assert_array_equal(np.asarray(again.features), np.asarray(emb.features))
    loaded = load_embeddings(out)
    np.testing.assert_array_equal(np.asarray(loaded.features), np.asarray(emb.features))
    assert loaded.paths == emb.paths and loaded.meta["model_id"] == str(Path(tiny_model).resolve())
    store = Path(loaded.meta["store_path"])
    assert {"features.npy", "index.csv", "meta.json"} <= {p.name for p in store.iterdir()}
    index = pd.read_csv(store / "index.csv")
    assert list(index.columns) == ["path", "label", "class_name", "specimen", "file_size", "mtime_ns"]
    assert not (store / "chunks").exists()


def test_partial_update_computes_only_changes(dataset, tiny_model, tmp_path):
    out = tmp_path / "out"
    first = _extract(dataset, tiny_model, out)
    before = dict(zip(first.paths, np.asarray(first.features)))
    write_synthetic_image(dataset / "class_1" / "new.png", seed=999)
    os.remove(dataset / "class_2" / "img_000.png")
    changed = dataset / "class_0" / "img_001.png"
    write_synthetic_image(changed, seed=12345)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = _extract(dataset, tiny_model, out)
    assert second.meta["extraction"]["computed"] == 2  # the new and the changed image
    assert len(second) == 12
    assert "class_2/img_000.png" not in second.paths
    feats = dict(zip(second.paths, np.asarray(second.features)))
    np.testing.assert_array_equal(feats["class_2/img_001.png"], before["class_2/img_001.png"])
    assert not np.allclose(feats["class_0/img_001.png"], before["class_0/img_001.png"])
    fresh = _extract(dataset, tiny_model, tmp_path / "fresh")
    np.testing.assert_allclose(np.asarray(second.features), np.asarray(fresh.features), atol=1e-5)


def test_different_settings_never_share_features(dataset, tiny_model, tmp_path):
    out = tmp_path / "out"
    a = _extract(dataset, tiny_model, out, pooling="cls")
    b = _extract(dataset, tiny_model, out, pooling="mean")
    c = _extract(dataset, tiny_model, out, preprocess="pad")
    d = _extract(dataset, tiny_model, out, image_size=64)
    e = _extract(dataset, tiny_model, out, dtype="bfloat16")
    stores = {x.meta["store_path"] for x in (a, b, c, d, e)}
    assert len(stores) == 5
    for x in (b, c, d, e):
        assert x.meta["extraction"]["computed"] == 12
    cos = np.sum(a.normalized() * e.normalized(), axis=1)
    assert cos.min() > 0.95  # bf16 close to float32
    with pytest.raises(UserError, match="holds 5 embedding stores"):
        load_embeddings(out)


_HUB_REVISIONS = """
import json, os, shutil, sys
from pathlib import Path
from palaeo_ssl import extract_embeddings
from palaeo_ssl.backbone import describe_model
repo = Path(os.environ["HF_HUB_CACHE"]) / "models--acme--tiny-dinov3"
for rev in ("a" * 40, "b" * 40):
    shutil.copytree(sys.argv[1], repo / "snapshots" / rev)
(repo / "refs").mkdir(parents=True)
runs = []
for rev in ("a" * 40, "a" * 40, "b" * 40):
    (repo / "refs" / "main").write_text(rev)
    assert describe_model("acme/tiny-dinov3").revision == rev
    emb = extract_embeddings(sys.argv[2], model="acme/tiny-dinov3", out=sys.argv[3], progress=False, workers=0)
    runs.append([emb.meta["store_path"], emb.meta["extraction"]["computed"], emb.meta["model_revision"]])
print(json.dumps(runs))
"""


@pytest.mark.slow
def test_a_new_hub_revision_is_a_new_store(dataset, tiny_model, tmp_path):
    # a Hub model served offline from a local cache, whose "main" moves to a new commit
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", _HUB_REVISIONS, str(tiny_model), str(dataset), str(tmp_path / "out")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    (s1, n1, r1), (s2, n2, r2), (s3, n3, r3) = json.loads(r.stdout.strip().splitlines()[-1])
    assert (n1, n2, n3) == (12, 0, 12)          # same commit: cache hit; new commit: computed again
    assert s1 == s2 != s3
    assert (r1, r2, r3) == ("a" * 40, "a" * 40, "b" * 40)


def test_bad_files_skipped_listed_and_strict(tmp_path, tiny_model):
    data = tmp_path / "data"
    write_synthetic_image(data / "A" / "good1.png")
    write_synthetic_image(data / "A" / "good2.png", seed=1)
    write_synthetic_image(data / "B" / "good3", seed=2, fmt="PNG")  # no extension
    (data / "B" / "empty.jpg").write_bytes(b"")
    (data / "B" / "notes.txt").write_text("field notes")
    trunc = write_synthetic_image(data / "B" / "cut.jpg", size=(300, 300), seed=3)
    trunc.write_bytes(trunc.read_bytes()[:400])
    out = tmp_path / "out"
    emb = _extract(data, tiny_model, out)
    assert sorted(emb.paths) == ["A/good1.png", "A/good2.png", "B/good3"]
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(skipped["path"]) == ["B/cut.jpg", "B/empty.jpg", "B/notes.txt"]
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    assert "empty" in reasons["B/empty.jpg"] and "not an image" in reasons["B/notes.txt"]
    # unchanged bad files are not retried, and still listed
    again = _extract(data, tiny_model, out)
    assert again.meta["extraction"]["computed"] == 0
    assert len(pd.read_csv(out / "skipped.csv")) == 3
    with pytest.raises(UserError, match="could not be read"):
        _extract(data, tiny_model, out, strict=True)
    assert len(load_embeddings(out)) == 3  # nothing lost


def test_workers_give_same_features(dataset, tiny_model, tmp_path):
    a = _extract(dataset, tiny_model, tmp_path / "a", workers=0, batch_size=5)
    b = _extract(dataset, tiny_model, tmp_path / "b", workers=2, batch_size=4)
    np.testing.assert_allclose(np.asarray(a.features), np.asarray(b.features), atol=1e-5)


def test_embeddings_save_roundtrip_and_validation(tmp_path):
    rng = np.random.default_rng(0)
    emb = Embeddings(features=rng.normal(size=(5, 3)), paths=list("abcde"), labels=[0, 1, 0, -1, 1],
                     class_names=["x", "y"], specimens=["s1", "s1", "s2", "s3", "s3"], meta={"note": "elsewhere"})
    emb.save(tmp_path / "store")
    back = load_embeddings(tmp_path / "store")
    np.testing.assert_allclose(np.asarray(back.features), emb.features)
    assert back.labels.tolist() == [0, 1, 0, -1, 1] and back.specimens == emb.specimens
    assert back.class_names == ["x", "y"] and back.meta["note"] == "elsewhere"
    assert load_embeddings(tmp_path).paths == list("abcde")  # a folder above the store
    with pytest.raises(ValueError, match="paths"):
        Embeddings(features=np.zeros((2, 3)), paths=["a"], labels=[0, 0], class_names=["x"])
    with pytest.raises(ValueError, match="class name"):
        Embeddings(features=np.zeros((1, 3)), paths=["a"], labels=[3], class_names=["x"])
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError, match="no embedding store"):
        load_embeddings(tmp_path / "empty_dir")


def test_manifest_specimens_reach_the_store(tmp_path, tiny_model):
    for i in range(4):
        write_synthetic_image(tmp_path / "imgs" / f"{i}.png", seed=i)
    (tmp_path / "m.csv").write_text("path,label,specimen\n" + "".join(
        f"imgs/{i}.png,{'ab'[i % 2]},S{i // 2}\n" for i in range(4)))
    emb = _extract(tmp_path / "m.csv", tiny_model, tmp_path / "out")
    assert emb.specimens == ["S0", "S0", "S1", "S1"]
    assert emb.labels.tolist() == [0, 1, 0, 1]
    assert load_embeddings(tmp_path / "out").specimens == ["S0", "S0", "S1", "S1"]


def test_embed_like_matches_store(dataset, tiny_model, tmp_path):
    emb = _extract(dataset, tiny_model, tmp_path / "out", pooling="cls+mean")
    one = embed_like(emb.meta, [dataset / emb.paths[5]])
    assert one.shape == (1, 64)
    np.testing.assert_allclose(one[0], np.asarray(emb.features[5]), atol=1e-5)


# ---------------------------------------------------------------------- kill -9 and resume
_RUNNER = """
import sys, palaeo_ssl
palaeo_ssl.extract_embeddings(sys.argv[1], model=sys.argv[2], out=sys.argv[3], workers=0, batch_size=4,
                              chunk_size=4, progress=False)
"""


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, tiny_model):
    data = make_class_folder_dataset(tmp_path / "data", n_classes=4, per_class=30, size=(96, 96))
    out = tmp_path / "out"
    chunks = kill_when_written([sys.executable, "-c", _RUNNER, str(data), str(tiny_model), str(out)], out,
                               "*/chunks/chunk_*.csv", 3, poll=0.05)
    assert len(chunks) >= 3, "the extraction never wrote a chunk before being killed"
    stores = list(out.glob("*/"))
    assert not (stores[0] / "meta.json").exists(), "killed run should not have finished"
    resumed = _extract(data, tiny_model, out, batch_size=7, chunk_size=16)
    assert 0 < resumed.meta["extraction"]["computed"] < 120
    assert resumed.meta["extraction"]["reused"] >= 12
    reference = _extract(data, tiny_model, tmp_path / "ref")
    assert resumed.paths == reference.paths
    assert np.max(np.abs(np.asarray(resumed.features) - np.asarray(reference.features))) <= 1e-5


def test_killed_consolidation_loses_nothing(tmp_path, tiny_model, dataset, monkeypatch):
    """Interrupt consolidation right after the old features were removed: the next run recovers them."""
    from palaeo_ssl import store as store_mod

    out = tmp_path / "out"
    _extract(dataset, tiny_model, out)
    write_synthetic_image(dataset / "class_0" / "extra.png", seed=77)
    real_replace = os.replace

    def crash_on_features(src, dst, *a, **k):
        if str(dst).endswith("features.npy"):
            raise KeyboardInterrupt("simulated crash")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(store_mod.os, "replace", crash_on_features)
    with pytest.raises(KeyboardInterrupt):
        _extract(dataset, tiny_model, out)
    monkeypatch.setattr(store_mod.os, "replace", real_replace)
    again = _extract(dataset, tiny_model, out)
    assert again.meta["extraction"]["computed"] == 0  # everything came back from chunks
    assert len(again) == 13


# ---------------------------------------------------------------------- CLI
def test_cli_exit_codes_and_messages(tmp_path, tiny_model, capsys):
    assert main(["extract", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["extract", str(empty), "--out", str(tmp_path / "o"), "--model", str(tiny_model)]) == 2
    assert "no files found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_text("nope")
    assert main(["extract", str(bad), "--out", str(tmp_path / "o2"), "--model", str(tiny_model),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no readable image" in err and "skipped.csv" in err
    assert (tmp_path / "o2" / "skipped.csv").is_file()
    data = make_class_folder_dataset(tmp_path / "d", n_classes=2, per_class=2)
    assert main(["extract", str(data), "--out", str(tmp_path / "o3"), "--model", "not a valid id!!"]) == 2
    assert "neither a local folder nor a model" in capsys.readouterr().err
    assert main(["extract", str(data), "--out", str(tmp_path / "o3"), "--model", str(tiny_model),
                 "--no-progress", "--workers", "0"]) == 0
    outp = capsys.readouterr().out
    assert "4 embedded" in outp and "embeddings written to" in outp


@pytest.mark.slow
def test_cli_console_script_help():
    r = subprocess.run([sys.executable, "-m", "palaeo_ssl", "extract", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for opt in ("--pooling", "--preprocess", "--image-size", "--batch-size", "--workers", "--device", "--dtype",
                "--strict"):
        assert opt in r.stdout


def test_module_entry_point_in_this_process(monkeypatch, capsys):
    """``python -m palaeo_ssl`` (the subprocess test above is slow) runs the command line."""
    import runpy

    monkeypatch.setattr(sys, "argv", ["palaeo-ssl", "extract", "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("palaeo_ssl", run_name="__main__")
    assert exc.value.code == 0 and "--pooling" in capsys.readouterr().out


# ---------------------------------------------------------------------- real fossils
@pytest.mark.slow
def test_fusulinids_end_to_end(fusulinids, tiny_model, tmp_path):
    emb = _extract(fusulinids, tiny_model, tmp_path / "out", workers=1)
    assert len(emb) == 119 and emb.n_classes == 6
    assert any(" " in p for p in emb.paths)  # file names with spaces
    assert np.isfinite(np.asarray(emb.features)).all()
    counts = np.bincount(emb.labels)
    assert counts.min() == 8 and counts.max() == 46
    assert pd.read_csv(tmp_path / "out" / "skipped.csv").empty


def test_falls_back_to_in_process_loading_when_workers_cannot_start(dataset, tiny_model, tmp_path, monkeypatch,
                                                                     caplog):
    """As in a notebook whose interpreter cannot start worker processes."""
    import palaeo_ssl.extract as ex

    real = ex.DataLoader

    class NoWorkers(real):
        def __iter__(self):
            if self.num_workers > 0:
                raise RuntimeError("cannot start worker processes here")
            return super().__iter__()

    monkeypatch.setattr(ex, "DataLoader", NoWorkers)
    with caplog.at_level("WARNING"):
        emb = _extract(dataset, tiny_model, tmp_path / "out", workers=2)
    assert len(emb) == 12 and emb.meta["extraction"]["computed"] == 12
    assert "loading images in this process instead" in caplog.text
    ref = _extract(dataset, tiny_model, tmp_path / "ref", workers=0)
    np.testing.assert_allclose(np.asarray(emb.features), np.asarray(ref.features), atol=1e-6)


def test_token_and_network_messages():
    from palaeo_ssl.backbone import _explain_load_error

    no_token = _explain_load_error("dinov3-vits16", ALIASES["dinov3-vits16"], OSError("401 Client Error: Unauthorized"))
    assert "HF_TOKEN" in str(no_token) and "local folder" in str(no_token)
    offline = _explain_load_error("dinov3-vits16", ALIASES["dinov3-vits16"],
                                  OSError("We couldn't connect to 'https://huggingface.co' to load the files"))
    assert "no network" in str(offline) and "HF_HUB_OFFLINE" in str(offline)


# ---------------------------------------------------------------------- one store per collection, code and model files
def _same_named_collections(root: Path) -> tuple[Path, Path]:
    """``siteA/train`` and ``siteB/train``: 2 classes x 2 BMP images each, other pixels but the same relative
    paths, sizes and modification times (the fingerprints a store knows its images by)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    stamp = 1_700_000_000_000_000_000
    for site in ("siteA", "siteB"):
        for cls in ("a", "b"):
            for j in range(2):
                path = root / site / "train" / cls / f"img_{j}.bmp"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
                os.utime(path, ns=(stamp, stamp))
    return root / "siteA" / "train", root / "siteB" / "train"


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.slow
def test_two_collections_of_one_folder_name_keep_their_own_stores(tmp_path, tiny_model):
    import json

    site_a, site_b = _same_named_collections(tmp_path)
    out = tmp_path / "out"
    a = _extract(site_a, tiny_model, out)
    store_a = Path(a.meta["store_path"])
    features_a, tree_a = np.array(a.features), _tree(store_a)
    b = _extract(site_b, tiny_model, out)
    assert b.meta["extraction"]["computed"] == 4  # nothing of siteA's features reused for siteB
    store_b = Path(b.meta["store_path"])
    assert store_b != store_a and sorted(p.parent for p in out.glob("*/meta.json")) == sorted([store_a, store_b])
    assert _tree(store_a) == tree_a  # siteA's store untouched: nothing modified, nothing deleted
    # each loads back its own images and features
    back_a, back_b = load_embeddings(store_a), load_embeddings(store_b)
    assert back_a.data_root == site_a.resolve() and back_b.data_root == site_b.resolve()
    np.testing.assert_array_equal(np.asarray(back_a.features), features_a)
    alone_b = _extract(site_b, tiny_model, tmp_path / "alone")
    np.testing.assert_allclose(np.asarray(back_b.features), np.asarray(alone_b.features), atol=1e-6)
    assert not np.allclose(np.asarray(back_a.features), np.asarray(back_b.features))
    assert back_a.identity() != back_b.identity()
    # the next extraction of either computes nothing
    assert _extract(site_a, tiny_model, out).meta["extraction"]["computed"] == 0
    # a store that records another collection is reported and left as it is, never extended
    meta = json.loads((store_a / "meta.json").read_text())
    meta["collection"] = str(tmp_path / "elsewhere")
    (store_a / "meta.json").write_text(json.dumps(meta))
    tree_a = _tree(store_a)
    with pytest.raises(UserError, match="was made from .*elsewhere.*left as it is"):
        _extract(site_a, tiny_model, out)
    assert _tree(store_a) == tree_a


@pytest.mark.slow
def test_new_weights_in_the_same_model_folder_make_a_new_store(tmp_path, tiny_model):
    import shutil

    from palaeo_ssl.testing import make_tiny_dinov3

    data = make_class_folder_dataset(tmp_path / "data", n_classes=2, per_class=2)
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    first = _extract(data, model, tmp_path / "out")
    other = make_tiny_dinov3(tmp_path / "other", seed=1)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")  # a new checkpoint saved in place
    second = _extract(data, model, tmp_path / "out")
    assert second.meta["extraction"]["computed"] == 4
    assert second.meta["store_path"] != first.meta["store_path"]
    assert not np.allclose(np.asarray(first.features), np.asarray(second.features))


def test_store_key_holds_the_collection_and_the_code_version(tmp_path, monkeypatch):
    from palaeo_ssl import cache
    from palaeo_ssl.store import EmbeddingStore

    settings = {"model_id": "m", "preprocess": "processor", "image_size": 16, "pooling": "cls", "dtype": "float32"}
    a = EmbeddingStore(tmp_path, "train", settings, collection="/data/siteA/train")
    b = EmbeddingStore(tmp_path, "train", settings, collection="/data/siteB/train")
    assert a.folder != b.folder and a.folder.name.startswith("train__m__processor16__cls__float32__")
    monkeypatch.setattr(palaeo_ssl, "__version__", "999.0")
    cache.code_version.cache_clear()
    try:
        upgraded = EmbeddingStore(tmp_path, "train", settings, collection="/data/siteA/train")
    finally:
        monkeypatch.undo()
        cache.code_version.cache_clear()
    assert upgraded.folder != a.folder  # a store of other code is never extended: the features are recomputed
