"""The README's framework recipes, each run with the real package (skipped
where it is not installed): the app reports which loop serves it.

uvicorn picks its loop itself (``--loop``, default ``auto``: uvloop if
importable, else asyncio's SelectorEventLoop), so the policy installed by
``python -m uvloop_lite`` only counts with ``--loop none``; ``--loop
uvloop_lite:new_event_loop`` names the loop factory directly.  aiohttp's
``run_app`` takes a loop, or makes one through the policy; websockets, httpx
and anyio's ``run`` run on the loop they are given or find running.

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


# An aiohttp application factory (aiohttp.web's CLI passes it argv).
AIOHTTP_APP = textwrap.dedent("""
    import asyncio
    from aiohttp import web

    async def loop_name(request):
        cls = type(asyncio.get_running_loop())
        return web.Response(text=cls.__module__ + "." + cls.__qualname__)

    def init(argv=None):
        app = web.Application()
        app.router.add_get("/", loop_name)
        return app
""")

# web.run_app() with a uvloop_lite loop, on the listening socket argv[1].
AIOHTTP_PROGRAM = textwrap.dedent("""
    import socket
    import sys

    from aiohttp import web
    import uvloop_lite

    from aioapp import init

    web.run_app(init(), sock=socket.socket(fileno=int(sys.argv[1])),
                loop=uvloop_lite.new_event_loop(), print=None)
""")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "program.py").write_text(PROGRAM)
    (tmp_path / "aioapp.py").write_text(AIOHTTP_APP)
    (tmp_path / "aioprogram.py").write_text(AIOHTTP_PROGRAM)
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


def _wait_for_output(proc: subprocess.Popen, marker: bytes) -> None:
    """Read the server's stdout until marker shows (it is listening then)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + DEADLINE
    seen = b""
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"server did not print {marker!r} in time: {seen!r}")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
        if ready and not chunk:
            pytest.fail(f"server exited with {proc.wait()} before listening: {seen!r}")
        seen += chunk


def _serve_one(app_dir: Path, argv: list[str], ready: bytes | None = None) -> str:
    """Run ``python argv...`` in app_dir, send one request and stop the
    server; the loop class the app reported.

    ``{fd}`` in argv becomes a listening Unix socket made here (the request
    can go at once); with ``{path}`` instead the server binds that path
    itself, and prints ``ready`` once it listens."""
    with tempfile.TemporaryDirectory(prefix="uvl") as short:   # AF_UNIX paths are short
        path = os.path.join(short, "s")
        fds: list[int] = []
        listener = None
        if any("{fd}" in a for a in argv):
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(16)
            fds.append(listener.fileno())
        argv = [a.replace("{fd}", str(fds[0]) if fds else "").replace("{path}", path)
                for a in argv]
        env = _env()
        env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen([sys.executable, *argv], cwd=app_dir, env=env,
                                pass_fds=fds, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if listener is not None:
            listener.close()   # the server holds the only copy: a dead server refuses
        try:
            if ready is not None:
                _wait_for_output(proc, ready)
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


# --- aiohttp: run_app(loop=...) and python -m uvloop_lite -m aiohttp.web ---

@pytest.mark.parametrize("argv, ready", [
    pytest.param(["aioprogram.py", "{fd}"], None, id="run_app-loop"),
    pytest.param(["-m", "uvloop_lite", "-m", "aiohttp.web", "-U", "{path}", "aioapp:init"],
                 b"Running on", id="policy-aiohttp.web"),
])
def test_aiohttp(app_dir: Path, argv: list[str], ready: bytes | None) -> None:
    pytest.importorskip("aiohttp")
    assert _serve_one(app_dir, argv, ready) == LITE_LOOP


# --- clients and libraries that take the running loop: uvloop_lite.run() ---

def _loop_name() -> str:
    import asyncio

    cls = type(asyncio.get_running_loop())
    return f"{cls.__module__}.{cls.__qualname__}"


def test_websockets() -> None:
    websockets = pytest.importorskip("websockets")

    async def main() -> tuple[str, str]:
        async def echo(ws) -> None:
            async for message in ws:
                await ws.send(message)

        async with websockets.serve(echo, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send("ping")
                return await ws.recv(), _loop_name()

    assert uvloop_lite.run(main()) == ("ping", LITE_LOOP)


def test_httpx() -> None:
    httpx = pytest.importorskip("httpx")
    import asyncio

    async def main() -> tuple[int, str, str]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (await reader.readline()).strip():
                pass
            body = _loop_name().encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/")
        return response.status_code, response.text, _loop_name()

    assert uvloop_lite.run(main()) == (200, LITE_LOOP, LITE_LOOP)


def test_anyio_run_backend_options() -> None:
    anyio = pytest.importorskip("anyio")

    async def main() -> str:
        await anyio.sleep(0)
        return _loop_name()

    assert anyio.run(main, backend="asyncio",
                     backend_options={"loop_factory": uvloop_lite.new_event_loop}) == LITE_LOOP
