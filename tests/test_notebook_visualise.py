"""notebooks/02_visualise_specimen.ipynb runs headless (papermill) with the tiny random model.

Random weights see nothing: the test checks that every cell runs and the figures exist.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from palaeo_ssl.testing import specimen_image

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_visualise_specimen.ipynb"
FIGURES = ("pca_rgb", "foreground", "overlay", "attention_cls", "attention_heads", "correspondence",
           "pca_shared_basis")


def _image(path, size, seed):
    return specimen_image(path, size, seed, box=(0.25, 0.1, 0.75, 0.9), fill=(210, 190, 140))


def test_committed_notebook_has_papermill_parameters_and_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    names = {t.id for node in ast.parse(tagged[0].source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert {"IMAGE", "MODEL", "OUT", "SIZE"} <= names
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
    text = " ".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    assert "random weights" in text and "say nothing" in text


@pytest.mark.slow
def test_notebook_runs_headless_with_the_tiny_model(tiny_model, tmp_path):
    papermill = pytest.importorskip("papermill")
    image = _image(tmp_path / "tall_specimen.png", (70, 200), 0)
    other = _image(tmp_path / "other_specimen.png", (160, 120), 1)
    out = tmp_path / "figures"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # test-only probe appended to the in-memory copy: which Python runs the kernel?
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    executed = papermill.execute_notebook(
        nb, str(tmp_path / "executed.ipynb"), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters=dict(IMAGE=str(image), MODEL=str(tiny_model), OUT=str(out), SIZE=224,
                        BASIS=[str(other)], COMPARE=str(other)),
    )
    for cell in executed.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.get("outputs", []) if o.output_type == "error"], cell.source
    probe = "".join(o.get("text", "") for o in executed.cells[-1].outputs).strip()
    assert os.path.realpath(probe) == os.path.realpath(sys.prefix)  # the kernel is this environment's Python
    for name in FIGURES:
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(out / "pca_rgb.png") as im:
        assert im.size == (70, 200)  # the specimen's own pixel size and aspect ratio
    shown = sum(1 for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    assert shown == 6  # every figure is shown inline
