"""Images to model inputs: uint8 from the decoding workers, scaling and normalisation on the device.

Workers decode, resize as the model's own image processor does (antialiased, with its
resampling filter: bilinear for DINOv3, bicubic for DINOv2, SigLIP and CLIP; a centre
crop after a shorter-side resize where the processor crops) and hand over uint8 tensors (3, S, S): a quarter of the bytes of float32 across the process
boundary and the host-to-device copy. :func:`normalise` then scales and normalises
a whole batch on the device, in the model's dtype.

The pieces, reused by every extraction engine:

* :func:`decode_image` (path, prep) -> uint8 (3, S, S) on the CPU, or
  :class:`~palaeo_ssl.images.ImageReadError`;
* :func:`normalise` (uint8 batch on any device, prep, dtype) -> the model's input on the same device;
* :func:`embed_uint8` (backbone, uint8 batch, prep, pooling) -> features on the CPU, one batch at a time;
* :class:`Uint8Dataset` + :func:`collate_uint8` -> :class:`Batch` (the DataLoader's unit);
* :func:`gpu_decode` (``decoder="gpu"``): the JPEG bytes the workers read are decoded in one batched
  call on the GPU (nvJPEG through torchvision), EXIF orientation applied from the tag the worker read;
  every file the GPU decoder cannot or does not take is decoded on the CPU instead, so nothing is lost;
* :class:`DeviceFeeder`: pinned batches copied on a side CUDA stream while the previous batch computes;
* :class:`InFlight`: a few results copied back asynchronously, so no batch waits for the previous one's
  features to reach the host.
"""

from __future__ import annotations

import io
import warnings
from collections import deque
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .backbone import Preprocessing
from .images import ImageReadError, load_image, pad_to_square

#: how pixels reach the model; part of the store key (features made another way are never mixed in)
PIXEL_PIPELINE = "uint8-resize"
DECODERS = ("auto", "cpu", "gpu")
#: EXIF tag of the orientation
EXIF_ORIENTATION = 0x0112


# ---------------------------------------------------------------------- one image
def resize_uint8(t: torch.Tensor, size: int | tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """Antialiased resize of a uint8 (3, H, W) tensor to (3, size, size) (or (3, h, w) for ``size=(h, w)``)
    uint8, on its device, with ``interpolation`` (``bilinear``, ``bicubic`` or ``nearest``).

    On the CPU torchvision resizes uint8 itself (as transformers' image processors do); elsewhere the image
    goes through float32 and is rounded back, which gives the same values to within one grey level.
    """
    from torchvision.transforms.v2 import functional as F

    h, w = (size, size) if isinstance(size, int) else size
    if t.shape[-2] == h and t.shape[-1] == w:
        return t
    mode = F.InterpolationMode(interpolation)
    antialias = mode != F.InterpolationMode.NEAREST
    if t.device.type == "cpu":
        return F.resize(t, [h, w], interpolation=mode, antialias=antialias)
    out = F.resize(t.float(), [h, w], interpolation=mode, antialias=antialias)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def fit_uint8(t: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """A uint8 (3, H, W) image (already padded for ``prep.mode == "pad"``) -> the model's (3, S, S) input.

    Without ``prep.resize_short``: resized to S x S. With it (processors that crop, DINOv2 and CLIP): the
    shorter side resized to ``resize_short`` keeping the aspect ratio (the longer side truncated, as
    transformers computes it), then the centre S x S square cut out (top-left offset truncated, as theirs).
    """
    if prep.resize_short is None or prep.mode == "pad":
        return resize_uint8(t, prep.size, prep.interpolation)
    h, w = int(t.shape[-2]), int(t.shape[-1])
    short = prep.resize_short
    nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    t = resize_uint8(t, (nh, nw), prep.interpolation)
    top, left = int((nh - prep.size) / 2.0), int((nw - prep.size) / 2.0)
    return t[:, top:top + prep.size, left:left + prep.size].contiguous()


def decode_image(path, prep: Preprocessing) -> torch.Tensor:
    """Decode one file to the uint8 model input (3, S, S) on the CPU.

    :func:`~palaeo_ssl.images.load_image` (any Pillow format and mode to 8-bit RGB, EXIF orientation,
    JPEG draft mode for large JPEGs, transparency on ``prep.background``), then for ``prep.mode ==
    "pad"`` a centred square canvas of the background, then :func:`fit_uint8` (the processor's resize,
    and centre crop where it crops). Raises :class:`~palaeo_ssl.images.ImageReadError` for files that
    cannot be used.
    """
    draft = max(prep.size, prep.resize_short or 0) if prep.mode == "processor" else prep.size
    img = load_image(path, background=prep.background, draft_size=draft)
    if prep.mode == "pad":
        img = pad_to_square(img, prep.background)
    arr = np.array(img, dtype=np.uint8)  # a writable copy for torch
    return fit_uint8(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), prep)


def normalise(batch: torch.Tensor, prep: Preprocessing, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 3, S, S) uint8 on any device -> scaled to [0, 1] and normalised with ``prep.mean``/``prep.std``,
    in ``dtype``, on the same device (computed in float32, then cast)."""
    mean = torch.tensor(prep.mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    x = batch.to(torch.float32).div_(255.0).sub_(mean).div_(std)
    return x if dtype == torch.float32 else x.to(dtype)


def embed_uint8(backbone, pixels: torch.Tensor, prep: Preprocessing, pooling: str = "auto") -> torch.Tensor:
    """Features (B, D) float32 on the CPU of a uint8 batch (B, 3, S, S) on the CPU: the batch travels to
    the backbone's device as uint8 and is normalised there in the model's dtype (one batch at a time,
    no overlap: for the extraction loop's overlapped version see :class:`DeviceFeeder`)."""
    x = normalise(pixels.to(backbone.device), prep, backbone.dtype)
    with torch.inference_mode():
        return backbone.features(x, pooling).float().cpu()


def pad_square_tensor(t: torch.Tensor, background: Sequence[int]) -> torch.Tensor:
    """Centre a (3, H, W) uint8 tensor on a square canvas of ``background``, as
    :func:`~palaeo_ssl.images.pad_to_square` does with a PIL image."""
    _, h, w = t.shape
    if h == w:
        return t
    side = max(h, w)
    canvas = torch.tensor(list(background), dtype=t.dtype, device=t.device).view(3, 1, 1).expand(3, side, side)
    canvas = canvas.contiguous()
    top, left = (side - h) // 2, (side - w) // 2
    canvas[:, top:top + h, left:left + w] = t
    return canvas


def apply_orientation(t: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1-8) to a (C, H, W) tensor, as ``PIL.ImageOps.exif_transpose`` does."""
    if orientation == 2:
        return t.flip(-1)
    if orientation == 3:
        return t.flip(-2, -1)
    if orientation == 4:
        return t.flip(-2)
    if orientation == 5:
        return t.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(t, k=-1, dims=(-2, -1))
    if orientation == 7:
        return t.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(t, k=1, dims=(-2, -1))
    return t


def jpeg_for_gpu(data: bytes) -> tuple[bool, int]:
    """(whether nvJPEG should decode these file bytes, their EXIF orientation), from the header only.

    Only 8-bit baseline/sequential JPEGs in RGB/YCbCr or greyscale go to the GPU; progressive,
    CMYK/YCCK, 12/16-bit, oversized and non-JPEG files are decoded on the CPU.
    """
    from PIL import Image

    if len(data) < 4 or data[:2] != b"\xff\xd8":
        return False, 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                    return False, 1
                if im.info.get("progressive") or im.info.get("progression"):
                    return False, 1
                w, h = im.size
                if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
                    return False, 1
                orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # anything odd: the CPU path decodes it or says why not
        return False, 1
    return True, orientation if 1 <= orientation <= 8 else 1


# ---------------------------------------------------------------------- dataset and batches
class Batch(NamedTuple):
    """What the DataLoader hands over. ``ids``/``pixels``: images decoded on the CPU (uint8 (n, 3, S, S)
    or None); ``jpeg_ids``/``jpeg_bytes``/``jpeg_sizes``/``orientations``: the files for the GPU decoder,
    their bytes end to end in one uint8 tensor (one shared-memory segment per batch, not one per file);
    ``bad``: (id, reason)."""

    ids: list
    pixels: torch.Tensor | None
    jpeg_ids: list
    jpeg_bytes: torch.Tensor | None
    jpeg_sizes: list
    orientations: list
    bad: list

    @property
    def jpegs(self) -> list:
        """The bytes of each file for the GPU decoder (views into ``jpeg_bytes``)."""
        if self.jpeg_bytes is None:
            return []
        return list(torch.split(self.jpeg_bytes, self.jpeg_sizes))

    def pin_memory(self) -> "Batch":
        """Pinned pixels for an asynchronous copy (the DataLoader's pinning thread calls this); the JPEG
        bytes stay in pageable memory, as the GPU decoder reads them from the host itself."""
        return self._replace(pixels=self.pixels.pin_memory() if self.pixels is not None else None)


class Uint8Dataset(Dataset):
    """File ``i`` -> (i, uint8 pixels or None, JPEG bytes or None, orientation, reason).

    ``decoder="cpu"``: every file is decoded here (:func:`decode_image`). ``decoder="gpu"``: files that
    :func:`jpeg_for_gpu` accepts come back as their bytes (a uint8 tensor) for :func:`gpu_decode`,
    every other file is decoded here. A bad file gives a reason, never an exception.
    """

    def __init__(self, files: Sequence, prep: Preprocessing, decoder: str = "cpu"):
        self.files = [str(f) for f in files]
        self.prep = prep
        self.decoder = decoder

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            if self.decoder == "gpu":
                try:
                    with open(self.files[i], "rb") as fh:
                        data = fh.read()
                except OSError:  # decode_image says why
                    data = b""
                ok, orientation = jpeg_for_gpu(data)
                if ok:
                    return i, None, torch.frombuffer(bytearray(data), dtype=torch.uint8), orientation, ""
            return i, decode_image(self.files[i], self.prep), None, 1, ""
        except ImageReadError as exc:
            return i, None, None, 1, str(exc)
        except Exception as exc:  # a worker must never die on one bad file
            return i, None, None, 1, f"cannot process: {type(exc).__name__}: {exc}"


def collate_uint8(items) -> Batch:
    """Stack the CPU-decoded images of a list of :class:`Uint8Dataset` items into one :class:`Batch`."""
    done = [(i, t) for i, t, _, _, _ in items if t is not None]
    raw = [(i, b, o) for i, t, b, o, _ in items if t is None and b is not None]
    bad = [(i, r) for i, t, b, _, r in items if t is None and b is None]
    return Batch(ids=[i for i, _ in done], pixels=torch.stack([t for _, t in done]) if done else None,
                 jpeg_ids=[i for i, _, _ in raw], jpeg_bytes=torch.cat([b for _, b, _ in raw]) if raw else None,
                 jpeg_sizes=[len(b) for _, b, _ in raw], orientations=[o for _, _, o in raw], bad=bad)


def prefetch_factor(workers: int, batch_bytes: int, budget_bytes: int) -> int:
    """Batches each worker may prepare ahead so that all of them together stay within ``budget_bytes``
    (at least 1, at most 8)."""
    if workers <= 0:
        return 1
    return int(max(1, min(8, budget_bytes // max(1, batch_bytes * workers))))


# ---------------------------------------------------------------------- GPU decoding
def nvjpeg_decode(jpegs: list, device: torch.device) -> list:
    """Batched JPEG decoding on a CUDA device (torchvision's ``decode_jpeg`` on a list, RGB output)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    # torchvision decodes on a stream of its own that is not ordered after the caller's: drain the
    # caller's stream (the side stream of DeviceFeeder, never the model's) so that no memory it still
    # uses can be handed to the decoder
    torch.cuda.current_stream(device).synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of torchvision's image decoders
        return decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device)


def gpu_decode(batch: Batch, files: Sequence, prep: Preprocessing, device: torch.device,
               decode: Callable[[list, torch.device], list] = nvjpeg_decode) -> tuple[list, torch.Tensor | None, list]:
    """The uint8 inputs (n, 3, S, S) on ``device`` of every image of ``batch``: the CPU-decoded ones copied,
    the JPEG bytes decoded with ``decode`` (the whole list at once; where that fails, one by one), oriented
    by their EXIF tag, padded for ``prep.mode == "pad"`` and resized there. A file the GPU decoder rejects
    is decoded on the CPU from ``files[id]``; one that no decoder can read joins ``bad``.

    Returns (ids, pixels or None, bad), ids in the order of the pixel rows.
    """
    ids: list = []
    rows: list[torch.Tensor] = []
    bad = list(batch.bad)
    if batch.pixels is not None:
        ids.extend(batch.ids)
        rows.append(batch.pixels.to(device, non_blocking=True))
    jpegs = batch.jpegs
    if jpegs:
        try:
            decoded = list(decode(jpegs, device))
        except Exception:  # one bad file fails the whole call: find it
            decoded = []
            for data in jpegs:
                try:
                    decoded.append(decode([data], device)[0])
                except Exception:
                    decoded.append(None)
        for i, img, orientation in zip(batch.jpeg_ids, decoded, batch.orientations):
            if img is None or img.ndim != 3 or img.shape[0] != 3:
                try:
                    t = decode_image(files[i], prep).to(device)
                except ImageReadError as exc:
                    bad.append((i, str(exc)))
                    continue
            else:
                img = apply_orientation(img, orientation)
                if prep.mode == "pad":
                    img = pad_square_tensor(img, prep.background)
                t = fit_uint8(img, prep)
            ids.append(i)
            rows.append(t.unsqueeze(0))
    return ids, (torch.cat(rows) if rows else None), bad


# ---------------------------------------------------------------------- host -> device, device -> host
class DeviceFeeder:
    """Iterate (ids, model input on the device, bad) over :class:`Batch` es.

    On CUDA the copy (and GPU decoding) of batch n+1 runs on a side stream while batch n computes on
    the current stream (the batches come from pinned memory, so the copies are asynchronous). With
    ``pad_to``, a short batch is padded with zero rows to ``pad_to`` rows (fixed shapes for a compiled
    model); ``ids`` then names only the real rows, which come first.
    """

    def __init__(self, batches: Iterable[Batch], files: Sequence, prep: Preprocessing, device: torch.device,
                 dtype: torch.dtype, decoder: str = "cpu", pad_to: int | None = None,
                 decode: Callable[[list, torch.device], list] | None = None):
        self.batches, self.files, self.prep = batches, files, prep
        self.device, self.dtype, self.decoder, self.pad_to = device, dtype, decoder, pad_to
        self.decode = decode or nvjpeg_decode
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def _prepare(self, batch: Batch):
        if self.decoder == "gpu":
            ids, pixels, bad = gpu_decode(batch, self.files, self.prep, self.device, self.decode)
        else:
            ids, bad = batch.ids, batch.bad
            pixels = batch.pixels.to(self.device, non_blocking=True) if batch.pixels is not None else None
        if pixels is None:
            return ids, None, bad
        if self.pad_to is not None and pixels.shape[0] < self.pad_to:
            pad = pixels.new_zeros((self.pad_to - pixels.shape[0],) + tuple(pixels.shape[1:]))
            pixels = torch.cat([pixels, pad])
        return ids, normalise(pixels, self.prep, self.dtype), bad

    def __iter__(self) -> Iterator:
        if self.stream is None:
            for batch in self.batches:
                yield self._prepare(batch)
            return
        it = iter(self.batches)
        current = torch.cuda.current_stream(self.device)

        def load_next():
            try:
                batch = next(it)
            except StopIteration:
                return None
            with torch.cuda.stream(self.stream):
                return self._prepare(batch)

        nxt = load_next()
        while nxt is not None:
            current.wait_stream(self.stream)  # the copy of this batch is done before it is used
            ids, x, bad = nxt
            if x is not None:
                x.record_stream(current)  # its memory is not reused while the model reads it
            yield ids, x, bad  # the caller queues the model's work on this batch...
            nxt = load_next()  # ...then the next copy is queued on the side stream and overlaps it


class InFlight:
    """Features copied back to the host without waiting: ``put`` starts an asynchronous copy into a
    pinned buffer and returns the results that have arrived; at most ``depth`` are outstanding.

    On the CPU (and MPS) ``put`` returns each result at once.
    """

    def __init__(self, device: torch.device, depth: int = 3):
        self.device, self.depth = device, depth
        self.pending: deque = deque()
        self.free: list[torch.Tensor] = []

    def put(self, feats: torch.Tensor, tag) -> list[tuple[object, np.ndarray]]:
        if self.device.type != "cuda":
            return [(tag, feats.float().cpu().numpy())]
        feats = feats.float()
        buf = next((b for b in self.free if b.shape[0] >= feats.shape[0] and b.shape[1] == feats.shape[1]), None)
        if buf is None:
            buf = torch.empty(tuple(feats.shape), dtype=torch.float32, pin_memory=True)
        else:
            self.free.remove(buf)
        host = buf[:feats.shape[0]]
        host.copy_(feats, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self.pending.append((event, buf, host, tag))
        out = []
        while len(self.pending) > self.depth or (self.pending and self.pending[0][0].query()):
            out.append(self._pop())
        return out

    def _pop(self) -> tuple[object, np.ndarray]:
        event, buf, host, tag = self.pending.popleft()
        event.synchronize()
        arr = host.numpy().copy()  # the buffer is reused
        self.free.append(buf)
        return tag, arr

    def drain(self) -> list[tuple[object, np.ndarray]]:
        return [self._pop() for _ in range(len(self.pending))]


def resolve_decoder(decode: str, device: torch.device) -> str:
    """``auto`` -> ``cpu`` (GPU decoding's speed on real data is unmeasured, so it is never chosen on its
    own); ``gpu`` needs a CUDA device and torchvision's nvJPEG decoder, else a ParameterError."""
    from .params import ParameterError, shown

    decode = (decode or "auto").lower()
    if decode not in DECODERS:
        raise ParameterError("decode", "{name} " + shown(decode) + f" is not one of {', '.join(DECODERS)}")
    if decode != "gpu":
        return "cpu"
    if device.type != "cuda":
        raise ParameterError(
            "decode", f"{{name}} gpu decodes JPEGs with NVIDIA's nvJPEG and needs a CUDA device, but this run "
                      f"uses {device.type}; use {{name}} cpu (or auto)")
    return "gpu"


def check_gpu_decoder(device: torch.device, decode: Callable[[list, torch.device], list] = nvjpeg_decode) -> None:
    """Decode one tiny JPEG on ``device``; a ParameterError naming ``decode`` if the GPU decoder is unusable."""
    from PIL import Image

    from .params import ParameterError, literal

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(buf, format="JPEG")
    try:
        out = decode([torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)], device)
        assert out[0].shape == (3, 16, 16)
    except Exception as exc:
        raise ParameterError(
            "decode", f"{{name}} gpu: this torchvision cannot decode JPEGs on {device} ({type(exc).__name__}: "
                      + literal(str(exc)[:200]) + "); use {name} cpu, or install a torchvision built with CUDA"
        ) from None
