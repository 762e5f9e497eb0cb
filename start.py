#!/usr/bin/env python3
"""Set up palaeo-ssl and run it, with nothing but Python 3.10+ (Linux, macOS, Windows).

    python3 start.py demo    the whole pipeline on data/example (results/example, or
                             results/example-smoke on random weights when the real DINOv3
                             weights cannot be had: one line says why and how to get them)
    python3 start.py test    the tests (extra arguments go to pytest: start.py test -m "not slow")
    python3 start.py --cluster demo|test
                             the same, with the optional cluster engine (Ray) installed too
                             (pip install -r requirements-cluster.txt)

Both first install into .venv exactly as the README's manual install does
(``python -m venv .venv``, ``pip install -r requirements.txt``, ``pip install --no-deps -e .``),
and skip that when .venv already holds an install of the same requirements.txt and
pyproject.toml (a stamp file in .venv records their hash). Delete .venv to reinstall.
Extra arguments after ``demo`` go to ``palaeo-ssl demo`` (e.g. ``--model /path/to/model``).

All the work is done by the package (``palaeo_ssl.demo.run_demo``); this file only installs
and hands over.
"""

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP_NAME = ".palaeo-ssl-install"
INSTALL_INPUTS = ("requirements.txt", "pyproject.toml")
CLUSTER = ("requirements-cluster.txt",)  # --cluster: installed after requirements.txt
MIN_PYTHON = (3, 10)
VERBS = ("demo", "test")
USAGE = """usage: python3 start.py [--cluster] demo [palaeo-ssl demo options]
       python3 start.py [--cluster] test [pytest options]

demo   install into .venv if needed, then run the whole pipeline on data/example
test   install into .venv if needed, then run the tests (python -m pytest -q ...)
--cluster  also install the Ray engine (requirements-cluster.txt)"""


class SetupError(Exception):
    """The install could not be done; the message says what to do."""


def say(text):
    print("start.py: " + text, flush=True)


def venv_python(venv=VENV):
    """The virtual environment's interpreter (bin/python, or Scripts\\python.exe on Windows)."""
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_hash(root=ROOT, extras=()):
    """Hash of what the install depends on: requirements.txt, pyproject.toml, ``extras`` (requirement
    files installed too) and where the checkout is."""
    h = hashlib.sha256()
    for name in INSTALL_INPUTS:
        h.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    for name in extras:  # a missing one hashes as empty (the install then fails and says so)
        h.update(name.encode() + b"\0" + ((root / name).read_bytes() if (root / name).is_file() else b"") + b"\0")
    h.update(str(root).encode())  # the editable install points at this folder
    return h.hexdigest()


def stamp_path(venv=VENV):
    return venv / STAMP_NAME


def up_to_date(venv=VENV, root=ROOT, extras=()):
    """Whether ``venv`` holds an install of the current requirements.txt and pyproject.toml (and ``extras``;
    an install with the cluster extras also serves a plain run)."""
    accepted = {install_hash(root, extras), install_hash(root, tuple(dict.fromkeys(tuple(extras) + CLUSTER)))}
    try:
        return venv_python(venv).exists() and stamp_path(venv).read_text().strip() in accepted
    except OSError:
        return False


def run(cmd, cwd=ROOT):
    """Run ``cmd`` with its output shown; return its exit code."""
    cmd = [str(c) for c in cmd]
    print("+ " + (subprocess.list2cmdline(cmd) if os.name == "nt" else shlex.join(cmd)), flush=True)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.call(cmd, cwd=str(cwd), env=env)


def quiet(cmd):
    """Whether ``cmd`` succeeds (output hidden)."""
    try:
        return subprocess.call([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0
    except OSError:
        return False


def create_venv(venv=VENV):
    say(f"creating the virtual environment {venv}")
    if run([sys.executable, "-m", "venv", venv]) == 0 and venv_python(venv).exists():
        return
    # Debian/Ubuntu without python3-venv: venv cannot install pip; the host's pip can install into it
    shutil.rmtree(venv, ignore_errors=True)
    if quiet([sys.executable, "-m", "pip", "install", "--help"]) and host_pip_can_target() \
            and run([sys.executable, "-m", "venv", "--without-pip", venv]) == 0:
        say("this Python's venv module has no pip; the host's pip will install into .venv")
        return
    shutil.rmtree(venv, ignore_errors=True)
    raise SetupError(
        "could not create .venv: this Python's venv module cannot install pip. On Debian/Ubuntu install "
        f"python3-venv (or python3.{sys.version_info[1]}-venv), or use another Python 3.10+, then run this again"
    )


def host_pip_can_target():
    """pip >= 22.3 installs into another environment with ``--python``."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True).stdout
        major, minor = (int(x) for x in out.split()[1].split(".")[:2])
    except (OSError, IndexError, ValueError):
        return False
    return (major, minor) >= (22, 3)


def pip_command(venv=VENV):
    """``python -m pip`` of the venv, or the host's pip aimed at the venv when the venv has none."""
    py = venv_python(venv)
    if quiet([py, "-m", "pip", "--version"]):
        return [py, "-m", "pip"]
    return [sys.executable, "-m", "pip", "--python", py]


def install(venv=VENV, root=ROOT, extras=()):
    """The README's install into ``venv`` (with ``extras``), then the stamp that lets the next run skip it."""
    pip = pip_command(venv)
    t = time.monotonic()
    say("installing the pinned requirements into .venv (a few minutes the first time)")
    if run(pip + ["install", "-r", "requirements.txt"], cwd=root) != 0:
        raise SetupError("'pip install -r requirements.txt' failed (see above); fix that and run this again")
    for extra in extras:
        say(f"installing the optional requirements of {extra}")
        if run(pip + ["install", "-r", extra], cwd=root) != 0:
            raise SetupError(f"'pip install -r {extra}' failed (see above); fix that and run this again")
    say("installing palaeo-ssl itself (editable)")
    if run(pip + ["install", "--no-deps", "-e", "."], cwd=root) != 0:
        raise SetupError("'pip install --no-deps -e .' failed (see above); fix that and run this again")
    stamp_path(venv).write_text(install_hash(root, extras) + "\n")
    say("installed in %.0f s" % (time.monotonic() - t))


def ensure_installed(venv=VENV, root=ROOT, extras=()):
    """Create and fill ``venv`` (with ``extras``) unless it is up to date; return its interpreter."""
    if up_to_date(venv, root, extras):
        say(".venv is up to date (delete .venv to reinstall)")
        return venv_python(venv)
    if not venv_python(venv).exists():
        create_venv(venv)
    else:
        say(".venv exists but its install does not match requirements.txt / pyproject.toml: updating it")
    try:
        stamp_path(venv).unlink()  # an interrupted install is redone next time
    except OSError:
        pass
    install(venv, root, extras)
    return venv_python(venv)


def command(verb, args, py):
    if verb == "demo":
        return [py, "-m", "palaeo_ssl", "demo"] + list(args)
    return [py, "-m", "pytest", "-q"] + list(args)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if sys.version_info < MIN_PYTHON:
        print("start.py: palaeo-ssl needs Python %d.%d or newer; this is %s. Run it with a newer python3."
              % (MIN_PYTHON + (sys.version.split()[0],)), file=sys.stderr)
        return 2
    extras = ()
    if argv and argv[0] == "--cluster":
        extras, argv = CLUSTER, argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    verb, args = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"start.py: unknown command {verb!r}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        py = ensure_installed(extras=extras) if extras else ensure_installed()
    except SetupError as exc:
        print(f"start.py: {exc}", file=sys.stderr)
        return 1
    say(f"running {'palaeo-ssl demo' if verb == 'demo' else 'the tests'}")
    try:
        return run(command(verb, args, py))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
