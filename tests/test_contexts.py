"""contextvars in protocol callbacks, as asyncio's selector loop has them.

Every protocol here logs the value of ``CV`` it sees in each callback and
then sets ``CV`` to "<tag>:<callback>", so each log shows which context a
callback ran in: a copy of the one where the server or transport was made,
shared with which other callbacks, and what leaked where.  The expected logs
are asyncio's (3.9-3.13); the ``loop`` fixture checks both loops against
them.  Request-scoped logging and tracing (uvicorn's contextvars test among
them) rely on exactly this.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import ssl
import subprocess
import sys

import pytest

from netutil import LOCALHOST
from test_tls import certs, client_ctx, server_ctx, sock_path  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(30)

CV: contextvars.ContextVar[str] = contextvars.ContextVar("CV", default="unset")


@pytest.fixture(autouse=True)
def no_leak():
    """Each test starts with CV unset, and no protocol callback may set it in
    the test's own context (where the loop runs)."""
    token = CV.set("unset")
    yield
    try:
        assert CV.get() == "unset", "a protocol callback set CV in the loop's context"
    finally:
        CV.reset(token)


class Logged:
    """Mixin: ``see(event)`` logs (event, CV) and sets CV to tag:event."""

    def init_log(self, loop, tag: str) -> None:
        self.tag = tag
        self.log: list[tuple[str, str]] = []
        self.n = 0
        self.lost = loop.create_future()
        self.got: asyncio.Queue = asyncio.Queue()

    def see(self, event: str) -> None:
        self.log.append((event, CV.get()))
        CV.set(f"{self.tag}:{event}")


class Proto(Logged, asyncio.Protocol):
    def __init__(self, loop, tag: str, *, echo: bool = False, raise_on: int = 0) -> None:
        self.init_log(loop, tag)
        self.echo = echo
        self.raise_on = raise_on

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.see("made")

    def data_received(self, data: bytes) -> None:
        self.n += 1
        self.see(f"data{self.n}")
        if self.echo:
            self.transport.write(data)
        self.got.put_nowait(data)
        if self.n == self.raise_on:
            raise ZeroDivisionError("from data_received")

    def eof_received(self):
        self.see("eof")

    def pause_writing(self) -> None:
        self.see("pause")

    def resume_writing(self) -> None:
        self.see("resume")

    def connection_lost(self, exc) -> None:
        self.see("lost")
        self.lost.set_result(exc)


class Buffered(Logged, asyncio.BufferedProtocol):
    def __init__(self, loop, tag: str) -> None:
        self.init_log(loop, tag)
        self.buf = bytearray(64)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.see("made")

    def get_buffer(self, sizehint: int):
        self.see("get_buffer")
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.n += 1
        self.see(f"updated{self.n}")
        self.transport.write(bytes(self.buf[:nbytes]))

    def eof_received(self):
        self.see("eof")

    def connection_lost(self, exc) -> None:
        self.see("lost")
        self.lost.set_result(exc)


class Accepted(list):
    """The server-side protocols, in order, with a queue to wait for each."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue = asyncio.Queue()

    def add(self, proto) -> None:
        self.append(proto)
        self.queue.put_nowait(proto)

    async def next(self):
        return await self.queue.get()


def factory_of(loop, servers: Accepted, cls=Proto, **kw):
    """A protocol factory that logs its own context too (and sets CV)."""
    def factory():
        proto = cls(loop, "s", **kw)
        proto.log.append(("factory", CV.get()))
        CV.set("s:factory")
        servers.add(proto)
        return proto
    return factory


# What a server-side echo protocol logs for: two messages, then EOF.
SERVER_LOG = [("factory", "server"), ("made", "s:factory"), ("data1", "s:factory"),
              ("data2", "s:data1"), ("eof", "s:data2"), ("lost", "s:eof")]
# ... and the client's, made by create_connection() from CV == "client".
CLIENT_LOG = [("made", "c:factory"), ("data1", "c:factory"), ("data2", "c:data1"),
              ("eof", "c:data2"), ("lost", "c:eof")]


async def _exchange(transport, proto, server_proto_lost) -> None:
    """Two messages echoed one at a time, then EOF from the client."""
    for msg in (b"a", b"b"):
        transport.write(msg)
        await proto.got.get()
    transport.write_eof()
    await server_proto_lost
    await proto.lost


async def _connect_twice(loop, servers, connect) -> list:
    """Two connections, one after the other, from a task where CV is
    "client"; returns the client logs.  What a protocol sets must not reach
    this task, the server's task, or the next connection."""
    logs = []
    for _ in range(2):
        CV.set("client")

        def client_factory():
            proto = Proto(loop, "c")
            assert CV.get() == "client"   # runs in the caller's own context
            CV.set("c:factory")
            return proto
        transport, proto = await connect(client_factory)
        assert CV.get() == "c:factory"   # ... so what it set stays there
        CV.set("client")
        await _exchange(transport, proto, (await servers.next()).lost)
        logs.append(proto.log)
    assert CV.get() == "client"
    return logs


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_server_and_client(loop, family, sock_path):
    async def main():
        CV.set("server")
        servers = Accepted()
        factory = factory_of(loop, servers, echo=True)
        if family == "tcp":
            server = await loop.create_server(factory, LOCALHOST, 0)
            addr = server.sockets[0].getsockname()

            def connect(f):
                return loop.create_connection(f, *addr)
        else:
            server = await loop.create_unix_server(factory, str(sock_path))

            def connect(f):
                return loop.create_unix_connection(f, str(sock_path))
        client_logs = await _connect_twice(loop, servers, connect)
        server.close()
        await server.wait_closed()
        return [p.log for p in servers], client_logs

    server_logs, client_logs = loop.run_until_complete(main())
    assert server_logs == [SERVER_LOG, SERVER_LOG]
    assert client_logs == [CLIENT_LOG, CLIENT_LOG]


def test_tls_server_and_client(loop, server_ctx, client_ctx):
    async def main():
        CV.set("server")
        servers = Accepted()
        server = await loop.create_server(factory_of(loop, servers, echo=True),
                                          LOCALHOST, 0, ssl=server_ctx)
        addr = server.sockets[0].getsockname()
        logs = []
        for _ in range(2):
            CV.set("client")
            transport, proto = await loop.create_connection(
                lambda: Proto(loop, "c"), *addr, ssl=client_ctx, server_hostname="localhost")
            for msg in (b"a", b"b"):
                transport.write(msg)
                await proto.got.get()
            transport.close()   # no write_eof() over TLS
            await (await servers.next()).lost
            await proto.lost
            logs.append(proto.log)
        server.close()
        await server.wait_closed()
        assert CV.get() == "client"
        return [p.log for p in servers], logs

    server_logs, client_logs = loop.run_until_complete(main())
    # asyncio's sslproto calls the application's connection_made() from the
    # plain transport's data_received() (the handshake's last bytes): in the
    # reader's context, so the first data_received() sees what it set.
    server_log = [("factory", "server"), ("made", "s:factory"), ("data1", "s:made"),
                  ("data2", "s:data1")]
    if sys.version_info >= (3, 11):   # close_notify reaches eof_received()
        server_log += [("eof", "s:data2"), ("lost", "s:eof")]
    else:
        server_log += [("lost", "s:data2")]
    assert server_logs == [server_log] * 2
    assert client_logs == [[("made", "client"), ("data1", "c:made"), ("data2", "c:data1"),
                            ("eof", "c:data2"), ("lost", "c:eof")]] * 2


def test_streams_handler(loop):
    """asyncio.start_server(): each handler task starts from the server's
    context, and what one sets is not seen by the next (uvicorn's
    request-scoped contextvars)."""
    seen = []

    async def handler(reader, writer):
        seen.append(CV.get())
        CV.set("handler")
        data = await reader.read(100)
        seen.append(CV.get())
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        CV.set("server")
        server = await asyncio.start_server(handler, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        CV.set("client")
        for i in range(3):
            reader, writer = await asyncio.open_connection(*addr)
            writer.write(b"x%d" % i)
            assert await reader.read(100) == b"x%d" % i
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert CV.get() == "client"

    loop.run_until_complete(main())
    assert seen == ["server", "handler"] * 3


def test_buffered_protocol(loop):
    async def main():
        CV.set("server")
        servers = Accepted()
        server = await loop.create_server(factory_of(loop, servers, cls=Buffered),
                                          LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        client_logs = await _connect_twice(loop, servers,
                                           lambda f: loop.create_connection(f, *addr))
        server.close()
        await server.wait_closed()
        return [p.log for p in servers], client_logs

    server_logs, client_logs = loop.run_until_complete(main())
    assert server_logs == [[
        ("factory", "server"), ("made", "s:factory"),
        ("get_buffer", "s:factory"), ("updated1", "s:get_buffer"),
        ("get_buffer", "s:updated1"), ("updated2", "s:get_buffer"),
        ("get_buffer", "s:updated2"), ("eof", "s:get_buffer"), ("lost", "s:eof"),
    ]] * 2
    assert client_logs == [CLIENT_LOG, CLIENT_LOG]


def test_connect_accepted_socket(loop):
    async def main():
        lsock = socket.socket()
        lsock.bind((LOCALHOST, 0))
        lsock.listen()
        lsock.setblocking(False)
        csock = socket.socket()
        csock.setblocking(False)
        await loop.sock_connect(csock, lsock.getsockname())
        conn, _ = await loop.sock_accept(lsock)
        lsock.close()
        CV.set("server")
        servers = Accepted()
        await loop.connect_accepted_socket(factory_of(loop, servers, echo=True), conn)
        CV.set("client")
        transport, proto = await loop.create_connection(lambda: Proto(loop, "c"), sock=csock)
        await _exchange(transport, proto, (await servers.next()).lost)
        return servers[0].log, proto.log

    server_log, client_log = loop.run_until_complete(main())
    assert server_log == [("factory", "server")] + SERVER_LOG[1:]
    assert client_log == [("made", "client"), ("data1", "client"), ("data2", "c:data1"),
                          ("eof", "c:data2"), ("lost", "c:eof")]


def test_flow_control_contexts(loop):
    """pause_writing() runs in the context of the write() that crossed the
    high-water mark; resume_writing() in a copy of the context of the write()
    that started the queue (asyncio's writer Handle)."""
    async def main():
        servers = Accepted()
        server = await loop.create_server(factory_of(loop, servers), LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        transport, proto = await loop.create_connection(lambda: Proto(loop, "c"), *addr)
        transport.set_write_buffer_limits(high=1, low=0)
        (await servers.next()).transport.pause_reading()
        CV.set("writer-1")
        chunk = b"x" * 65536
        while transport.get_write_buffer_size() == 0:
            transport.write(chunk)
        while len(proto.log) < 2:   # made, pause
            transport.write(chunk)
        CV.set("writer-2")
        resumed = loop.create_future()
        proto.resume_writing = lambda: (Proto.resume_writing(proto), resumed.set_result(None))
        servers[0].transport.resume_reading()
        await resumed
        assert CV.get() == "writer-2"
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()
        return proto.log

    log = loop.run_until_complete(main())
    assert log == [("made", "unset"), ("pause", "writer-1"), ("resume", "writer-1"),
                   ("lost", "writer-2")]


def test_resume_reading_takes_callers_context(loop):
    """resume_reading() makes a new reader in asyncio: reads after it run in
    a copy of its caller's context."""
    async def main():
        servers = Accepted()
        server = await loop.create_server(factory_of(loop, servers, echo=True),
                                          LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        transport, proto = await loop.create_connection(lambda: Proto(loop, "c"), *addr)
        transport.write(b"a")
        await proto.got.get()
        transport.pause_reading()
        (await servers.next()).transport.write(b"b")
        CV.set("resumer")
        transport.resume_reading()
        await proto.got.get()
        CV.set("main")
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()
        return proto.log

    assert loop.run_until_complete(main()) == [
        ("made", "unset"), ("data1", "unset"), ("data2", "resumer"), ("lost", "main")]


def test_data_received_error_connection_lost(loop):
    """A data_received() that raises: connection_lost() sees what it set."""
    async def main():
        CV.set("server")
        servers = Accepted()
        server = await loop.create_server(factory_of(loop, servers, raise_on=1), LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        transport, proto = await loop.create_connection(lambda: Proto(loop, "c"), *addr)
        loop.set_exception_handler(lambda lp, ctx: None)
        transport.write(b"a")
        exc = await (await servers.next()).lost
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()
        return servers[0].log, exc

    log, exc = loop.run_until_complete(main())
    assert isinstance(exc, ZeroDivisionError)
    assert log == [("factory", "server"), ("made", "s:factory"), ("data1", "s:factory"),
                   ("lost", "s:data1")]


def test_pipes(loop):
    async def main():
        rfd, wfd = os.pipe()
        CV.set("reader")
        rproto = Proto(loop, "r")
        await loop.connect_read_pipe(lambda: rproto, open(rfd, "rb", 0))
        rfd2, wfd2 = os.pipe()
        CV.set("writer")
        wproto = Proto(loop, "w")
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, open(wfd2, "wb", 0))
        CV.set("main")
        os.write(wfd, b"a")
        await rproto.got.get()
        os.write(wfd, b"b")
        await rproto.got.get()
        os.close(wfd)
        await rproto.lost
        os.close(rfd2)   # the write pipe's reader goes away
        await wproto.lost
        assert CV.get() == "main"
        return rproto.log, wproto.log

    rlog, wlog = loop.run_until_complete(main())
    assert rlog == [("made", "reader"), ("data1", "reader"), ("data2", "r:data1"),
                    ("eof", "r:data2"), ("lost", "r:data2")]
    assert wlog == [("made", "writer"), ("lost", "writer")]


class SubProto(Logged, asyncio.SubprocessProtocol):
    def __init__(self, loop) -> None:
        self.init_log(loop, "p")
        self.exited = loop.create_future()

    def connection_made(self, transport) -> None:
        self.see("made")

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.see(f"pipe{fd}")

    def pipe_connection_lost(self, fd: int, exc) -> None:
        self.see(f"pipe{fd}-lost")

    def process_exited(self) -> None:
        self.see("exited")
        self.exited.set_result(None)

    def connection_lost(self, exc) -> None:
        self.see("lost")
        self.lost.set_result(exc)


def test_subprocess(loop):
    async def main():
        CV.set("spawner")
        transport, proto = await loop.subprocess_exec(
            lambda: SubProto(loop), sys.executable, "-c",
            "import sys; sys.stdout.write('x'); sys.stdout.flush(); sys.stdin.read()",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
        CV.set("main")
        transport.get_pipe_transport(0).close()
        await proto.lost
        transport.close()
        return proto.log

    log = loop.run_until_complete(main())
    # Each pipe callback is scheduled with call_soon() from the pipe's reader
    # (a copy of the spawner's context); stdin's close() from the main task.
    # The exit is reported where asyncio's child watcher reports it (see
    # uvloop_lite/_handles/process.py).
    pidfd_watcher = sys.version_info >= (3, 12) and asyncio.unix_events.can_use_pidfd()
    exit_ctx = "spawner" if pidfd_watcher else "unset"
    # connection_lost() is scheduled by the last of the exit and the pipes'
    # ends (which comes last is a race on both loops): in its context.
    assert log[0] == ("made", "spawner")
    events = dict(log)
    assert log[-1][0] == "lost" and events["lost"] in {exit_ctx, "spawner", "main"}
    del events["lost"]
    assert events == {"made": "spawner", "pipe0-lost": "main", "pipe1": "spawner",
                      "pipe1-lost": "spawner", "exited": exit_ctx}


@pytest.mark.parametrize("family", ["udp", "unix"])
def test_datagram(loop, family, tmp_path):
    class DProto(Logged, asyncio.DatagramProtocol):
        def __init__(self):
            self.init_log(loop, "d")

        def connection_made(self, transport):
            self.transport = transport
            self.see("made")

        def datagram_received(self, data, addr):
            self.n += 1
            self.see(f"dgram{self.n}")
            self.got.put_nowait(data)

        def connection_lost(self, exc):
            self.see("lost")
            self.lost.set_result(exc)

    async def main():
        CV.set("endpoint")
        if family == "udp":
            transport, proto = await loop.create_datagram_endpoint(
                DProto, local_addr=(LOCALHOST, 0))
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        else:
            path = str(tmp_path / "d.sock")
            transport, proto = await loop.create_datagram_endpoint(
                DProto, local_addr=path, family=socket.AF_UNIX)
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        CV.set("main")
        addr = transport.get_extra_info("sockname")
        with peer:
            for msg in (b"a", b"b"):
                peer.sendto(msg, addr)
                await proto.got.get()
        transport.close()
        await proto.lost
        return proto.log

    assert loop.run_until_complete(main()) == [
        ("made", "endpoint"), ("dgram1", "endpoint"), ("dgram2", "d:dgram1"), ("lost", "main")]
