"""The seeded generator of the synthetic example dataset, and the committed data/example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from palaeo_ssl.synthetic import MORPHOTYPES, _main, make_example_dataset, render_specimen

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "example"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = make_example_dataset(tmp_path / "a", n_per_class=3, seed=7, size=64)
    b = make_example_dataset(tmp_path / "b", n_per_class=3, seed=7, size=64)
    c = make_example_dataset(tmp_path / "c", n_per_class=3, seed=8, size=64)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb] == [p.relative_to(c) for p in fc]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))
    assert all(x.read_bytes() != z.read_bytes() for x, z in zip(fa, fc))


def test_image_i_does_not_depend_on_n_per_class(tmp_path):
    small = make_example_dataset(tmp_path / "s", n_per_class=2, seed=3, size=64, morphotypes=["diatom", "ostracod"])
    large = make_example_dataset(tmp_path / "l", n_per_class=4, seed=3, size=64, morphotypes=["diatom", "ostracod"])
    for p in _files(small):
        assert p.read_bytes() == (large / p.relative_to(small)).read_bytes()
    assert len(_files(large)) == 8


def test_class_folders_counts_and_decodable(tmp_path):
    root = make_example_dataset(tmp_path / "ds", n_per_class=4, seed=0, size=96)
    assert root == tmp_path / "ds"
    assert sorted(p.name for p in root.iterdir()) == sorted(MORPHOTYPES)
    assert 4 <= len(MORPHOTYPES) <= 6
    for name in MORPHOTYPES:
        files = sorted((root / name).glob("*.jpg"))
        assert [f.name for f in files] == [f"{name}_{i:03d}.jpg" for i in range(4)]
        for f in files:
            with Image.open(f) as im:
                assert im.format == "JPEG"
                im.load()
                assert im.size == (96, 96) and im.mode == "RGB"
                arr = np.asarray(im)
            assert arr.std() > 5  # something is drawn, not a flat image


def test_specimens_vary_within_a_class_and_differ_between_classes():
    imgs = {
        name: [np.asarray(render_specimen(name, np.random.default_rng([0, k, i]), size=64), dtype=np.float32) for i in range(3)]
        for k, name in enumerate(MORPHOTYPES)
    }
    for name, arrs in imgs.items():
        assert np.abs(arrs[0] - arrs[1]).mean() > 3, name
    # the foreground (distance from the image's median colour) is laid out differently per class
    def fg(a):
        return np.abs(a - np.median(a.reshape(-1, 3), axis=0)).sum(-1)
    assert np.abs(fg(imgs["diatom"][0]) - fg(imgs["fusulinid"][0])).mean() > 3


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="unknown morphotypes"):
        make_example_dataset(tmp_path, morphotypes=["trilobite"])
    with pytest.raises(ValueError, match="n_per_class"):
        make_example_dataset(tmp_path, n_per_class=0)
    with pytest.raises(ValueError, match="unknown morphotype"):
        render_specimen("trilobite", np.random.default_rng(0))


def test_available_from_testing_module():
    from palaeo_ssl import testing

    assert testing.make_example_dataset is make_example_dataset


def test_module_entry_point(tmp_path, capsys):
    assert _main([str(tmp_path / "x"), "--n-per-class", "1", "--size", "48"]) == 0
    assert "wrote 5 images" in capsys.readouterr().out
    assert len(_files(tmp_path / "x")) == 5


@pytest.mark.skipif(not EXAMPLE.is_dir(), reason="data/example is not in this checkout")
def test_committed_example_dataset_layout_and_size():
    files = _files(EXAMPLE)
    assert sum(f.stat().st_size for f in files) < 2_000_000
    assert sorted(p.name for p in EXAMPLE.iterdir() if p.is_dir()) == sorted(MORPHOTYPES)
    for name in MORPHOTYPES:
        assert len(list((EXAMPLE / name).glob("*.jpg"))) == 20
    assert all(f.suffix == ".jpg" for f in files)


@pytest.mark.skipif(not EXAMPLE.is_dir(), reason="data/example is not in this checkout")
def test_committed_example_dataset_is_what_the_documented_call_makes(tmp_path):
    """data/README.md says data/example is make_example_dataset(..., n_per_class=20, seed=0, size=160)."""
    names = list(MORPHOTYPES)
    fresh = make_example_dataset(tmp_path / "ex", n_per_class=2, seed=0, size=160)
    for name in names:
        for i in range(2):
            rel = Path(name) / f"{name}_{i:03d}.jpg"
            with Image.open(EXAMPLE / rel) as a, Image.open(fresh / rel) as b:
                diff = np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean()
            assert diff < 2.0, (
                f"{rel} differs from a fresh render (mean abs diff {diff:.1f}); "
                "regenerate with `python -m palaeo_ssl.synthetic data/example`"
            )
