"""The uint8 loading path: decode and resize on the CPU, normalise on the device, GPU decoding with its
CPU fallback (nvJPEG replaced by a stand-in here), EXIF orientation, fixed-shape batches, the store key."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import palaeo_ssl.extract as ex
from palaeo_ssl import extract_embeddings
from palaeo_ssl.backbone import Preprocessing, check_compile, load_backbone
from palaeo_ssl.cli import main
from palaeo_ssl.errors import UserError
from palaeo_ssl.images import ImageReadError, load_image, pad_to_square
from palaeo_ssl.loading import (Batch, DeviceFeeder, InFlight, Uint8Dataset, apply_orientation, collate_uint8,
                                decode_image, gpu_decode, jpeg_for_gpu, normalise, pad_square_tensor,
                                prefetch_factor, resolve_decoder)
from palaeo_ssl.testing import make_class_folder_dataset, write_synthetic_image

PREP = Preprocessing(mode="processor", size=64, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _photo(size=(100, 60), seed=0) -> Image.Image:
    """A smooth, asymmetric RGB image (a gradient and a blob), so every flip and turn shows."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    arr = np.stack([xx * 255 / w, yy * 255 / h, 128 + 60 * np.sin(xx / 7.0 + seed)], -1)
    arr[: h // 3, : w // 4] = rng.integers(0, 255, 3)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def _jpeg(path, img=None, orientation=None, **save):
    img = img or _photo()
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        save["exif"] = exif
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=92, **save)
    return path


def stand_in_decoder(jpegs, device):
    """Decodes like nvJPEG would (RGB, EXIF orientation NOT applied) with libjpeg through Pillow; rejects,
    as the GPU decoder does with what it cannot take, any file whose JPEG comment says REJECT."""
    out = []
    for data in jpegs:
        raw = bytes(data.numpy())
        if b"REJECT" in raw:
            raise RuntimeError("nvjpeg stand-in: unsupported JPEG")
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            out.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).to(device))
    return out


# ---------------------------------------------------------------------- one image
def test_decode_image_is_uint8_and_matches_processor(tiny_model, tmp_path):
    from transformers import AutoImageProcessor

    bb = load_backbone(str(tiny_model), device="cpu", dtype="float32")
    prep = bb.preprocessing("processor")
    proc = AutoImageProcessor.from_pretrained(tiny_model)
    for path in (write_synthetic_image(tmp_path / "a.png", size=(90, 50)), _jpeg(tmp_path / "b.jpg", _photo((300, 200)))):
        t = decode_image(path, prep)
        assert t.dtype == torch.uint8 and t.shape == (3, 224, 224)
        ours = normalise(t.unsqueeze(0), prep)[0]
        ref = proc(images=load_image(path), return_tensors="pt")["pixel_values"][0]
        diff = (ours - ref).abs()
        # rounding to uint8 after the resize: at most one grey level, 1 / (255 * 0.224) = 0.0175
        assert diff.max().item() <= 1 / (255 * min(prep.std)) + 1e-4
        assert diff.mean().item() < 0.006


def test_decode_image_refuses_bad_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("empty.jpg", "text.jpg"):
        with pytest.raises(ImageReadError):
            decode_image(tmp_path / name, PREP)


def test_normalise_on_the_device_in_its_dtype():
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    mean, std = torch.tensor(PREP.mean).view(1, 3, 1, 1), torch.tensor(PREP.std).view(1, 3, 1, 1)
    ref = (x.float() / 255 - mean) / std
    out = normalise(x, PREP)
    assert out.dtype == torch.float32 and out.device == x.device
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    bf = normalise(x, PREP, torch.bfloat16)
    assert bf.dtype == torch.bfloat16
    torch.testing.assert_close(bf.float(), ref, atol=0.02, rtol=0.01)
    assert x.dtype == torch.uint8  # the input is left as it was


def test_pad_square_tensor_matches_pillow():
    img = _photo((70, 30))
    ref = torch.from_numpy(np.array(pad_to_square(img, (10, 200, 30)))).permute(2, 0, 1)
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    assert torch.equal(pad_square_tensor(t, (10, 200, 30)), ref)
    tall = img.transpose(Image.Transpose.TRANSPOSE)
    ref = torch.from_numpy(np.array(pad_to_square(tall, (0, 0, 0)))).permute(2, 0, 1)
    assert torch.equal(pad_square_tensor(torch.from_numpy(np.array(tall)).permute(2, 0, 1), (0, 0, 0)), ref)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillows_exif_transpose(tmp_path, orientation):
    """What the GPU path does with the EXIF tag read on the CPU equals what Pillow does on the CPU path."""
    path = _jpeg(tmp_path / "o.jpg", orientation=orientation)
    raw = path.read_bytes()
    ok, tag = jpeg_for_gpu(raw)
    assert ok and tag == orientation
    with Image.open(path) as im:
        im.load()
        plain = torch.from_numpy(np.array(im)).permute(2, 0, 1)  # the pixels as stored (nvJPEG's view)
        turned = torch.from_numpy(np.array(ImageOps.exif_transpose(im))).permute(2, 0, 1)
    assert torch.equal(apply_orientation(plain, tag), turned)


def test_jpeg_for_gpu_sends_only_baseline_jpegs(tmp_path):
    base = _jpeg(tmp_path / "base.jpg")
    grey = _jpeg(tmp_path / "grey.jpg", _photo().convert("L"))
    prog = _jpeg(tmp_path / "prog.jpg", progressive=True)
    cmyk = _jpeg(tmp_path / "cmyk.jpg", _photo().convert("CMYK"))
    png = write_synthetic_image(tmp_path / "a.png")
    assert jpeg_for_gpu(base.read_bytes()) == (True, 1)
    assert jpeg_for_gpu(grey.read_bytes())[0]
    for p in (prog, cmyk, png):
        assert jpeg_for_gpu(p.read_bytes())[0] is False, p.name
    assert jpeg_for_gpu(b"")[0] is False and jpeg_for_gpu(b"\xff\xd8 garbage")[0] is False


# ---------------------------------------------------------------------- batches
def test_dataset_and_collate_split_bytes_pixels_and_failures(tmp_path):
    files = [_jpeg(tmp_path / "a.jpg"), write_synthetic_image(tmp_path / "b.png"), tmp_path / "c.jpg",
             _jpeg(tmp_path / "d.jpg", progressive=True)]
    files[2].write_bytes(b"")
    batch = collate_uint8([Uint8Dataset(files, PREP, "gpu")[i] for i in range(4)])
    assert batch.ids == [1, 3] and batch.pixels.dtype == torch.uint8 and batch.pixels.shape == (2, 3, 64, 64)
    assert batch.jpeg_ids == [0] and batch.jpegs[0].dtype == torch.uint8 and batch.orientations == [1]
    assert batch.jpeg_sizes == [files[0].stat().st_size] and batch.jpeg_bytes.ndim == 1
    assert torch.equal(batch.jpegs[0], torch.tensor(list(files[0].read_bytes()), dtype=torch.uint8))
    assert [i for i, _ in batch.bad] == [2] and "empty" in batch.bad[0][1]
    cpu = collate_uint8([Uint8Dataset(files, PREP, "cpu")[i] for i in range(4)])
    assert cpu.ids == [0, 1, 3] and cpu.jpegs == [] and cpu.jpeg_bytes is None and [i for i, _ in cpu.bad] == [2]


def test_gpu_decode_falls_back_per_image(tmp_path):
    good = _jpeg(tmp_path / "good.jpg", orientation=6)
    rejected = _jpeg(tmp_path / "rejected.jpg", _photo(seed=3), comment=b"REJECT")
    cut = _jpeg(tmp_path / "cut.jpg", _photo((400, 300), seed=4))
    cut.write_bytes(cut.read_bytes()[:1500])  # the header parses, the data is cut short
    files = [good, rejected, cut]
    batch = collate_uint8([Uint8Dataset(files, PREP, "gpu")[i] for i in range(3)])
    assert batch.jpeg_ids == [0, 1, 2]  # all look like baseline JPEGs from their headers
    ids, pixels, bad = gpu_decode(batch, files, PREP, torch.device("cpu"), stand_in_decoder)
    assert ids == [0, 1] and pixels.shape == (2, 3, 64, 64) and pixels.dtype == torch.uint8
    assert [i for i, _ in bad] == [2] and "truncated" in bad[0][1]
    for row, f in zip(pixels, files[:2]):  # the GPU path's pixels equal the CPU path's (same libjpeg here)
        assert torch.equal(row, decode_image(f, PREP))


def test_feeder_pads_short_batches_to_a_fixed_shape():
    pixels = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    batches = [Batch([0, 1, 2], pixels, [], None, [], [], [(3, "bad")]), Batch([], None, [], None, [], [], [(4, "bad")])]
    out = list(DeviceFeeder(batches, [], PREP, torch.device("cpu"), torch.float32, pad_to=5))
    (ids, x, bad), (ids2, x2, bad2) = out
    assert ids == [0, 1, 2] and x.shape == (5, 3, 64, 64) and bad == [(3, "bad")]
    torch.testing.assert_close(x[:3], normalise(pixels, PREP))
    torch.testing.assert_close(x[3:], normalise(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), PREP))
    assert ids2 == [] and x2 is None and bad2 == [(4, "bad")]
    plain = list(DeviceFeeder(batches[:1], [], PREP, torch.device("cpu"), torch.float32))
    assert plain[0][1].shape == (3, 3, 64, 64)


def test_in_flight_on_the_cpu_returns_at_once():
    sink = InFlight(torch.device("cpu"))
    got = sink.put(torch.ones(2, 4, dtype=torch.bfloat16), "tag")
    assert got[0][0] == "tag" and got[0][1].dtype == np.float32 and got[0][1].shape == (2, 4)
    assert sink.drain() == []


def test_prefetch_is_bounded_by_memory():
    batch = 64 * 3 * 224 * 224  # 9.6 MB of uint8
    assert prefetch_factor(15, batch, 1 << 30) == 7  # 15 workers x 7 batches x 9.6 MB <= 1 GiB
    assert prefetch_factor(1, batch, 1 << 30) == 8  # capped
    assert prefetch_factor(15, 100 * batch, 1 << 30) == 1  # huge batches: one each
    assert prefetch_factor(0, batch, 1 << 30) == 1


# ---------------------------------------------------------------------- through extract_embeddings
def _gpu_decoding_on_this_cpu(monkeypatch):
    """Let decode="gpu" run on the CPU with the stand-in decoder in place of nvJPEG."""
    import palaeo_ssl.loading as loading

    monkeypatch.setattr(ex, "resolve_decoder", lambda decode, device: "cpu" if decode == "auto" else decode)
    monkeypatch.setattr(ex, "check_gpu_decoder", lambda device: None)
    monkeypatch.setattr(loading, "nvjpeg_decode", stand_in_decoder)


def _mixed_folder(root):
    _jpeg(root / "a" / "plain.jpg")
    _jpeg(root / "a" / "rotated.jpg", _photo(seed=1), orientation=6)
    _jpeg(root / "a" / "mirrored.jpg", _photo(seed=2), orientation=5)
    _jpeg(root / "b" / "progressive.jpg", _photo(seed=3), progressive=True)
    _jpeg(root / "b" / "cmyk.jpg", _photo(seed=4).convert("CMYK"))
    _jpeg(root / "b" / "rejected.jpg", _photo(seed=5), comment=b"REJECT")
    write_synthetic_image(root / "b" / "c.png", size=(80, 50), seed=6)
    cut = _jpeg(root / "b" / "cut.jpg", _photo((400, 300), seed=7))
    cut.write_bytes(cut.read_bytes()[:1500])
    return root


def test_gpu_decoding_falls_back_and_gives_the_cpu_features(tmp_path, tiny_model, monkeypatch):
    data = _mixed_folder(tmp_path / "data")
    kw = dict(model=str(tiny_model), image_size=64, workers=0, batch_size=3, progress=False)
    cpu = extract_embeddings(data, out=tmp_path / "out", decode="cpu", **kw)
    _gpu_decoding_on_this_cpu(monkeypatch)
    gpu = extract_embeddings(data, out=tmp_path / "out", decode="gpu", **dict(kw, workers=1))  # bytes cross processes
    # every readable file embedded on both paths, the cut one skipped on both
    assert gpu.paths == cpu.paths and len(gpu) == 7 and "b/cut.jpg" not in gpu.paths
    assert gpu.meta["extraction"]["computed"] == 7 and gpu.meta["extraction"]["skipped"] == 1
    # EXIF-rotated JPEGs: the same features (this stand-in decodes with libjpeg, so pixel-identical)
    np.testing.assert_allclose(np.asarray(gpu.features), np.asarray(cpu.features), atol=1e-5)
    # the decoder is part of the store key: features of one never reuse the other's
    assert gpu.meta["store_path"] != cpu.meta["store_path"]


def test_store_key_holds_the_pixel_pipeline_and_decoder(tmp_path, tiny_model, monkeypatch):
    data = make_class_folder_dataset(tmp_path / "d", n_classes=1, per_class=2)
    plan_cpu = ex._plan(data, str(tiny_model), tmp_path / "o", "cls", "processor", None, "cpu", "float32", "black",
                        None, "cpu")
    monkeypatch.setattr(ex, "resolve_decoder", lambda decode, device: decode)
    plan_gpu = ex._plan(data, str(tiny_model), tmp_path / "o", "cls", "processor", None, "cpu", "float32", "black",
                        None, "gpu")
    assert plan_cpu.store.settings["pixels"] == "uint8-resize"
    assert plan_cpu.store.settings["decoder"] == "cpu" and plan_gpu.store.settings["decoder"] == "gpu"
    assert plan_cpu.store.folder != plan_gpu.store.folder


def test_padded_last_batch_gives_the_unpadded_features(dataset_12, tiny_model, tmp_path, monkeypatch):
    """``compile`` pads every batch to the batch size; the padding never reaches the store."""
    monkeypatch.setattr(ex, "check_compile", lambda device: None)
    import palaeo_ssl.backbone as bbmod

    monkeypatch.setattr(bbmod, "check_compile", lambda device: None)
    seen = []

    def fake_compile(fn, **kw):  # the eager function, recording the shapes it is given
        assert kw.get("dynamic") is False

        def run(x):
            seen.append(tuple(x.shape))
            return fn(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    kw = dict(model=str(tiny_model), image_size=64, workers=0, progress=False)
    padded = extract_embeddings(dataset_12, out=tmp_path / "a", batch_size=5, compile=True, **kw)
    assert seen == [(5, 3, 64, 64)] * 3  # 12 images: 5 + 5 + 2 real rows, padded to 5
    plain = extract_embeddings(dataset_12, out=tmp_path / "b", batch_size=12, **kw)
    assert padded.paths == plain.paths and len(padded) == 12
    np.testing.assert_allclose(np.asarray(padded.features), np.asarray(plain.features), atol=1e-5)


@pytest.fixture()
def dataset_12(tmp_path):
    return make_class_folder_dataset(tmp_path / "data", n_classes=3, per_class=4)


# ---------------------------------------------------------------------- clear refusals
def test_gpu_decoding_without_cuda_is_refused(tmp_path, tiny_model, dataset_12, capsys):
    with pytest.raises(UserError, match="decode gpu decodes JPEGs .* needs a CUDA device"):
        resolve_decoder("gpu", torch.device("cpu"))
    assert resolve_decoder("auto", torch.device("cpu")) == "cpu"
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["extract", str(dataset_12), "--out", str(tmp_path / "o"), "--model", str(tiny_model),
                 "--device", "cpu", "--decode", "gpu", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--decode gpu" in err and "CUDA" in err


def test_compile_refused_where_it_cannot_work(monkeypatch):
    import shutil

    with pytest.raises(UserError, match="compile is not supported on mps"):
        check_compile(torch.device("mps"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="C\\+\\+ compiler"):
        check_compile(torch.device("cpu"))


# ---------------------------------------------------------------------- slow: compile, memory
@pytest.mark.slow
def test_compiled_features_equal_eager_ones(tiny_model, tmp_path):
    """torch.compile on the CPU (needs a C++ compiler) with the tiny model: cosine >= 0.999 with eager."""
    import shutil

    if not shutil.which("g++") and not shutil.which("c++"):
        pytest.skip("no C++ compiler: torch.compile cannot run on this CPU")
    data = make_class_folder_dataset(tmp_path / "data", n_classes=2, per_class=5)
    kw = dict(model=str(tiny_model), image_size=64, workers=0, progress=False, batch_size=4)
    eager = extract_embeddings(data, out=tmp_path / "e", **kw)
    compiled = extract_embeddings(data, out=tmp_path / "c", compile=True, **kw)
    assert compiled.paths == eager.paths
    cos = np.sum(eager.normalized() * compiled.normalized(), axis=1)
    assert cos.min() >= 0.999


_RSS = """
import json, resource, sys, palaeo_ssl
palaeo_ssl.extract_embeddings(sys.argv[1], model=sys.argv[2], out=sys.argv[3], progress=False, chunk_size=64,
                              batch_size=16, workers=1)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
"""


@pytest.mark.slow
def test_peak_rss_is_flat_in_the_number_of_images(tmp_path, tiny_model):
    def peak(n: int) -> float:
        data = make_class_folder_dataset(tmp_path / f"d{n}", n_classes=2, per_class=n // 2, size=(320, 240))
        r = subprocess.run([sys.executable, "-c", _RSS, str(data), str(tiny_model), str(tmp_path / f"o{n}")],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    small, big = peak(64), peak(384)
    assert big <= small * 1.1 + 30, (small, big)


def test_compile_cache_goes_to_the_user_cache(tmp_path, monkeypatch):
    """Even after torch filled in its own default (a folder under /tmp), compiled code is kept in the user cache."""
    import palaeo_ssl.backbone as bbmod

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/torchinductor_someone")  # torch's default, not the user's
    monkeypatch.setattr(bbmod, "_USER_COMPILE_CACHE", None)
    assert bbmod.compile_cache_dir() == tmp_path / "cache" / "palaeo-ssl" / "torch-compile"
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "palaeo-ssl" / "torch-compile")
    monkeypatch.setattr(bbmod, "_USER_COMPILE_CACHE", str(tmp_path / "mine"))
    assert bbmod.compile_cache_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()


def test_chunk_writer_keeps_order_and_reports_failures():
    from palaeo_ssl.extract import _ChunkWriter

    class Store:
        def __init__(self, fail_at=None):
            self.chunks, self.fail_at = [], fail_at

        def write_chunk(self, fps, feats, skips):
            if len(self.chunks) == self.fail_at:
                raise OSError("disk full")
            self.chunks.append(fps)

    store = Store()
    w = _ChunkWriter(store, depth=2)
    for k in range(6):
        w.write([k], None, [])
    w.close()
    assert store.chunks == [[k] for k in range(6)]
    failing = _ChunkWriter(Store(fail_at=1))
    failing.write([0], None, [])
    failing.write([1], None, [])
    with pytest.raises(OSError, match="disk full"):
        failing.close()
