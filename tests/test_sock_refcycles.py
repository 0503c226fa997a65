"""A failed sock_* call leaves no reference cycle (issue 9): the exception's
traceback holds the frames that ran the call, and none of them may hold the
future that holds the exception.  Checked as anyio's
``test_happy_eyeballs_refcycles`` does: with the garbage collector off, only
the test itself refers to the exception (CPython only: PyPy has no
reference counts and get_referrers() differs)."""

from __future__ import annotations

import asyncio
import gc
import platform
import socket
import struct
import sys

import pytest

from netutil import LOCALHOST, free_port

pytestmark = [
    pytest.mark.skipif(platform.python_implementation() != "CPython",
                       reason="reference counts are CPython's"),
    # asyncio's own create_connection()/sock_*() keep the exception in a
    # frame before 3.11 (the asyncio cases fail there too), and uvloop_lite
    # runs parts of that code: checked from 3.11 on.
    pytest.mark.skipif(sys.version_info < (3, 11),
                       reason="asyncio itself leaves these cycles before 3.11"),
]


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` so that its peer gets ECONNRESET."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _tcp_pair(loop):
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen()
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, listener.getsockname())
        server, _ = listener.accept()
    server.setblocking(False)
    return client, server


async def _sock_connect(loop):
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (LOCALHOST, free_port()))


async def _sock_recv(loop):
    a, b = await _tcp_pair(loop)
    with a:
        loop.call_soon(_reset, b)       # once the recv waits
        await loop.sock_recv(a, 100)


async def _sock_sendall(loop):
    a, b = await _tcp_pair(loop)
    with a:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        loop.call_later(0.05, _reset, b)  # once the sendall waits
        await loop.sock_sendall(a, b"x" * 50_000_000)


async def _sock_accept(loop):
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen()
        listener.setblocking(False)
        loop.call_soon(listener.shutdown, socket.SHUT_RDWR)   # accept() then fails
        await loop.sock_accept(listener)


async def _create_connection(loop):
    await loop.create_connection(asyncio.Protocol, LOCALHOST, free_port())


async def _open_connection(loop):
    await asyncio.open_connection(LOCALHOST, free_port())


# What asyncio's loop holds too (anyio's happy-eyeballs test goes through these).
BOTH = {f.__name__.lstrip("_"): f for f in (_sock_connect, _create_connection, _open_connection)}
# asyncio's selector loop (3.11) leaves a cycle here: the frame of its
# sock_recv()/sock_sendall()/sock_accept() keeps the future.
UV_ONLY = {f.__name__.lstrip("_"): f for f in (_sock_recv, _sock_sendall, _sock_accept)}


async def _failure(loop, call):
    try:
        await call(loop)
    except OSError as exc:
        return exc
    raise AssertionError("the call did not fail")


def _check_no_cycle(loop, call):
    async def main():
        exc = await _failure(loop, call)
        await asyncio.sleep(0)   # the loop's handle that resumed this task is done
        me = asyncio.current_task().get_coro()
        referrers = [type(r).__name__ for r in gc.get_referrers(exc) if r is not me]
        # This frame's variable and getrefcount()'s argument, nothing else:
        # no future (or frame) still holds it.
        return type(exc).__name__, referrers, sys.getrefcount(exc)

    gc.collect()
    gc.disable()
    try:
        kind, referrers, refcount = loop.run_until_complete(main())
    finally:
        gc.enable()
    assert (referrers, refcount) == ([], 2), kind


@pytest.mark.parametrize("name", sorted(BOTH))
def test_failed_call_leaves_no_cycle(loop, name):
    _check_no_cycle(loop, BOTH[name])


@pytest.mark.parametrize("name", sorted(UV_ONLY))
def test_failed_sock_call_leaves_no_cycle(uv_loop, name):
    _check_no_cycle(uv_loop, UV_ONLY[name])
