"""Patch tokens and last-layer attention of one image, at the image's own aspect ratio.

The image is resized (never squashed to a square, never padded) so that its
longer side is ``size`` pixels and both sides are multiples of the model's
patch size (DINOv3 ConvNeXt: of its stride, 32); DINOv3's rotary position
embeddings handle any grid, DINOv2, SigLIP and CLIP interpolate theirs. The tokens
are read after the final norm and split from the model's family and config into
the prefix tokens and the patch tokens (layout ``[class, registers..., patches]``
for DINOv3 ViT, DINOv2 and CLIP; ``[patches]`` for SigLIP, which has no class
token; ``[pooled, feature map]`` for DINOv3 ConvNeXt), patches in row-major order.
Attention maps exist only where a class token attends to the patches (not
SigLIP, not a ConvNeXt): asking for them elsewhere is a UserError that says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from ..params import ParameterError

DEFAULT_SIZE = 448


# ---------------------------------------------------------------------- image -> model input
def as_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB mode; an RGB image is returned as it is (``convert`` would copy it)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` into an RGB PIL image at full resolution with :func:`palaeo_ssl.images.load_image`.

    EXIF orientation is applied; 16-bit, greyscale, transparent (composited on
    black) and CMYK images are converted. A file that cannot be read raises
    :class:`UserError` with the reason.
    """
    from ..images import ImageReadError, load_image

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"image {str(path)!r} does not exist; pass the path of an image file")
    try:
        img = load_image(path)
    except ImageReadError as exc:
        raise UserError(f"could not read image {str(path)!r}: {exc}; pass a readable image file") from exc
    return as_rgb(img)


def input_size(width: int, height: int, size: int = DEFAULT_SIZE, patch_size: int = 16) -> tuple[int, int]:
    """Model input size ``(width, height)`` in pixels for an image of ``width`` x ``height``.

    The longer side becomes ``size``; the shorter side is scaled by the same
    factor and rounded to the nearest multiple of ``patch_size`` (at least one
    patch). ``size`` must itself be a multiple of ``patch_size``.
    """
    if width <= 0 or height <= 0:
        raise UserError(f"the image is empty ({width} x {height} pixels)")
    if size < patch_size or size % patch_size:
        better = max(patch_size, int(round(size / patch_size)) * patch_size)
        raise ParameterError("size", f"{{name}} {size} is not a positive multiple of the model's patch size "
                                     f"({patch_size}); try {{name}} {better}")
    scale = size / max(width, height)

    def side(n: int) -> int:
        return max(patch_size, int(math.floor(n * scale / patch_size + 0.5)) * patch_size)

    if width >= height:
        return size, side(height)
    return side(width), size


def prepare_image(image: Image.Image, size: int, patch_size: int, mean, std) -> tuple[torch.Tensor, np.ndarray]:
    """Resize ``image`` to :func:`input_size` and normalise it.

    Returns ``pixel_values`` (1, 3, H, W) float32 normalised with ``mean``/``std``
    and the resized picture (H, W, 3) uint8. Resizing is bicubic with
    antialiasing (PIL), so downscaling does not alias.
    """
    w, h = input_size(image.width, image.height, size, patch_size)
    resized = np.asarray(as_rgb(image).resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8)
    x = torch.from_numpy(resized.astype(np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(mean, dtype=torch.float32)[:, None, None]) / torch.tensor(std, dtype=torch.float32)[:, None, None]
    return x.unsqueeze(0).contiguous(), resized


# ---------------------------------------------------------------------- results
@dataclass
class Attention:
    """Last-layer attention from the prefix tokens (CLS, then registers) of one image.

    ``rows``: (heads, P, T) float32, the softmax attention weights of the last
    layer from each of the P = 1 + registers prefix tokens to all T tokens
    (each row sums to 1); ``grid``: (h, w) patch grid.
    """

    rows: np.ndarray
    num_prefix_tokens: int
    grid: tuple[int, int]

    @property
    def num_heads(self) -> int:
        return int(self.rows.shape[0])

    def _maps(self, token: int) -> np.ndarray:
        h, w = self.grid
        return self.rows[:, token, self.num_prefix_tokens:].reshape(self.num_heads, h, w)

    @property
    def cls_heads(self) -> np.ndarray:
        """CLS-to-patch attention per head, (heads, h, w)."""
        return self._maps(0)

    @property
    def cls_mean(self) -> np.ndarray:
        """CLS-to-patch attention averaged over heads, (h, w)."""
        return self.cls_heads.mean(axis=0)

    @property
    def register_heads(self) -> np.ndarray:
        """Register-to-patch attention per register and head, (registers, heads, h, w)."""
        h, w = self.grid
        if self.num_prefix_tokens <= 1:
            return np.zeros((0, self.num_heads, h, w), dtype=np.float32)
        return np.stack([self._maps(t) for t in range(1, self.num_prefix_tokens)])

    @property
    def register_mean(self) -> np.ndarray:
        """Register-to-patch attention averaged over heads, (registers, h, w)."""
        return self.register_heads.mean(axis=1)


@dataclass
class PatchTokens:
    """Final-norm tokens of one image.

    ``patches``: (h, w, D) float32 patch tokens in image layout (DINOv3 ConvNeXt: its last feature map);
    ``cls``: (D,) the class token (DINOv3 ConvNeXt: its pooled token), None for SigLIP (no class token);
    ``registers``: (R, D); ``input_image``: (H, W, 3) uint8, the resized picture
    the model saw (H = h * patch_size, W = w * patch_size); ``image_size``:
    (width, height) of the original image in pixels; ``attention``: last-layer
    attention when it was asked for.
    """

    patches: np.ndarray
    cls: np.ndarray | None
    registers: np.ndarray
    input_image: np.ndarray
    image_size: tuple[int, int]
    patch_size: int
    attention: Attention | None = None

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (rows h, columns w)."""
        return int(self.patches.shape[0]), int(self.patches.shape[1])

    @property
    def flat(self) -> np.ndarray:
        """Patch tokens as (h * w, D), row-major."""
        return self.patches.reshape(-1, self.patches.shape[-1])


# ---------------------------------------------------------------------- the forward pass
def _attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Self-attention modules of the model in forward order (via transformers' output-recording registry)."""
    target = getattr(model, "_can_record_outputs", {}) or {}
    target = target.get("attentions")
    cls = getattr(target, "target_class", target)
    if not isinstance(cls, type):
        return []
    return [m for m in model.modules() if isinstance(m, cls)]


def _split_tokens(hidden: torch.Tensor, num_prefix: int, grid: tuple[int, int]):
    h, w = grid
    tokens = hidden[0].float().cpu().numpy()
    if tokens.shape[0] != num_prefix + h * w:
        raise RuntimeError(f"the model returned {tokens.shape[0]} tokens; expected {num_prefix} prefix tokens "
                           f"+ {h} x {w} patches = {num_prefix + h * w}. Is this patch size right for the model?")
    cls = tokens[0] if num_prefix else None
    return cls, tokens[1:num_prefix] if num_prefix else tokens[:0], tokens[num_prefix:].reshape(h, w, -1)


def _forward(backbone, x: torch.Tensor, **extra):
    """The model's output and its final-norm tokens (the family's own forward arguments and final norm)."""
    out = backbone.model(pixel_values=x, **dict(getattr(backbone, "forward_kwargs", None) or {}), **extra)
    hidden = out.last_hidden_state
    norm = getattr(backbone, "final_norm", None)
    return out, (norm(hidden) if norm is not None else hidden)


def attention_refusal(backbone) -> str | None:
    """Why ``backbone`` has no class-token attention maps (SigLIP, a ConvNeXt), or None when it has them."""
    info = getattr(backbone, "info", None)
    family = getattr(info, "family_entry", None)
    if family is None or family.attention:
        return None
    return f"{backbone.model_id}: {family.no_attention}"


def patch_tokens(backbone, image: Image.Image | str | Path, size: int = DEFAULT_SIZE,
                 attention: bool = False) -> PatchTokens:
    """Run ``backbone`` on one image at its own aspect ratio and return its tokens.

    ``image``: a PIL image or a path; ``size``: longer side in pixels (a
    multiple of the patch size). With ``attention=True`` the same forward pass
    uses eager attention (the only implementation that exposes the weights) and
    records the last layer's attention from the CLS and register tokens; the
    model's previous attention implementation is restored afterwards, even on
    error. A model without class-token attention (SigLIP, DINOv3 ConvNeXt)
    refuses ``attention=True`` with a UserError that says why.
    """
    refusal = attention_refusal(backbone) if attention else None
    if refusal:
        raise UserError(refusal + "; run without attention maps")
    if not isinstance(image, Image.Image):
        image = load_rgb(image)
    model = backbone.model
    patch = int(backbone.patch_size)
    pixels, resized = prepare_image(image, size, patch, backbone.mean, backbone.std)
    grid = (pixels.shape[2] // patch, pixels.shape[3] // patch)
    num_prefix = int(backbone.num_prefix_tokens)
    x = pixels.to(backbone.device, dtype=backbone.dtype)

    attn = None
    if not attention:
        with torch.inference_mode():
            _, hidden = _forward(backbone, x)
    else:
        previous = getattr(model.config, "_attn_implementation", None) or "sdpa"
        captured: list[torch.Tensor] = []
        modules = _attention_modules(model)
        model.set_attn_implementation("eager")
        hook = None
        try:
            if modules:
                hook = modules[-1].register_forward_hook(
                    lambda _m, _i, o: captured.append(o[1] if isinstance(o, tuple) and len(o) > 1 else None))
            with torch.inference_mode():
                out, hidden = _forward(backbone, x, **({} if modules else {"output_attentions": True}))
            if modules:
                weights = captured[-1] if captured else None
            else:  # unknown architecture: fall back to transformers' own (all-layer) output
                weights = out.attentions[-1] if getattr(out, "attentions", None) else None
        finally:
            if hook is not None:
                hook.remove()
            model.set_attn_implementation(previous)
        if weights is None:
            raise UserError(f"{backbone.model_id} does not expose attention weights; run without attention maps")
        rows = weights[0, :, :num_prefix, :].float().cpu().numpy()
        attn = Attention(rows=rows, num_prefix_tokens=num_prefix, grid=grid)

    cls, registers, patches = _split_tokens(hidden, num_prefix, grid)
    return PatchTokens(patches=np.ascontiguousarray(patches, dtype=np.float32),
                       cls=None if cls is None else cls.astype(np.float32),
                       registers=registers.astype(np.float32), input_image=resized,
                       image_size=(int(image.width), int(image.height)), patch_size=patch, attention=attn)
