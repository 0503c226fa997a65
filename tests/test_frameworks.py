"""The README's framework recipes, each run with the real package (skipped
where it is not installed): the app reports which loop serves it.

uvicorn picks its loop itself (``--loop``, default ``auto``: uvloop if
importable, else asyncio's SelectorEventLoop), so the policy installed by
``python -m uvloop_lite`` only counts with ``--loop none``; ``--loop
uvloop_lite:new_event_loop`` names the loop factory directly.

Each server is a subprocess given a listening Unix socket made here (uvicorn's
``--fd``), so the request can be sent at once, with no port to guess and no
polling for start-up; every wait is bounded.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import uvloop_lite

ROOT = Path(uvloop_lite.__file__).resolve().parents[1]
LITE_LOOP = "uvloop_lite._loop.Loop"
DEADLINE = 60.0   # seconds for one server to start and answer

# An ASGI app whose response body is the class of the loop serving it.
APP = textwrap.dedent("""
    import asyncio

    async def app(scope, receive, send):
        assert scope["type"] == "http"
        cls = type(asyncio.get_running_loop())
        body = (cls.__module__ + "." + cls.__qualname__).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
""")

# uvicorn.run() from a program (its keywords are Config's): argv[1] is the fd.
PROGRAM = textwrap.dedent("""
    import sys
    import uvicorn

    uvicorn.run("app:app", fd=int(sys.argv[1]), lifespan="off", log_level="warning",
                loop="uvloop_lite:new_event_loop")
""")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "program.py").write_text(PROGRAM)
    return tmp_path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("UVLOOP_LITE", None)
    return env


def _get(path: str, proc: subprocess.Popen) -> bytes:
    """GET / over the Unix socket at path; the whole response.  Fails at once
    if the server exits first, and after DEADLINE seconds at most."""
    deadline = time.monotonic() + DEADLINE
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        # The socket is listening already: connect() succeeds before the
        # server accepts (the backlog holds the connection).
        client.connect(path)
        client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        client.setblocking(False)
        chunks = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("no response from the server in time")
            # Wake up now and then to notice a server that died.
            ready, _, _ = select.select([client], [], [], min(left, 0.5))
            if not ready:
                if proc.poll() is not None:
                    pytest.fail(f"server exited with {proc.returncode} before answering")
                continue
            chunk = client.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _serve_one(app_dir: Path, argv: list[str]) -> str:
    """Run ``python argv... --fd N`` (N a listening Unix socket) in app_dir,
    send one request and stop the server; the loop class the app reported."""
    with tempfile.TemporaryDirectory(prefix="uvl") as short:   # AF_UNIX paths are short
        path = os.path.join(short, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(16)
        fd = str(listener.fileno())
        argv = [a.replace("{fd}", fd) for a in argv]
        proc = subprocess.Popen([sys.executable, *argv], cwd=app_dir, env=_env(),
                                pass_fds=[listener.fileno()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        listener.close()   # the server holds the only copy: a dead server refuses
        try:
            response = _get(path, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                out, err = proc.communicate(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), (response, err)
    assert b"Traceback" not in err, err.decode()
    return body.decode()


UVICORN = ["-m", "uvicorn", "app:app", "--fd", "{fd}", "--lifespan", "off",
           "--log-level", "warning"]


@pytest.mark.parametrize("argv, loop", [
    pytest.param([*UVICORN, "--loop", "uvloop_lite:new_event_loop"], LITE_LOOP,
                 id="loop-factory"),
    pytest.param(["-m", "uvloop_lite", *UVICORN, "--loop", "none"], LITE_LOOP,
                 id="policy-loop-none"),
    pytest.param(["program.py", "{fd}"], LITE_LOOP, id="run-loop"),
    pytest.param([*UVICORN, "--loop", "uvloop_lite:new_event_loop", "--workers", "2"],
                 LITE_LOOP, id="workers"),
    # The documented pitfall: uvicorn's own default bypasses the policy.
    pytest.param(["-m", "uvloop_lite", *UVICORN, "--loop", "asyncio"],
                 "asyncio.unix_events._UnixSelectorEventLoop", id="policy-bypassed"),
])
def test_uvicorn(app_dir: Path, argv: list[str], loop: str) -> None:
    pytest.importorskip("uvicorn")
    assert _serve_one(app_dir, argv) == loop


def test_main_help_names_the_uvicorn_form() -> None:
    proc = subprocess.run([sys.executable, "-m", "uvloop_lite", "--help"], env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "--loop uvloop_lite:new_event_loop" in proc.stdout
    assert "bypass" in proc.stdout


@pytest.mark.parametrize("args, warned", [
    ((), True), (("--loop", "none"), False), (("--loop=uvloop_lite:new_event_loop",), False)])
def test_main_warns_when_uvicorn_would_bypass_the_policy(args: tuple[str, ...],
                                                         warned: bool) -> None:
    pytest.importorskip("uvicorn")
    proc = subprocess.run([sys.executable, "-m", "uvloop_lite", "-m", "uvicorn", *args,
                           "--version"], env=_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "uvicorn" in proc.stdout
    assert ("--loop uvloop_lite:new_event_loop" in proc.stderr) is warned, proc.stderr
