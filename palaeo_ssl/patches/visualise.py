"""What the model sees in one specimen, as a stage: compute, write, run.

:func:`visualise_specimen` loads the pictures and the model and computes the
view of one image (and, when asked, of the images of a shared colour basis and
of a second image to compare with); :func:`write_visualisation` writes the
figures (PNG + PDF) and ``visualise.json``; :func:`run_visualise` does both and
times them (``palaeo-ssl visualise`` and notebook 02 call these).

    >>> result = visualise_specimen("specimen.jpg", model="dinov3-vits16", point=(120, 340))  # doctest: +SKIP
    >>> files = write_visualisation(result, "results/specimen")                                # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..backbone import DEFAULT_MODEL
from ..params import POSITIVE_INT, Interval, Kind, Options, ParameterError, validate_params
from .analysis import Correspondence, _literal
from .specimen import SpecimenView, match, shared_basis, view_specimen
from .tokens import DEFAULT_SIZE, load_rgb

#: how ``pca_rgb`` draws background patches
BACKGROUNDS = ("black", "grey")
#: the libraries recorded in visualise.json (distribution names, as it has always recorded them)
VERSIONED = ("palaeo-ssl", "torch", "transformers", "numpy", "scikit-learn", "matplotlib", "pillow")

_PATH = Kind((str, os.PathLike), "a path")


@dataclass
class SpecimenVisualisation:
    """Everything :func:`write_visualisation` draws, computed for one specimen.

    ``view``: the specimen (tokens, attention, foreground, own-basis colours);
    ``model``: model_id, revision, family, licence, device, dtype, patch_size, num_register_tokens, and
    ``attention``: None where the model has class-token attention maps, else why not (SigLIP, a ConvNeXt);
    ``basis_views``/``basis_colours``: the views fitted into one shared colour
    basis (IMAGE first) and their (h, w, 3) uint8 colours, or None;
    ``correspondence``: similarity to the patch under ``point`` (None: the
    foreground's centre), across ``other`` (the ``compare`` image) when given;
    ``seconds``: time to compute all of it (loading the model included).
    """

    image: Path
    view: SpecimenView
    size: int
    model: dict[str, Any]
    basis_views: list[SpecimenView] | None = None
    basis_colours: list[np.ndarray] | None = None
    correspondence: Correspondence | None = None
    other: SpecimenView | None = None
    point: tuple[float, float] | None = None
    compare: str | None = None
    seconds: float = 0.0
    #: filled by :func:`write_visualisation`: the files written and what ``visualise.json`` holds
    files: list[Path] = field(default_factory=list)
    record: dict[str, Any] | None = None
    #: filled by :func:`run_visualise`: seconds to ``compute``, draw the ``figures``, and in ``total``
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The numbers behind the figures (``visualise.json`` without the writer's entries)."""
        view, fg, corr = self.view, self.view.foreground, self.correspondence
        return {
            "image": str(self.image),
            "model_id": self.model["model_id"], "revision": self.model["revision"],
            "family": self.model.get("family"), "licence": self.model.get("licence"),
            "attention": self.model.get("attention"),
            "device": self.model["device"], "dtype": self.model["dtype"],
            "size": self.size, "image_size": list(view.image_size),
            "input_size": [view.tokens.input_image.shape[1], view.tokens.input_image.shape[0]],
            "patch_size": self.model["patch_size"], "grid": list(view.grid),
            "num_register_tokens": self.model["num_register_tokens"],
            "foreground": {"method": fg.method, "threshold": fg.threshold, "flipped": fg.flipped,
                           "fraction": fg.fraction, "pc1_explained_variance": fg.explained_variance},
            "shared_basis": [v.name for v in self.basis_views] if self.basis_views else None,
            "correspondence": None if corr is None else {
                "query_patch": list(corr.query), "query_xy": list(corr.query_xy),
                "point": list(self.point) if self.point is not None else "foreground centre",
                "compare": self.compare, "best_patch": list(corr.best) if corr.best else None,
                "best_xy": list(corr.best_xy) if corr.best_xy else None, "best_similarity": corr.best_similarity,
            },
        }


@validate_params({
    "image": _PATH,
    "size": POSITIVE_INT,
    "basis": [Kind((list, tuple), "a list of image paths"), None],
    "point": [Kind((list, tuple), "an (x, y) pair of pixel coordinates"), None],
    "compare": [_PATH, None],
    "threshold": [Options(("otsu",)), Interval(float, 0, 1, closed="left")],
    "invert_foreground": Kind((bool,), "True or False"),
})
def visualise_specimen(
    image: str | os.PathLike,
    *,
    model: str = DEFAULT_MODEL,
    size: int = DEFAULT_SIZE,
    basis: Sequence[str | os.PathLike] | None = None,
    point: tuple[float, float] | None = None,
    compare: str | os.PathLike | None = None,
    threshold: float | str = "otsu",
    invert_foreground: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    backbone=None,
) -> SpecimenVisualisation:
    """Run the model on ``image`` at its own aspect ratio and compute what the figures show.

    Parameters
    ----------
    image : the specimen's image file.
    model : alias, Hugging Face id or local folder (ignored when ``backbone`` is given).
    size : longer image side fed to the model, in pixels, a multiple of the patch size.
    basis : further images: one PCA colour basis is fitted on them and ``image`` together,
        so the same colour means the same feature in every specimen (empty or None: none).
    point : (x, y) pixel of ``image`` from the top-left corner whose patch is compared with
        every other patch; None with ``compare``: the foreground's centre.
    compare : a second image: the patch most similar to the chosen one is found in it.
    threshold : foreground cut on the [0, 1) first-principal-component score, or ``"otsu"``.
    invert_foreground : take the other side of the first principal component as the object.
    device, dtype : where and in which precision to run the model (``auto``: GPU if any, bfloat16 there).
    backbone : an already loaded :class:`~palaeo_ssl.backbone.Backbone` (saves loading it again).

    The correspondence is computed only when ``point`` or ``compare`` is given.
    Every picture is read before the model is loaded, so a bad path fails at once.
    A model without class-token attention (SigLIP; DINOv3 ConvNeXt, whose tokens are
    its stride-32 feature map) gets every figure but the attention maps, and
    ``model["attention"]`` (``visualise.json``: ``attention``) says why.
    """
    from ..backbone import dtype_name, load_backbone
    from .tokens import attention_refusal

    t0 = time.perf_counter()
    first = os.fspath(image)
    basis = [os.fspath(p) for p in (basis or [])]
    compare = os.fspath(compare) if compare is not None else None
    if point is not None:
        if len(point) != 2:
            raise ParameterError("point", "{name} must be an (x, y) pair of pixel coordinates, not "
                                 + _literal(repr(point)))
        point = (float(point[0]), float(point[1]))
    names = list(dict.fromkeys([first] + basis + ([compare] if compare else [])))
    pictures = {p: load_rgb(p) for p in names}  # fail fast on a bad path, before loading the model
    if backbone is None:
        backbone = load_backbone(model, device, dtype)
    kw = dict(size=size, threshold=threshold, orientation="flip" if invert_foreground else "auto")

    no_attention = attention_refusal(backbone)
    view = view_specimen(backbone, pictures[first], attention=no_attention is None, name=Path(first).name, **kw)
    views = {first: view}
    for p in names[1:]:
        views[p] = view_specimen(backbone, pictures[p], attention=False, name=Path(p).name, **kw)

    result = SpecimenVisualisation(
        image=Path(first).resolve(), view=view, size=size, point=point, compare=compare,
        model={"model_id": backbone.model_id, "revision": backbone.revision, "device": str(backbone.device),
               "family": backbone.info.family, "licence": backbone.info.licence, "attention": no_attention,
               "dtype": dtype_name(backbone.dtype), "patch_size": backbone.patch_size,
               "num_register_tokens": backbone.num_register_tokens},
    )
    if basis:
        result.basis_views = [view] + [views[p] for p in dict.fromkeys(basis) if p != first]
        _, result.basis_colours = shared_basis(result.basis_views)
    if point is not None or compare:
        result.other = views[compare] if compare else None
        result.correspondence = match(view, point, result.other)
    result.seconds = time.perf_counter() - t0
    return result


def _check_out(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParameterError("out", "{name} " + _literal(repr(str(out))) + " is a file; give a folder")
    return out


@validate_params({"background": Options(BACKGROUNDS)})
def write_visualisation(result: SpecimenVisualisation, out: str | os.PathLike, *,
                        background: str = "black") -> list[Path]:
    """Write the figures of ``result`` into ``out`` (PNG + PDF each) and ``visualise.json``; returns the paths.

    Always ``pca_rgb`` and ``foreground`` (bare pictures at the photograph's
    pixel size, to lay over it), ``overlay``, and where the model has class-token
    attention ``attention_cls`` and ``attention_heads``; ``pca_shared_basis`` when ``result`` has a shared basis;
    ``correspondence`` when it has one. ``background``: how ``pca_rgb`` draws
    background patches, ``black`` or ``grey`` (the greyed photograph).
    ``visualise.json`` records the settings, the numbers behind the figures, the
    files, the seconds spent (computing and drawing) and the library versions.
    """
    from ..plots.patches import write_specimen_figures
    from ..report import library_versions, write_json

    t0 = time.perf_counter()
    out = _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    basis = (result.basis_views, result.basis_colours) if result.basis_views else None
    figures = write_specimen_figures(result.view, out, background=background, basis=basis,
                                     corr=result.correspondence, other=result.other)
    summary = result.summary()
    summary["background"] = background
    summary["files"] = {k: [p.name for p in v] for k, v in figures.items()}
    summary["seconds"] = round(result.seconds + time.perf_counter() - t0, 2)
    summary["versions"] = library_versions(VERSIONED)
    order = ["image", "model_id", "revision", "family", "licence", "device", "dtype", "size", "image_size",
             "input_size", "patch_size", "grid", "num_register_tokens", "attention", "foreground", "background", "shared_basis", "correspondence", "files",
             "seconds", "versions"]
    result.record = {k: summary[k] for k in order}
    path = write_json(out / "visualise.json", result.record)
    result.files = [p for paths in figures.values() for p in paths] + [path]
    return result.files


@validate_params({"background": Options(BACKGROUNDS)})  # checked here too: before the model is loaded
def run_visualise(image: str | os.PathLike, out: str | os.PathLike, *, background: str = "black",
                  **options: Any) -> SpecimenVisualisation:
    """:func:`visualise_specimen` then :func:`write_visualisation` into ``out``, timed.

    ``options`` are those of :func:`visualise_specimen`. Returns the
    :class:`SpecimenVisualisation` with ``files``, ``record`` (what ``visualise.json``
    holds) and ``timings`` (``compute``, ``figures``, ``total``, in seconds). A file at
    ``out`` or a bad ``background`` is refused before the model is loaded.
    """
    _check_out(out)
    t0 = time.perf_counter()
    result = visualise_specimen(image, **options)
    t1 = time.perf_counter()
    write_visualisation(result, out, background=background)
    t2 = time.perf_counter()
    result.timings = {"compute": t1 - t0, "figures": t2 - t1, "total": t2 - t0}
    return result


__all__ = ["BACKGROUNDS", "SpecimenVisualisation", "visualise_specimen", "write_visualisation", "run_visualise"]
