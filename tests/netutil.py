"""Helpers shared by the network behaviour tests (test_tcp, test_server, ...).

Everything waits on futures, never on sleeps: ``Recorder.until(n)`` resolves
once ``n`` bytes arrived, ``Recorder.lost`` once connection_lost ran.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket

LOCALHOST = "127.0.0.1"
MIB = 1024 * 1024


def _has_ipv6() -> bool:
    """Whether the IPv6 loopback can be bound here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _has_ipv6()


def listening_socket(address=(LOCALHOST, 0), family: int = socket.AF_INET,
                     backlog: int = 1) -> socket.socket:
    """A non-blocking stream socket bound to ``address``, listening."""
    sock = socket.socket(family)
    try:
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` bytes with a recognisable, non-repeating-at-block pattern."""
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    reps = size // len(block) + 1
    return (block * reps)[:size]


class Recorder(asyncio.Protocol):
    """Records every protocol callback, in order, with futures to wait on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, keep_open: bool | None = None,
                 pause_on_connect: bool = False) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.events: list[str] = []
        self.data = bytearray()
        self.keep_open = keep_open
        self.pause_on_connect = pause_on_connect
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.paused = loop.create_future()
        self.resumed = loop.create_future()
        self.size_at_pause: int | None = None
        self.size_at_resume: int | None = None
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def connection_made(self, transport) -> None:
        self.events.append("made")
        self.transport = transport
        if self.pause_on_connect:
            transport.pause_reading()
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        self._wake()

    def eof_received(self):
        self.events.append("eof")
        self.eof.set_result(None)
        return self.keep_open

    def connection_lost(self, exc) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(ConnectionError(f"lost with {len(self.data)} bytes"))

    def pause_writing(self) -> None:
        self.events.append("pause")
        self.size_at_pause = self.transport.get_write_buffer_size()
        if not self.paused.done():
            self.paused.set_result(None)

    def resume_writing(self) -> None:
        self.events.append("resume")
        self.size_at_resume = self.transport.get_write_buffer_size()
        if not self.resumed.done():
            self.resumed.set_result(None)

    def until(self, nbytes: int) -> asyncio.Future:
        """A future done once at least ``nbytes`` bytes were received."""
        fut = self.loop.create_future()
        self._waiters.append((nbytes, fut))
        self._wake()
        return fut

    def _wake(self) -> None:
        for n, fut in self._waiters:
            if not fut.done() and len(self.data) >= n:
                fut.set_result(bytes(self.data))


class Collector(asyncio.BufferedProtocol):
    """A BufferedProtocol receiving into its own fixed buffer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, bufsize: int = 4096,
                 keep_open: bool | None = None) -> None:
        self.loop = loop
        self.keep_open = keep_open
        self.buf = bytearray(bufsize)
        self.data = bytearray()
        self.calls = 0
        self.sizehints: set[int] = set()
        self.transport = None
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.made.set_result(transport)

    def get_buffer(self, sizehint: int):
        self.sizehints.add(sizehint)
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.calls += 1
        self.data += self.buf[:nbytes]

    def eof_received(self):
        self.eof.set_result(bytes(self.data))
        return self.keep_open

    def connection_lost(self, exc) -> None:
        self.lost.set_result(exc)


async def tcp_pair(loop, client_proto=None, server_proto=None, **client_kw):
    """A server on 127.0.0.1 and one client connected to it: returns
    (server, client transport, client protocol, server protocol)."""
    server_proto = server_proto or Recorder(loop)
    created = []

    def factory():
        created.append(server_proto)
        return server_proto

    server = await loop.create_server(factory, LOCALHOST, 0)
    port = server.sockets[0].getsockname()[1]
    tr, pr = await loop.create_connection(
        lambda: client_proto or Recorder(loop), LOCALHOST, port, **client_kw)
    await server_proto.made
    return server, tr, pr, server_proto


async def close_all(server, *transports) -> None:
    for tr in transports:
        if tr is not None:
            tr.close()
    if server is not None:
        server.close()
        await server.wait_closed()
    # Let connection_lost callbacks run.
    for _ in range(3):
        await asyncio.sleep(0)


def fill_until_paused(transport, proto: Recorder, chunk: int = 256 * 1024,
                      limit: int = 256 * MIB) -> int:
    """Write until pause_writing() was called (the peer does not read);
    returns how many bytes were written."""
    data = b"x" * chunk
    total = 0
    while not proto.paused.done():
        transport.write(data)
        total += chunk
        assert total < limit, "pause_writing() never called"
    return total


def readable_now(sock_or_fd, timeout: float = 5.0) -> bool:
    """Block (briefly) until the kernel reports the fd readable."""
    r, _, _ = select.select([sock_or_fd], [], [], timeout)
    return bool(r)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
