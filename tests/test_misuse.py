"""Misuse: closed transports, closed loops, raising protocols, fds closed
under a server.  Both loops must answer with asyncio's exceptions (or the
same silence), never a crash or a hang."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import warnings

import pytest

from conftest import make_loop
from netutil import LOCALHOST, Recorder, close_all, tcp_pair


def test_closed_transport_methods(loop, caplog):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        peer = tr.get_extra_info("peername")
        tr.close()
        await cli.lost
        await srv.lost
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            tr.write(b"x")
            # (not writelines(): asyncio 3.12.1 raises TypeError there, a bug)
        tr.write_eof()
        tr.pause_reading()
        tr.resume_reading()
        tr.close()
        tr.abort()
        tr.set_write_buffer_limits(high=10)
        state = dict(
            is_closing=tr.is_closing(),
            is_reading=tr.is_reading(),
            buffer=tr.get_write_buffer_size(),
            limits=tr.get_write_buffer_limits(),
            can_write_eof=tr.can_write_eof(),
            protocol=tr.get_protocol(),
            peer=tr.get_extra_info("peername") == peer,
            events=cli.events,
        )
        await close_all(server)
        return state

    assert loop.run_until_complete(main()) == dict(
        is_closing=True, is_reading=False, buffer=0, limits=(2, 10), can_write_eof=True,
        protocol=None, peer=True, events=["made", "lost"])


def test_many_writes_after_abort_warn(loop, caplog):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        tr.abort()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(7):
                tr.write(b"x")
        await cli.lost
        await srv.lost
        await close_all(server)

    loop.run_until_complete(main())
    # abort() counts as the first lost write: warnings from the 5th on.
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == \
        ["socket.send() raised exception."] * 3


def test_raising_protocol_callbacks(loop):
    class Raising(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            raise KeyError("made")

        def eof_received(self):
            super().eof_received()
            raise KeyError("eof")

        def connection_lost(self, exc):
            super().connection_lost(exc)
            raise KeyError("lost")

    async def main():
        handled = []
        loop.set_exception_handler(lambda lp, ctx: handled.append(ctx))
        srv = Recorder(loop)
        server = await loop.create_server(lambda: srv, LOCALHOST, 0)
        # create_connection completes although connection_made() raised...
        tr, cli = await loop.create_connection(lambda: Raising(loop),
                                               *server.sockets[0].getsockname())
        await srv.made
        # ... and the transport reads.
        srv.transport.write(b"data")
        got = await cli.until(4)
        srv.transport.close()
        exc = await cli.lost
        for _ in range(3):
            await asyncio.sleep(0)
        await close_all(server)
        return got, type(exc), [(h["message"].split(" ")[:3], repr(h.get("exception")))
                                for h in handled], cli.events

    got, exc_type, handled, events = loop.run_until_complete(main())
    assert got == b"data"
    assert exc_type is KeyError                  # eof_received() failing is fatal
    assert events == ["made", "data", "eof", "lost"]
    assert handled == [
        (["Exception", "in", "callback"], "KeyError('made')"),
        (["Fatal", "error:", "protocol.eof_received()"], "KeyError('eof')"),
        (["Exception", "in", "callback"], "KeyError('lost')"),
    ]


def test_closed_loop_methods(loop, loop_kind):
    a, b = socket.socketpair()
    listener = socket.socket()
    listener.bind((LOCALHOST, 0))
    listener.listen(1)
    loop.close()
    messages = []

    def expect(call):
        with pytest.raises(RuntimeError) as ei:
            call()
        messages.append(str(ei.value))

    expect(lambda: loop.call_soon(print))
    expect(lambda: loop.add_reader(a, print))
    expect(lambda: loop.add_writer(a, print))
    coro = loop.create_connection(asyncio.Protocol, LOCALHOST, 1)
    expect(lambda: loop.run_until_complete(coro))
    coro.close()
    expect(lambda: loop.run_forever())

    # The coroutines of a closed loop, driven by another loop, fail the same way.
    other = make_loop(loop_kind)
    try:
        a.setblocking(False)
        listener.setblocking(False)
        for factory in (
            lambda: loop.sock_recv(a, 10),
            lambda: loop.sock_accept(listener),
            lambda: loop.create_server(asyncio.Protocol, sock=listener),
            lambda: loop.connect_accepted_socket(asyncio.Protocol, b),
            lambda: loop.create_connection(asyncio.Protocol, LOCALHOST, 1),
            lambda: loop.create_server(asyncio.Protocol, LOCALHOST, 0),
        ):
            expect(lambda: other.run_until_complete(factory()))
    finally:
        other.close()
        for s in (a, b, listener):
            s.close()
    assert messages == ["Event loop is closed"] * len(messages)
    assert len(messages) == 11


def _open_and_forget(loop) -> None:
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        tr.write(b"unflushed?")
        await srv.until(10)

    loop.run_until_complete(main())


def test_loop_closed_with_live_transports(loop):
    _open_and_forget(loop)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        loop.close()
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert loop.is_closed()


def test_transport_close_after_loop_close(loop):
    state = {}

    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        state["tr"] = tr
        state["server"] = server

    loop.run_until_complete(main())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        loop.close()
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            state["tr"].close()
        state["server"].close()        # the listening socket just closes
        state.clear()
        gc.collect()


def test_listening_fd_closed_under_the_server(loop):
    async def main():
        results = []
        # 1. The server's socket fd is closed behind its back.
        server = await loop.create_server(asyncio.Protocol, LOCALHOST, 0)
        os.close(server.sockets[0].fileno())
        try:
            server.close()
            results.append(None)
        except OSError as exc:
            results.append(exc.errno)
        # 2. Another file is dup2()ed over the listening fd.
        server = await loop.create_server(asyncio.Protocol, LOCALHOST, 0)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, server.sockets[0].fileno())
        os.close(devnull)
        for _ in range(3):
            await asyncio.sleep(0)
        server.close()
        await server.wait_closed()
        results.append(server.is_serving())
        # The loop is fine afterwards.
        srv = Recorder(loop)
        server, tr, cli, srv = await tcp_pair(loop, server_proto=srv)
        tr.write(b"alive")
        results.append(await srv.until(5))
        await close_all(server, tr)
        return results

    import errno
    assert loop.run_until_complete(main()) == [errno.EBADF, False, b"alive"]


def test_transport_closed_before_connection_made(loop):
    # Both loops: connection_made() still runs, then connection_lost(None).
    import socket as _socket
    events = []

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            events.append("made")

        def connection_lost(self, exc):
            events.append(("lost", exc))
            done.set_result(None)

    done = loop.create_future()
    a, b = _socket.socketpair()
    a.setblocking(False)
    try:
        transport = loop._make_socket_transport(a, Proto())
        transport.close()
        loop.run_until_complete(asyncio.wait_for(done, 5))
    finally:
        b.close()
    assert events == ["made", ("lost", None)]
