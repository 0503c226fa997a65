"""A watched fd whose socket is closed without removing the watcher, its
number then taken by another file (issue 8, item 1).

libuv aborts the process when epoll refuses a fd it is told to watch, so each
scenario runs in a child process (an abort fails one test) on both loops,
and must print what asyncio's loop prints: the expected lines below are
asyncio's behaviour, checked on asyncio's loop by the same tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import asyncio, os, socket, sys, tempfile
import uvloop_lite

kind, scenario = sys.argv[1], sys.argv[2]
loop = asyncio.SelectorEventLoop() if kind == "asyncio" else uvloop_lite.new_event_loop()
asyncio.set_event_loop(loop)
handled = []
loop.set_exception_handler(lambda lp, ctx: handled.append(ctx.get("exception")))
keep = []


def say(*words):
    print(*words, flush=True)


def take(fd):
    """A regular file at the number ``fd`` just freed."""
    f = tempfile.TemporaryFile()
    keep.append(f)
    if f.fileno() != fd:
        say("SKIP fd not reused")
        os._exit(0)
    return f


def call(tag, fn):
    try:
        say(tag, "->", fn())
    except Exception as exc:
        say(tag, "raised", type(exc).__name__, exc.errno if isinstance(exc, OSError) else "")


async def turn():
    """Two loop iterations, the second one polling for a while."""
    await asyncio.sleep(0)
    await asyncio.sleep(0.01)


async def ended(task):
    try:
        say("task ->", await task)
    except BaseException as exc:
        say("task raised", type(exc).__name__)


def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    keep.append(b)
    return a, a.fileno()


async def reader_next_iteration():
    a, fd = pair()
    loop.add_reader(fd, say, "READER")
    await asyncio.sleep(0)
    a.close(); take(fd)
    await turn()
    call("remove_reader", lambda: loop.remove_reader(fd))


async def reader_same_iteration():
    a, fd = pair()
    loop.add_reader(fd, say, "READER")
    a.close(); take(fd)      # before the loop ever polls the fd
    await turn()
    call("remove_reader", lambda: loop.remove_reader(fd))


async def add_writer_next_iteration():
    a, fd = pair()
    loop.add_reader(fd, say, "READER")
    await asyncio.sleep(0)
    a.close(); take(fd)
    call("add_writer", lambda: loop.add_writer(fd, say, "WRITER"))
    await turn()
    call("remove_reader", lambda: loop.remove_reader(fd))
    call("remove_writer", lambda: loop.remove_writer(fd))


async def add_writer_same_iteration():
    a, fd = pair()
    loop.add_reader(fd, say, "READER")
    a.close(); take(fd)
    call("add_writer", lambda: loop.add_writer(fd, say, "WRITER"))
    await turn()
    call("remove_reader", lambda: loop.remove_reader(fd))


async def add_writer_closed_fd():
    a, fd = pair()
    loop.add_reader(fd, say, "READER")
    await asyncio.sleep(0)
    a.close()                # the number stays free
    call("add_writer", lambda: loop.add_writer(fd, say, "WRITER"))
    await turn()
    call("remove_reader", lambda: loop.remove_reader(fd))


async def remove_reader_after_reuse():
    a, fd = pair()
    loop.add_reader(fd, say, "READER")
    await asyncio.sleep(0)
    a.close(); take(fd)
    call("remove_reader", lambda: loop.remove_reader(fd))
    await turn()


async def remove_reader_of_two():
    a, fd = pair()
    loop.add_reader(fd, lambda: None)
    loop.add_writer(fd, lambda: None)
    await asyncio.sleep(0)
    a.close(); take(fd)
    call("remove_reader", lambda: loop.remove_reader(fd))
    await turn()
    call("remove_writer", lambda: loop.remove_writer(fd))


async def cancel_waiting_recv():
    a, fd = pair()
    task = asyncio.ensure_future(loop.sock_recv(a, 10))
    await turn()
    a.close(); take(fd)
    await asyncio.sleep(0)
    task.cancel()
    await ended(task)
    await turn()


async def cancel_recv_while_sendall_waits():
    a, fd = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    recv = asyncio.ensure_future(loop.sock_recv(a, 10))
    send = asyncio.ensure_future(loop.sock_sendall(a, b"x" * 10_000_000))
    await turn()
    a.close(); take(fd)
    recv.cancel()
    await ended(recv)
    await turn()
    send.cancel()
    await ended(send)


async def recv_waits_same_iteration():
    a, fd = pair()
    task = asyncio.ensure_future(loop.sock_recv(a, 10))
    await asyncio.sleep(0)   # the task starts waiting: not polled yet
    a.close(); take(fd)
    await turn()
    task.cancel()
    await ended(task)


async def add_reader_while_sendall_waits():
    a, fd = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    task = asyncio.ensure_future(loop.sock_sendall(a, b"x" * 10_000_000))
    await turn()
    a.close(); take(fd)
    call("add_reader", lambda: loop.add_reader(fd, say, "READER"))
    await turn()
    task.cancel()
    await ended(task)


async def stale_socket_object():
    # A sock_* call ends (its poll stays armed for the next call on the same
    # socket object), the fd is closed behind the object and its number
    # taken by a regular file in the same step; then a sock_* call on the
    # stale object has to wait for the file.
    a, fd = pair()
    src = tempfile.TemporaryFile()
    src.write(b"x" * 100_000)
    src.seek(0)
    loop.call_later(0.01, keep[-1].send, b"1")
    say("recv ->", await loop.sock_recv(a, 10))
    os.close(fd); take(fd)
    try:
        say("sendfile ->", await loop.sock_sendfile(a, src))
    except OSError as exc:
        say("sendfile raised", type(exc).__name__, exc.errno)
    await turn()
    a.detach()


async def main():
    await globals()[scenario]()
    await turn()
    say("handled", [type(e).__name__ for e in handled])
    say("still running")


loop.run_until_complete(main())
loop.close()
say("closed")
'''

EPERM = 1
EBADF = 9

SCENARIOS = {
    "reader_next_iteration": ["remove_reader -> True"],
    "reader_same_iteration": ["remove_reader -> True"],
    "add_writer_next_iteration": [f"add_writer raised PermissionError {EPERM}",
                                  "remove_reader -> False", "remove_writer -> False"],
    "add_writer_same_iteration": [f"add_writer raised PermissionError {EPERM}",
                                  "remove_reader -> False"],
    "add_writer_closed_fd": [f"add_writer raised OSError {EBADF}", "remove_reader -> False"],
    "remove_reader_after_reuse": ["remove_reader -> True"],
    "remove_reader_of_two": [f"remove_reader raised PermissionError {EPERM}",
                             "remove_writer -> False"],
    "cancel_waiting_recv": ["task raised CancelledError"],
    # asyncio stops watching for the cancelled recv in a done callback: the
    # selector's PermissionError goes to the exception handler.
    "cancel_recv_while_sendall_waits": ["task raised CancelledError", "task raised CancelledError",
                                        "handled ['PermissionError']"],
    "recv_waits_same_iteration": ["task raised CancelledError"],
    "add_reader_while_sendall_waits": [f"add_reader raised PermissionError {EPERM}",
                                       "task raised CancelledError"],
    "stale_socket_object": ["recv -> b'1'", f"sendfile raised PermissionError {EPERM}"],
}


def run_child(kind: str, scenario: str, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **env)
    full_env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), kind, scenario],
                          capture_output=True, text=True, timeout=60, env=full_env)


def check(proc: subprocess.CompletedProcess, expected: list[str]) -> None:
    out = proc.stdout.splitlines()
    if out and out[-1].startswith("SKIP"):   # pragma: no cover - another fd was free
        pytest.skip(out[-1])
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    if "handled" not in " ".join(expected):
        expected = expected + ["handled []"]
    assert out == expected + ["still running", "closed"], proc.stderr[-3000:]
    assert "READER" not in out and "WRITER" not in out


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_watched_fd_reused_by_regular_file(loop_kind, scenario):
    check(run_child(loop_kind, scenario), SCENARIOS[scenario])


@pytest.mark.parametrize("scenario", ["reader_same_iteration", "add_writer_next_iteration",
                                      "remove_reader_of_two", "cancel_recv_while_sendall_waits",
                                      "recv_waits_same_iteration", "stale_socket_object"])
@pytest.mark.parametrize("io_uring", ["0", "1"])
def test_watched_fd_reused_with_and_without_io_uring(scenario, io_uring):
    """libuv batches its epoll_ctl() calls through io_uring where the kernel
    allows it, and aborts on a failure there too."""
    check(run_child("uvloop_lite", scenario, UV_USE_IO_URING=io_uring), SCENARIOS[scenario])

