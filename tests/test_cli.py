"""The ``palaeo-ssl`` command line: every command's --help, one bad usage each, option defaults and flags.

Fast: no model is loaded (bad values are refused at the library's edge, before any model or
image is touched) and the stores are a few dozen random vectors.
"""

from __future__ import annotations

import argparse
import inspect

import numpy as np
import pytest

from palaeo_ssl import Embeddings
from palaeo_ssl.cli import COMMANDS, build_parser, main
from palaeo_ssl.commands import FLAGS, flag_for
from palaeo_ssl.protocol import ALL, DEFAULT_PROTOCOL

CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A labelled store of 36 random 8-dimensional vectors (no images, no model)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    x = (rng.normal(size=(3, 8))[y] * 2 + rng.normal(size=(36, 8))).astype(np.float32)
    return Embeddings(x, [f"{CLASSES[c]}/img_{i}.png" for i, c in enumerate(y)], y, CLASSES).save(
        tmp_path_factory.mktemp("cli") / "store")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub.choices[name] for name in COMMANDS}


def library_functions() -> dict[str, tuple]:
    """The functions each command calls, named here independently of the commands' own code."""
    from palaeo_ssl.demo import run_demo
    from palaeo_ssl.exchange import run_export
    from palaeo_ssl.extract import extract_embeddings
    from palaeo_ssl.labels import run_suggest
    from palaeo_ssl.morphospace import run_morphospace
    from palaeo_ssl.patches.visualise import run_visualise, visualise_specimen
    from palaeo_ssl.pipeline import Pipeline, run_pipeline
    from palaeo_ssl.probes import run_probe_report
    from palaeo_ssl.probes.predictions import classify
    from palaeo_ssl.retrieval import find_similar

    return {"extract": (extract_embeddings,), "probe": (run_probe_report,), "classify": (classify,),
            "suggest": (run_suggest,),
            "morphospace": (run_morphospace,), "similar": (find_similar,),
            "visualise": (visualise_specimen, run_visualise), "run": (run_pipeline, Pipeline, extract_embeddings), "demo": (run_demo,),
            "export": (run_export,)}


def signature_defaults(*functions) -> dict:
    found = {}
    for fn in functions:
        for name, par in inspect.signature(fn).parameters.items():
            if par.default is not inspect.Parameter.empty:
                found.setdefault(name, par.default)
    return found


# ---------------------------------------------------------------------- --help
@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_0_and_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for action in subparsers()[command]._actions:
        for flag in action.option_strings:
            assert flag in text
        if action.option_strings and action.help is not argparse.SUPPRESS:
            assert action.help and "{default}" not in action.help, action.option_strings


def test_visualise_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["visualise", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--model", "--out", "--size", "--basis", "--point", "--compare", "--threshold", "--background",
                "--invert-foreground", "--device", "--dtype"):
        assert opt in text


# ---------------------------------------------------------------------- one bad usage per command
def run_bad(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_extract_bad_value_names_the_flag(tmp_path, capsys):
    err = run_bad(["extract", str(tmp_path / "no_data"), "--out", str(tmp_path / "o"), "--workers", "-1"], capsys)
    assert "palaeo-ssl extract: error: --workers must be an integer >= 0, not -1" in err
    assert "workers must" not in err.replace("--workers must", "")  # the flag, never the Python name


def test_probe_bad_value_names_the_flag(store, tmp_path, capsys):
    err = run_bad(["probe", str(store), "--out", str(tmp_path / "o"), "--folds", "1", "--no-progress"], capsys)
    assert "--folds" in err and "n_splits" not in err


def test_classify_bad_value_names_the_flag(store, tmp_path, capsys):
    err = run_bad(["classify", str(store), "--probe-from", str(store), "--out", str(tmp_path),
                   "--batch-size", "0"], capsys)
    assert "--batch-size must be an integer >= 1, not 0" in err
    assert not (tmp_path / "predictions.csv").exists()


def test_classify_smoke_prints_a_summary(store, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["classify", str(store), "--probe-from", str(store), "--out", str(out), "--probe", "centroid"]) == 0
    printed = capsys.readouterr().out
    assert "36 images classified with a" in printed and "3 classes" in printed
    assert "36 images carry a known label" in printed and f"wrote {out / 'predictions.csv'}" in printed


def test_morphospace_flags_that_go_together(store, tmp_path, capsys):
    err = run_bad(["morphospace", str(store), "--out", str(tmp_path), "--compare-classes", "alpha"], capsys)
    assert "--compare-classes and --vs go together" in err


def test_similar_bad_k_is_refused_before_the_image_is_looked_at(store, tmp_path, capsys):
    err = run_bad(["similar", str(store), str(tmp_path / "nothing.png"), "-k", "0"], capsys)
    assert "-k must be an integer >= 1, not 0" in err


def test_visualise_bad_value_names_the_flag(tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(b"never read: the value is refused first")
    err = run_bad(["visualise", str(image), "--out", str(tmp_path / "o"), "--size", "0"], capsys)
    assert "palaeo-ssl visualise: error: --size must be an integer >= 1, not 0" in err


def test_visualise_out_is_a_file(tmp_path, capsys):
    image, out = tmp_path / "x.png", tmp_path / "taken"
    image.write_bytes(b"")
    out.write_text("a file")
    assert f"--out {str(out)!r} is a file; give a folder" in run_bad(["visualise", str(image), "--out", str(out)],
                                                                      capsys)


def test_visualise_rejects_malformed_options(tmp_path, capsys):
    image = tmp_path / "x.png"
    with pytest.raises(SystemExit) as exc:
        main(["visualise", str(image), "--out", str(tmp_path), "--point", "12"])
    assert exc.value.code == 2 and "X,Y" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["visualise", str(image), "--out", str(tmp_path), "--threshold", "high"])
    assert exc.value.code == 2 and "otsu" in capsys.readouterr().err


def test_run_bad_value_names_the_flag(tmp_path, capsys):
    err = run_bad(["run", str(tmp_path / "no_data"), "--out", str(tmp_path / "o"), "--batch-size", "0"], capsys)
    assert "palaeo-ssl run: error: --batch-size must be an integer >= 1, not 0" in err


# ---------------------------------------------------------------------- values the library refuses at its edge
@pytest.mark.parametrize("command, param, value, message", [
    ("probe", "n_repeats", "0", "--repeats must be"),
    ("probe", "episodes", "0", "--episodes must be"),
    ("probe", "n_query", "0", "--query must be"),
    ("probe", "literature_best", "87.4", "--literature-best must be a number in (0, 1]"),
    ("probe", "n_jobs", "0", "--jobs"),
    ("morphospace", "k_neighbours", "0", "--neighbours must be"),
    ("morphospace", "n_boot", "0", "--bootstrap must be"),
    ("morphospace", "n_boot_std", "0", "--bootstrap-std must be"),
    ("morphospace", "n_permutations", "0", "--permutations must be"),
    ("morphospace", "threads", "0", "--threads must be"),
    ("morphospace", "rarefaction_max", "0", "--rarefaction-max must be"),
    ("morphospace", "tsne_max_points", "-1", "--tsne-max must be"),
    ("run", "repeats", "0", "--repeats must be"),
    ("run", "episodes", "0", "--episodes must be"),
    ("run", "literature_best", "1.5", "--literature-best must be a number in (0, 1]"),
    ("run", "label_budget", "0", "--label-budget must be"),
])
def test_values_refused_by_the_library_are_reported_under_their_flag(store, tmp_path, capsys, command, param,
                                                                     value, message):
    """The commands no longer check these themselves: the library does, at its edge, under the Python name."""
    flag = flag_for(param)
    if command == "run":
        argv = ["run", str(tmp_path / "no_data"), "--out", str(tmp_path / "o"), flag, value]
    else:
        argv = [command, str(store), "--out", str(tmp_path / "o"), "--no-progress", flag, value]
    err = run_bad(argv, capsys)
    assert message in err and f"{param} must" not in err.replace(f"{flag} must", "")


# ---------------------------------------------------------------------- defaults and flags
#: options whose command-line default differs from the library's by design
DELIBERATE = {
    ("classify", "out"): "the current folder; the library has no default folder",
    ("extract", "out"): "required on the command line; the library falls back to its cache folder",
}
#: on/off switches: the command line shows progress bars, a library call is quiet unless asked
SWITCHES = {"progress", "strict", "figures", "explorer", "few_shot", "invert_foreground", "force"}


@pytest.mark.parametrize("command", COMMANDS)
def test_option_defaults_are_the_library_signatures(command):
    parser = subparsers()[command]
    library = signature_defaults(*library_functions()[command])
    checked = 0
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "protocol") or action.dest in SWITCHES:
            continue
        if action.dest not in library or (command, action.dest) in DELIBERATE:
            continue
        expected = library[action.dest]
        if action.dest == "tsne_max_points" and expected is None:
            expected = 0  # --tsne-max 0 = all images = None in the library
        assert action.default == expected, (command, action.option_strings, action.default, expected)
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("extract", "similar", "visualise", "demo", "suggest",
                                                                     "export")])
def test_protocol_defaults(command):
    action = next(a for a in subparsers()[command]._actions if a.dest == "protocol")
    expected = ALL if command == "run" else DEFAULT_PROTOCOL
    assert action.default == expected
    assert ALL in action.choices if command == "run" else ALL not in action.choices
    assert signature_defaults(*library_functions()[command])["protocol"] == expected


def test_flags_map_onto_the_parsers():
    """Every option that feeds a library parameter is the flag FLAGS gives it; every FLAGS entry is used."""
    used = set()
    for command, parser in subparsers().items():
        for action in parser._actions:
            if not action.option_strings:  # a positional: FLAGS names it by its metavar
                used.add(action.metavar)
                continue
            used.update(action.option_strings)
            if action.dest in FLAGS:
                assert FLAGS[action.dest] in action.option_strings, (command, action.dest)
            elif not action.option_strings[0].startswith("--no-") and action.dest != "help":
                assert flag_for(action.dest) in action.option_strings, (command, action.dest, action.option_strings)
    assert set(FLAGS.values()) <= used, set(FLAGS.values()) - used


def test_top_level_help_lists_every_command_without_loading_the_library():
    """``palaeo-ssl --help`` and a command's own parser load only what that command needs (start-up time)."""
    import subprocess
    import sys

    code = ("import sys; from palaeo_ssl.cli import build_parser; text = build_parser('').format_help(); "
            "print(sorted(m for m in ('torch', 'sklearn', 'umap') if m in sys.modules)); print(text)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "[]"
    for name in COMMANDS:
        assert f"    {name}" in out
    code = ("import sys; from palaeo_ssl.cli import build_parser; build_parser('probe'); "
            "print(sorted(m for m in ('torch', 'umap', 'palaeo_ssl.morphospace') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_command_is_found_in_argv():
    from palaeo_ssl.cli import _command_in

    assert _command_in(["-v", "probe", "x", "--out", "y"]) == "probe"
    assert _command_in(["visualize", "img.png"]) == "visualise"
    assert _command_in(["--help"]) == "" and _command_in(["nonsense"]) == ""


# ---------------------------------------------------------------------- messages that survive any text
#: braces (the placeholder's own name among them), percent signs, quotes, a newline and non-ASCII
HOSTILE = ["{lr}", "{name}{0}%s%(x)d'\"\nü∂ {"]


def _options_with_a_value() -> list[tuple[str, str]]:
    """(command, flag) of every option of every command that takes a value, read from the parsers (so an option
    added later is tried too)."""
    return [(command, action.option_strings[-1]) for command, parser in subparsers().items()
            for action in parser._actions
            if action.option_strings and action.nargs != 0 and action.dest not in ("help", "version")]


def _values(parser: argparse.ArgumentParser, flag: str, value: str) -> list[str]:
    """``value`` as many times as the option takes values."""
    action = next(a for a in parser._actions if flag in a.option_strings)
    return [value] * (action.nargs if isinstance(action.nargs, int) else 1)


@pytest.mark.parametrize("value", HOSTILE, ids=["braces", "everything"])
@pytest.mark.parametrize("command, flag", _options_with_a_value())
def test_any_text_in_any_option_gets_exit_2_and_one_line(command, flag, value, tmp_path, capsys):
    """Positionals and required options get the same text (a path that does not exist), so the command stops
    with a message whichever value it looks at first; that message is one line, and quotes the text (when it
    quotes it) as it was given: braces not doubled, a newline shown as \\n."""
    parser = subparsers()[command]
    missing = str(tmp_path / "missing" / value)
    argv = [command]
    for action in parser._actions:
        if not action.option_strings:
            argv.append(missing)
        elif action.required and flag not in action.option_strings:
            argv += [action.option_strings[-1], missing]
    argv += [flag, *_values(parser, flag, value)]
    try:
        code = main(argv)
    except SystemExit as exc:  # refused by the parser itself
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"palaeo-ssl {command}: error: "), err
    assert "Traceback" not in err and "{{" not in err, err
    if "ü∂" in err:
        assert "\\nü∂ {" in err, err


@pytest.mark.parametrize("command", COMMANDS)
def test_help_never_shows_default_none(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "default: None" not in text and "(default: None" not in text


def test_an_option_whose_default_is_none_must_say_what_unset_means():
    from palaeo_ssl.commands.options import add_option

    parser = argparse.ArgumentParser()
    with pytest.raises(TypeError, match="write what leaving it unset does"):
        add_option(parser, {"n_splits": None}, "n_splits", help="folds (default: {default})")
    add_option(parser, {"n_splits": None}, "n_splits", help="folds (default: the protocol's)")
