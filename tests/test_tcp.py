"""TCP connections with protocols: one body, run on asyncio's loop and on
uvloop_lite, asserting the same observable results."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import socket
import struct
import sys
import weakref
from asyncio import trsock

import pytest

from netutil import (LOCALHOST, MIB, Collector, Recorder, close_all, fill_until_paused,
                     free_port, listening_socket, payload, readable_now, tcp_pair)


def test_data_both_ways(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        tr.write(b"hello ")
        tr.write(bytearray(b"from "))
        tr.write(memoryview(b"client"))
        assert await srv.until(17) == b"hello from client"
        srv.transport.write(b"and back")
        assert await cli.until(8) == b"and back"
        tr.close()
        assert tr.is_closing()
        assert await cli.lost is None
        assert await srv.lost is None
        await close_all(server)
        return cli.events, srv.events

    cli_events, srv_events = loop.run_until_complete(main())
    assert cli_events == ["made", "data", "lost"]
    # eof_received() returned None: the transport closes itself.
    assert srv_events == ["made", "data", "eof", "lost"]


def test_one_mib_both_ways_at_once(loop):
    up, down = payload(MIB, 1), payload(MIB + 3, 2)

    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        tr.write(up)
        srv.transport.write(down)
        got_up, got_down = await asyncio.gather(srv.until(len(up)), cli.until(len(down)))
        assert tr.get_write_buffer_size() == 0
        await close_all(server, tr)
        return got_up, got_down

    got_up, got_down = loop.run_until_complete(main())
    assert got_up == up
    assert got_down == down


def test_writelines_and_mutable_buffers(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        ba = bytearray(b"mutable")
        tr.writelines([b"a", bytearray(b"b"), memoryview(b"c"), b"", ba])
        ba[:] = b"CHANGED"     # write() must have taken a copy
        big = payload(MIB, 5)
        tr.writelines([big[:1000], memoryview(big)[1000:], b"end"])
        tr.writelines([])
        tr.writelines(iter([b"!"]))
        want = b"abcmutable" + big + b"end!"
        got = await srv.until(len(want))
        await close_all(server, tr)
        return got, want

    got, want = loop.run_until_complete(main())
    assert got == want


def test_write_rejects_non_bytes(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        errors = []
        for bad in ("text", 42, None, [b"x"]):
            with pytest.raises(TypeError) as ei:
                tr.write(bad)
            errors.append(str(ei.value))
        tr.write(b"")          # empty writes are accepted and ignored
        assert tr.get_write_buffer_size() == 0
        await close_all(server, tr)
        return errors

    errors = loop.run_until_complete(main())
    assert errors == [
        "data argument must be a bytes-like object, not 'str'",
        "data argument must be a bytes-like object, not 'int'",
        "data argument must be a bytes-like object, not 'NoneType'",
        "data argument must be a bytes-like object, not 'list'",
    ]


def test_half_close_with_eof_received_true(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop, server_proto=Recorder(loop, keep_open=True))
        assert tr.can_write_eof() is True
        tr.write(b"request")
        tr.write_eof()
        tr.write_eof()        # a second call is a no-op
        with pytest.raises(RuntimeError, match="write_eof"):
            tr.write(b"more")
        await srv.eof
        assert bytes(srv.data) == b"request"
        # The server side is still open for writing after the peer's EOF.
        assert not srv.transport.is_closing()
        srv.transport.write(b"reply after half-close")
        assert await cli.until(22) == b"reply after half-close"
        srv.transport.close()
        await cli.lost
        await srv.lost
        await close_all(server)
        return cli.events, srv.events

    cli_events, srv_events = loop.run_until_complete(main())
    assert srv_events == ["made", "data", "eof", "lost"]
    assert cli_events == ["made", "data", "eof", "lost"]


def test_pause_and_resume_reading(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        assert tr.is_reading() is True
        tr.pause_reading()
        tr.pause_reading()            # idempotent
        assert tr.is_reading() is False
        srv.transport.write(b"while paused")
        assert readable_now(tr.get_extra_info("socket"))
        for _ in range(10):
            await asyncio.sleep(0)
        nothing = bytes(cli.data)
        tr.resume_reading()
        tr.resume_reading()
        assert tr.is_reading() is True
        got = await cli.until(12)
        tr.close()
        assert tr.is_reading() is False
        tr.resume_reading()           # no effect once closing
        assert tr.is_reading() is False
        await close_all(server)
        return nothing, got

    nothing, got = loop.run_until_complete(main())
    assert nothing == b""
    assert got == b"while paused"


def test_write_buffer_limits(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        limits = [tr.get_write_buffer_limits()]
        tr.set_write_buffer_limits(high=100)
        limits.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(high=400, low=10)
        limits.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(low=10)
        limits.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(0, 0)
        limits.append(tr.get_write_buffer_limits())
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=-1)
        await close_all(server, tr)
        return limits

    limits = loop.run_until_complete(main())
    assert limits == [(16384, 65536), (25, 100), (10, 400), (10, 40), (0, 0)]


def test_flow_control_pause_and_resume_writing(loop):
    high, low = 128 * 1024, 32 * 1024

    async def main():
        server, tr, cli, srv = await tcp_pair(
            loop, server_proto=Recorder(loop, pause_on_connect=True))
        tr.set_write_buffer_limits(high=high, low=low)
        written = fill_until_paused(tr, cli)
        assert cli.events[-1] == "pause"
        assert tr.get_write_buffer_size() > high
        # More writes while paused are buffered, with no second pause_writing().
        tr.write(b"tail")
        written += 4
        assert cli.events.count("pause") == 1
        srv.transport.resume_reading()
        await cli.resumed
        got = await srv.until(written)
        assert tr.get_write_buffer_size() == 0
        await close_all(server, tr)
        return cli.size_at_pause, cli.size_at_resume, len(got), written, cli.events

    at_pause, at_resume, received, written, events = loop.run_until_complete(main())
    assert at_pause > high
    assert at_resume <= low
    assert received == written
    assert events == ["made", "pause", "resume", "lost"]


def test_lowering_limits_pauses_at_once(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(
            loop, server_proto=Recorder(loop, pause_on_connect=True))
        fill_until_paused(tr, cli)          # default limits
        assert not cli.resumed.done()
        # Raising the high mark above the buffer size resumes the protocol.
        tr.set_write_buffer_limits(high=tr.get_write_buffer_size() * 4)
        resumed_by_raise = cli.resumed.done()
        srv.transport.resume_reading()
        await close_all(server, tr)
        await cli.lost
        return resumed_by_raise, cli.events

    resumed_by_raise, events = loop.run_until_complete(main())
    assert resumed_by_raise is False     # asyncio only resumes from the write path
    assert events[:2] == ["made", "pause"]


def test_extra_info(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        server_addr = server.sockets[0].getsockname()
        info = {}
        for side, t in (("client", tr), ("server", srv.transport)):
            sock = t.get_extra_info("socket")
            info[side] = dict(
                sock_type=type(sock),
                family=sock.family,
                type=sock.type,
                nodelay=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
                sockname=t.get_extra_info("sockname"),
                peername=t.get_extra_info("peername"),
                fileno_ok=sock.fileno() >= 0,
                missing=t.get_extra_info("no-such-key", "dflt"),
                sslcontext=t.get_extra_info("sslcontext"),
            )
        assert info["client"]["peername"] == server_addr
        assert info["server"]["sockname"] == server_addr
        assert info["client"]["sockname"] == info["server"]["peername"]
        await close_all(server, tr)
        return info

    info = loop.run_until_complete(main())
    for side in ("client", "server"):
        assert info[side]["sock_type"] is trsock.TransportSocket
        assert info[side]["family"] == socket.AF_INET
        assert info[side]["type"] == socket.SOCK_STREAM
        assert info[side]["nodelay"] is True
        assert info[side]["fileno_ok"]
        assert info[side]["missing"] == "dflt"
        assert info[side]["sslcontext"] is None
        assert info[side]["sockname"][0] == LOCALHOST


def test_extra_info_after_connection_lost(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        server_addr = server.sockets[0].getsockname()
        tr.close()
        await cli.lost
        await srv.lost
        got = (tr.get_extra_info("peername"), tr.get_extra_info("sockname"),
               srv.transport.get_extra_info("sockname"),
               srv.transport.get_extra_info("peername"))
        socks = [t.get_extra_info("socket") for t in (tr, srv.transport)]
        socks = [(type(s), s.fileno()) for s in socks]
        await close_all(server)
        return server_addr, got, socks

    server_addr, (peer, sockname, srv_sockname, srv_peer), socks = loop.run_until_complete(main())
    # The socket stays reachable, closed.
    assert socks == [(trsock.TransportSocket, -1)] * 2
    assert peer == server_addr
    assert srv_sockname == server_addr
    assert sockname == srv_peer and sockname[0] == LOCALHOST


def test_addresses_of_many_connections(loop):
    """Each connection's own addresses, also with several in a row to one
    server (uvloop_lite shares equal ones between transports)."""
    async def main():
        made = []

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                made.append(transport)

        server = await loop.create_server(Server, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        clients = [(await loop.create_connection(asyncio.Protocol, *addr))[0]
                   for _ in range(3)]
        while len(made) < 3:
            await asyncio.sleep(0)
        got = [(c.get_extra_info("sockname"), c.get_extra_info("peername"),
                c.get_extra_info("socket").getsockname()) for c in clients]
        served = sorted((t.get_extra_info("peername"), t.get_extra_info("sockname"))
                        for t in made)
        await close_all(server, *clients)
        for t in made:
            t.close()
        await asyncio.sleep(0)
        return addr, got, served

    addr, got, served = loop.run_until_complete(main())
    assert [peer for _, peer, _ in got] == [addr] * 3
    assert all(own == real for own, _, real in got)
    assert len({own for own, _, _ in got}) == 3
    assert served == sorted((own, addr) for own, _, _ in got)


def test_closed_transports_are_freed(loop):
    """Once a connection is lost on both sides, nothing of the loop's keeps
    either transport (uvloop_lite's fd map of open streams included)."""
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        refs = [weakref.ref(tr), weakref.ref(srv.transport)]
        tr.close()
        await cli.lost
        await srv.lost
        await close_all(server)
        cli.transport = srv.transport = None
        return refs

    refs = loop.run_until_complete(main())
    for _ in range(3):
        gc.collect()
    assert [r() for r in refs] == [None, None]


def test_abort_drops_queued_data(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(
            loop, server_proto=Recorder(loop, pause_on_connect=True))
        written = fill_until_paused(tr, cli)
        assert tr.get_write_buffer_size() > 0
        tr.abort()
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
        tr.abort()             # a second abort is harmless
        tr.close()
        exc = await cli.lost
        srv.transport.resume_reading()
        await srv.lost
        await close_all(server)
        return exc, written, len(srv.data), cli.events

    exc, written, received, events = loop.run_until_complete(main())
    assert exc is None
    assert received < written
    assert events == ["made", "pause", "lost"]


def test_close_flushes_queued_data_before_fin(loop):
    data = payload(8 * MIB, 3)

    async def main():
        server, tr, cli, srv = await tcp_pair(
            loop, server_proto=Recorder(loop, pause_on_connect=True))
        tr.write(data)
        queued = tr.get_write_buffer_size()
        tr.close()
        assert tr.is_closing()
        srv.transport.resume_reading()
        await srv.eof
        exc = await cli.lost
        await srv.lost
        await close_all(server)
        return queued, exc, bytes(srv.data), cli.events

    queued, exc, got, events = loop.run_until_complete(main())
    assert queued > 0
    assert exc is None
    assert got == data
    assert events == ["made", "pause", "resume", "lost"]


def test_writes_after_close_are_ignored_and_warned(loop, caplog):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        tr.write(b"before")
        tr.close()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(10):
                tr.write(b"after close")
        await cli.lost
        await srv.lost
        await close_all(server)
        return bytes(srv.data)

    got = loop.run_until_complete(main())
    assert got == b"before"
    warnings = [r for r in caplog.records
                if r.name == "asyncio" and r.getMessage() == "socket.send() raised exception."]
    # asyncio warns from the LOG_THRESHOLD_FOR_CONNLOST_WRITES-th ignored write on.
    assert len(warnings) == 6


def test_peer_reset_mid_write(loop):
    async def main():
        listener = listening_socket()
        try:
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            tr, cli = await loop.create_connection(lambda: Recorder(loop),
                                                   *listener.getsockname())
            conn, _ = await accept
        finally:
            listener.close()
        fill_until_paused(tr, cli)
        # SO_LINGER 0: close() sends RST, discarding the unread data.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        tr.write(b"keeps the write path busy")
        exc = await cli.lost
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
        tr.write(b"ignored")
        return exc

    exc = loop.run_until_complete(main())
    assert isinstance(exc, OSError)
    assert exc.errno in (errno.ECONNRESET, errno.EPIPE)


def test_buffered_protocol(loop):
    data = payload(4 * MIB, 7)

    async def main():
        srv = Collector(loop, bufsize=1000, keep_open=True)
        server = await loop.create_server(lambda: srv, LOCALHOST, 0)
        tr, cli = await loop.create_connection(lambda: Collector(loop, 65536),
                                               *server.sockets[0].getsockname())
        await srv.made
        tr.write(b"small")
        tr.write(data)
        tr.write_eof()
        got = await srv.eof
        srv.transport.write(b"pong")
        srv.transport.close()
        await cli.eof
        exc_cli, exc_srv = await cli.lost, await srv.lost
        await close_all(server)
        return got, bytes(cli.data), srv.calls, srv.sizehints, exc_cli, exc_srv

    got, back, calls, hints, exc_cli, exc_srv = loop.run_until_complete(main())
    assert got == b"small" + data
    assert back == b"pong"
    assert calls >= len(got) // 1000     # never more than the buffer per call
    assert hints == {-1}
    assert exc_cli is None and exc_srv is None


def _raises(exc_type):
    def fail(self, *args):
        raise exc_type("boom")
    return fail


# A server protocol's failure: (protocol base, its method, the method's body,
# the exception connection_lost() gets, the exception handler's message).
FATAL_PROTOCOL_FAILURES = {
    "get_buffer_raises": (Collector, "get_buffer", _raises(ValueError), ValueError,
                          "Fatal error: protocol.get_buffer() call failed."),
    "data_received_raises": (Recorder, "data_received", _raises(ZeroDivisionError),
                             ZeroDivisionError,
                             "Fatal error: protocol.data_received() call failed."),
    "readonly_buffer": (Collector, "get_buffer", lambda self, sizehint: b"readonly",
                        TypeError, "Fatal read error on socket transport"),
    "empty_buffer": (Collector, "get_buffer", lambda self, sizehint: bytearray(),
                     RuntimeError, "Fatal error: protocol.get_buffer() call failed."),
}


@pytest.mark.parametrize("failure", list(FATAL_PROTOCOL_FAILURES))
def test_protocol_failure_is_fatal(loop, failure):
    base, method, body, exc_type, message = FATAL_PROTOCOL_FAILURES[failure]
    Bad = type("Bad", (base,), {method: body})

    async def main():
        handled = []
        loop.set_exception_handler(lambda lp, ctx: handled.append(ctx))
        server, tr, cli, srv = await tcp_pair(loop, server_proto=Bad(loop))
        tr.write(b"x")
        exc = await srv.lost
        await cli.lost
        await close_all(server, tr)
        return type(exc), [(h["message"], type(h["exception"])) for h in handled]

    assert loop.run_until_complete(main()) == (exc_type, [(message, exc_type)])


def test_happy_eyeballs_and_interleave_accepted(loop):
    async def main():
        srv = Recorder(loop)
        server = await loop.create_server(lambda: srv, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        tr, cli = await loop.create_connection(
            lambda: Recorder(loop), LOCALHOST, port, happy_eyeballs_delay=0.25, interleave=1)
        tr.write(b"he")
        got = await srv.until(2)
        await close_all(server, tr)
        return got

    assert loop.run_until_complete(main()) == b"he"


def test_local_addr(loop):
    async def main():
        srv = Recorder(loop)
        server = await loop.create_server(lambda: srv, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        local_port = free_port()
        tr, cli = await loop.create_connection(
            lambda: Recorder(loop), LOCALHOST, port, local_addr=(LOCALHOST, local_port))
        await srv.made
        names = (tr.get_extra_info("sockname"), srv.transport.get_extra_info("peername"))
        await close_all(server, tr)
        return local_port, names

    local_port, (sockname, peer) = loop.run_until_complete(main())
    assert sockname == (LOCALHOST, local_port)
    assert peer == (LOCALHOST, local_port)


def test_connect_with_sock(loop):
    async def main():
        srv = Recorder(loop)
        server = await loop.create_server(lambda: srv, LOCALHOST, 0)
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, server.sockets[0].getsockname())
        tr, cli = await loop.create_connection(lambda: Recorder(loop), sock=sock)
        same_fd = tr.get_extra_info("socket").fileno() == sock.fileno()
        tr.write(b"via sock")
        got = await srv.until(8)
        tr.close()
        await cli.lost
        closed = sock.fileno() == -1
        await close_all(server)
        return same_fd, got, closed

    same_fd, got, closed = loop.run_until_complete(main())
    assert same_fd
    assert got == b"via sock"
    assert closed      # the transport closes the socket it was given


def test_connect_bad_arguments(loop):
    async def main():
        errors = []
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with udp:
            for kwargs in (dict(sock=udp), dict(host=LOCALHOST, port=1, sock=udp), dict(),
                           dict(host=LOCALHOST, port=1, server_hostname="x"),
                           dict(host=LOCALHOST, port=1, ssl_handshake_timeout=1)):
                with pytest.raises(ValueError) as ei:
                    await loop.create_connection(asyncio.Protocol, **kwargs)
                errors.append(str(ei.value))
        port = free_port()
        with pytest.raises(OSError) as ei:
            await loop.create_connection(asyncio.Protocol, LOCALHOST, port)
        errors.append((type(ei.value), ei.value.errno))
        return errors, port

    errors, port = loop.run_until_complete(main())
    assert errors[:2] == [f"A Stream Socket was expected, got {errors[0].split('got ', 1)[1]}",
                          "host/port and sock can not be specified at the same time"]
    assert errors[2] == "host and port was not specified and no sock specified"
    assert errors[3] == "server_hostname is only meaningful with ssl"
    assert errors[4] == "ssl_handshake_timeout is only meaningful with ssl"
    assert errors[5] == (ConnectionRefusedError, errno.ECONNREFUSED)


def test_pause_reading_in_connection_made(loop, loop_kind):
    if loop_kind == "asyncio" and sys.version_info < (3, 11):
        # Its transport adds the reader after connection_made() regardless.
        # uvloop_lite keeps the pause on every version.
        pytest.skip("asyncio < 3.11 starts reading although connection_made() paused")

    class Paused(Recorder):
        def connection_made(self, transport):
            self.reading_at_made = transport.is_reading()
            super().connection_made(transport)

    async def main():
        server, tr, cli, srv = await tcp_pair(
            loop, server_proto=Paused(loop, pause_on_connect=True))
        state = [srv.reading_at_made, srv.transport.is_reading()]
        tr.write(b"held back")
        srv_sock = srv.transport.get_extra_info("socket")
        assert readable_now(srv_sock)
        for _ in range(10):
            await asyncio.sleep(0)
        state.append(bytes(srv.data))
        srv.transport.resume_reading()
        state.append(await srv.until(9))
        await close_all(server, tr)
        return state

    assert loop.run_until_complete(main()) == [True, False, b"", b"held back"]


def test_set_protocol_switches_to_buffered(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        tr.write(b"plain")
        await srv.until(5)
        buffered = Collector(loop, 16)
        srv.transport.set_protocol(buffered)
        same = srv.transport.get_protocol() is buffered
        tr.write(b"now buffered")
        tr.write_eof()
        got = await buffered.eof
        await close_all(server, tr)
        return same, bytes(srv.data), got

    assert loop.run_until_complete(main()) == (True, b"plain", b"now buffered")


def test_buffered_protocol_pauses_or_closes_inside_get_buffer(loop):
    class Pausing(Collector):
        action = "pause"

        def get_buffer(self, sizehint):
            if not self.calls:
                if self.action == "pause":
                    self.transport.pause_reading()
                else:
                    self.transport.close()
            return super().get_buffer(sizehint)

        def buffer_updated(self, nbytes):
            super().buffer_updated(nbytes)
            if not self.first.done():
                self.first.set_result(bytes(self.data))

    async def main(action):
        proto = Pausing(loop, 1024)
        proto.action = action
        proto.first = loop.create_future()
        server, tr, cli, srv = await tcp_pair(loop, server_proto=proto)
        tr.write(b"first")
        first = await proto.first         # the read in progress completes
        state = [first, srv.transport.is_reading()]
        if action == "pause":
            tr.write(b"second")
            assert readable_now(srv.transport.get_extra_info("socket"))
            for _ in range(5):
                await asyncio.sleep(0)
            state.append(bytes(proto.data))
            srv.transport.resume_reading()
            tr.write_eof()
            state.append(await proto.eof)
        state.append(await proto.lost)
        await close_all(server, tr)
        return state

    assert loop.run_until_complete(main("pause")) == [
        b"first", False, b"first", b"firstsecond", None]
    assert loop.run_until_complete(main("close")) == [b"first", False, None]


def test_transport_methods_can_be_patched(loop):
    """Libraries' tests replace a transport's method on the instance
    (uvicorn: ``websocket.transport.write = lambda data: None``), as
    asyncio's transports allow."""
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        sent = []
        srv.transport.write = sent.append
        srv.transport.write(b"kept")
        srv.transport.custom = "attribute"
        del srv.transport.write   # the class's write() again
        srv.transport.write(b"real")
        assert await cli.until(4) == b"real"
        await close_all(server, tr)
        return sent, srv.transport.custom

    assert loop.run_until_complete(main()) == ([b"kept"], "attribute")
