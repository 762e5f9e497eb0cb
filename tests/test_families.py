"""Backbone families beyond DINOv3 ViT: DINOv3 ConvNeXt, DINOv2 (with and without registers), the image towers of
SigLIP 2 and CLIP. Each runs on a tiny random checkpoint of its own config class, saved by transformers itself with
the processor its published checkpoints use, through the real ``from_pretrained`` path (no download)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from palaeo_ssl import extract_embeddings
from palaeo_ssl.backbone import (ALIASES, FAMILIES, describe_backbone, describe_model, load_backbone, pool_tokens,
                                 resolve_model_id)
from palaeo_ssl.cli import main
from palaeo_ssl.errors import ModelLoadError
from palaeo_ssl.images import load_image
from palaeo_ssl.loading import decode_image, normalise
from palaeo_ssl.models import ALIAS_FAMILIES
from palaeo_ssl.params import ParameterError
from palaeo_ssl.testing import (TINY_BUILDERS, make_class_folder_dataset, make_tiny_model, make_tiny_unsupported,
                                specimen_image, write_synthetic_image)

REPO = Path(__file__).resolve().parents[1]
FAMILY_NAMES = list(FAMILIES)
#: what each tiny checkpoint must be read as: poolings, prefix tokens, pixels per token, input side, resize
EXPECTED = {
    "dinov3-vit": (("cls", "mean", "cls+mean"), 3, 16, 224, "bilinear", "DINOv3 License"),
    "dinov3-convnext": (("gap", "mean", "gap+mean"), 1, 32, 224, "bilinear", "DINOv3 License"),
    "dinov2": (("cls", "mean", "cls+mean"), 1, 14, 224, "bicubic, shorter side 256, centre crop 224", "Apache-2.0"),
    "dinov2-reg": (("cls", "mean", "cls+mean"), 5, 14, 224, "bicubic, shorter side 256, centre crop 224",
                   "Apache-2.0"),
    "siglip": (("head", "mean", "head+mean"), 0, 16, 224, "bicubic", "Apache-2.0"),
    "clip": (("cls", "mean", "cls+mean"), 1, 16, 224, "bicubic, shorter side 224, centre crop 224", "MIT"),
}


@pytest.fixture(scope="session")
def family_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny random checkpoint of every family, each in its own folder."""
    root = tmp_path_factory.mktemp("families")
    return {name: make_tiny_model(root / name, name) for name in TINY_BUILDERS}


@pytest.fixture(scope="session")
def family_backbones(family_models):
    return {name: load_backbone(str(path), "cpu", "float32") for name, path in family_models.items()}


def _reference_tokens(family: str, folder: Path, x: torch.Tensor):
    """(final-norm tokens, the model's own global feature) computed with transformers alone: the whole published
    architecture (for SigLIP and CLIP the full vision-language model, whose image tower is then called)."""
    import transformers as T

    with torch.inference_mode():
        if family == "clip":
            tower = T.CLIPModel.from_pretrained(folder).vision_model.eval()
            out = tower(pixel_values=x)
            return tower.post_layernorm(out.last_hidden_state), out.pooler_output
        if family == "siglip":
            out = T.SiglipModel.from_pretrained(folder).vision_model.eval()(pixel_values=x)
            return out.last_hidden_state, out.pooler_output
        out = T.AutoModel.from_pretrained(folder).eval()(pixel_values=x)
        return out.last_hidden_state, out.pooler_output


# ---------------------------------------------------------------------- the family table
def test_every_family_has_a_tiny_builder_aliases_a_licence_and_a_readme_row():
    readme = (REPO / "README.md").read_text()
    assert set(TINY_BUILDERS) == set(FAMILIES) == set(ALIAS_FAMILIES)
    for name, fam in FAMILIES.items():
        assert fam.aliases and fam.licence and fam.licence_note
        assert f"| {fam.title} |" in readme, name  # the README's table of families
        for alias in fam.aliases:
            assert f"`{alias}`" in readme, alias
    assert len(ALIASES) == sum(len(v) for v in ALIAS_FAMILIES.values())  # no alias in two families


def test_aliases_map_to_the_published_hub_ids():
    assert resolve_model_id("dinov3-convnext-tiny") == "facebook/dinov3-convnext-tiny-pretrain-lvd1689m"
    assert resolve_model_id("dinov2-vits14") == "facebook/dinov2-small"
    assert resolve_model_id("dinov2-vitl14-reg") == "facebook/dinov2-with-registers-large"
    assert resolve_model_id("siglip2-base-patch16-224") == "google/siglip2-base-patch16-224"
    assert resolve_model_id("CLIP-ViT-Base-Patch16") == "openai/clip-vit-base-patch16"


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_each_family_is_read_from_its_own_config_and_processor(family, family_models):
    poolings, prefix, patch, size, resize, licence = EXPECTED[family]
    info = describe_model(str(family_models[family]))
    assert info.family == family and info.poolings == poolings and info.licence == licence
    assert info.num_prefix_tokens == prefix and info.patch_size == patch and info.default_size == size
    assert info.hidden_size == 32 and info.random_weights
    from palaeo_ssl.backbone import make_preprocessing

    assert make_preprocessing(info).resize == resize


def test_describe_backbone_gives_what_a_comparison_needs(family_backbones, family_models):
    import transformers as T

    for family, bb in family_backbones.items():
        d = describe_backbone(bb)
        assert d["family"] == family and d["licence"] == EXPECTED[family][5]
        assert d["params"] == sum(p.numel() for p in bb.model.parameters()) > 0
        assert d["embedding_dim"] == 32 and d["image_size"] == 224 and d["pooling"] == EXPECTED[family][0][0]
        assert describe_backbone(bb, EXPECTED[family][0][-1])["embedding_dim"] == 64
        grid = (224 // d["patch_size"]) ** 2
        assert d["tokens_per_image"] == EXPECTED[family][1] + grid
        # the weights-free description (an alias, id or folder) agrees, without params
        light = describe_backbone(str(family_models[family]))
        assert "params" not in light and {k: light[k] for k in ("family", "embedding_dim", "patch_size")} == \
            {k: d[k] for k in ("family", "embedding_dim", "patch_size")}
    # SigLIP and CLIP: only the image tower is loaded (the text tower of the checkpoint never is)
    full = T.CLIPModel.from_pretrained(family_models["clip"])
    assert describe_backbone(family_backbones["clip"])["params"] == sum(
        p.numel() for p in full.vision_model.parameters())


# ---------------------------------------------------------------------- features and poolings
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_poolings_equal_a_plain_transformers_computation(family, family_backbones, family_models):
    bb = family_backbones[family]
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    tokens, glob = _reference_tokens(family, family_models[family], x)
    prefix = EXPECTED[family][1]
    assert tokens.shape[1] == prefix + (224 // bb.patch_size) ** 2
    mean = tokens[:, prefix:].mean(dim=1)
    want = {EXPECTED[family][0][0]: glob, "mean": mean, EXPECTED[family][0][2]: torch.cat([glob, mean], 1)}
    for pooling, ref in want.items():
        np.testing.assert_allclose(bb.embed(x, pooling).numpy(), ref.numpy(), atol=1e-5, err_msg=pooling)
    np.testing.assert_allclose(bb.embed(x, "auto").numpy(), glob.numpy(), atol=1e-5)
    np.testing.assert_allclose(bb.tokens(x).numpy(), tokens.numpy(), atol=1e-5)


def test_siglip_mean_keeps_every_patch_and_its_head_is_not_called_cls(family_backbones):
    bb = family_backbones["siglip"]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    tokens = bb.tokens(x)
    assert tokens.shape[1] == 196  # no class token: every token is a patch
    np.testing.assert_allclose(bb.embed(x, "mean").numpy(), tokens.mean(dim=1).numpy(), atol=1e-6)
    assert not np.allclose(bb.embed(x, "mean").numpy(), tokens[:, 1:].mean(dim=1).numpy(), atol=1e-4)
    with pytest.raises(ParameterError, match=r"has no class token.*auto \(here head\).*head, mean, head\+mean"):
        bb.embed(x, "cls")


@pytest.mark.parametrize("family, pooling, why", [
    ("siglip", "cls", "has no class token"),
    ("siglip", "cls+mean", "has no class token"),
    ("dinov3-convnext", "cls", r"has no class token \(its own global feature is gap\)"),
    ("dinov2", "head", "head is not an output of DINOv2"),
    ("clip", "gap", "gap is not an output of CLIP"),
])
def test_nonsense_poolings_are_refused_naming_the_valid_ones(family, pooling, why, family_models, tmp_path):
    data = make_class_folder_dataset(tmp_path / "data", n_classes=2, per_class=2)
    with pytest.raises(ParameterError, match=why) as err:
        extract_embeddings(data, model=str(family_models[family]), out=tmp_path / "out", pooling=pooling,
                           progress=False, workers=0)
    for valid in EXPECTED[family][0]:
        assert valid in str(err.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/features.npy"))


def test_a_nonsense_pooling_on_the_command_line_exits_2_naming_the_flag(family_models, tmp_path, capsys):
    data = make_class_folder_dataset(tmp_path / "data", n_classes=2, per_class=2)
    code = main(["extract", str(data), "--model", str(family_models["siglip"]), "--out", str(tmp_path / "out"),
                 "--pooling", "cls", "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--pooling 'cls'" in err and "no class token" in err and "Traceback" not in err


def test_pool_tokens_refuses_a_global_feature_the_model_lacks():
    tokens = torch.randn(2, 5, 4)
    with pytest.raises(Exception, match="no head output"):
        pool_tokens(tokens, None, "head", 0)
    np.testing.assert_array_equal(pool_tokens(tokens, None, "mean", 0).numpy(), tokens.mean(1).numpy())


# ---------------------------------------------------------------------- preprocessing: parity with each processor
def _parity(folder: Path, bb, path: Path) -> tuple[float, float]:
    from transformers import AutoImageProcessor

    prep = bb.preprocessing("processor")
    ours = normalise(decode_image(path, prep).unsqueeze(0), prep)[0]
    ref = AutoImageProcessor.from_pretrained(folder)(images=load_image(path), return_tensors="pt")["pixel_values"][0]
    assert ours.shape == ref.shape == (3, prep.size, prep.size)
    diff = (ours - ref).abs()
    return float(diff.max()), float(diff.mean())


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_uint8_pipeline_matches_each_familys_image_processor(family, family_backbones, family_models, tmp_path):
    """After normalisation, with the family's own size, resampling filter, centre crop, mean and std: at most one
    grey level (1 / (255 std)) from DINOv3's processor (which resizes floats, ours uint8), and equal to float
    rounding for the processors that resize uint8 as we do (DINOv2, SigLIP, CLIP); on PNGs and a JPEG."""
    bb = family_backbones[family]
    one_level = 1 / (255 * min(bb.std)) + 1e-4 if family.startswith("dinov3") else 1e-5
    from PIL import Image

    tall = tmp_path / "tall.jpg"
    Image.open(write_synthetic_image(tmp_path / "t.png", size=(90, 300), seed=3)).save(tall, quality=90)
    for path in (write_synthetic_image(tmp_path / "wide.png", size=(333, 200), seed=1), tall,
                 write_synthetic_image(tmp_path / "small.png", size=(60, 40), seed=2)):
        worst, mean = _parity(family_models[family], bb, path)
        assert worst <= one_level, (family, path.name, worst)
        assert mean < 0.006, (family, path.name, mean)


@pytest.mark.slow
def test_parity_on_the_fusulinids(family_backbones, family_models, fusulinids):
    """The figures the README states: max and mean |difference| after normalisation, per family, on 12 real JPEGs."""
    files = sorted(p for p in fusulinids.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif"))[:12]
    for family, bb in family_backbones.items():
        stats = [_parity(family_models[family], bb, f) for f in files]
        worst, mean = max(s[0] for s in stats), float(np.mean([s[1] for s in stats]))
        limit = 1 / (255 * min(bb.std)) + 1e-4 if family.startswith("dinov3") else 1e-5
        assert worst <= limit and mean < 0.006, (family, worst, mean)


def test_dinov2_processor_256_then_224_works_with_default_options(family_models, tmp_path):
    """The processor of facebook/dinov2-*: shorter side 256 (bicubic), centre crop 224. Extraction with no
    --image-size feeds 224 (16 x 16 patches of 14), as the processor does, instead of refusing 256."""
    folder = family_models["dinov2"]
    info = describe_model(str(folder))
    assert info.default_size == 224 and info.crop_from == 256 and info.interpolation == "bicubic"
    data = make_class_folder_dataset(tmp_path / "data", n_classes=2, per_class=3, size=(120, 80))
    emb = extract_embeddings(data, model=str(folder), out=tmp_path / "out", progress=False, workers=0)
    assert emb.features.shape == (6, 32) and emb.meta["image_size"] == 224 and emb.meta["pooling"] == "cls"
    assert emb.meta["preprocess"]["resize_short"] == 256 and emb.meta["preprocess"]["interpolation"] == "bicubic"
    bb = load_backbone(str(folder), "cpu", "float32")
    assert bb.preprocessing("processor", 448).resize_short == 512  # other sizes keep the processor's ratio
    assert bb.preprocessing("pad").resize_short is None  # pad keeps the whole image
    with pytest.raises(ParameterError, match="not a multiple of the model's patch size \\(14\\); try 252"):
        bb.preprocessing("processor", 256)


# ---------------------------------------------------------------------- the store key, meta and the message
def test_the_store_key_tells_families_apart(family_models, tmp_path):
    """The same folder holding a DINOv2 and then a DINOv2-with-registers checkpoint (same width, mean, std, size):
    the second gets a store of its own instead of the first one's features."""
    import shutil

    data = make_class_folder_dataset(tmp_path / "data", n_classes=2, per_class=2)
    folder = tmp_path / "model"
    shutil.copytree(family_models["dinov2"], folder)
    a = extract_embeddings(data, model=str(folder), out=tmp_path / "out", progress=False, workers=0)
    shutil.rmtree(folder)
    shutil.copytree(family_models["dinov2-reg"], folder)
    b = extract_embeddings(data, model=str(folder), out=tmp_path / "out", progress=False, workers=0)
    assert a.meta["store_path"] != b.meta["store_path"] and b.meta["extraction"]["computed"] == 4
    for emb, family in ((a, "dinov2"), (b, "dinov2-reg")):
        meta = json.loads((Path(emb.meta["store_path"]) / "meta.json").read_text())
        assert meta["family"] == family and meta["licence"] == "Apache-2.0"
        assert meta["settings"]["family"] == family
        assert meta["settings"]["resize"] == "bicubic, shorter side 256, centre crop 224"


def test_an_unsupported_architecture_gets_one_message_naming_the_families(tmp_path, capsys):
    folder = make_tiny_unsupported(tmp_path / "vit")
    with pytest.raises(ModelLoadError, match="does not run") as err:
        describe_model(str(folder))
    assert err.value.kind == "unsupported"
    for fam in FAMILIES.values():
        assert fam.title in str(err.value)
    data = make_class_folder_dataset(tmp_path / "data", n_classes=2, per_class=2)
    capsys.readouterr()
    assert main(["extract", str(data), "--model", str(folder), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model_type 'vit'" in err and "DINOv2 with registers" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_a_siglip2_naflex_checkpoint_is_refused_pointing_to_fixed_resolution(tmp_path):
    from transformers import Siglip2Config

    Siglip2Config(vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=4)).save_pretrained(tmp_path / "naflex")
    with pytest.raises(ModelLoadError, match="NaFlex.*siglip2-base-patch16-224"):
        describe_model(str(tmp_path / "naflex"))


# ---------------------------------------------------------------------- patch tokens and attention
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_patch_tokens_at_the_images_own_aspect_ratio(family, family_backbones, tmp_path):
    from palaeo_ssl.patches import attention_refusal, patch_tokens, view_specimen
    from palaeo_ssl.errors import UserError

    bb = family_backbones[family]
    path = specimen_image(tmp_path / "s.png", size=(120, 300))
    p = bb.patch_size
    tok = patch_tokens(bb, path, size=8 * p)
    h, w = tok.grid
    assert (h, w) == (8, 3) and tok.patches.shape == (8, 3, 32)  # 120 x 300 px: 3.2 -> 3 columns
    assert tok.registers.shape == (max(0, EXPECTED[family][1] - 1), 32)
    assert (tok.cls is None) == (family == "siglip")
    if FAMILIES[family].attention:
        att = patch_tokens(bb, path, size=8 * p, attention=True).attention
        assert att.rows.shape[1] == EXPECTED[family][1] and np.allclose(att.rows.sum(-1), 1, atol=1e-5)
        assert attention_refusal(bb) is None
    else:
        with pytest.raises(UserError, match="no (class-token )?attention|convolutional network"):
            patch_tokens(bb, path, size=8 * p, attention=True)
        view = view_specimen(bb, path, size=8 * p)  # attention only where the model has it
        assert view.tokens.attention is None and view.colours.shape == (h, w, 3)


# ---------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_extract_probe_and_visualise_each_family(family, family_models, tmp_path, capsys):
    """The command line on a tiny checkpoint of each family: extract (the real from_pretrained path), the probes on
    the result, visualise (attention figures only where a class token exists)."""
    import pandas as pd

    data = make_class_folder_dataset(tmp_path / "data", n_classes=3, per_class=6, size=(90, 60))
    model, out = str(family_models[family]), tmp_path / "emb"
    assert main(["extract", str(data), "--model", model, "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    store = next(out.glob("*/meta.json")).parent
    meta = json.loads((store / "meta.json").read_text())
    assert meta["family"] == family and meta["pooling"] == EXPECTED[family][0][0] and meta["random_weights"]
    assert np.load(store / "features.npy").shape == (18, 32)
    assert main(["probe", str(out), "--out", str(tmp_path / "probes"), "--protocol", "paper", "--repeats", "1",
                 "--episodes", "2", "--no-progress"]) == 0
    cv = pd.read_csv(tmp_path / "probes" / "classification_cv_results.csv")
    assert len(cv) > 0 and cv["mean_top1_accuracy"].between(0, 1).all()
    capsys.readouterr()
    image = specimen_image(tmp_path / "s.png", size=(120, 300))
    assert main(["visualise", str(image), "--model", model, "--out", str(tmp_path / "vis"), "--device", "cpu",
                 "--size", str(8 * FAMILIES[family].stride if FAMILIES[family].stride else 224)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "vis" / "visualise.json").read_text())
    assert record["family"] == family and record["licence"] == EXPECTED[family][5]
    files = set(record["files"])
    assert {"pca_rgb", "foreground", "overlay"} <= files
    if FAMILIES[family].attention:
        assert {"attention_cls", "attention_heads"} <= files and record["attention"] is None
    else:
        assert not files & {"attention_cls", "attention_heads"}
        assert record["attention"] and "attention maps: none" in printed
    for stem in files:
        assert (tmp_path / "vis" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_tiny_model_command_writes_each_family(tmp_path):
    import subprocess
    import sys

    for family in ("siglip", "dinov3-convnext"):
        r = subprocess.run([sys.executable, "-m", "palaeo_ssl.testing", "tiny-model", str(tmp_path / family),
                            "--family", family], capture_output=True, text=True, check=True)
        assert r.stdout.strip() == str(tmp_path / family)
        assert describe_model(str(tmp_path / family)).family == family


def test_the_readme_table_names_each_familys_poolings_and_licence():
    from palaeo_ssl.families import POOLING_MEANINGS

    readme = (REPO / "README.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| ")}
    for fam in FAMILIES.values():
        row = rows[fam.title]
        poolings = [p for p in fam.poolings()]
        assert all(p in POOLING_MEANINGS for p in poolings)
        assert ", ".join(f"`{p}`" for p in poolings) in row, fam.name
        assert fam.licence.split(" ")[0] in row, fam.name


def test_a_runs_readme_names_the_licence_of_its_model():
    from palaeo_ssl.pipeline import _licence_line

    assert _licence_line({"family": "dinov2", "licence": "Apache-2.0"}) == \
        "The model's weights are under the Apache-2.0 licence (backbone family dinov2)."
    assert _licence_line({"family": "dinov3-convnext", "licence": "DINOv3 License"}).startswith("Built with DINOv3")
    assert "when a DINOv3 model was used" in _licence_line({})  # a store made before families were recorded
