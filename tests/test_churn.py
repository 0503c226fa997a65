"""Churn and load: memory and fds stay flat over many short-lived objects.

Each churn test runs a warm-up round (caches, free lists, the thread pool and
the allocator's arenas fill up), then measures fds (``/proc/self/fd``), RSS
(after ``gc.collect()`` and glibc's ``malloc_trim``), the objects the garbage
collector knows of and, on uvloop_lite, the libuv handles still open; then
runs ``n`` more iterations in rounds of the warm-up's size and measures again.
fds and open handles must be exactly equal, live objects may differ by a few
(caches), not by one per iteration; RSS may grow by less than ``RSS_PER_ITER``
bytes per iteration plus an allowance for the allocator.  Leaks planted on
purpose (a transport, timer handle, process transport, address list or
endpoint kept per iteration, a socket left open, 2 KiB of C memory per
connection) each fail these tests; a connection never closed makes its round
hang, which fails after ``ROUND_TIMEOUT`` with the counts.

What churns: TCP and Unix connect/echo/close, UDP endpoints, TLS handshakes
(complete, and failing: garbage, half-closed, cancelled), timers, DNS
lookups, child processes (spawn/wait, and ``cat`` killed mid-write or with
its stdout closed early, leaving no zombie).

Counts are small by default, so that the suite stays quick; the issue's full
counts (20,000 TCP connect/echo/close, 20,000 timers, 2,000 subprocesses,
20,000 DNS lookups, 200 concurrent subprocesses, ...) run with ``pytest
--churn=full`` or ``UVLOOP_LITE_CHURN=full`` (the nox session ``churn`` does
that).  Every churn test runs on asyncio's loop too, for comparison: both must
stay flat.

``test_10k_concurrent_connections`` holds 10,000 connections open at once on
one uvloop_lite server (the client side runs in a child process, so that each
process needs only its own 10,000 fds; ``UVLOOP_LITE_CONNECTIONS`` changes the
count), checks every one is accepted and echoes, then closes them all; on
asyncio's server too with the full counts.

The measured figures are printed (``pytest -rP tests/test_churn.py``).
Only loopback addresses and names from /etc/hosts are used.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import shutil
import socket
import sys
import tempfile
import textwrap
import time

import pytest

from netutil import LOCALHOST
from uvloop_lite._ffi import lib as _uv_lib

FULL = os.environ.get("UVLOOP_LITE_CHURN", "").lower() == "full"
PYPY = sys.implementation.name == "pypy"
# A leak per iteration of anything a connection, a timer handle or a process
# owns costs well over 1 KiB (a transport alone is more).  The allowance is
# for the allocator: arenas freed or kept at its discretion.
RSS_PER_ITER = 1024
RSS_SLACK = 1024 * 1024
# PyPy's GC grows its nursery and old generation in steps and returns memory
# lazily, so its RSS moves by megabytes unrelated to leaks: a much looser bound
# there.  fds, libuv handles and live objects are still counted exactly.
OBJECT_SLACK = 100
# Under ./dev sanitize, ASan holds freed memory in quarantine (tens of MiB):
# RSS says nothing there, the exact counts still hold.
ASAN = bool(getattr(_uv_lib, "UVL_SANITIZE", 0) & 1)
if PYPY:
    RSS_PER_ITER = 4 * 1024
    RSS_SLACK = 64 * 1024 * 1024
    OBJECT_SLACK = 500

# A round of any test takes well under a second on a 2-core machine at the
# default counts; at the full counts a round of 200 concurrent processes
# takes ~10 s on PyPy (whose fork is slow).
ROUND_TIMEOUT = 120 if FULL else 20
pytestmark = pytest.mark.timeout(900 if FULL else 60)


def count(default: int, full: int) -> int:
    # PyPy runs these 2-4 times slower (asyncio's loop more so, before its JIT
    # warms up); a quarter of the default counts still catches one object
    # kept per iteration, which the live-object count sees exactly.
    if FULL:
        return full
    return max(default // 4, min(default, 50)) if PYPY else default


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def open_handles(loop) -> int:
    """libuv handles opened and not yet closed (0 on asyncio's loop)."""
    stats = getattr(loop, "_uv_handle_stats", None)
    if stats is None:
        return 0
    return sum(opened - closed for opened, closed in stats().values())


def _malloc_trim():
    try:
        import ctypes
        return ctypes.CDLL(None).malloc_trim   # glibc
    except (ImportError, OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def _settle() -> None:
    """Collect garbage, and have glibc hand freed memory back (else RSS moves
    in steps of megabytes as the top of its heap is or is not trimmed)."""
    for _ in range(3):
        gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _live_objects() -> int:
    """Objects the collector knows of (CPython: container objects; PyPy:
    every app-level object)."""
    return len(gc.get_objects())


def churn(loop, label: str, one_round, n: int, round_size: int, *,
          per_iter: int = RSS_PER_ITER, deadline: float = 0) -> dict:
    """Run ``one_round(k)`` (a coroutine function doing ``k`` iterations)
    once as a warm-up and then for ``n`` iterations in rounds of
    ``round_size`` (so each round's peak is the warm-up's); assert that fds,
    open libuv handles, RSS and the number of live objects stayed flat across
    the ``n``; return (and print) the figures."""
    deadline = deadline or (800 if FULL else 50)
    end = time.monotonic() + deadline

    def run(k: int) -> None:
        # A round that hangs (say a connection never closed) fails after
        # ROUND_TIMEOUT, with the counts.
        left = min(end - time.monotonic(), ROUND_TIMEOUT)
        assert left > 0, f"{label}: past the {deadline} s deadline"
        try:
            loop.run_until_complete(asyncio.wait_for(one_round(k), left))
        except asyncio.TimeoutError:
            raise AssertionError(
                f"{label}: a round of {k} did not finish in {left:.0f} s; now "
                f"{fd_count()} fds, {open_handles(loop)} open libuv handles") from None

    def drain_closes() -> None:
        # Let close callbacks queued by the last iteration run (libuv reports a
        # handle closed on the loop iteration after uv_close()).
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))

    run(min(round_size, n))
    drain_closes()
    _settle()
    fds0, rss0, h0, obj0 = fd_count(), rss(), open_handles(loop), _live_objects()
    t0 = time.perf_counter()
    done = 0
    while done < n:
        k = min(round_size, n - done)
        run(k)
        done += k
    elapsed = time.perf_counter() - t0
    drain_closes()
    _settle()
    fds1, rss1, h1, obj1 = fd_count(), rss(), open_handles(loop), _live_objects()
    kind = "uvloop_lite" if hasattr(loop, "_uv_handle_stats") else "asyncio"
    figures = dict(n=n, fds=(fds0, fds1), rss_kib=(rss0 // 1024, rss1 // 1024),
                   handles=(h0, h1), objects=(obj0, obj1), seconds=round(elapsed, 2))
    print(f"churn {label} [{kind}] n={n}: fds {fds0}->{fds1}, "
          f"RSS {rss0 // 1024}->{rss1 // 1024} KiB ({(rss1 - rss0) / n:+.0f} B/iter), "
          f"open handles {h0}->{h1}, objects {obj0}->{obj1}, "
          f"{elapsed:.2f} s ({n / elapsed:.0f}/s)")
    assert fds1 == fds0, f"{label}: fds {fds0} -> {fds1} over {n} iterations"
    assert h1 == h0, f"{label}: open libuv handles {h0} -> {h1} over {n} iterations"
    bound = n * per_iter + RSS_SLACK
    assert ASAN or rss1 - rss0 < bound, (
        f"{label}: RSS grew {rss1 - rss0} B over {n} iterations (bound {bound})")
    # One object kept per iteration would add n; caches may add a few (on
    # PyPy, which counts every object, a few hundred once: warm-up of
    # rarely taken paths, up to ~180 seen).
    assert obj1 - obj0 < n // 10 + OBJECT_SLACK, (
        f"{label}: live objects {obj0} -> {obj1} over {n} iterations")
    return figures


async def _workers(k: int, concurrency: int, work) -> None:
    """Run ``work(i)`` for i in range(k), ``concurrency`` at a time."""
    it = iter(range(k))

    async def worker():
        for i in it:
            await work(i)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, k))))


# -- echo servers ------------------------------------------------------------------

class EchoServer(asyncio.Protocol):
    """Echoes; closes on EOF; counts live connections so that a round can
    wait until the server side of every connection is gone too."""

    live = 0
    idle: asyncio.Event | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        EchoServer.live += 1
        EchoServer.idle.clear()

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc) -> None:
        EchoServer.live -= 1
        if EchoServer.live == 0:
            EchoServer.idle.set()


def _reset_echo() -> None:
    EchoServer.live = 0
    EchoServer.idle = asyncio.Event()
    EchoServer.idle.set()


async def _stream_echo_round(k: int, connect, concurrency: int = 16) -> None:
    async def one(i: int) -> None:
        reader, writer = await connect()
        msg = b"ping %d\n" % i
        writer.write(msg)
        assert await reader.readline() == msg
        writer.close()
        await writer.wait_closed()

    await _workers(k, concurrency, one)
    await EchoServer.idle.wait()


# -- the churn tests ---------------------------------------------------------------

def test_tcp_connect_echo_close_churn(loop):
    n = count(3000, 20000)
    _reset_echo()

    async def start():
        return await loop.create_server(EchoServer, LOCALHOST, 0, backlog=256)

    server = loop.run_until_complete(start())
    port = server.sockets[0].getsockname()[1]
    try:
        churn(loop, "tcp connect/echo/close",
              lambda k: _stream_echo_round(
                  k, lambda: asyncio.open_connection(LOCALHOST, port)),
              n, round_size=500)
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())


def test_unix_connect_echo_close_churn(loop):
    n = count(3000, 20000)
    _reset_echo()
    d = tempfile.mkdtemp(prefix="uvl-churn-")
    path = os.path.join(d, "s")

    async def start():
        return await loop.create_unix_server(EchoServer, path, backlog=256)

    server = loop.run_until_complete(start())
    try:
        churn(loop, "unix connect/echo/close",
              lambda k: _stream_echo_round(k, lambda: asyncio.open_unix_connection(path)),
              n, round_size=500)
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        shutil.rmtree(d, ignore_errors=True)


def test_timer_churn(loop):
    """call_later/call_at/cancel: half the timers are cancelled, the rest fire;
    sleep() adds a timer and a future per call."""
    n = count(20000, 100000)

    async def one_round(k: int) -> None:
        fired = 0
        done = loop.create_future()
        expected = k - k // 2

        def cb() -> None:
            nonlocal fired
            fired += 1
            if fired == expected:
                done.set_result(None)

        now = loop.time()
        handles = []
        for i in range(k):
            delay = (i % 50) / 10000  # 0-5 ms
            if i % 3:
                handles.append(loop.call_later(delay, cb))
            else:
                handles.append(loop.call_at(now + delay, cb))
        for h in handles[::2]:
            h.cancel()
        del handles
        await done
        await asyncio.gather(*(asyncio.sleep((i % 10) / 10000) for i in range(k // 10)))

    churn(loop, "timers call_later/cancel", one_round, n, round_size=5000, per_iter=128)


def test_subprocess_churn(loop):
    """Spawn and wait: ``true``, and ``echo`` read through a pipe."""
    n = count(100, 2000)
    true, echo = shutil.which("true"), shutil.which("echo")
    assert true and echo

    async def one(i: int) -> None:
        if i % 2:
            proc = await asyncio.create_subprocess_exec(true)
            assert await proc.wait() == 0
        else:
            proc = await asyncio.create_subprocess_exec(
                echo, str(i), stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            assert out == b"%d\n" % i and proc.returncode == 0

    churn(loop, "subprocess spawn/wait", lambda k: _workers(k, 8, one), n,
          round_size=50, per_iter=2 * RSS_PER_ITER)


def _hosts_name() -> tuple[str, str]:
    """A name other than localhost that /etc/hosts maps to a loopback
    address (so resolving it never leaves the machine), with that address;
    else localhost."""
    try:
        with open("/etc/hosts") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0].startswith("127."):
            for name in fields[1:]:
                if name != "localhost":
                    return name, fields[0]
    return "localhost", LOCALHOST


def test_dns_churn(loop):
    """getaddrinfo of localhost, of numeric addresses and of a name from
    /etc/hosts; getnameinfo numeric.  No query leaves the machine."""
    n = count(5000, 20000)
    name, name_addr = _hosts_name()
    expect = {(socket.AF_INET, (LOCALHOST, 80))}

    async def one(i: int) -> None:
        j = i % 4
        if j == 0:
            infos = await loop.getaddrinfo("localhost", 80, family=socket.AF_INET,
                                           type=socket.SOCK_STREAM)
        elif j == 1:
            infos = await loop.getaddrinfo(LOCALHOST, 80, type=socket.SOCK_STREAM,
                                           flags=socket.AI_NUMERICHOST)
        elif j == 2:
            infos = await loop.getaddrinfo(name, "80", family=socket.AF_INET,
                                           type=socket.SOCK_STREAM)
        else:
            host, port = await loop.getnameinfo(
                (LOCALHOST, 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            assert (host, port) == (LOCALHOST, "80")
            return
        got = {(fam, addr[:2]) for fam, _, _, _, addr in infos}
        if j == 2:
            assert (socket.AF_INET, (name_addr, 80)) in got, got
        else:
            assert got == expect, got

    churn(loop, f"dns getaddrinfo/getnameinfo (localhost, numeric, {name!r})",
          lambda k: _workers(k, 16, one), n, round_size=500)


class _UDPEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


class _UDPClient(asyncio.DatagramProtocol):
    def __init__(self, loop) -> None:
        self.reply = loop.create_future()
        self.lost = loop.create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)

    def connection_lost(self, exc) -> None:
        self.lost.set_result(exc)


def test_udp_endpoint_churn(loop):
    """A datagram endpoint per iteration: open, send, get the echo, close."""
    n = count(3000, 20000)

    async def start():
        return await loop.create_datagram_endpoint(_UDPEcho, local_addr=(LOCALHOST, 0))

    server_tr, _ = loop.run_until_complete(start())
    addr = server_tr.get_extra_info("sockname")

    async def one(i: int) -> None:
        tr, pr = await loop.create_datagram_endpoint(lambda: _UDPClient(loop),
                                                     remote_addr=addr)
        msg = b"dgram %d" % i
        # Loopback does not drop datagrams unless a buffer is full; resend
        # once in a while all the same rather than hang.
        for _ in range(5):
            tr.sendto(msg)
            try:
                assert await asyncio.wait_for(asyncio.shield(pr.reply), 2) == msg
                break
            except asyncio.TimeoutError:
                continue
        else:
            raise AssertionError("no UDP echo in 5 tries")
        tr.close()
        await pr.lost

    try:
        churn(loop, "udp endpoint open/echo/close", lambda k: _workers(k, 16, one), n,
              round_size=500)
    finally:
        server_tr.close()
        loop.run_until_complete(asyncio.sleep(0))


def _tls_contexts():
    data = os.path.join(os.path.dirname(__file__), "data")
    import ssl
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(os.path.join(data, "localhost-cert.pem"),
                           os.path.join(data, "localhost-key.pem"))
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(os.path.join(data, "localhost-cert.pem"))
    return server, client


def test_tls_handshake_churn(loop):
    n = count(200, 3000)
    server_ctx, client_ctx = _tls_contexts()
    _reset_echo()

    async def start():
        return await loop.create_server(EchoServer, LOCALHOST, 0, ssl=server_ctx,
                                        backlog=64)

    server = loop.run_until_complete(start())
    port = server.sockets[0].getsockname()[1]
    try:
        churn(loop, "tls handshake/echo/close",
              lambda k: _stream_echo_round(
                  k, lambda: asyncio.open_connection(LOCALHOST, port, ssl=client_ctx,
                                                     server_hostname="localhost"),
                  concurrency=4),
              n, round_size=100, per_iter=4 * RSS_PER_ITER)
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())


# -- 10,000 concurrent connections --------------------------------------------------

CONNECTIONS = int(os.environ.get("UVLOOP_LITE_CONNECTIONS", "10000"))

# The client side, in a child process with its own fd limit (asyncio's loop,
# so that the test checks uvloop_lite's server only).  It opens every
# connection and keeps them all open, then sends a line on each and reads its
# echo, says "echoed", waits for "close" on stdin, closes them all and says
# "closed".  All of it bounded by a deadline.
_CLIENT = textwrap.dedent(r"""
    import asyncio, resource, sys

    n, port, deadline = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main():
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(256)   # connects in flight (not held after)

        async def connect(i):
            async with gate:
                return await asyncio.open_connection("127.0.0.1", port)

        conns = await asyncio.gather(*(connect(i) for i in range(n)))
        for i, (r, w) in enumerate(conns):
            w.write(b"%d\n" % i)

        async def check(i, r):
            line = await r.readline()
            assert line == b"%d\n" % i, (i, line)

        await asyncio.gather(*(check(i, r) for i, (r, w) in enumerate(conns)))
        print("echoed", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        assert line == "close\n", line
        for r, w in conns:
            w.close()
        await asyncio.gather(*(w.wait_closed() for r, w in conns),
                             return_exceptions=True)
        print("closed", flush=True)

    asyncio.run(asyncio.wait_for(main(), deadline))
""")


class _Held(asyncio.Protocol):
    """Server side: echoes; counts accepted and live connections."""

    accepted = 0
    live = 0
    all_gone: asyncio.Event | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        _Held.accepted += 1
        _Held.live += 1

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc) -> None:
        _Held.live -= 1
        if _Held.live == 0:
            _Held.all_gone.set()


@pytest.fixture
def nofile_limit():
    """RLIMIT_NOFILE raised to its hard limit (and further when root may);
    restored afterwards.  Yields the new soft limit."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CONNECTIONS + 1000
    soft, hard = old
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            hard = want
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old[0], resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))


@pytest.mark.timeout(300 if FULL else 120)
def test_10k_concurrent_connections(loop, nofile_limit):
    """CONNECTIONS (10,000) connections open at once on one server: all
    accepted, each echoes its own line, all closed, fds back to where they
    were.  On asyncio's loop only with the full counts, for comparison."""
    n = CONNECTIONS
    kind = "uvloop_lite" if hasattr(loop, "_uv_handle_stats") else "asyncio"
    if kind == "asyncio" and not FULL:
        pytest.skip("asyncio's figures for comparison only with --churn=full")
    limit = nofile_limit
    if limit != resource.RLIM_INFINITY and limit < n + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {limit} is below {n} connections")
    _Held.accepted = _Held.live = 0
    _Held.all_gone = asyncio.Event()

    async def main() -> str:
        # Opened once per loop and kept until loop.close(), so not part of
        # what is measured: the SIGCHLD socket pair (at the first child
        # process) and libuv's spare fd for EMFILE (at the first stream).
        warm = await asyncio.create_subprocess_exec(
            shutil.which("true") or "true", stdout=asyncio.subprocess.PIPE)
        await warm.communicate()
        _settle()
        fds_base = fd_count()
        server = await loop.create_server(_Held, LOCALHOST, 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        _settle()
        fds0, rss0 = fd_count(), rss()
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLIENT, str(n), str(port), "100",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 100)
            assert line == b"echoed\n", (line, _Held.accepted, _Held.live)
            t_open = time.perf_counter() - t0
            # Every echo came back while all n were open: all were accepted.
            assert (_Held.accepted, _Held.live) == (n, n)
            fds_peak, rss_peak = fd_count(), rss()
            proc.stdin.write(b"close\n")
            assert await asyncio.wait_for(proc.stdout.readline(), 100) == b"closed\n"
            await asyncio.wait_for(_Held.all_gone.wait(), 100)
            # To the end of its output (stdin closed too), so that no pipe
            # of the client is left open when the fds are counted.
            await asyncio.wait_for(proc.communicate(), 100)
            assert proc.returncode == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        elapsed = time.perf_counter() - t0
        server.close()
        await server.wait_closed()
        # The client's pipe transports close in callbacks of their own:
        # a few loop iterations, never a timed wait.
        for _ in range(100):
            if fd_count() == fds_base:
                break
            await asyncio.sleep(0)
        _settle()
        fds1 = fd_count()
        assert fds1 == fds_base, f"fds {fds_base} before, {fds1} after"
        return (f"{n} concurrent connections on one {kind} server: open+echo "
                f"{t_open:.2f} s, total {elapsed:.2f} s; fds {fds_base}->{fds_peak}->{fds1} "
                f"({(fds_peak - fds0) / n:.2f}/connection); RSS {rss0 // 1024}->"
                f"{rss_peak // 1024} KiB ({(rss_peak - rss0) / n:.0f} B/connection)")

    print(loop.run_until_complete(main()))


class _BlackHole(asyncio.Protocol):
    """Accepts and never answers; counts live connections, and tells when
    the first bytes (a ClientHello) arrived."""

    live = 0
    idle: asyncio.Event | None = None
    got_data: asyncio.Event | None = None

    def connection_made(self, transport) -> None:
        _BlackHole.live += 1
        _BlackHole.idle.clear()

    def data_received(self, data: bytes) -> None:
        _BlackHole.got_data.set()

    def connection_lost(self, exc) -> None:
        _BlackHole.live -= 1
        if _BlackHole.live == 0:
            _BlackHole.idle.set()


async def _read_to_end(reader) -> None:
    try:
        while await reader.read(65536):
            pass
    except ConnectionResetError:
        pass


def test_tls_bad_and_cancelled_handshakes_churn(loop):
    """Handshakes that do not finish: garbage instead of a ClientHello, a
    client that half-closes after part of a ClientHello, a client whose
    handshake is cancelled while the server keeps silent.  The server closes
    the first two (the client reads to EOF); the third closes from the
    client side."""
    n = count(300, 3000)
    server_ctx, client_ctx = _tls_contexts()
    _BlackHole.live = 0
    _BlackHole.idle = asyncio.Event()
    _BlackHole.idle.set()

    async def start():
        tls = await loop.create_server(asyncio.Protocol, LOCALHOST, 0, ssl=server_ctx)
        hole = await loop.create_server(_BlackHole, LOCALHOST, 0)
        return tls, hole

    tls_server, hole = loop.run_until_complete(start())
    tls_port = tls_server.sockets[0].getsockname()[1]
    hole_port = hole.sockets[0].getsockname()[1]
    # The first bytes of a TLS 1.x ClientHello record, cut short.
    partial_hello = bytes.fromhex("16030100f4010000f00303") + bytes(16)

    async def one(i: int) -> None:
        j = i % 3
        if j < 2:
            reader, writer = await asyncio.open_connection(LOCALHOST, tls_port)
            if j == 0:
                writer.write(b"GET / HTTP/1.0\r\n\r\n" * 4)
            else:
                writer.write(partial_hello)
                writer.write_eof()
            await _read_to_end(reader)
            writer.close()
            await writer.wait_closed()
        else:
            _BlackHole.got_data = asyncio.Event()
            task = asyncio.ensure_future(asyncio.open_connection(
                LOCALHOST, hole_port, ssl=client_ctx, server_hostname="localhost"))
            await _BlackHole.got_data.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    async def one_round(k: int) -> None:
        # One at a time: the black hole's got_data event is per connection.
        await _workers(k, 1, one)
        await _BlackHole.idle.wait()

    try:
        churn(loop, "tls garbage/half-closed/cancelled handshakes", one_round, n,
              round_size=100, per_iter=4 * RSS_PER_ITER)
    finally:
        tls_server.close()
        hole.close()
        loop.run_until_complete(tls_server.wait_closed())
        loop.run_until_complete(hole.wait_closed())


def _no_child_left() -> None:
    """Every child this process started was reaped (no zombie, none running)."""
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return
    raise AssertionError(f"a child is left: waitpid -> {(pid, status)}")


def test_subprocess_pipes_kill_churn(loop):
    """Rounds of concurrent ``cat`` processes: a third echo data and exit, a
    third are killed while the parent writes to them, a third have their
    stdout closed early by the parent (and die of SIGPIPE or exit 1) while it
    writes.  No zombie is left, no fd, no handle."""
    n, concurrent = count(60, 1000), count(30, 200)
    cat = shutil.which("cat")
    assert cat
    chunk = b"x" * 65536

    async def write_until_broken(proc, limit: int) -> None:
        try:
            for _ in range(limit // len(chunk)):
                proc.stdin.write(chunk)
                await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return
        raise AssertionError(f"wrote {limit} bytes to a dead process")

    async def stdin_closed(proc) -> None:
        # Before 3.10 (and on PyPy 3.9) asyncio logs "Future exception was
        # never retrieved" for a stdin closed by an error unless someone waits.
        try:
            await proc.stdin.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            pass

    async def one(i: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            cat, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        j = i % 3
        if j == 0:
            data = chunk * 2 + b"%d" % i
            out, _ = await proc.communicate(data)
            assert out == data and proc.returncode == 0
        elif j == 1:
            writer = asyncio.ensure_future(write_until_broken(proc, 64 * 1024 * 1024))
            await proc.stdout.readexactly(len(chunk))
            proc.kill()
            await writer
            await _read_to_end(proc.stdout)
            assert await proc.wait() == -9
            await stdin_closed(proc)
        else:
            proc._transport.get_pipe_transport(1).close()
            await write_until_broken(proc, 64 * 1024 * 1024)
            assert await proc.wait() in (-13, 1)   # SIGPIPE, or EPIPE reported
            await stdin_closed(proc)

    async def one_round(k: int) -> None:
        await _workers(k, concurrent, one)
        _no_child_left()

    churn(loop, f"subprocess cat x{concurrent}: echo/kill mid-write/early close",
          one_round, n, round_size=concurrent, per_iter=4 * RSS_PER_ITER)
    _no_child_left()
