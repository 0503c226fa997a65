"""UDP on uv_udp_t (uvloop_lite/_handles/udp.py): the address conversions in
both directions, what is sent through the Python socket instead, errors,
contexts and socket options on both loops; then, on uvloop_lite only, the
send queue (libuv's, and the one for datagrams the Python socket must send),
driven by making uv_udp_try_send() report EAGAIN."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import sys

import pytest

from netutil import HAS_IPV6, LOCALHOST

from uvloop_lite import _datagram
from uvloop_lite._ffi import lib
from uvloop_lite._handles import udp

HEADER = 8 if sys.version_info >= (3, 13) else 0
SENDS_EMPTY = sys.version_info >= (3, 13)


needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback")

var = contextvars.ContextVar("var", default="unset")


class Proto(asyncio.DatagramProtocol):
    def __init__(self, loop, raise_on: bytes | None = None):
        self.loop = loop
        self.raise_on = raise_on
        self.transport = None
        self.events: list = []
        self.datagrams: list = []
        self.contexts: list = []
        self.lost = loop.create_future()
        self._waiters: list = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.events.append("datagram")
        self.datagrams.append((data, addr))
        self.contexts.append(var.get())
        for n, fut in self._waiters:
            if not fut.done() and len(self.datagrams) >= n:
                fut.set_result(None)
        if data == self.raise_on:
            raise ZeroDivisionError("from datagram_received")

    def error_received(self, exc):
        self.events.append(("error", type(exc), exc.args))

    def pause_writing(self):
        self.events.append(("pause", self.transport.get_write_buffer_size()))

    def resume_writing(self):
        self.events.append(("resume", self.transport.get_write_buffer_size()))

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc) if exc is not None else None))
        self.lost.set_result(exc)

    async def until(self, n: int) -> list:
        if len(self.datagrams) < n:
            fut = self.loop.create_future()
            self._waiters.append((n, fut))
            await asyncio.wait_for(fut, 10)
        return self.datagrams


async def _endpoint(loop, **kw):
    return await loop.create_datagram_endpoint(lambda: Proto(loop), **kw)


async def _pair(loop, connect: bool = False):
    """A receiving endpoint on LOCALHOST and a sending one, bound there too
    or (``connect``) connected to the first: srv, its protocol, cli, its."""
    srv, sp = await _endpoint(loop, local_addr=(LOCALHOST, 0))
    if connect:
        cli, cp = await _endpoint(loop, remote_addr=srv.get_extra_info("sockname"))
    else:
        cli, cp = await _endpoint(loop, local_addr=(LOCALHOST, 0))
    return srv, sp, cli, cp


async def _close(*transports):
    """close() each, then wait for each one's connection_lost()."""
    protocols = [tr.get_protocol() for tr in transports]
    for tr in transports:
        tr.close()
    for pr in protocols:
        await pr.lost


async def _settle(loop, rounds: int = 5):
    for _ in range(rounds):
        await asyncio.sleep(0.01)


def _record_handler(loop) -> list:
    calls: list = []
    loop.set_exception_handler(lambda lp, ctx: calls.append(ctx))
    return calls


# -- both loops --------------------------------------------------------------------


def test_transport_kinds(loop, loop_kind, dgram_paths):
    async def main():
        kinds = []
        tr, _ = await _endpoint(loop, local_addr=(LOCALHOST, 0))
        kinds.append(tr)
        if HAS_IPV6:
            tr6, _ = await _endpoint(loop, local_addr=("::1", 0))
            kinds.append(tr6)
        tru, _ = await _endpoint(loop, local_addr=str(dgram_paths[0]),
                                 family=socket.AF_UNIX)
        kinds.append(tru)
        await _close(*kinds)
        return kinds

    kinds = loop.run_until_complete(main())
    for t in kinds:
        # asyncio's is an asyncio.Transport (and a DatagramTransport from 3.12 on)
        assert isinstance(t, asyncio.Transport)
        if loop_kind == "uvloop_lite" or sys.version_info >= (3, 12):
            assert isinstance(t, asyncio.DatagramTransport)
    if loop_kind == "uvloop_lite":
        assert [type(t).__name__ for t in kinds] == \
            ["UVUDPTransport"] * (2 if HAS_IPV6 else 1) + ["DatagramTransport"]


@pytest.mark.parametrize("reuse", [0, 1])
def test_socket_options_left_alone(loop, reuse):
    # libuv's uv_udp_open() turns SO_REUSEADDR on; the transport puts it back.
    opts = [socket.SO_REUSEADDR] + ([socket.SO_REUSEPORT] if hasattr(socket, "SO_REUSEPORT") else [])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in opts:
        sock.setsockopt(socket.SOL_SOCKET, opt, reuse)
    sock.bind((LOCALHOST, 0))
    before = [bool(sock.getsockopt(socket.SOL_SOCKET, opt)) for opt in opts]

    async def main():
        tr, pr = await loop.create_datagram_endpoint(lambda: Proto(loop), sock=sock)
        s = tr.get_extra_info("socket")
        after = [bool(s.getsockopt(socket.SOL_SOCKET, opt)) for opt in opts]
        tr.close()
        await pr.lost
        return after

    assert loop.run_until_complete(main()) == before == [bool(reuse)] * len(opts)


def test_addresses_for_the_python_socket(loop):
    # Names, '' and anything unusual go through socket.sendto(), with its
    # resolution and its errors.
    async def main():
        calls = _record_handler(loop)
        srv, sp, cli, cp = await _pair(loop)
        port = srv.get_extra_info("sockname")[1]
        cli.sendto(b"numeric", (LOCALHOST, port))
        cli.sendto(b"name", ("localhost", port))
        cli.sendto(b"bytes host", (LOCALHOST.encode(), port))
        cli.sendto(b"unresolvable", ("nonexistent.invalid", port))
        cli.sendto(b"other family", ("::1", port))
        await sp.until(3)
        cli_addr = cli.get_extra_info("sockname")
        cli.sendto(b"float port", (LOCALHOST, float(port)))   # equal to a cached address
        await cp.lost
        srv.close()
        await sp.lost
        return sp.datagrams, cp.events, [(c["message"], type(c["exception"])) for c in calls], cli_addr

    got, events, calls, cli_addr = loop.run_until_complete(main())
    assert got == [(b"numeric", cli_addr), (b"name", cli_addr), (b"bytes host", cli_addr)]
    assert [e[:2] for e in events] == [
        ("error", socket.gaierror), ("error", socket.gaierror), ("lost", TypeError)]
    assert events[0][2][0] == socket.EAI_NONAME
    assert calls == [("Fatal write error on datagram transport", TypeError)]


def test_bad_port_and_none_address(loop):
    async def main():
        calls = _record_handler(loop)
        tr, pr = await _endpoint(loop, local_addr=(LOCALHOST, 0))
        tr.sendto(b"x", (LOCALHOST, 70000))    # OverflowError: not an OSError
        await pr.lost
        tr2, pr2 = await _endpoint(loop, local_addr=(LOCALHOST, 0))
        tr2.sendto(b"x")   # no address on an unconnected socket
        await pr2.lost
        return pr.events, pr2.events, [type(c["exception"]) for c in calls]

    events, events2, calls = loop.run_until_complete(main())
    assert events == [("lost", OverflowError)]
    assert events2 == [("lost", TypeError)]
    assert calls == [OverflowError, TypeError]


def _socket_sends_non_contiguous() -> bool:
    """CPython's socket.send() refuses a non-contiguous buffer (BufferError);
    PyPy's sends its bytes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind((LOCALHOST, 0))
        tx.connect(rx.getsockname())
        try:
            tx.send(memoryview(b"a.b.c.")[::2])
        except BufferError:
            return False
        return rx.recv(16) == b"abc"


def test_non_contiguous_buffer(loop):
    sends = _socket_sends_non_contiguous()

    async def main():
        calls = _record_handler(loop)
        srv, sp, cli, cp = await _pair(loop, connect=True)
        cli.sendto(memoryview(b"a.b.c.")[::2])
        if sends:
            await sp.until(1)
            cli.close()
        await cp.lost
        srv.close()
        await sp.lost
        return cp.events, [d for d, _ in sp.datagrams], [type(c["exception"]) for c in calls]

    if sends:
        assert loop.run_until_complete(main()) == ([("lost", None)], [b"abc"], [])
    else:
        assert loop.run_until_complete(main()) == ([("lost", BufferError)], [], [BufferError])


def test_buffers_and_empty_datagrams(loop):
    async def main():
        srv, sp, cli, cp = await _pair(loop, connect=True)
        cli.sendto(bytearray(b"bytearray"))
        cli.sendto(b"")
        cli.sendto(memoryview(b"memoryview"))
        cli.sendto(memoryview(bytearray(b"..slice..."))[2:7])
        n = 4 if SENDS_EMPTY else 3
        got = await sp.until(n)
        await _settle(loop)
        await _close(srv, cli)
        return [d for d, _ in got]

    want = [b"bytearray", b"", b"memoryview", b"slice"]
    if not SENDS_EMPTY:
        del want[1]
    assert loop.run_until_complete(main()) == want


def test_datagram_received_error_is_reported_and_reading_goes_on(loop):
    async def main():
        calls = _record_handler(loop)
        srv, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop, raise_on=b"raise"), local_addr=(LOCALHOST, 0))
        cli, cp = await _endpoint(loop, remote_addr=srv.get_extra_info("sockname"))
        for d in (b"one", b"raise", b"two"):
            cli.sendto(d)
        got = await sp.until(3)
        closing = srv.is_closing()
        await _close(srv, cli)
        return [d for d, _ in got], closing, calls

    got, closing, calls = loop.run_until_complete(main())
    assert got == [b"one", b"raise", b"two"] and not closing
    assert len(calls) == 1
    assert calls[0]["message"].startswith("Exception in callback ")
    assert isinstance(calls[0]["exception"], ZeroDivisionError)
    assert isinstance(calls[0]["handle"], asyncio.Handle)


def test_protocol_runs_in_the_endpoint_context(loop):
    async def main():
        var.set("endpoint")
        srv, sp = await _endpoint(loop, local_addr=(LOCALHOST, 0))
        var.set("later")
        cli, cp = await _endpoint(loop, remote_addr=srv.get_extra_info("sockname"))
        cli.sendto(b"x")
        await sp.until(1)
        await _close(srv, cli)
        return sp.contexts

    assert loop.run_until_complete(asyncio.ensure_future(main(), loop=loop)) == ["endpoint"]


@needs_ipv6
def test_ipv6_addresses(loop):
    async def main():
        srv, sp = await _endpoint(loop, local_addr=("::", 0), family=socket.AF_INET6)
        port = srv.get_extra_info("sockname")[1]
        cli6, cp6 = await _endpoint(loop, local_addr=("::1", 0))
        cli6.sendto(b"six", ("::1", port, 0, 0))
        cli6.sendto(b"three", ("::1", port, 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.bind((LOCALHOST, 0))
            s4.sendto(b"four", (LOCALHOST, port))
            addr4 = s4.getsockname()
            got = await sp.until(3)
            srv.sendto(b"back", got[2][1])   # to the IPv4-mapped address
            s4.settimeout(5)
            back = s4.recvfrom(100)
        cli6_addr = cli6.get_extra_info("sockname")
        await _close(srv, cli6)
        return got, back, cli6_addr, addr4, port

    got, back, cli6_addr, addr4, port = loop.run_until_complete(main())
    assert got == [(b"six", cli6_addr), (b"three", cli6_addr),
                   (b"four", ("::ffff:" + addr4[0], addr4[1], 0, 0))]
    assert back == (b"back", (LOCALHOST, port))


def test_pause_and_close_from_datagram_received(loop, loop_kind):
    if loop_kind == "asyncio" and sys.version_info < (3, 11):
        pytest.skip("asyncio: no pause_reading() on datagram transports before 3.11")

    # libuv reads up to 32 datagrams per wake-up; pausing or closing in the
    # protocol stops it at once, and the kernel keeps the rest.
    class Pausing(Proto):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b"pause":
                self.transport.pause_reading()
            elif data == b"close":
                self.transport.close()

    async def main():
        srv, sp = await loop.create_datagram_endpoint(lambda: Pausing(loop),
                                                      local_addr=(LOCALHOST, 0))
        cli, cp = await _endpoint(loop, remote_addr=srv.get_extra_info("sockname"))
        for d in (b"1", b"pause", b"2", b"3", b"close", b"4"):
            cli.sendto(d)
        await sp.until(2)
        await _settle(loop)
        at_pause = [d for d, _ in sp.datagrams]
        srv.resume_reading()
        await sp.lost
        cli.close()
        await cp.lost
        return at_pause, [d for d, _ in sp.datagrams]

    at_pause, got = loop.run_until_complete(main())
    assert at_pause == [b"1", b"pause"]
    assert got == [b"1", b"pause", b"2", b"3", b"close"]


# -- uvloop_lite: the send queue ---------------------------------------------------


class _PushBack:
    """Make uv_udp_try_send() report EAGAIN ``times`` times (or always)."""

    def __init__(self, monkeypatch, times: int | None = None) -> None:
        self.times = times
        self.calls = 0
        real = udp._try_send

        def try_send(*args):
            self.calls += 1
            if self.times is None or self.times > 0:
                if self.times is not None:
                    self.times -= 1
                return lib.UV_EAGAIN
            return real(*args)

        monkeypatch.setattr(udp, "_try_send", try_send)


def test_queue_flow_control_and_close(uv_loop, monkeypatch):
    loop = uv_loop

    async def main():
        srv, sp, cli, cp = await _pair(loop)
        addr = srv.get_extra_info("sockname")
        cli.set_write_buffer_limits(high=300, low=100)
        push = _PushBack(monkeypatch, times=1)
        data = bytearray(b"%03d" % 0 + b"." * 97)
        cli.sendto(data, addr)
        data[:3] = b"XXX"   # the queued copy is not affected
        sizes = [cli.get_write_buffer_size()]
        for i in range(1, 5):
            cli.sendto(b"%03d" % i + b"." * 97, addr)
            sizes.append(cli.get_write_buffer_size())
        cli.close()   # waits for the queue
        await cp.lost
        got = await sp.until(5)
        srv.close()
        await sp.lost
        return sizes, cp.events, [d[:3] for d, _ in got], push.calls

    sizes, events, got, calls = loop.run_until_complete(main())
    step = 100 + HEADER
    assert sizes == [step * i for i in range(1, 6)]
    assert got == [b"%03d" % i for i in range(5)]
    assert len(events) == 3
    assert events[0] == ("pause", next(s for s in sizes if s > 300))
    assert events[1][0] == "resume" and events[1][1] <= 100
    assert events[2] == ("lost", None)
    assert calls == 1   # nothing else was tried while the queue was not empty


def test_queued_send_error_goes_to_error_received(uv_loop, monkeypatch):
    loop = uv_loop

    async def main():
        srv, sp, cli, cp = await _pair(loop)
        addr = srv.get_extra_info("sockname")
        cli.set_write_buffer_limits(high=1 << 20)
        _PushBack(monkeypatch, times=1)
        cli.sendto(b"x" * 70000, addr)   # queued, then refused by the kernel
        cli.sendto(b"fine", addr)
        got = await sp.until(1)
        await _settle(loop)
        size = cli.get_write_buffer_size()
        closing = cli.is_closing()
        await _close(cli, srv)
        return cp.events, got, size, closing

    events, got, size, closing = loop.run_until_complete(main())
    assert [e[:2] for e in events] == [("error", OSError), ("lost", None)]
    assert got[0][0] == b"fine" and size == 0 and not closing


def test_abort_drops_the_queue(uv_loop, monkeypatch):
    loop = uv_loop

    async def main():
        srv, sp, cli, cp = await _pair(loop)
        addr = srv.get_extra_info("sockname")
        _PushBack(monkeypatch)
        for i in range(3):
            cli.sendto(b"%d" % i, addr)
        cli.sendto(b"by name", ("localhost", addr[1]))   # waits behind libuv's queue
        before = cli.get_write_buffer_size()
        cli.abort()
        after = cli.get_write_buffer_size()
        await cp.lost
        srv.close()
        await sp.lost
        return before, after, cp.events, [d for d, _ in sp.datagrams]

    before, after, events, got = loop.run_until_complete(main())
    assert before == 3 * (1 + HEADER) + 7 + HEADER
    assert after == 0
    assert events == [("lost", None)]
    # libuv's uv_udp_send() may send at once; the name waited in Python, dropped.
    assert b"by name" not in got


def test_python_socket_sends_wait_behind_libuv_queue(uv_loop, monkeypatch):
    loop = uv_loop

    async def main():
        srv, sp, cli, cp = await _pair(loop)
        port = srv.get_extra_info("sockname")[1]
        _PushBack(monkeypatch, times=1)
        cli.sendto(b"1 queued in libuv", (LOCALHOST, port))
        cli.sendto(b"2 by name", ("localhost", port))
        cli.sendto(b"3 numeric", (LOCALHOST, port))
        cli.sendto(b"4 bad name", ("nonexistent.invalid", port))
        cli.sendto(b"5 numeric", (LOCALHOST, port))
        size = cli.get_write_buffer_size()
        got = await sp.until(4)
        await _settle(loop)
        after = cli.get_write_buffer_size()
        await _close(cli, srv)
        return size, after, [d[:1] for d, _ in got], cp.events

    size, after, got, events = loop.run_until_complete(main())
    assert size == sum(len(d) + HEADER for d in (b"1 queued in libuv", b"2 by name", b"3 numeric",
                                                 b"4 bad name", b"5 numeric"))
    assert after == 0
    assert got == [b"1", b"2", b"3", b"5"]
    assert [e[:2] for e in events] == [("error", socket.gaierror), ("lost", None)]


class _BlockingOnce:
    """A stand-in for the transport's socket whose first send() blocks."""

    def __init__(self, sock):
        self._sock = sock
        self.blocked = 0

    def sendto(self, data, addr):
        if not self.blocked:
            self.blocked += 1
            raise BlockingIOError
        return self._sock.sendto(data, addr)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_python_socket_pushback_waits_for_writability(uv_loop):
    loop = uv_loop

    async def main():
        srv, sp, cli, cp = await _pair(loop)
        port = srv.get_extra_info("sockname")[1]
        fake = cli._sock = _BlockingOnce(cli._sock)
        cli.sendto(b"1 by name", ("localhost", port))   # blocks: waits for POLLOUT
        cli.sendto(b"2 numeric", (LOCALHOST, port))    # behind it
        size = cli.get_write_buffer_size()
        got = await sp.until(2)
        after = cli.get_write_buffer_size()
        watched = cli._writer_watched
        await _close(cli, srv)
        return size, after, watched, [d for d, _ in got], fake.blocked

    size, after, watched, got, blocked = loop.run_until_complete(main())
    assert size == 9 + HEADER + 9 + HEADER and after == 0 and not watched
    assert got == [b"1 by name", b"2 numeric"] and blocked == 1


def test_many_peers_and_address_caches(uv_loop, monkeypatch):
    monkeypatch.setattr(udp, "_CACHE_MAX", 2)
    loop = uv_loop

    async def main():
        srv, sp = await _endpoint(loop, local_addr=(LOCALHOST, 0))
        addr = srv.get_extra_info("sockname")
        clients = [await _endpoint(loop, local_addr=(LOCALHOST, 0)) for _ in range(5)]
        for rnd in range(2):
            for i, (tr, _) in enumerate(clients):
                tr.sendto(b"%d" % i, addr)
            await sp.until(5 * (rnd + 1))
        for data, peer in sp.datagrams:
            srv.sendto(b"re:" + data, peer)
        for tr, pr in clients:
            await pr.until(2)
        want = [(b"%d" % i, tr.get_extra_info("sockname")) for i, (tr, _) in enumerate(clients)]
        replies = [pr.datagrams for _, pr in clients]
        for tr, pr in clients + [(srv, sp)]:
            tr.close()
            await pr.lost
        return sp.datagrams, want, replies, addr

    got, want, replies, addr = loop.run_until_complete(main())
    assert got == want * 2
    assert replies == [[(b"re:%d" % i, addr)] * 2 for i in range(5)]


def test_falls_back_to_poll_transport(uv_loop, monkeypatch):
    loop = uv_loop

    class Refused:
        def __init__(self, *args, **kw):
            raise OSError(17, "refused")

    monkeypatch.setattr(_datagram, "UVUDPTransport", Refused)

    async def main():
        srv, sp, cli, cp = await _pair(loop, connect=True)
        cli.sendto(b"over uv_poll")
        got = await sp.until(1)
        kinds = type(srv).__name__, type(cli).__name__
        await _close(srv, cli)
        return kinds, got

    kinds, got = loop.run_until_complete(main())
    assert kinds == ("DatagramTransport", "DatagramTransport")
    assert got[0][0] == b"over uv_poll"


def test_error_received_raising_does_not_stall_the_queue(uv_loop, monkeypatch):
    loop = uv_loop

    class Raising(Proto):
        def error_received(self, exc):
            super().error_received(exc)
            raise ZeroDivisionError("from error_received")

    async def main():
        calls = _record_handler(loop)
        srv, sp = await _endpoint(loop, local_addr=(LOCALHOST, 0))
        port = srv.get_extra_info("sockname")[1]
        cli, cp = await loop.create_datagram_endpoint(lambda: Raising(loop),
                                                      local_addr=(LOCALHOST, 0))
        cli.set_write_buffer_limits(high=1 << 20)
        _PushBack(monkeypatch, times=1)
        cli.sendto(b"x" * 70000, (LOCALHOST, port))   # fails in libuv's queue
        cli.sendto(b"by name", ("localhost", port))   # waits behind it
        cli.close()
        await cp.lost
        got = await sp.until(1)
        srv.close()
        await sp.lost
        return calls, cp.events, [d for d, _ in got]

    calls, events, got = loop.run_until_complete(main())
    assert [type(c["exception"]) for c in calls] == [ZeroDivisionError]
    assert calls[0]["message"].startswith("Exception in callback UVUDPTransport._sendto_ready")
    assert [e[:2] for e in events] == [("error", OSError), ("lost", None)]
    assert got == [b"by name"]
