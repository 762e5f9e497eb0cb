"""No network, or a Hub that cannot be reached: fail at once with one message, or read the cache.

conftest sets HF_HUB_OFFLINE=1; the tests of an unreachable (not offline) Hub run the command in a
child process whose environment has no offline flag and points HF_ENDPOINT at a closed local port.
Nothing here leaves this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import palaeo_ssl.backbone as bb

REPO = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    """A local port nobody listens on (connecting to it is refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT")}
    env.update(HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(REPO),
               HF_HUB_DISABLE_TELEMETRY="1")
    env.update(extra)
    return env


def _run_cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "palaeo_ssl", *args], env=env, capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    return r, time.perf_counter() - t


@pytest.mark.slow
def test_unreachable_hub_fails_fast_with_one_message(tmp_path):
    data = REPO / "data" / "example"
    args = ["extract", str(data), "--out", str(tmp_path / "out")]
    # baseline in the same invocation: HF_HUB_OFFLINE=1 makes no request at all, so its time is the start-up
    offline, t_offline = _run_cli(args, _child_env(tmp_path, HF_HUB_OFFLINE="1"))
    unreachable, t_unreachable = _run_cli(args, _child_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}"))
    for r in (offline, unreachable):
        assert r.returncode == 2, r.stderr[-3000:]
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, r.stderr          # one message, nothing printed twice, no retry lines
        assert lines[0].startswith("palaeo-ssl extract: error: could not download facebook/dinov3-vits16")
        assert "no cached copy" in lines[0] and "local folder" in lines[0]
    assert "HF_HUB_OFFLINE=1 is set" in offline.stderr
    assert "cannot be reached" in unreachable.stderr and "127.0.0.1" in unreachable.stderr
    # before: 5 retries with back-off, 23 s of sleeping on top of the start-up
    print(f"start-up + offline failure {t_offline:.1f} s; unreachable Hub {t_unreachable:.1f} s")
    assert t_unreachable - t_offline < 2.5
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


_FROM_CACHE = """
import json, os, shutil, sys, time
from pathlib import Path
repo = Path(os.environ["HF_HUB_CACHE"]) / "models--acme--tiny-dinov3"
shutil.copytree(sys.argv[1], repo / "snapshots" / ("c" * 40))
(repo / "refs").mkdir(parents=True)
(repo / "refs" / "main").write_text("c" * 40)
t = time.perf_counter()
from palaeo_ssl.backbone import check_model_access, load_backbone
info = check_model_access("acme/tiny-dinov3")
b = load_backbone("acme/tiny-dinov3", device="cpu", dtype="float32", info=info)
print(json.dumps([info.cache_only, info.revision, b.random_weights, time.perf_counter() - t]))
"""


@pytest.mark.slow
def test_unreachable_hub_reads_the_cache(tmp_path, tiny_model):
    """Without HF_HUB_OFFLINE, a cached model still loads (from the cache, no retries) when the Hub is unreachable."""
    env = _child_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HUB_CACHE=str(tmp_path / "hub"))
    r = subprocess.run([sys.executable, "-c", _FROM_CACHE, str(tiny_model)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    cache_only, revision, random_weights, seconds = json.loads(r.stdout.strip().splitlines()[-1])
    assert cache_only and revision == "c" * 40 and random_weights
    assert seconds < 20  # retries would sleep 23 s per file


@pytest.fixture()
def online(monkeypatch):
    """As if HF_HUB_OFFLINE were not set (conftest sets it), for in-process calls of hub_unreachable."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_hub_unreachable_reasons(online):
    assert "Connection refused" in bb.hub_unreachable("acme/x", endpoint=f"http://127.0.0.1:{_closed_port()}")


def test_hub_unreachable_under_offline_mode_makes_no_request(monkeypatch):
    import huggingface_hub.utils as hf_utils

    monkeypatch.setattr(hf_utils, "get_session", lambda: pytest.fail("a request was made"))
    assert bb.hub_unreachable("acme/x") == "no network connection (HF_HUB_OFFLINE=1 is set)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a full listen backlog drops SYNs on Linux")
def test_hub_unreachable_gives_up_after_the_connect_timeout(online):
    """A network that swallows packets (no answer at all) costs the connect timeout, once."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fill = []
    try:
        for _ in range(8):  # fill the accept queue: further connection attempts get no answer
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fill.append(c)
        time.sleep(0.2)
        t = time.perf_counter()
        why = bb.hub_unreachable("acme/x", connect_timeout=0.5, endpoint=f"http://127.0.0.1:{port}")
        took = time.perf_counter() - t
    finally:
        for c in fill:
            c.close()
        srv.close()
    assert why is not None and "cannot be reached" in why
    assert took < 3


def test_server_errors_count_as_unreachable_and_answers_as_reachable(online, monkeypatch):
    import huggingface_hub.utils as hf_utils

    class Session:
        def __init__(self, status):
            self.status = status

        def head(self, url, timeout):
            assert url.endswith("/acme/x/resolve/main/config.json")
            return type("R", (), {"status_code": self.status})()

    for status, reachable in ((200, True), (401, True), (404, True), (503, False)):
        monkeypatch.setattr(hf_utils, "get_session", lambda s=status: Session(s))
        why = bb.hub_unreachable("acme/x")
        assert (why is None) == reachable, (status, why)


_LOG_ONCE = """
import logging, sys
import huggingface_hub
from transformers.utils import logging as transformers_logging
transformers_logging.get_logger("transformers.modeling_utils")  # transformers adds its handler here
from palaeo_ssl.cli import main
assert main(["extract", "/no/such/folder", "--out", sys.argv[1]]) == 2
for name in ("huggingface_hub.file_download", "transformers.modeling_utils", "palaeo_ssl.extract"):
    logging.getLogger(name).warning("a warning from " + name.split(".")[0])
"""


@pytest.mark.slow
def test_cli_prints_library_log_lines_once(tmp_path):
    """huggingface_hub (and transformers on CI) print through their own handlers: the CLI's must not repeat them."""
    env = _child_env(tmp_path, HF_HUB_OFFLINE="1", CI="1")  # CI=1: transformers lets its records propagate
    r = subprocess.run([sys.executable, "-c", _LOG_ONCE, str(tmp_path / "out")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    for lib in ("huggingface_hub", "transformers", "palaeo_ssl"):
        assert r.stderr.count(f"a warning from {lib}") == 1, r.stderr
