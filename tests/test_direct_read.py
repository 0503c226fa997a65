"""Large reads on a Protocol's transport: after a read of 8 KiB or more,
uvloop_lite (on CPython) reads the socket with its own recv() into the bytes
handed to data_received(), instead of copying them out of the loop's buffer,
and goes back to the loop's buffer at the first short read.  The observable
behaviour (data, order, EOF, errors, pausing, protocol switches) must be
asyncio's in both modes: every body runs on both loops."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from netutil import MIB, Collector, Recorder, close_all, payload, tcp_pair
from uvloop_lite._handles import stream

# PyPy keeps reading into the loop's buffer (see stream._DIRECT_MIN).
DIRECT = stream._DIRECT_MIN > 0


def _mode(loop_kind: str, transport) -> bool | None:
    """Whether our transport is in direct mode (None on asyncio's loop)."""
    return transport._direct if loop_kind == "uvloop_lite" else None


def _check_mode(loop_kind: str, transport, direct: bool) -> None:
    if loop_kind == "uvloop_lite" and DIRECT:
        assert transport._direct is direct


def test_large_then_small_then_large(loop, loop_kind):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        big = payload(MIB)
        expected = bytearray()
        tr.write(big)
        expected += big
        assert await srv.until(len(expected)) == bytes(expected)
        _check_mode(loop_kind, srv.transport, True)
        for i in range(5):   # short reads: back to the loop's buffer at the first
            msg = b"small %d;" % i
            tr.write(msg)
            expected += msg
            assert await srv.until(len(expected)) == bytes(expected)
            _check_mode(loop_kind, srv.transport, False)
        big2 = payload(3 * MIB, seed=7)
        tr.write(big2)
        expected += big2
        assert await srv.until(len(expected)) == bytes(expected)
        _check_mode(loop_kind, srv.transport, True)
        await close_all(server, tr)
        return srv.events

    assert loop.run_until_complete(main()) == ["made", "data", "eof", "lost"]


def test_unix_socket_large_reads(loop, loop_kind, tmp_path):
    async def main():
        path = str(tmp_path / "s.sock")
        srv = Recorder(loop)
        server = await loop.create_unix_server(lambda: srv, path)
        tr, cli = await loop.create_unix_connection(lambda: Recorder(loop), path)
        await srv.made
        big = payload(2 * MIB, seed=3)
        tr.write(big)
        assert await srv.until(len(big)) == big
        _check_mode(loop_kind, srv.transport, True)
        tr.write_eof()
        await srv.eof
        await srv.lost
        await close_all(server, tr)
        return srv.events

    assert loop.run_until_complete(main()) == ["made", "data", "eof", "lost"]


def test_eof_after_large_data(loop, loop_kind):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        srv.keep_open = True
        big = payload(2 * MIB, seed=1)
        tr.write(big)
        tr.write_eof()
        await srv.eof
        assert bytes(srv.data) == big   # every byte before eof_received()
        # eof_received() returned True: the transport stays open for writing.
        srv.transport.write(b"bye")
        assert await cli.until(3) == b"bye"
        srv.transport.close()
        assert await srv.lost is None
        await close_all(server, tr)
        return srv.events

    assert loop.run_until_complete(main()) == ["made", "data", "eof", "lost"]


def test_reset_in_direct_mode(loop, loop_kind):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        big = payload(MIB, seed=2)
        tr.write(big)
        assert await srv.until(len(big)) == big
        _check_mode(loop_kind, srv.transport, True)
        # The client resets the connection (SO_LINGER 0): the server's next
        # read fails with ECONNRESET.
        sock = tr.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        tr.abort()
        exc = await srv.lost
        await close_all(server)
        return type(exc), srv.events

    exc_type, events = loop.run_until_complete(main())
    assert exc_type is ConnectionResetError
    assert events == ["made", "data", "lost"]


def test_pause_and_resume_in_direct_mode(loop, loop_kind):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        first = payload(MIB, seed=4)
        tr.write(first)
        assert await srv.until(len(first)) == first
        _check_mode(loop_kind, srv.transport, True)
        srv.transport.pause_reading()
        second = payload(MIB, seed=5)
        tr.write(second)
        for _ in range(20):   # loop iterations: nothing is read while paused
            await asyncio.sleep(0)
        assert len(srv.data) == len(first)
        srv.transport.resume_reading()
        assert await srv.until(2 * MIB) == first + second
        await close_all(server, tr)

    loop.run_until_complete(main())


def test_switch_to_buffered_protocol_in_direct_mode(loop, loop_kind):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        first = payload(MIB, seed=6)
        tr.write(first)
        assert await srv.until(len(first)) == first
        _check_mode(loop_kind, srv.transport, True)
        collector = Collector(loop, bufsize=8192)
        srv.transport.set_protocol(collector)
        _check_mode(loop_kind, srv.transport, False)
        second = payload(MIB, seed=8)
        tr.write(second)
        tr.write_eof()
        assert await collector.eof == second
        assert await collector.lost is None
        await close_all(server, tr)

    loop.run_until_complete(main())


def test_data_received_error_in_direct_mode(loop, loop_kind):
    class Failing(Recorder):
        def data_received(self, data):
            super().data_received(data)
            if len(self.data) >= MIB:
                raise ValueError("boom")

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def main():
        srv = Failing(loop)
        server, tr, cli, _ = await tcp_pair(loop, server_proto=srv)
        tr.write(payload(2 * MIB, seed=9))
        exc = await srv.lost
        await close_all(server, tr)
        return exc

    exc = loop.run_until_complete(main())
    assert isinstance(exc, ValueError)
    assert [c["message"] for c in contexts] == [
        "Fatal error: protocol.data_received() call failed."]
    assert contexts[0]["exception"] is exc


def test_read_sizes_stay_in_bounds(uv_loop):
    """A stream read delivers at most what the loop allows for one: the
    direct read's size, or (PyPy) the loop's buffer."""
    from uvloop_lite import _loop

    loop = uv_loop
    limit = _loop._READ_BUFFER_SIZE if not DIRECT else stream._DIRECT_MAX
    sizes = []

    class Sizes(Recorder):
        def data_received(self, data):
            sizes.append(len(data))
            super().data_received(data)

    async def main():
        srv = Sizes(loop)
        server, tr, cli, _ = await tcp_pair(loop, server_proto=srv)
        big = payload(8 * MIB, seed=11)
        tr.write(big)
        assert await srv.until(len(big)) == big
        await close_all(server, tr)

    loop.run_until_complete(main())
    assert max(sizes) <= limit


def test_sock_recv_whole_datagram(loop):
    """sock_recv() with a large n returns a whole datagram."""
    async def main():
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with a, b:
            a.bind(("127.0.0.1", 0))
            a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            a.setblocking(False)
            msg = payload(65507, seed=12)
            b.sendto(msg, a.getsockname())
            return await loop.sock_recv(a, 1 << 20)

    assert loop.run_until_complete(main()) == payload(65507, seed=12)


def test_sock_recv_stream_large_n(loop):
    async def main():
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            msg = payload(4 * MIB, seed=13)
            got = bytearray()
            writer = loop.run_in_executor(None, b.sendall, msg)
            while len(got) < len(msg):
                got += await loop.sock_recv(a, 1 << 20)
            await writer
            return bytes(got) == msg

    assert loop.run_until_complete(main())
