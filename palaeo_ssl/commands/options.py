"""The options that several commands share, written once; every default read from the library.

Each command adds an option by the name of the library parameter it feeds
(``add_option(p, defaults, "n_splits", ...)``): the flag comes from
:data:`FLAGS` (the one map from Python parameter names to flags, which also
turns a :class:`~palaeo_ssl.params.ParameterError` into a message about the
flag), the default from the signature of the function the command calls
(:func:`defaults`), so the command line and the library cannot drift apart,
and ``args.<parameter>`` holds the value, ready to pass on.
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..protocol import ALL, DEFAULT_PROTOCOL, choices

#: Python parameter name -> command-line flag, where the flag is not ``--`` + the name with dashes
FLAGS: dict[str, str] = {
    # probes
    "n_splits": "--folds",
    "n_repeats": "--repeats",
    "n_jobs": "--jobs",
    "n_query": "--query",
    "max_train_images": "--max-train",
    # morphospace
    "values": "--group-values",
    "k_neighbours": "--neighbours",
    "n_boot": "--bootstrap",
    "n_boot_std": "--bootstrap-std",
    "tsne_max_points": "--tsne-max",
    "n_permutations": "--permutations",
    # classify
    "labelled": "--probe-from",
    "new": "EMBEDDINGS_OR_FOLDER",
    # similar
    "k": "-k",
    # positional arguments
    "data": "DATA",
    "embeddings": "EMBEDDINGS",
    "image": "IMAGE",
}


def flag_for(param: str) -> str:
    """The flag (or positional name) of library parameter ``param``: ``n_splits`` -> ``--folds``."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def defaults(*functions: Callable) -> dict[str, Any]:
    """Default of every parameter of ``functions`` (a class: its ``__init__``); the first to name one wins.

    Parameters without a default map to :data:`inspect.Parameter.empty`.
    """
    found: dict[str, Any] = {}
    for fn in functions:
        for name, par in inspect.signature(fn).parameters.items():
            if par.kind in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
                continue
            found.setdefault(name, par.default)
    return found


@dataclass(frozen=True)
class Option:
    """A shared option: its help (``{default}`` is replaced by the default) and argparse keywords.

    ``flag``: its own flag where it is not :func:`flag_for` the parameter; ``switch``: an on/off
    flag (``--strict`` sets True; ``--no-progress`` sets False, True without it).
    """

    help: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    flag: str | None = None
    switch: bool = False


#: options that several commands take, by library parameter name
SHARED: dict[str, Option] = {
    "out": Option("output folder", {"metavar": "DIR"}),
    "seed": Option("seed of every random step (default: {default})", {"type": int}),
    "progress": Option("hide the progress bars", flag="--no-progress", switch=True),
    "strict": Option("exit with code 2 if any file could not be read (the readable images are still embedded "
                     "and saved)", switch=True),
    "device": Option("auto picks CUDA, then Apple MPS, then CPU (default: {default})"),
    "dtype": Option("auto: bfloat16 on GPUs that support it, float32 on CPU; bfloat16 on CPU is allowed "
                    "and faster on CPUs with bf16 instructions (default: {default})"),
    "batch_size": Option("images per forward pass (default: 32 on CPU, 64 on Apple MPS, 128 on CUDA)", {"type": int, "metavar": "N"}),
    "workers": Option("image-decoding worker processes (default: 1 on a CPU with 2 or more cores, else 0; "
                      "on GPU one per usable core but one; 0 = in-process)", {"type": int, "metavar": "N"}),
    "compile": Option("run the model through torch.compile (fixed shapes; the compiled code is cached in "
                      "~/.cache/palaeo-ssl/torch-compile); the first compile takes about a minute, so it pays "
                      "only for many images; CUDA or a CPU with a C++ compiler", switch=True),
    "decode": Option("where JPEGs are decoded: gpu decodes baseline JPEGs on a CUDA GPU in batches (other files "
                     "on the CPU), cpu all on the CPU, auto = cpu; the decoder is part of the cache key "
                     "(default: {default})", {"choices": ("auto", "cpu", "gpu")}),
    "episodes": Option("few-shot episodes per shots value (default: {default})", {"type": int, "metavar": "N"}),
    "n_repeats": Option("cross-validation repeats (default: 10 for paper, 5 for standard)",
                        {"type": int, "metavar": "N"}),
    "literature_best": Option("best published top-1 accuracy (fraction, e.g. 0.874), drawn as a line on the figures",
                              {"type": float, "metavar": "X"}),
    "max_train_images": Option("standard protocol: past N training images the cross-validation's probes learn from a "
                               "seeded stratified subsample of N (at least 100; 0 = no limit), stated in the tables; "
                               "the paper protocol always uses every image (default: 10000)",
                               {"type": int, "metavar": "N"}),
    "probe_device": Option("where the standard protocol's logistic regression and kNN run: cpu (numpy/scipy), "
                           "cuda (torch on a CUDA GPU), auto (cuda where torch sees one, else cpu); the numbers "
                           "agree within the solver's tolerance (default: {default})",
                           {"choices": ("cpu", "cuda", "auto")}),
    "taxonomy": Option("CSV of higher ranks, columns class,genus[,family,...] (default: the genus is the first word "
                       "of each class name, e.g. Albaillella_sp1 -> Albaillella, case-insensitive)",
                       {"metavar": "CSV"}),
}
SHARED["repeats"] = SHARED["n_repeats"]  # Pipeline's name for it


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def add_option(parser: argparse.ArgumentParser, library: Mapping[str, Any], param: str, *,
               help: str | None = None, default: Any = inspect.Parameter.empty, **kwargs: Any) -> argparse.Action:
    """Add the option that feeds library parameter ``param`` to ``parser``.

    ``library``: :func:`defaults` of the function(s) the command calls; the option's
    default is ``library[param]`` (no default there: the option is required) unless
    ``default`` is given, which only a command whose default differs by design may do
    (``classify --out .``). Help and argparse keywords come from :data:`SHARED` where
    ``param`` is there, updated by ``help`` and ``kwargs``; ``{default}`` in the help
    shows the default (never None: a help whose default is None says in words what leaving
    the option unset does, and ``{default}`` there is refused). The value lands in ``args.<param>``.
    """
    shared = SHARED.get(param)
    options = dict(shared.kwargs) if shared else {}
    options.update(kwargs)
    text = help if help is not None else (shared.help if shared else "")
    flag = shared.flag if shared and shared.flag else flag_for(param)
    if shared and shared.switch:  # --no-progress shows progress unless given; --strict is off unless given
        off = flag.startswith("--no-")
        return parser.add_argument(flag, dest=param, action="store_false" if off else "store_true", default=off,
                                   help=text)
    if default is inspect.Parameter.empty:
        if param not in library:
            raise TypeError(f"no parameter {param!r} in the library function(s) this command calls")
        default = library[param]
    if default is inspect.Parameter.empty:
        options.setdefault("required", True)
        default = None
    if default is None and "{default}" in text:  # "(default: None)" tells a user nothing: say what unset means
        raise TypeError(f"the help of {flag} shows its default, which is None: write what leaving it unset does")
    return parser.add_argument(flag, dest=param, default=default, help=text.replace("{default}", _shown(default)),
                               **options)


def add_protocol(parser: argparse.ArgumentParser, help: str, *, with_all: bool = False) -> argparse.Action:
    """``--protocol``: the registered protocols, default :data:`DEFAULT_PROTOCOL`; with ``with_all`` also ``both``,
    the default then (``run``)."""
    return parser.add_argument("--protocol", dest="protocol", choices=choices(with_all=with_all),
                               default=ALL if with_all else DEFAULT_PROTOCOL,
                               help=help.replace("{default}", ALL if with_all else DEFAULT_PROTOCOL))


#: the extraction parameters that ``extract`` and ``run`` take (those of :func:`palaeo_ssl.extract.extract_embeddings`)
EXTRACTION = ("model", "pooling", "preprocess", "image_size", "batch_size", "workers", "device", "dtype", "background")
#: the speed options of ``extract`` (they change no feature beyond bf16 tolerance; the decoder keys the store)
EXTRACTION_SPEED = ("compile", "decode")


def add_extraction_options(parser: argparse.ArgumentParser, library: Mapping[str, Any]) -> None:
    """The options of every command that embeds a dataset (:data:`EXTRACTION`), then --strict and --no-progress."""
    from ..backbone import ALIASES, DEVICES, DTYPES, POOLINGS, PREPROCESSINGS

    add_option(parser, library, "model",
               help=f"model alias ({', '.join(ALIASES)}), Hugging Face id, or local folder of a DINOv3 ViT or "
                    "ConvNeXt, DINOv2 (with or without registers), SigLIP 2 or CLIP checkpoint (default: {default})")
    add_option(parser, library, "pooling", choices=POOLINGS,
               help="auto: the model's own global feature (cls for DINOv3 ViT, DINOv2 and CLIP, the paper's; head, "
                    "the attention-pooling head, for SigLIP; gap, the normed global average, for DINOv3 ConvNeXt); "
                    "mean: mean of the patch tokens (any class, pooled or register token left out; every family); "
                    "cls+mean, head+mean, gap+mean: both concatenated. A pooling the model does not have is refused "
                    "(default: {default})")
    add_option(parser, library, "preprocess", choices=PREPROCESSINGS,
               help="processor: as the model's own processor (a square squash for DINOv3 and SigLIP, the paper's; "
                    "a shorter-side resize and centre crop for DINOv2 and CLIP); pad: keep the whole image and its "
                    "aspect ratio, pad with --background (default: {default})")
    add_option(parser, library, "image_size", type=int, metavar="N",
               help="input side in pixels, a multiple of the patch size (default: the processor's, 224 for most "
                    "models)")
    add_option(parser, library, "batch_size")
    add_option(parser, library, "workers")
    add_option(parser, library, "device", choices=DEVICES)
    add_option(parser, library, "dtype", choices=DTYPES)
    add_option(parser, library, "background",
               help="colour for transparent pixels and --preprocess pad: black, white, grey, #rrggbb or r,g,b "
                    "(default: {default})")
    add_option(parser, library, "strict")
    add_option(parser, library, "progress")


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    """The DATA positional of every command that reads a dataset, and ``--accept-predicted`` for DATA that
    holds exchanged identifications."""
    parser.add_argument("data", metavar="DATA",
                        help="folder with one sub-folder per class, a flat folder (unlabelled), a CSV manifest "
                             "with columns path,label[,specimen] (paths relative to the manifest), a filled "
                             "to_label.csv, or identifications from another tool: an EcoTaxa TSV, a Darwin Core "
                             "Archive (.zip or folder) or a CSV of 'palaeo-ssl export' (validated identifications "
                             "become labels, added to the dataset the file came from)")
    parser.add_argument("--accept-predicted", dest="accept_predicted", action="store_true",
                        help="DATA from EcoTaxa, Darwin Core or 'palaeo-ssl export': take the machine's "
                             "identifications (predicted, PredictedByMachine) as labels too, not only those a "
                             "person validated (abstentions never)")


def library_kwargs(args: argparse.Namespace, *params: str) -> dict[str, Any]:
    """``{param: args.<param>}`` for ``params``: the parsed values, under the library's names."""
    return {p: getattr(args, p) for p in params}


__all__ = ["EXTRACTION", "EXTRACTION_SPEED", "FLAGS", "SHARED", "Option", "add_data_argument", "add_extraction_options", "add_option",
           "add_protocol", "defaults", "flag_for", "library_kwargs"]
