"""sock_recv(sock, n) / sock_recvfrom(sock, n) with a large n (uvloop_lite
reads those through a buffer of the loop's, _sock.py): the same results and
exceptions as asyncio's, and no n-byte allocation per call."""

from __future__ import annotations

import asyncio
import errno
import platform
import socket
import ssl
import struct
import sys

import pytest

from netutil import LOCALHOST, MIB, payload

HAS_RECVFROM = hasattr(asyncio.AbstractEventLoop, "sock_recvfrom")   # 3.11+
# Around the buffer's bounds (64 KiB < n <= 1 MiB in uvloop_lite), and past them.
SIZES = [65536, 65537, 262144, MIB, MIB + 1]


def _pair(family=socket.AF_UNIX, type=socket.SOCK_STREAM):
    a, b = socket.socketpair(family, type)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _skip_without_recvfrom(loop_kind):
    if not HAS_RECVFROM and loop_kind == "asyncio":
        pytest.skip("asyncio's sock_recvfrom() is new in 3.11")


async def _tcp_pair(loop):
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        client = socket.socket()
        client.setblocking(False)
        await loop.sock_connect(client, listener.getsockname())
        server, _ = listener.accept()
    server.setblocking(False)
    return client, server


def _reset(sock):
    """Close ``sock`` so that its peer gets ECONNRESET."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("n", SIZES)
def test_large_recv_waiting_ready_and_eof(loop, n):
    async def main():
        a, b = _pair()
        with a, b:
            results = []
            pending = asyncio.ensure_future(loop.sock_recv(a, n))
            await asyncio.sleep(0)
            results.append(pending.done())
            b.send(b"first")
            first = await pending
            b.send(b"ready")
            second = await loop.sock_recv(a, n)   # data already there
            results += [first, second, type(first).__name__]
            # More than n at once: at most n per call, nothing lost or changed.
            data = payload(3 * n // 2 + 1000)
            send = asyncio.ensure_future(loop.sock_sendall(b, data))
            got = bytearray()
            sizes_ok = True
            while len(got) < len(data):
                chunk = await loop.sock_recv(a, n)
                sizes_ok = sizes_ok and 0 < len(chunk) <= n
                got += chunk
            await send
            results += [bytes(got) == data, sizes_ok]
            b.shutdown(socket.SHUT_WR)
            results.append(await loop.sock_recv(a, n))
            results.append(await loop.sock_recv(a, n))
            results.append(first)   # untouched by the later reads
        return results

    assert loop.run_until_complete(main()) == [
        False, b"first", b"ready", "bytes", True, True, b"", b"", b"first"]


def test_zero_negative_and_odd_sizes(loop):
    async def main():
        a, b = _pair()
        results = []
        with a, b:
            b.send(b"data")
            results.append(await loop.sock_recv(a, 0))
            for n in (-1, -262144):
                with pytest.raises(ValueError) as ei:
                    await loop.sock_recv(a, n)
                results.append(str(ei.value))
            with pytest.raises(TypeError):
                await loop.sock_recv(a, 262144.0)
            results.append(await loop.sock_recv(a, True))   # an int: 1
            # An int subclass is an int to recv().
            results.append(await loop.sock_recv(a, type("Big", (int,), {})(262144)))
        return results

    with socket.socket() as sock:   # the interpreter's own message
        with pytest.raises(ValueError) as ei:
            sock.recv(-1)
    negative = str(ei.value)
    assert loop.run_until_complete(main()) == [b"", negative, negative, b"d", b"ata"]


def test_large_recv_errors(loop):
    async def main():
        errors = []
        sock = socket.socket()
        sock.close()
        with pytest.raises(OSError) as ei:
            await loop.sock_recv(sock, 262144)
        errors.append((type(ei.value).__name__, ei.value.errno))
        # Reset before the call, then while it waits.
        for before in (True, False):
            a, b = await _tcp_pair(loop)
            with a:
                if before:
                    _reset(b)
                else:
                    loop.call_soon(_reset, b)
                with pytest.raises(OSError) as ei:
                    await loop.sock_recv(a, 262144)
                errors.append((type(ei.value).__name__, ei.value.errno))
        return errors

    assert loop.run_until_complete(main()) == [
        ("OSError", errno.EBADF), ("ConnectionResetError", errno.ECONNRESET),
        ("ConnectionResetError", errno.ECONNRESET)]


def test_large_recv_checks_the_socket(loop, loop_kind):
    has_recvfrom = HAS_RECVFROM or loop_kind == "uvloop_lite"

    async def main():
        messages = []
        loop.set_debug(True)
        with socket.socket() as sock:
            sock.settimeout(None)
            calls = [lambda: loop.sock_recv(sock, 262144)]
            if has_recvfrom:
                calls.append(lambda: loop.sock_recvfrom(sock, 262144))
            for call in calls:
                with pytest.raises(ValueError) as ei:
                    await call()
                messages.append(str(ei.value))
        loop.set_debug(False)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        with ctx.wrap_socket(socket.socket(), server_hostname="x",
                             do_handshake_on_connect=False) as sock:
            sock.setblocking(False)
            calls = [lambda: loop.sock_recv(sock, 262144)]
            if has_recvfrom:
                calls.append(lambda: loop.sock_recvfrom(sock, 262144))
            for call in calls:
                with pytest.raises(TypeError) as ei:
                    await call()
                messages.append(str(ei.value))
        return messages

    k = 2 if has_recvfrom else 1
    assert loop.run_until_complete(main()) == (
        ["the socket must be non-blocking"] * k + ["Socket cannot be of type SSLSocket"] * k)


def test_cancelled_large_recv_leaves_the_data(loop):
    async def main():
        a, b = _pair()
        with a, b:
            task = asyncio.ensure_future(loop.sock_recv(a, 262144))
            await asyncio.sleep(0)
            task.cancel()
            b.send(b"kept")
            with pytest.raises(asyncio.CancelledError):
                await task
            return await loop.sock_recv(a, 262144)

    assert loop.run_until_complete(main()) == b"kept"


def test_concurrent_large_recvs_keep_their_own_data(loop):
    async def main():
        pairs = [_pair() for _ in range(3)]
        messages = [payload(1000, 1), payload(50_000, 2), b"seven!!"]
        try:
            pending = [asyncio.ensure_future(loop.sock_recv(a, 262144)) for a, _ in pairs]
            await asyncio.sleep(0)
            for (_, b), msg in zip(pairs, messages):
                assert b.send(msg) == len(msg)
            results = await asyncio.gather(*pending)
            # Ready at once now: one after the other, in one step of the loop.
            for (_, b), msg in zip(pairs, reversed(messages)):
                b.send(msg)
            results += await asyncio.gather(*(loop.sock_recv(a, 262144) for a, _ in pairs))
        finally:
            for a, b in pairs:
                a.close()
                b.close()
        return [r == m for r, m in zip(results, messages + messages[::-1])]

    assert loop.run_until_complete(main()) == [True] * 6


class _RecordingSocket(socket.socket):
    """A socket whose recv()/recvfrom() are its own: what the loop calls."""

    __slots__ = ("calls",)

    def recv(self, n, *args):
        self.calls.append(("recv", n))
        return super().recv(n, *args)

    def recvfrom(self, n, *args):
        self.calls.append(("recvfrom", n))
        return super().recvfrom(n, *args)


def test_large_recv_calls_an_overridden_recv(loop, loop_kind):
    has_recvfrom = HAS_RECVFROM or loop_kind == "uvloop_lite"

    async def main():
        a0, b = _pair(type=socket.SOCK_DGRAM)
        a = _RecordingSocket(a0.family, a0.type, fileno=a0.detach())
        a.calls = []
        with a, b:
            a.setblocking(False)
            b.send(b"one")
            got = [await loop.sock_recv(a, 262144)]
            if has_recvfrom:
                b.send(b"two")
                got.append((await loop.sock_recvfrom(a, 262144))[0])
            return got, a.calls

    got, calls = loop.run_until_complete(main())
    if has_recvfrom:
        assert (got, calls) == ([b"one", b"two"], [("recv", 262144), ("recvfrom", 262144)])
    else:
        assert (got, calls) == ([b"one"], [("recv", 262144)])


@pytest.mark.parametrize("n", SIZES)
def test_large_recvfrom_udp(loop, loop_kind, n):
    _skip_without_recvfrom(loop_kind)

    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            rx.bind((LOCALHOST, 0))
            rx.setblocking(False)
            tx.bind((LOCALHOST, 0))
            pending = asyncio.ensure_future(loop.sock_recvfrom(rx, n))
            await asyncio.sleep(0)
            done_early = pending.done()
            big = payload(65507)   # the largest UDP datagram over IPv4
            for msg in (b"first", big, b""):
                tx.sendto(msg, rx.getsockname())
            results = [await pending]
            for _ in range(2):
                results.append(await loop.sock_recvfrom(rx, n))
            me = tx.getsockname()
            return done_early, results == [(b"first", me), (big, me), (b"", me)]

    assert loop.run_until_complete(main()) == (False, True)


def test_large_recvfrom_truncates_a_datagram(loop, loop_kind):
    """A datagram longer than n is cut to n bytes, the rest dropped."""
    _skip_without_recvfrom(loop_kind)

    async def main():
        a, b = _pair(type=socket.SOCK_DGRAM)
        with a, b:
            b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 400_000)
            a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 400_000)
            big = payload(150_000)
            b.send(big)
            b.send(b"next")
            first, addr = await loop.sock_recvfrom(a, 100_000)
            second = await loop.sock_recvfrom(a, 100_000)
            b.send(big)
            third = await loop.sock_recv(a, 100_000)
            return first == big[:100_000], addr, second, third == big[:100_000]

    # An unnamed AF_UNIX peer: no address.
    assert loop.run_until_complete(main()) == (True, None, (b"next", None), True)


def test_large_recv_on_a_closed_loop(loop):
    """The first recv() comes before any check of the loop (as asyncio's)."""
    a, b = _pair()
    with a, b:
        b.send(b"late")
        loop.close()
        coro = loop.sock_recv(a, 262144)
        with pytest.raises(StopIteration) as ei:
            coro.send(None)
        assert ei.value.value == b"late"


# -- uvloop_lite's buffer ------------------------------------------------------------

@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="tracemalloc is CPython's")
def test_large_recv_does_not_allocate_n_bytes(uv_loop):
    import tracemalloc

    n = 262144

    async def main():
        a, b = _pair()
        with a, b:
            await loop_recv_once(a, b)   # the buffer is made on first use
            tracemalloc.start()
            try:
                for i in range(100):
                    if i % 2:
                        b.send(payload(1024))   # ready at once
                        await uv_loop.sock_recv(a, n)
                    else:                       # waits first
                        uv_loop.call_soon(b.send, payload(1024))
                        await uv_loop.sock_recv(a, n)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            return peak

    async def loop_recv_once(a, b):
        b.send(b"x")
        await uv_loop.sock_recv(a, n)

    peak = uv_loop.run_until_complete(main())
    assert peak < n // 8, peak


@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="tracemalloc is CPython's")
def test_large_recvfrom_does_not_allocate_n_bytes(uv_loop):
    import tracemalloc

    n = 262144

    async def main():
        a, b = _pair(type=socket.SOCK_DGRAM)
        with a, b:
            b.send(b"x")
            await uv_loop.sock_recvfrom(a, n)
            tracemalloc.start()
            try:
                for _ in range(100):
                    b.send(payload(1024))
                    await uv_loop.sock_recvfrom(a, n)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            return peak

    peak = uv_loop.run_until_complete(main())
    assert peak < n // 8, peak


def test_buffer_in_use_falls_back_to_recv(uv_loop):
    """A second reader while the buffer is out (another thread misusing the
    loop) reads with recv(n), not into the same buffer."""
    async def main():
        a, b = _pair()
        with a, b:
            b.send(b"one")
            first = await uv_loop.sock_recv(a, 262144)
            buf = uv_loop._recv_bufs.pop()   # as a reader in another thread
            try:
                assert not uv_loop._recv_bufs
                b.send(b"two")
                second = await uv_loop.sock_recv(a, 262144)
            finally:
                uv_loop._recv_bufs.append(buf)
            b.send(b"three")
            third = await uv_loop.sock_recv(a, 262144)
            only_one = len(uv_loop._recv_bufs) == 1 and uv_loop._recv_bufs[0] is buf
            return first, second, third, only_one

    assert uv_loop.run_until_complete(main()) == (b"one", b"two", b"three", True)


@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="reference counts are CPython's")
@pytest.mark.skipif(sys.version_info < (3, 11),
                    reason="asyncio's code run by the loop keeps cycles before 3.11")
def test_failed_large_recv_leaves_no_cycle(uv_loop):
    from test_sock_refcycles import _check_no_cycle

    async def call(loop):
        a, b = await _tcp_pair(loop)
        with a:
            loop.call_soon(_reset, b)   # once the recv waits
            await loop.sock_recv(a, 262144)

    _check_no_cycle(uv_loop, call)
