"""start.py, the two-command set-up: its install stamp and hand-over, with the install itself mocked."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def start():
    spec = importlib.util.spec_from_file_location("start_script", REPO / "start.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def checkout(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    return root


@pytest.fixture()
def fake_tools(start, monkeypatch):
    """Record every command instead of running it; 'python -m venv' makes the interpreter file.

    ``calls.rc["-r requirements.txt"] = 1`` makes the command ending so fail.
    """

    class Calls(list):
        rc: dict[str, int] = {}

    calls = Calls()

    def run(cmd, cwd=None):
        cmd = [str(c) for c in cmd]
        calls.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            py = start.venv_python(Path(cmd[-1]))
            py.parent.mkdir(parents=True, exist_ok=True)
            py.write_text("")
        return calls.rc.get(" ".join(cmd[-2:]), 0)

    monkeypatch.setattr(start, "run", run)
    monkeypatch.setattr(start, "quiet", lambda cmd: True)  # the venv has pip
    return calls


def test_installs_once_then_skips_until_the_requirements_change(start, checkout, fake_tools, capsys):
    venv = checkout / ".venv"
    assert not start.up_to_date(venv, checkout)
    py = start.ensure_installed(venv, checkout)
    assert py == start.venv_python(venv)
    pip = [str(py), "-m", "pip"]
    assert fake_tools == [[sys.executable, "-m", "venv", str(venv)],
                          pip + ["install", "-r", "requirements.txt"],
                          pip + ["install", "--no-deps", "-e", "."]]
    assert start.up_to_date(venv, checkout)

    fake_tools.clear()
    start.ensure_installed(venv, checkout)
    assert fake_tools == []
    assert "up to date" in capsys.readouterr().out

    (checkout / "requirements.txt").write_text((checkout / "requirements.txt").read_text() + "extra==1.0\n")
    assert not start.up_to_date(venv, checkout)
    start.ensure_installed(venv, checkout)
    assert fake_tools == [pip + ["install", "-r", "requirements.txt"], pip + ["install", "--no-deps", "-e", "."]]
    assert start.up_to_date(venv, checkout)


def test_the_stamp_covers_pyproject_and_the_checkout_folder(start, checkout, tmp_path):
    h = start.install_hash(checkout)
    (checkout / "pyproject.toml").write_text((checkout / "pyproject.toml").read_text() + "\n# changed\n")
    assert start.install_hash(checkout) != h
    moved = tmp_path / "moved"
    shutil.copytree(checkout, moved)
    assert start.install_hash(moved) != start.install_hash(checkout)


def test_a_failed_install_leaves_no_stamp(start, checkout, fake_tools):
    venv = checkout / ".venv"
    fake_tools.rc["-r requirements.txt"] = 1
    with pytest.raises(start.SetupError, match="requirements.txt"):
        start.ensure_installed(venv, checkout)
    assert not start.stamp_path(venv).exists() and not start.up_to_date(venv, checkout)
    fake_tools.rc.clear()
    fake_tools.clear()
    start.ensure_installed(venv, checkout)  # the venv is there: only the install is redone
    assert [c[-3:] for c in fake_tools] == [["install", "-r", "requirements.txt"], ["--no-deps", "-e", "."]]


def test_a_venv_without_pip_is_filled_by_the_host_pip(start, checkout, fake_tools, monkeypatch):
    monkeypatch.setattr(start, "quiet", lambda cmd: "--version" not in [str(c) for c in cmd])
    venv = checkout / ".venv"
    start.ensure_installed(venv, checkout)
    assert fake_tools[1][:5] == [sys.executable, "-m", "pip", "--python", str(start.venv_python(venv))]


def test_verbs_hand_over_to_the_venv(start, monkeypatch, tmp_path):
    py = tmp_path / "python"
    ran = []
    monkeypatch.setattr(start, "ensure_installed", lambda: py)
    monkeypatch.setattr(start, "run", lambda cmd, cwd=None: ran.append([str(c) for c in cmd]) or 3)
    assert start.main(["test", "-m", "not slow", "tests/test_start.py"]) == 3  # pytest's exit code
    assert start.main(["demo", "--model", "/m"]) == 3
    assert ran == [[str(py), "-m", "pytest", "-q", "-m", "not slow", "tests/test_start.py"],
                   [str(py), "-m", "palaeo_ssl", "demo", "--model", "/m"]]


def test_usage_errors(start, monkeypatch, capsys):
    monkeypatch.setattr(start, "ensure_installed", lambda: pytest.fail("no install for a usage error"))
    assert start.main([]) == 2
    assert start.main(["deploy"]) == 2
    assert "unknown command 'deploy'" in capsys.readouterr().err
    assert start.main(["--help"]) == 0
    monkeypatch.setattr(start, "MIN_PYTHON", (99, 0))
    assert start.main(["demo"]) == 2
    assert "needs Python 99.0" in capsys.readouterr().err


def test_setup_errors_are_one_message(start, monkeypatch, capsys):
    def fail():
        raise start.SetupError("could not create .venv: install python3-venv")

    monkeypatch.setattr(start, "ensure_installed", fail)
    assert start.main(["test"]) == 1
    assert capsys.readouterr().err == "start.py: could not create .venv: install python3-venv\n"


def test_cluster_installs_the_cluster_requirements_too(start, checkout, fake_tools):
    (checkout / "requirements-cluster.txt").write_text("ray[data]==2.60.0\n")
    venv = checkout / ".venv"
    py = start.ensure_installed(venv, checkout, extras=start.CLUSTER)
    pip = [str(py), "-m", "pip"]
    assert fake_tools[1:] == [pip + ["install", "-r", "requirements.txt"],
                              pip + ["install", "-r", "requirements-cluster.txt"],
                              pip + ["install", "--no-deps", "-e", "."]]
    assert start.up_to_date(venv, checkout, start.CLUSTER)
    assert start.up_to_date(venv, checkout)  # a plain run is served by the cluster install
    (checkout / "requirements-cluster.txt").write_text("ray[data]==2.61.0\n")
    assert not start.up_to_date(venv, checkout, start.CLUSTER)


def test_cluster_flag_goes_before_the_verb(start, monkeypatch):
    seen = []
    monkeypatch.setattr(start, "ensure_installed", lambda extras=(): seen.append(extras) or Path("py"))
    monkeypatch.setattr(start, "run", lambda cmd, cwd=None: 0)
    assert start.main(["--cluster", "test", "-k", "ray"]) == 0
    assert seen == [start.CLUSTER]
