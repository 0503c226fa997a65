"""The fault-injection tool itself (tests/faults.py, tests/faultinject.c):
rules fail exactly the calls they name, on both loops."""

from __future__ import annotations

import shutil

import pytest

import faults

LOOP_KINDS = ("asyncio", "uvloop_lite")

# A child prelude: a loop of the kind named by argv[1] and a connected
# transport pair over loopback.
PRELUDE = """
import asyncio, socket, sys
import uvloop_lite
from faults import arm, fired

kind = sys.argv[1]
loop = asyncio.SelectorEventLoop() if kind == "asyncio" else uvloop_lite.new_event_loop()
asyncio.set_event_loop(loop)

class Proto(asyncio.Protocol):
    def __init__(self):
        self.lost = loop.create_future()
        self.data = bytearray()
        self.got = asyncio.Event()
    def connection_made(self, tr):
        self.tr = tr
    def data_received(self, data):
        self.data += data
        self.got.set()
    def connection_lost(self, exc):
        self.lost.set_result(exc)

async def pair():
    accepted = loop.create_future()
    def factory():
        p = Proto()
        accepted.set_result(p)
        return p
    srv = await loop.create_server(factory, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(Proto, "127.0.0.1", port)
    return srv, client, await accepted
"""


def run(body: str, kind: str, rules: str = "", **kw):
    proc = faults.run(PRELUDE + body, rules, kind, **kw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_armed_write_fails(kind):
    out = run("""
async def main():
    srv, client, server_side = await pair()
    arm("write|writev|send|sendmsg:ECONNRESET:1")
    client.tr.write(b"x" * 100)
    exc = await asyncio.wait_for(client.lost, 5)
    print(type(exc).__name__, fired("write") + fired("send"))
    server_side.tr.close()
    srv.close()
    await srv.wait_closed()
loop.run_until_complete(main())
loop.close()
""", kind)
    assert out.split() == ["ConnectionResetError", "1"]


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_eagain_once_then_data_arrives(kind):
    out = run("""
async def main():
    srv, client, server_side = await pair()
    arm("write|writev|send|sendmsg:EAGAIN:1")
    client.tr.write(b"hello")
    while bytes(server_side.data) != b"hello":
        server_side.got.clear()
        await asyncio.wait_for(server_side.got.wait(), 5)
    print(fired("write") + fired("send"), client.tr.is_closing())
    client.tr.close()
    server_side.tr.close()
    srv.close()
    await srv.wait_closed()
loop.run_until_complete(main())
loop.close()
""", kind)
    assert out.split() == ["1", "False"]


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_getaddrinfo_fails_and_stalls(kind):
    out = run("""
import time
async def main():
    arm("getaddrinfo:EAI_NONAME")
    try:
        await loop.getaddrinfo("localhost", 80)
    except socket.gaierror as exc:
        print(exc.errno == socket.EAI_NONAME)
    arm("getaddrinfo:delay=300")
    t0 = time.monotonic()
    await loop.getaddrinfo("localhost", 80)
    print(time.monotonic() - t0 >= 0.3, fired("getaddrinfo"))
loop.run_until_complete(main())
loop.close()
""", kind)
    assert out.split() == ["True", "True", "1"]


def test_rules_skip_count_and_sockets_only():
    # Not a loop test: the counting rules on plain sockets, and stdout (not a
    # socket) untouched by a rule that fails every write.
    out = run("""
a, b = socket.socketpair()
arm("send:EPIPE:2:1;write:EIO:*")
results = []
for i in range(4):
    try:
        results.append(a.send(b"x"))
    except OSError as exc:
        results.append(exc.errno)
import errno, os
print(results == [1, errno.EPIPE, errno.EPIPE, 1], fired("send"))
os.write(1, b"stdout-ok\\n")
try:
    arm("send:EBOGUS")
except ValueError:
    print("rejected")
arm("")
print(a.send(b"y"))
""", "asyncio")
    assert out.split() == ["True", "2", "stdout-ok", "rejected", "1"]


@pytest.mark.skipif(shutil.which("pypy3") is None, reason="no pypy3")
def test_works_under_pypy():
    # PyPy calls libc through the dynamic linker as CPython does (no
    # uvloop_lite here: its extension is built for the venv's CPython).
    proc = faults.run("""
import socket
from faults import arm, fired
a, b = socket.socketpair()
arm("send:ECONNRESET")
try:
    a.send(b"x")
except ConnectionResetError:
    print("reset", fired("send"))
""", python=shutil.which("pypy3"))
    assert proc.stdout.split() == ["reset", "1"], proc.stderr


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_connect_refused_and_timed_out(kind):
    out = run("""
async def main():
    srv = await loop.create_server(Proto, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    for err in ("ECONNREFUSED", "ETIMEDOUT"):
        arm("connect:%s" % err)
        try:
            await loop.create_connection(Proto, "127.0.0.1", port)
        except OSError as exc:
            print(type(exc).__name__, fired("connect"))
    srv.close()
    await srv.wait_closed()
loop.run_until_complete(main())
loop.close()
""", kind)
    assert out.split() == ["ConnectionRefusedError", "1", "TimeoutError", "1"]
