"""create_datagram_endpoint: UDP over IPv4/IPv6 and Unix datagram sockets,
one body run on asyncio's loop and on uvloop_lite."""

from __future__ import annotations

import asyncio
import gc
import re
import socket
import sys
import warnings

import pytest

from netutil import HAS_IPV6, LOCALHOST


# asyncio's datagram transports have pause_reading()/resume_reading()/
# is_reading() from 3.11 on; on 3.9 and 3.10 they raise NotImplementedError.
# uvloop_lite's always have them.
ASYNCIO_DGRAM_READ_CONTROL = sys.version_info >= (3, 11)
# 3.13 sends empty datagrams; before, sendto(b"") sent nothing.
SENDS_EMPTY = sys.version_info >= (3, 13)
# 3.13 counts 8 header bytes for each datagram it queues; up to 3.13.5 its
# _sendto_ready() took only the payload off again, so every datagram that went
# through the queue left 8 bytes in get_write_buffer_size() (CPython
# gh-135444).  uvloop_lite's count balances.
ASYNCIO_DGRAM_HEADER_LEAK = (3, 13) <= sys.version_info[:3] < (3, 13, 6)


def _reads_under_control(loop_kind: str) -> bool:
    return loop_kind == "uvloop_lite" or ASYNCIO_DGRAM_READ_CONTROL


class _QuietReceiver:
    """The receiving end of a flow-control test, started with reading paused.

    Where the transport has pause_reading() it is a paused transport.  On
    asyncio 3.9/3.10 it is a bound socket that nobody reads, which gets its
    transport when reading resumes; that transport is checked to refuse
    pause_reading() and is_reading() as asyncio does there."""

    def __init__(self, loop, loop_kind: str) -> None:
        self.loop = loop
        self.protocol = DatagramRecorder(loop)
        self.transport = None
        self._sock = None
        self._native = _reads_under_control(loop_kind)

    async def start(self, local_addr, family=0):
        if self._native:
            self.transport, _ = await self.loop.create_datagram_endpoint(
                lambda: self.protocol, local_addr=local_addr, family=family)
            self.transport.pause_reading()
            return self.transport.get_extra_info("sockname")
        self._sock = socket.socket(family or socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(local_addr)
        return self._sock.getsockname()

    def is_reading(self):
        """False while paused; None where the transport has no is_reading()."""
        return self.transport.is_reading() if self._native else None

    async def resume(self):
        if self._native:
            self.transport.resume_reading()
        else:
            self.transport, _ = await self.loop.create_datagram_endpoint(
                lambda: self.protocol, sock=self._sock)
            with pytest.raises(NotImplementedError):
                self.transport.pause_reading()
            with pytest.raises(NotImplementedError):
                self.transport.is_reading()
        return self.transport


class DatagramRecorder(asyncio.DatagramProtocol):
    """Records every callback; ``until(n)`` resolves after n datagrams."""

    def __init__(self, loop):
        self.loop = loop
        self.transport = None
        self.events: list[str] = []
        self.datagrams: list[tuple[bytes, object]] = []
        self.errors: list[BaseException] = []
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.error = loop.create_future()
        self.paused = loop.create_future()
        self.resumed = loop.create_future()
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def connection_made(self, transport):
        self.events.append("made")
        self.transport = transport
        self.made.set_result(transport)

    def datagram_received(self, data, addr):
        assert isinstance(data, bytes)
        self.events.append("datagram")
        self.datagrams.append((data, addr))
        for n, fut in self._waiters:
            if not fut.done() and len(self.datagrams) >= n:
                fut.set_result(list(self.datagrams))

    def error_received(self, exc):
        self.events.append("error")
        self.errors.append(exc)
        if not self.error.done():
            self.error.set_result(exc)

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)

    def pause_writing(self):
        self.events.append("pause")
        if not self.paused.done():
            self.paused.set_result(self.transport.get_write_buffer_size())

    def resume_writing(self):
        self.events.append("resume")
        if not self.resumed.done():
            self.resumed.set_result(self.transport.get_write_buffer_size())

    def until(self, n: int) -> asyncio.Future:
        fut = self.loop.create_future()
        self._waiters.append((n, fut))
        if len(self.datagrams) >= n:
            fut.set_result(list(self.datagrams))
        return fut


async def _close(*transports):
    for tr in transports:
        tr.close()
    for tr in transports:
        await tr.get_protocol().lost if tr.get_protocol() else None


def test_local_and_remote_addr(loop):
    async def main():
        srv_tr, srv = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=(LOCALHOST, 0))
        srv_addr = srv_tr.get_extra_info("sockname")
        cli_tr, cli = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), remote_addr=srv_addr)
        cli_addr = cli_tr.get_extra_info("sockname")
        info = dict(
            srv_peer=srv_tr.get_extra_info("peername"),
            cli_peer=cli_tr.get_extra_info("peername"),
            srv_family=srv_tr.get_extra_info("socket").family,
            srv_type=srv_tr.get_extra_info("socket").type,
            buf=cli_tr.get_write_buffer_size(),
            closing=cli_tr.is_closing(),
        )
        cli_tr.sendto(b"ping")
        cli_tr.sendto(bytearray(b"ping2"), None)
        cli_tr.sendto(memoryview(b"ping3"), srv_addr)
        got = await srv.until(3)
        for data, addr in got:
            srv_tr.sendto(data.upper(), addr)
        back = await cli.until(3)
        with pytest.raises(ValueError):
            cli_tr.sendto(b"x", (LOCALHOST, 1))
        with pytest.raises(TypeError):
            cli_tr.sendto("str")
        srv_tr.close()
        assert srv_tr.is_closing()
        assert await srv.lost is None
        cli_tr.close()
        assert await cli.lost is None
        return info, got, back, srv.events, cli.events, srv_addr, cli_addr

    info, got, back, srv_events, cli_events, srv_addr, cli_addr = loop.run_until_complete(main())
    assert info == dict(srv_peer=None, cli_peer=srv_addr, srv_family=socket.AF_INET,
                        srv_type=socket.SOCK_DGRAM, buf=0, closing=False)
    assert got == [(b"ping", cli_addr), (b"ping2", cli_addr), (b"ping3", cli_addr)]
    assert back == [(b"PING", srv_addr), (b"PING2", srv_addr), (b"PING3", srv_addr)]
    assert srv_events == ["made", "datagram", "datagram", "datagram", "lost"]
    assert cli_events == ["made", "datagram", "datagram", "datagram", "lost"]


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")
def test_ipv6(loop):
    async def main():
        srv_tr, srv = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=("::1", 0))
        addr = srv_tr.get_extra_info("sockname")
        cli_tr, cli = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), family=socket.AF_INET6)
        cli_tr.sendto(b"six", addr[:2])
        (data, from_addr), = await srv.until(1)
        srv_tr.sendto(b"back", from_addr)
        (data2, from2), = await cli.until(1)
        await _close(srv_tr, cli_tr)
        return addr, data, from_addr, data2, from2, srv_tr.get_extra_info("socket").family

    addr, data, from_addr, data2, from2, family = loop.run_until_complete(main())
    assert len(addr) == 4 and addr[0] == "::1"
    assert data == b"six" and from_addr[0] == "::1" and len(from_addr) == 4
    assert data2 == b"back" and from2 == addr
    assert family == socket.AF_INET6


def test_sock_argument(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCALHOST, 0))
    sock_addr = sock.getsockname()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((LOCALHOST, 0))
    peer.settimeout(10)

    async def main():
        tr, pr = await loop.create_datagram_endpoint(lambda: DatagramRecorder(loop), sock=sock)
        assert tr.get_extra_info("socket").fileno() == sock.fileno()
        tr.sendto(b"via sock", peer.getsockname())
        data, addr = await loop.run_in_executor(None, peer.recvfrom, 100)
        peer.sendto(b"reply", addr)
        got = await pr.until(1)
        tr.close()
        await pr.lost
        return data, addr, got

    try:
        data, addr, got = loop.run_until_complete(main())
        assert data == b"via sock" and addr == sock_addr
        assert got == [(b"reply", peer.getsockname())]
        # The transport closed the socket it was given.
        assert sock.fileno() == -1
    finally:
        peer.close()
        sock.close()


def test_sock_with_other_arguments_is_refused(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def main():
        with pytest.raises(ValueError) as info:
            await loop.create_datagram_endpoint(DatagramRecorder, sock=sock,
                                                local_addr=(LOCALHOST, 0))
        return str(info.value)

    want = re.escape("socket modifier keyword arguments can not be used when sock is "
                     "specified. (local_addr=('127.0.0.1', 0)")
    if sys.version_info < (3, 11):
        # reuse_address defaults to a sentinel object there, which is truthy.
        want += r", reuse_address=<object object at 0x[0-9a-f]+>"
    try:
        assert re.fullmatch(want + r"\)", loop.run_until_complete(main()))
    finally:
        sock.close()


def test_stream_sock_is_refused(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    async def main():
        expected = ("A datagram socket was expected" if sys.version_info >= (3, 13)
                    else "A UDP Socket was expected")
        with pytest.raises(ValueError, match=f"^{expected}, got <socket.socket "):
            await loop.create_datagram_endpoint(DatagramRecorder, sock=sock)

    try:
        loop.run_until_complete(main())
    finally:
        sock.close()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port(loop):
    async def main():
        tr1, pr1 = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=(LOCALHOST, 0), reuse_port=True)
        addr = tr1.get_extra_info("sockname")
        tr2, pr2 = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=addr, reuse_port=True)
        flags = [tr.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
                 for tr in (tr1, tr2)]
        same = tr2.get_extra_info("sockname") == addr
        # Without reuse_port the address is taken.
        with pytest.raises(OSError):
            await loop.create_datagram_endpoint(
                lambda: DatagramRecorder(loop), local_addr=addr)
        await _close(tr1, tr2)
        return flags, same

    flags, same = loop.run_until_complete(main())
    assert all(flags) and same


def test_allow_broadcast(loop):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=(LOCALHOST, 0), allow_broadcast=True)
        on = tr.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        tr2, pr2 = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=(LOCALHOST, 0))
        off = tr2.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        await _close(tr, tr2)
        return on, off

    on, off = loop.run_until_complete(main())
    assert on and not off


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_unix_datagram(loop, dgram_paths):
    srv_path, cli_path = map(str, dgram_paths)

    async def main():
        srv_tr, srv = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=srv_path, family=socket.AF_UNIX)
        cli_tr, cli = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=cli_path, remote_addr=srv_path,
            family=socket.AF_UNIX)
        info = (srv_tr.get_extra_info("sockname"), cli_tr.get_extra_info("sockname"),
                cli_tr.get_extra_info("peername"), srv_tr.get_extra_info("socket").family)
        cli_tr.sendto(b"unix datagram")
        cli_tr.sendto(b"")   # empty datagrams: sent on 3.13+, dropped before
        cli_tr.sendto(b"second")
        got = await srv.until(len(want))
        srv_tr.sendto(b"back", cli_path)
        back = await cli.until(1)
        await _close(srv_tr, cli_tr)
        return info, got, back

    want = [(b"unix datagram", cli_path), (b"", cli_path), (b"second", cli_path)]
    if not SENDS_EMPTY:
        del want[1]
    info, got, back = loop.run_until_complete(main())
    assert info == (srv_path, cli_path, srv_path, socket.AF_UNIX)
    assert got == want
    assert back == [(b"back", srv_path)]


def _closed_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()


@pytest.mark.parametrize("case", ["refused", "too_large"])
def test_socket_error_goes_to_error_received(loop, case):
    if case == "refused":
        # A connected UDP socket learns of ICMP port unreachable from the kernel.
        endpoint, datagram, addr, want = (
            dict(remote_addr=_closed_udp_port()), b"anyone?", None, ConnectionRefusedError)
    else:   # larger than any UDP datagram: sendto() itself fails
        endpoint, datagram, addr, want = (
            dict(local_addr=(LOCALHOST, 0)), b"x" * 70000, (LOCALHOST, 9), OSError)

    async def main():
        tr, pr = await loop.create_datagram_endpoint(lambda: DatagramRecorder(loop), **endpoint)
        tr.sendto(datagram, addr)
        exc = await pr.error
        closing = tr.is_closing()
        tr.close()
        await pr.lost
        return exc, closing, pr.events

    exc, closing, events = loop.run_until_complete(main())
    assert isinstance(exc, want) and not closing
    assert events == ["made", "error", "lost"]


def test_close_and_abort(loop):
    async def main():
        tr, pr = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), remote_addr=(LOCALHOST, 9))
        sock = tr.get_extra_info("socket")
        tr.close()
        tr.close()   # idempotent
        assert tr.is_closing()
        lost = await pr.lost
        tr.sendto(b"after close")   # connected: ignored, no exception
        tr2, pr2 = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=(LOCALHOST, 0))
        tr2.abort()
        lost2 = await pr2.lost
        return lost, lost2, pr.events, pr2.events, sock.fileno()

    lost, lost2, events, events2, fd = loop.run_until_complete(main())
    assert lost is None and lost2 is None
    assert events == ["made", "lost"] and events2 == ["made", "lost"]
    assert fd == -1


def test_write_buffer_size_and_pause_reading(loop, loop_kind):
    async def main():
        receiver = _QuietReceiver(loop, loop_kind)
        addr = await receiver.start((LOCALHOST, 0))
        srv = receiver.protocol
        cli_tr, cli = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=(LOCALHOST, 0))
        sizes = [cli_tr.get_write_buffer_size()]
        cli_tr.set_write_buffer_limits(high=100, low=10)
        limits = cli_tr.get_write_buffer_limits()
        reading_paused = receiver.is_reading()
        for i in range(5):
            cli_tr.sendto(b"%d" % i, addr)
        sizes.append(cli_tr.get_write_buffer_size())
        # Round trip through a second socket: the datagrams above are queued
        # in the kernel by now.
        srv_tr = await receiver.resume()
        got = await srv.until(5)
        await _close(srv_tr, cli_tr)
        return sizes, limits, reading_paused, got

    sizes, limits, reading_paused, got = loop.run_until_complete(main())
    assert sizes == [0, 0]
    assert limits == (10, 100)
    assert reading_paused is (False if _reads_under_control(loop_kind) else None)
    assert [d for d, _ in got] == [b"0", b"1", b"2", b"3", b"4"]


def test_many_datagrams(loop):
    n = 200

    async def main():
        srv_tr, srv = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=(LOCALHOST, 0))
        addr = srv_tr.get_extra_info("sockname")
        cli_tr, cli = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), remote_addr=addr)
        for i in range(n):
            cli_tr.sendto(b"%05d" % i + b"." * 1000)
            if i % 50 == 49:
                await srv.until(i + 1)
        got = await srv.until(n)
        await _close(srv_tr, cli_tr)
        return got

    got = loop.run_until_complete(main())
    assert [d[:5] for d, _ in got] == [b"%05d" % i for i in range(n)]


def test_remote_addr_resolution_error(loop):
    async def main():
        with pytest.raises(OSError) as info:
            await loop.create_datagram_endpoint(DatagramRecorder,
                                                remote_addr=("nonexistent.invalid", 9))
        return type(info.value), info.value.args

    got = loop.run_until_complete(main())
    want_exc = None
    try:
        socket.getaddrinfo("nonexistent.invalid", 9, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        want_exc = exc
    assert got == (type(want_exc), want_exc.args)


def test_protocol_factory_error(loop):
    # (BaseEventLoop.create_datagram_endpoint leaves the socket it made to
    # the garbage collector then, on both loops.)
    def bad_factory():
        raise ZeroDivisionError

    async def main():
        with pytest.raises(ZeroDivisionError):
            await loop.create_datagram_endpoint(bad_factory, local_addr=(LOCALHOST, 0))
        tr, pr = await loop.create_datagram_endpoint(lambda: DatagramRecorder(loop),
                                                     local_addr=(LOCALHOST, 0))
        await _close(tr)
        return pr.events

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert loop.run_until_complete(main()) == ["made", "lost"]
        gc.collect()



@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_unix_datagram_write_buffer_and_flow_control(loop, loop_kind, dgram_paths):
    # A Unix datagram socket blocks its sender while the receiver's queue is
    # full: the transport queues, reports its buffer size, pauses the
    # protocol, and sends everything in order once the receiver reads.
    srv_path, cli_path = map(str, dgram_paths)

    async def main():
        receiver = _QuietReceiver(loop, loop_kind)
        await receiver.start(srv_path, family=socket.AF_UNIX)
        srv = receiver.protocol
        cli_tr, cli = await loop.create_datagram_endpoint(
            lambda: DatagramRecorder(loop), local_addr=cli_path, remote_addr=srv_path,
            family=socket.AF_UNIX)
        cli_tr.set_write_buffer_limits(high=8000, low=2000)
        n = 0
        while cli_tr.get_write_buffer_size() == 0:
            cli_tr.sendto(b"%06d" % n + b"." * 994)
            n += 1
            assert n < 1_000_000, "the kernel never pushed back"
        sent_at_once = n - 1
        first_queued = cli_tr.get_write_buffer_size()
        while not cli.paused.done():
            cli_tr.sendto(b"%06d" % n + b"." * 994)
            n += 1
        at_pause = cli.paused.result()
        srv_tr = await receiver.resume()
        at_resume = await cli.resumed
        got = await srv.until(n)
        final = cli_tr.get_write_buffer_size()
        await _close(srv_tr, cli_tr)
        return (n, n - sent_at_once, first_queued, at_pause, at_resume, final,
                [d[:6] for d, _ in got], cli.events)

    n, queued, first_queued, at_pause, at_resume, final, got, events = \
        loop.run_until_complete(main())
    assert first_queued == 1000 + (8 if sys.version_info >= (3, 13) else 0)
    assert at_pause > 8000
    assert at_resume <= 2000
    leaked = 8 * queued if loop_kind == "asyncio" and ASYNCIO_DGRAM_HEADER_LEAK else 0
    assert final == leaked
    assert got == [b"%06d" % i for i in range(n)]
    assert events == ["made", "pause", "resume", "lost"]
