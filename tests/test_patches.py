"""palaeo_ssl.patches: grids at the image's own shape, foreground, PCA colours, attention, correspondences.

Feature-level logic is checked on constructed patch features (where the right
answer is known); the model path runs on the tiny random DINOv3 (shapes and
bookkeeping only: random weights see nothing).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from palaeo_ssl import patches as P
from palaeo_ssl.errors import UserError
from palaeo_ssl.testing import specimen_image


@pytest.fixture(scope="module")
def backbone(tiny_model):
    from palaeo_ssl.backbone import load_backbone

    return load_backbone(str(tiny_model), "cpu", "float32")


def object_image(path, size=(59, 218), seed=0):
    """A bright elongated object on a dark noisy background (a radiolarian-like silhouette)."""
    return specimen_image(path, size, seed)


def ellipse_mask(h, w, fy=0.35, fx=0.3):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - (h - 1) / 2) / (fy * h)) ** 2 + ((xx - (w - 1) / 2) / (fx * w)) ** 2 <= 1


def constructed_patches(mask, d=48, noise=0.6, seed=0):
    """Patch features: object patches scatter around one vector, background patches around another."""
    rng = np.random.default_rng(seed)
    obj, bg = rng.normal(0, 1, d), rng.normal(0, 1, d)
    feats = np.where(mask[..., None], obj, bg) + rng.normal(0, noise, mask.shape + (d,))
    return feats.astype(np.float32)


# ---------------------------------------------------------------------- input size and grids
@pytest.mark.parametrize("wh, size, expected", [
    ((59, 218), 448, (128, 448)),     # tall: longer side 448, shorter 59*448/218 = 121 -> 128
    ((218, 59), 448, (448, 128)),     # wide
    ((1000, 1000), 448, (448, 448)),
    ((10, 1000), 448, (16, 448)),     # at least one patch
    ((300, 200), 224, (224, 144)),    # 149.3 -> 144
])
def test_input_size_keeps_aspect_ratio_in_whole_patches(wh, size, expected):
    w, h = P.input_size(*wh, size=size, patch_size=16)
    assert (w, h) == expected
    assert w % 16 == 0 and h % 16 == 0 and max(w, h) == size


def test_input_size_rejects_size_off_the_patch_grid():
    with pytest.raises(UserError, match="try size 96") as exc:  # the Python name; the CLI says --size
        P.input_size(100, 50, size=100, patch_size=16)
    assert exc.value.param == "size" and "try --size 96" in exc.value.message_for("--size")


def test_tall_specimen_gives_tall_grid_of_final_norm_tokens(backbone, tmp_path):
    path = object_image(tmp_path / "radiolarian.png", size=(59, 218))
    tok = P.patch_tokens(backbone, path, size=448)
    assert tok.grid == (28, 8)  # rows x columns: tall, not square
    assert tok.patches.shape == (28, 8, 32)
    assert tok.input_image.shape == (448, 128, 3)
    assert tok.image_size == (59, 218)
    assert tok.cls.shape == (32,) and tok.registers.shape == (2, 32)
    # bookkeeping against the model's own output: [CLS, 2 registers, 224 patches], after the final norm
    pixels, _ = P.prepare_image(Image.open(path).convert("RGB"), 448, 16, backbone.mean, backbone.std)
    with torch.inference_mode():
        out = backbone.model(pixel_values=pixels, output_hidden_states=True)
        normed = backbone.model.norm(out.hidden_states[-1])[0].numpy()
    ref = out.last_hidden_state[0].numpy()
    assert ref.shape[0] == 1 + 2 + 28 * 8
    np.testing.assert_allclose(tok.cls, ref[0], atol=1e-5)
    np.testing.assert_allclose(tok.registers, ref[1:3], atol=1e-5)
    np.testing.assert_allclose(tok.patches.reshape(-1, 32), ref[3:], atol=1e-5)
    np.testing.assert_allclose(tok.patches.reshape(-1, 32), normed[3:], atol=1e-5)


def test_prepare_image_normalises_with_the_models_statistics(backbone):
    img = Image.new("RGB", (32, 48), (255, 0, 128))
    x, resized = P.prepare_image(img, 64, 16, backbone.mean, backbone.std)
    assert x.shape == (1, 3, 64, 48) and resized.shape == (64, 48, 3)
    expected = (np.array([255, 0, 128]) / 255.0 - np.array(backbone.mean)) / np.array(backbone.std)
    np.testing.assert_allclose(x[0, :, 10, 10].numpy(), expected, atol=1e-2)


# ---------------------------------------------------------------------- attention
def test_attention_rows_sum_to_one_and_equal_transformers_last_layer(backbone, tmp_path):
    path = object_image(tmp_path / "a.png", size=(96, 64))
    tok = P.patch_tokens(backbone, path, size=64, attention=True)
    att = tok.attention
    h, w = tok.grid
    assert (h, w) == (3, 4)
    assert att.rows.shape == (4, 3, 3 + h * w)  # heads, CLS + 2 registers, all tokens
    np.testing.assert_allclose(att.rows.sum(axis=-1), 1.0, atol=1e-5)
    assert att.cls_heads.shape == (4, h, w) and att.cls_mean.shape == (h, w)
    assert att.register_heads.shape == (2, 4, h, w) and att.register_mean.shape == (2, h, w)
    np.testing.assert_allclose(att.cls_mean, att.rows[:, 0, 3:].mean(0).reshape(h, w), atol=1e-7)
    # eager attention was for this call only
    assert backbone.model.config._attn_implementation == "sdpa"
    # the recorded weights are transformers' own last-layer attention
    pixels, _ = P.prepare_image(Image.open(path).convert("RGB"), 64, 16, backbone.mean, backbone.std)
    backbone.model.set_attn_implementation("eager")
    try:
        with torch.inference_mode():
            ref = backbone.model(pixel_values=pixels, output_attentions=True).attentions[-1][0, :, :3].numpy()
    finally:
        backbone.model.set_attn_implementation("sdpa")
    np.testing.assert_allclose(att.rows, ref, atol=1e-6)
    # and the tokens of that pass match the ordinary (sdpa) pass
    plain = P.patch_tokens(backbone, path, size=64)
    np.testing.assert_allclose(tok.patches, plain.patches, atol=1e-4)


def test_attention_implementation_restored_after_an_error(backbone, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("forward failed")

    monkeypatch.setattr(backbone.model, "forward", boom)
    with pytest.raises(RuntimeError, match="forward failed"):
        P.patch_tokens(backbone, Image.new("RGB", (32, 32)), size=32, attention=True)
    assert backbone.model.config._attn_implementation == "sdpa"


# ---------------------------------------------------------------------- foreground
def test_otsu_threshold_separates_two_modes():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.2, 0.03, 300), rng.normal(0.8, 0.03, 100)])
    t = P.otsu_threshold(v)
    assert 0.3 < t < 0.7
    assert (v > t).sum() == 100


@pytest.mark.parametrize("negate", [False, True])
@pytest.mark.parametrize("fy, fx", [(0.3, 0.25), (0.45, 0.45)])  # small object; object covering ~60% of patches
def test_foreground_recovers_a_known_object(negate, fy, fx):
    mask = ellipse_mask(24, 32, fy, fx)
    feats = constructed_patches(mask)
    if negate:  # the sign of PC1 is arbitrary: the automatic orientation must not depend on it
        feats = -feats
    fg = P.foreground(feats)
    assert fg.mask.shape == (24, 32) and fg.score.shape == (24, 32)
    assert fg.method == "otsu"
    assert 0.0 <= fg.score.min() and fg.score.max() <= 1.0
    assert P.iou(fg.mask, mask) > 0.7
    assert fg.score[mask].mean() > fg.score[~mask].mean()


def test_foreground_on_a_thin_grid_takes_the_smaller_side_as_object():
    mask = np.zeros((20, 2), bool)
    mask[8:12] = True  # grid too thin to have an interior
    fg = P.foreground(constructed_patches(mask, noise=0.2))
    assert P.iou(fg.mask, mask) > 0.7


def test_foreground_fixed_threshold_and_forced_orientation():
    mask = ellipse_mask(16, 16)
    feats = constructed_patches(mask)
    fixed = P.foreground(feats, threshold=0.5)
    assert fixed.method == "fixed" and fixed.threshold == 0.5
    np.testing.assert_array_equal(fixed.mask, fixed.score > 0.5)
    auto = P.foreground(feats)
    flipped = P.foreground(feats, orientation="flip" if not auto.flipped else "keep")
    np.testing.assert_allclose(flipped.score, 1 - auto.score, atol=1e-6)
    with pytest.raises(UserError, match="threshold"):
        P.foreground(feats, threshold=1.5)
    with pytest.raises(UserError, match="orientation"):
        P.foreground(feats, orientation="sideways")


def test_foreground_of_identical_patches_is_everything():
    fg = P.foreground(np.ones((4, 5, 8), np.float32))
    assert fg.mask.all()


# ---------------------------------------------------------------------- PCA colours
def test_pca_colours_span_the_full_range_and_blacken_the_background():
    mask = ellipse_mask(20, 28)
    rng = np.random.default_rng(1)
    feats = rng.normal(0, 1, (20, 28, 64)).astype(np.float32)
    rgb = P.pca_colours(feats, mask)
    assert rgb.shape == (20, 28, 3) and rgb.dtype == np.uint8
    fgc = rgb[mask]
    for ch in range(3):
        assert int(fgc[:, ch].max()) - int(fgc[:, ch].min()) >= 0.9 * 255
    assert (rgb[~mask] == 0).all()


def test_pca_colour_stretch_is_robust_to_one_extreme_patch():
    rng = np.random.default_rng(2)
    feats = rng.normal(0, 1, (16, 16, 32)).astype(np.float32)
    feats[0, 0] = 500.0  # one wild patch must not squeeze every other colour into a narrow band
    rgb = P.pca_colours(feats)
    rest = rgb.reshape(-1, 3)[1:]
    for ch in range(3):
        assert int(rest[:, ch].max()) - int(rest[:, ch].min()) >= 0.9 * 255


def test_shared_basis_gives_the_same_colour_to_the_same_feature():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, (6, 8, 16)).astype(np.float32)
    b = rng.normal(0, 1, (10, 4, 16)).astype(np.float32)
    b[2, 1] = a[3, 5]
    basis = P.fit_colour_basis([a.reshape(-1, 16), b.reshape(-1, 16)])
    ca, cb = P.pca_colours(a, basis=basis), P.pca_colours(b, basis=basis)
    np.testing.assert_array_equal(ca[3, 5], cb[2, 1])
    assert basis.n_patches == 48 + 40


def test_upsample_and_compose_keep_patches_crisp_and_aligned():
    colours = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10 + 10
    mask = np.array([[True, False, True], [True, True, False]])
    image = np.full((40, 60, 3), 200, np.uint8)
    black = P.compose(colours, mask, image, "black")
    assert black.shape == (40, 60, 3)
    np.testing.assert_array_equal(black[5, 5], colours[0, 0])       # inside patch (0, 0)
    np.testing.assert_array_equal(black[35, 25], colours[1, 1])     # inside patch (1, 1)
    assert (black[0:20, 20:40] == 0).all()                          # background patch (0, 1)
    grey = P.compose(colours, mask, image, "grey")
    bg = grey[0:20, 20:40]
    assert (bg[..., 0] == bg[..., 1]).all() and (bg > 0).all()     # greyed photograph, not black
    with pytest.raises(UserError):
        P.compose(colours, mask, image, "purple")


# ---------------------------------------------------------------------- correspondence
def test_patch_at_maps_pixels_to_patches_and_rejects_points_outside():
    assert P.patch_at((0, 0), (59, 218), (28, 8)) == (0, 0)
    assert P.patch_at((58.9, 217.9), (59, 218), (28, 8)) == (27, 7)
    assert P.patch_at((30, 109), (59, 218), (28, 8)) == (14, 4)
    x, y = P.patch_centre((14, 4), (59, 218), (28, 8))
    assert P.patch_at((x, y), (59, 218), (28, 8)) == (14, 4)
    with pytest.raises(UserError, match="outside the image"):
        P.patch_at((59, 10), (59, 218), (28, 8))


def test_mask_centre_is_a_foreground_patch_even_for_a_ring():
    yy, xx = np.mgrid[0:15, 0:15]
    r = np.hypot(yy - 7, xx - 7)
    ring = (r > 4) & (r < 6.5)
    rc = P.mask_centre(ring)
    assert ring[rc]


def test_correspondence_finds_the_planted_match():
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (5, 7, 24)).astype(np.float32)
    b = rng.normal(0, 1, (9, 3, 24)).astype(np.float32)
    b[6, 2] = 3.0 * a[2, 4]  # same direction: cosine 1
    corr = P.correspondence(a, (2, 4), (70, 50), other=b, other_size=(30, 90))
    assert corr.within.shape == (5, 7) and corr.across.shape == (9, 3)
    assert corr.within[2, 4] == pytest.approx(1.0)
    assert corr.best == (6, 2) and corr.best_similarity == pytest.approx(1.0)
    assert corr.best_xy == pytest.approx((25.0, 65.0))
    assert corr.query_xy == pytest.approx((45.0, 25.0))
    assert (corr.within >= -1).all() and (corr.within <= 1).all()


# ---------------------------------------------------------------------- end to end with the tiny model
def test_view_specimen_end_to_end_shapes_and_determinism(backbone, tmp_path):
    path = object_image(tmp_path / "specimen.png", size=(150, 90))
    v1 = P.view_specimen(backbone, path, size=224)
    v2 = P.view_specimen(backbone, path, size=224)
    assert v1.grid == (8, 14) and v1.image.shape == (90, 150, 3)
    assert v1.colours.shape == (8, 14, 3) and v1.foreground.mask.shape == (8, 14)
    assert v1.pca_picture().shape == (90, 150, 3) and v1.mask_picture().shape == (90, 150)
    assert set(np.unique(v1.mask_picture())) <= {0, 255}
    np.testing.assert_array_equal(v1.tokens.patches, v2.tokens.patches)
    np.testing.assert_array_equal(v1.tokens.attention.rows, v2.tokens.attention.rows)
    np.testing.assert_array_equal(v1.colours, v2.colours)
    np.testing.assert_array_equal(v1.foreground.mask, v2.foreground.mask)
    corr = P.match(v1, None, v2)
    assert corr.best_similarity == pytest.approx(1.0, abs=1e-5)  # an image matched against itself
    assert corr.across[corr.query] == pytest.approx(corr.best_similarity, abs=1e-5)  # (flat interiors tie)
    np.testing.assert_allclose(corr.across, corr.within, atol=1e-6)
    basis, colours = P.shared_basis([v1, v2])
    np.testing.assert_array_equal(colours[0], colours[1])


def test_bare_pictures_are_capped_but_keep_the_aspect_ratio(backbone):
    img = Image.new("RGB", (400, 100), (30, 30, 30))
    ImageDraw.Draw(img).rectangle([100, 30, 300, 70], fill=(250, 250, 250))
    v = P.view_specimen(backbone, img, size=64, attention=False)
    assert v.name == "image" and v.tokens.attention is None
    assert v.bare_size(200) == (200, 50)
    assert v.pca_picture(max_side=200).shape == (50, 200, 3)
    assert v.mask_picture(200).shape == (50, 200)


def test_a_grid_too_small_to_analyse_is_a_user_error(backbone):
    with pytest.raises(UserError, match="use a larger size") as exc:
        P.view_specimen(backbone, Image.new("RGB", (100, 40)), size=16)
    assert exc.value.param == "size"


def test_unreadable_image_is_a_user_error(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(UserError, match="could not read image"):
        P.load_rgb(bad)
    with pytest.raises(UserError, match="does not exist"):
        P.load_rgb(tmp_path / "missing.png")




def test_specimen_visualisation_from_the_library(backbone, tmp_path):
    """The visualise stage without the command (whose tests load the model and write every figure: slow):
    computed with a shared basis and a correspondence, every figure drawn, those of a view without
    attention written (each PNG + PDF costs about half a second)."""
    import json

    import matplotlib.pyplot as plt

    from palaeo_ssl.patches.visualise import SpecimenVisualisation, visualise_specimen, write_visualisation
    from palaeo_ssl.plots import patches as pp

    tall = object_image(tmp_path / "tall.png", size=(40, 100))
    other = object_image(tmp_path / "other.png", size=(64, 64), seed=1)
    res = visualise_specimen(tall, backbone=backbone, size=96, basis=[other], compare=other, point=(20, 50))
    summary = res.summary()
    assert summary["grid"] == list(res.view.grid) and summary["image_size"] == [40, 100]
    assert summary["shared_basis"] == ["tall.png", "other.png"] and len(res.basis_colours) == 2
    assert summary["correspondence"]["point"] == [20.0, 50.0]
    assert -1 <= summary["correspondence"]["best_similarity"] <= 1
    for fig, min_axes in ((pp.plot_attention_cls(res.view), 1),
                          (pp.plot_attention_heads(res.view), res.view.tokens.attention.num_heads),
                          (pp.plot_shared_basis(res.basis_views, res.basis_colours), 2),
                          (pp.plot_correspondence(res.view, res.correspondence, res.other), 2)):
        fig.canvas.draw()
        assert len([ax for ax in fig.axes if ax.get_visible()]) >= min_axes
        plt.close(fig)

    bare = SpecimenVisualisation(image=tall, view=P.view_specimen(backbone, tall, size=96, attention=False,
                                                                  name="tall.png"), size=96, model=res.model)
    files = write_visualisation(bare, tmp_path / "out")
    assert {p.name for p in files} == {f"{n}.{e}" for n in ("pca_rgb", "foreground", "overlay")
                                       for e in ("png", "pdf")} | {"visualise.json"}
    for png in (p for p in files if p.suffix == ".png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(tmp_path / "out" / "pca_rgb.png") as im, Image.open(tmp_path / "out" / "foreground.png") as m:
        assert im.size == m.size == (40, 100)  # the photograph's own pixel size
    info = json.loads((tmp_path / "out" / "visualise.json").read_text())
    assert info["grid"] == list(bare.view.grid) and set(info["files"]) == {"pca_rgb", "foreground", "overlay"}
