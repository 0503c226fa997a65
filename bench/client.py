"""Load client for bench/run.py: request/response over N keep-alive TCP
connections to 127.0.0.1, one process, one epoll loop, no asyncio.

    python bench/client.py --port 8000 --mode proto --size 1024 \\
        [--conns 8] [--duration 2] [--warmup 0.5] [--cpu 1] [--server-pid PID] \\
        [--engine auto|c|python]

Each connection has one request in flight: the echo message (``proto``,
``streams``, ``sock``, ``tls``) or ``GET /<size>`` (``http``); the next one is
sent as soon as the whole response has arrived.  The request loop runs in C
(loadgen.c, built with cffi on first use and cached in the temporary
directory) or, if that cannot be built, in Python.  On loopback TCP the
kernel work of a request costs the client about as much as the server, so
the client must add next to nothing on top: the C loop spends well under
0.1 us of user CPU per request, the Python one about 0.7 us, which is as
much as uvloop's whole per-request overhead (the Python client would cap
uvloop's rate).  The result has both processes' CPU use over the
measurement, to check that the server was the one at 100%.

``tls`` speaks TLS 1.3 (the server's certificate, tests/data/localhost-cert.pem,
is the trusted CA; host name localhost checked) with its own C loop,
loadgen_tls.c: OpenSSL's handshake, then a record layer of its own on
OpenSSL's ciphers which, in the timed part, encrypts the requests but counts
the response records without decrypting them (the checked exchanges
decrypt and authenticate all).  Decrypting too would cost the client as
much crypto as the server and make it as busy as the fastest server.
Without OpenSSL's headers it does not build and the loop is Python's
(non-blocking ssl.SSLSocket), which is slower than the servers and caps
their rate (the result's ``client_cpu`` shows it at 100%).

Before and after the timed part, every connection does one blocking exchange
whose response is checked byte for byte, so a server that drops, reorders or
mangles data fails loudly instead of looking fast.

Prints one JSON object: requests, seconds, rps, the rate of every 0.25 s
slice, client_cpu, server_cpu (fractions of one CPU), server_sys, and the
round-trip times of the timed part (latency_us: p50, p99, max, and
latency_hist, the histogram's non-empty buckets; None for the Python TLS
client): from the send of a request to the recv that completes its
response, in a log-linear histogram (lg_hist.h: 3% wide buckets, one
clock_gettime per request).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

MODES = ("proto", "streams", "sock", "http", "tls", "sock256k")
# The tls server's certificate (servers.py), trusted as its own CA.
TLS_CAFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "tests", "data", "localhost-cert.pem")
TLS_HOST = "localhost"


def echo_message(size: int) -> bytes:
    return (b"0123456789ABCDEF" * (size // 16 + 1))[:size]


def http_request(size: int) -> bytes:
    return (b"GET /%d HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"User-Agent: uvloop_lite-bench\r\n"
            b"Accept: */*\r\n"
            b"\r\n" % size)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("server closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def checked_exchange(sock: socket.socket, mode: str, request: bytes, size: int) -> bytes:
    """One blocking request; the response checked in full and returned."""
    sock.sendall(request)
    if mode != "http":
        data = _recv_exactly(sock, len(request))
        if data != request:
            raise AssertionError("echo response differs from the request")
        return data
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        head += chunk
    end = head.index(b"\r\n\r\n") + 4
    head, body = head[:end], head[end:]
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 200 "):
        raise AssertionError(f"unexpected status line {lines[0]!r}")
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length != size:
        raise AssertionError(f"Content-Length {length}, expected {size}")
    body += _recv_exactly(sock, length - len(body))
    if body != (b"0123456789abcdef" * (size // 16 + 1))[:size]:
        raise AssertionError("unexpected response body")
    return head + body


# -- round-trip times: lg_hist.h's histogram ------------------------------------

HIST_SUB_BITS = 5
HIST_BUCKETS = 1472


def hist_bucket(ns: int) -> int:
    """lg_hist_bucket of lg_hist.h: the bucket of a round trip of ns nanoseconds."""
    if ns < 1 << HIST_SUB_BITS:
        return max(ns, 0)
    e = ns.bit_length() - 1
    idx = ((e - HIST_SUB_BITS + 1) << HIST_SUB_BITS) + (
        (ns >> (e - HIST_SUB_BITS)) & ((1 << HIST_SUB_BITS) - 1))
    return min(idx, HIST_BUCKETS - 1)


def hist_lower(idx: int) -> int:
    """The smallest time (ns) in bucket idx."""
    group, sub = idx >> HIST_SUB_BITS, idx & ((1 << HIST_SUB_BITS) - 1)
    if group <= 1:
        return idx
    return ((1 << HIST_SUB_BITS) + sub) << (group - 1)


def hist_percentiles(hist: List[int], qs: List[float]) -> List[Optional[float]]:
    """The q-quantiles (0 < q <= 1) of the times counted in hist, in ns: the
    middle of the bucket the quantile falls in (None if hist is empty)."""
    total = sum(hist)
    if not total:
        return [None for _ in qs]
    out: List[Optional[float]] = []
    for q in qs:
        rank = max(1, -int(-q * total // 1))   # ceil(q * total): 1-based
        cum = 0
        for idx, n in enumerate(hist):
            cum += n
            if cum >= rank:
                lo, hi = hist_lower(idx), hist_lower(idx + 1)
                out.append(lo if hi - lo <= 1 else (lo + hi) / 2)
                break
    return out


def latency_summary(hist: Optional[List[int]]) -> Optional[dict]:
    """p50, p99 and max of a histogram, in microseconds (None: no histogram)."""
    if hist is None or not any(hist):
        return None
    p50, p99, top = hist_percentiles(hist, [0.5, 0.99, 1.0])
    return {"p50": round(p50 / 1e3, 1), "p99": round(p99 / 1e3, 1),
            "max": round(top / 1e3, 1), "count": sum(hist)}


def _cpu_ticks(pid: Optional[int]) -> Optional[Tuple[int, int]]:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as fp:
            fields = fp.read().rsplit(b")", 1)[1].split()
        return int(fields[11]), int(fields[12])   # utime, stime
    except (OSError, IndexError, ValueError):
        return None


class PyEngine:
    """The request/response loop in Python (epoll): the fallback when the C
    engine cannot be built.  Same interface as CEngine."""

    name = "python"

    def __init__(self, socks: List[socket.socket], request: bytes, resp_len: int) -> None:
        self.request = request
        self.resp_len = resp_len
        self.ep = select.epoll()
        self.hist: Optional[List[int]] = None   # round trips of the last run(record=True)
        # Per fd: [sock, bytes of the response received, unsent view or None, busy]
        self.state = {}
        for s in socks:
            self.state[s.fileno()] = [s, 0, None, False]
            self.ep.register(s.fileno(), select.EPOLLIN)

    def _send(self, st: list, data: Any) -> None:
        try:
            n = st[0].send(data)
        except BlockingIOError:
            n = 0
        if n < len(data):
            if st[2] is None:
                self.ep.modify(st[0].fileno(), select.EPOLLIN | select.EPOLLOUT)
            st[2] = memoryview(data)[n:]
        elif st[2] is not None:
            st[2] = None
            self.ep.modify(st[0].fileno(), select.EPOLLIN)

    def run(self, seconds: float, resend: bool, slice_len: float = 1e9,
            record: bool = False) -> Tuple[int, List[Tuple[float, int]]]:
        EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
        request, resp_len, state = self.request, self.resp_len, self.state
        buf = bytearray(1 << 20)
        clock = time.perf_counter
        poll = self.ep.poll
        ns = time.monotonic_ns
        hist = self.hist = [0] * HIST_BUCKETS if record else None
        t0 = self._t0 = getattr(self, "_t0", {})   # fd: when its request was started
        busy = 0
        for fd, st in state.items():
            if resend and not st[3]:
                st[1], st[3] = 0, True
                t0[fd] = ns()
                self._send(st, request)
            busy += st[3]
        count = 0
        now = clock()
        end = now + seconds
        next_slice = now + slice_len
        slices = [(now, 0)]
        while busy:
            now = clock()
            if now >= next_slice:
                slices.append((now, count))
                next_slice = now + slice_len
            if now >= end:
                break
            for fd, ev in poll(0.1):
                st = state[fd]
                if ev & (EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    try:
                        n = st[0].recv_into(buf)
                    except BlockingIOError:
                        continue
                    if not n:
                        raise ConnectionError("server closed the connection")
                    got = st[1] + n
                    if got < resp_len:
                        st[1] = got
                        continue
                    if got > resp_len or st[2] is not None:
                        raise AssertionError("response longer than expected")
                    st[1] = 0
                    count += 1
                    # t0 is kept when not recording too: a request sent in the
                    # warm-up and answered in the timed part is timed from its send
                    now_ns = ns()
                    if hist is not None:
                        hist[hist_bucket(now_ns - t0[fd])] += 1
                    t0[fd] = now_ns
                    if resend:
                        self._send(st, request)
                    else:
                        st[3] = False
                        busy -= 1
                elif ev & EPOLLOUT:
                    self._send(st, st[2])
        slices.append((clock(), count))
        if busy and not resend:
            raise TimeoutError("responses still missing at the end of the drain")
        return count, slices

    def close(self) -> None:
        self.ep.close()


class CEngine:
    """The request/response loop of loadgen.c (see there)."""

    name = "c"

    def __init__(self, socks: List[socket.socket], request: bytes, resp_len: int) -> None:
        self.ffi, self.lib = _load_c()
        self.request = request
        self.resp_len = resp_len
        self.ep = select.epoll()
        self.n = len(socks)
        self.conns = self.ffi.new("lg_conn[]", self.n)
        for i, s in enumerate(socks):
            self.conns[i].fd = s.fileno()
        self._check(self.lib.lg_setup(self.ep.fileno(), self.conns, self.n))
        self._run = self.lib.lg_run
        self.hist: Optional[List[int]] = None

    @staticmethod
    def _check(rc: int) -> int:
        if rc < 0:
            raise OSError(-rc, os.strerror(-rc))
        return rc

    def run(self, seconds: float, resend: bool, slice_len: float = 1e9,
            record: bool = False) -> Tuple[int, List[Tuple[float, int]]]:
        max_slices = int(seconds / min(slice_len, seconds)) + 3
        slice_t = self.ffi.new("double[]", max_slices)
        slice_n = self.ffi.new("long long[]", max_slices)
        nslices = self.ffi.new("int *")
        hist = self.ffi.new("long long[]", HIST_BUCKETS) if record else self.ffi.NULL
        count = self._check(self._run(
            self.ep.fileno(), self.conns, self.n, self.request, len(self.request),
            self.resp_len, seconds, int(resend), slice_len, slice_t, slice_n,
            max_slices, nslices, hist))
        self.hist = list(hist) if record else None
        return count, [(slice_t[i], slice_n[i]) for i in range(nslices[0])]

    def close(self) -> None:
        self.ep.close()


# -- TLS (mode tls) ---------------------------------------------------------------

class CTlsConn:
    """One TLS connection of loadgen_tls.c (OpenSSL's handshake, its own
    record layer); sendall/recv (blocking) for checked_exchange."""

    def __init__(self, tls: "CTls", sock: socket.socket) -> None:
        self.ffi, self.lib = tls.ffi, tls.lib
        self.sock = sock
        self.c = self.ffi.new("lgt_conn *")
        self._buf = self.ffi.new("char[]", 1 << 16)   # lgt_read: one record at most
        sock.setblocking(True)   # a Python timeout is O_NONBLOCK: lgt_connect sets its own
        tls.check(self.lib.lgt_connect(tls.ctx, self.c, sock.fileno(), TLS_HOST.encode()))

    def fileno(self) -> int:
        return self.sock.fileno()

    def describe(self) -> str:
        return self.ffi.string(self.lib.lgt_describe(self.c)).decode()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def sendall(self, data: bytes) -> None:
        CTls.check_lib(self.ffi, self.lib, self.lib.lgt_write_all(self.c, data, len(data)))

    def recv(self, n: int) -> bytes:
        got = CTls.check_lib(self.ffi, self.lib,
                             self.lib.lgt_read(self.c, self._buf, min(n, 1 << 16)))
        return self.ffi.buffer(self._buf, got)[:]

    def settimeout(self, timeout: float) -> None:
        self.sock.setblocking(True)   # the timeouts are lgt_connect's SO_RCVTIMEO/SNDTIMEO

    def close(self) -> None:
        self.lib.lgt_close(self.c)   # close_notify both ways
        self.sock.close()


class CTls:
    """Client side of TLS in C (loadgen_tls.c): the connections (CTlsConn)
    and the request loop (CTlsEngine)."""

    name = "c"

    def __init__(self) -> None:
        self.ffi, self.lib = _load_c_tls()
        self.ctx = self.lib.lgt_ctx_new(TLS_CAFILE.encode())
        if self.ctx == self.ffi.NULL:
            raise RuntimeError(self.ffi.string(self.lib.lgt_last_error()).decode())

    @staticmethod
    def check_lib(ffi: Any, lib: Any, rc: int) -> int:
        if rc < 0:
            detail = ffi.string(lib.lgt_last_error()).decode()
            raise OSError(-rc, f"{os.strerror(-rc)} ({detail})" if detail else os.strerror(-rc))
        return rc

    def check(self, rc: int) -> int:
        return self.check_lib(self.ffi, self.lib, rc)

    def wrap(self, sock: socket.socket) -> CTlsConn:
        return CTlsConn(self, sock)

    @staticmethod
    def describe(conn: CTlsConn) -> str:
        return conn.describe()

    def engine(self, conns: List[Any], request: bytes, resp_len: int) -> "CTlsEngine":
        return CTlsEngine(self, conns, request, resp_len)

    def close(self) -> None:
        self.lib.lgt_ctx_free(self.ctx)


class CTlsEngine(CEngine):
    """The request loop of loadgen_tls.c over CTlsConns."""

    def __init__(self, tls: CTls, conns: List[CTlsConn], request: bytes,
                 resp_len: int) -> None:
        self.ffi, self.lib = tls.ffi, tls.lib
        self.request = request
        self.resp_len = resp_len
        self.ep = select.epoll()
        self.n = len(conns)
        self.conns = self.ffi.new("lgt_conn *[]", [conn.c for conn in conns])
        self._check(self.lib.lgt_setup(self.ep.fileno(), self.conns, self.n))
        self._run = self.lib.lgt_run
        self.hist = None

    def _check(self, rc: int) -> int:
        return CTls.check_lib(self.ffi, self.lib, rc)


class PyTls:
    """Client side of TLS in Python (ssl.SSLSocket): the fallback."""

    name = "python"

    def __init__(self) -> None:
        import ssl
        self.ctx = ssl.create_default_context(cafile=TLS_CAFILE)

    def wrap(self, sock: socket.socket) -> Any:
        tls = self.ctx.wrap_socket(sock, server_hostname=TLS_HOST)
        real_close = tls.close

        def close() -> None:
            try:
                tls.settimeout(2.0)
                tls.unwrap()   # close_notify both ways
            except (OSError, ValueError):
                pass
            real_close()

        tls.close = close   # type: ignore[method-assign]
        return tls

    @staticmethod
    def describe(sock: Any) -> str:
        return f"{sock.version()} {sock.cipher()[0]}"

    def engine(self, conns: List[Any], request: bytes, resp_len: int) -> "PyTlsEngine":
        return PyTlsEngine(conns, request, resp_len)

    def close(self) -> None:
        pass


class PyTlsEngine(PyEngine):
    """PyEngine's loop over non-blocking ssl.SSLSockets.  An SSL object can
    hold decrypted data that epoll knows nothing of, so each wake-up reads
    until OpenSSL wants the socket."""

    def __init__(self, socks: List[Any], request: bytes, resp_len: int) -> None:
        super().__init__(socks, request, resp_len)
        for st in self.state.values():
            st[2] = False   # here: the request is not (all) written yet
            st.append(False)   # EPOLLOUT armed

    def _pump(self, st: list, resend: bool, buf: bytearray) -> Tuple[int, int]:
        """Returns (responses completed, connections that went idle)."""
        import ssl
        s, done, idle, blocked = st[0], 0, 0, False
        while True:
            if st[3] and st[2] and not blocked:
                try:
                    s.send(self.request)   # all of it, or SSLWantWriteError
                    st[2] = False
                except ssl.SSLWantWriteError:
                    blocked = True
                except ssl.SSLWantReadError:
                    pass
            if not st[3]:
                break
            try:
                n = s.recv_into(buf)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLWantWriteError:
                blocked = True
                break
            if not n:
                raise ConnectionError("server closed the connection")
            got = st[1] + n
            if got < self.resp_len:
                st[1] = got
                continue
            if got > self.resp_len or st[2]:
                raise AssertionError("response longer than expected")
            st[1] = 0
            done += 1
            if resend:
                st[2] = True
            else:
                st[3] = False
                idle += 1
        if blocked != st[4]:
            self.ep.modify(s.fileno(), select.EPOLLIN | (select.EPOLLOUT if blocked else 0))
            st[4] = blocked
        return done, idle

    def run(self, seconds: float, resend: bool, slice_len: float = 1e9,
            record: bool = False) -> Tuple[int, List[Tuple[float, int]]]:
        # (no round-trip times: self.hist stays None)
        state = self.state
        buf = bytearray(1 << 20)
        clock = time.perf_counter
        poll = self.ep.poll
        busy = count = 0
        now = clock()
        end = now + seconds
        next_slice = now + slice_len
        slices = [(now, 0)]
        for st in state.values():
            if resend and not st[3]:
                st[1], st[2], st[3] = 0, True, True
            busy += st[3]
        for st in state.values():
            if st[3]:
                done, idle = self._pump(st, resend, buf)
                count += done
                busy -= idle
        while busy:
            now = clock()
            if now >= next_slice:
                slices.append((now, count))
                next_slice = now + slice_len
            if now >= end:
                break
            for fd, _ in poll(0.1):
                done, idle = self._pump(state[fd], resend, buf)
                count += done
                busy -= idle
        slices.append((clock(), count))
        if busy and not resend:
            raise TimeoutError("responses still missing at the end of the drain")
        return count, slices


_C_MODULES: dict = {}
_C_ERRORS: dict = {}

_LG_CDEF = """
    typedef struct { int fd; size_t sent; size_t got; int busy; int want_out; ...; } lg_conn;
    #define LG_HIST_BUCKETS ...
    int lg_setup(int epfd, lg_conn* conns, int n);
    long long lg_run(int epfd, lg_conn* conns, int n, const char* req,
                     size_t req_len, size_t resp_len, double seconds, int resend,
                     double slice, double* slice_t, long long* slice_n,
                     int max_slices, int* nslices, long long* hist);
    int lg_hist_bucket_of(long long ns);
"""

_LGT_CDEF = """
    typedef struct { int fd; ...; } lgt_conn;
    const char* lgt_last_error(void);
    const char* lgt_openssl_version(void);
    const char* lgt_describe(lgt_conn* c);
    void* lgt_ctx_new(const char* cafile);
    void lgt_ctx_free(void* ctx);
    int lgt_connect(void* ctx, lgt_conn* c, int fd, const char* host);
    int lgt_write_all(lgt_conn* c, const char* buf, size_t len);
    long long lgt_read(lgt_conn* c, char* buf, size_t len);
    void lgt_close(lgt_conn* c);
    int lgt_setup(int epfd, lgt_conn** conns, int n);
    long long lgt_run(int epfd, lgt_conn** conns, int n, const char* req,
                      size_t req_len, size_t resp_len, double seconds, int resend,
                      double slice, double* slice_t, long long* slice_n,
                      int max_slices, int* nslices, long long* hist);
"""


def _build(cfile: str, name: str, cdef: str, libraries: List[str]) -> Tuple[Any, Any]:
    """Build a C file with cffi (once per source version and interpreter,
    cached in the temporary directory) and import it."""
    if name not in _C_MODULES:
        import hashlib
        import importlib.util
        import sysconfig
        import tempfile

        from cffi import FFI
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, cfile)) as fp:
            source = fp.read()
        with open(os.path.join(here, "lg_hist.h")) as fp:   # #included by both
            header = fp.read()
        tag = sysconfig.get_config_var("EXT_SUFFIX") or sys.version
        key = hashlib.sha1((source + header + cdef + tag).encode()).hexdigest()[:16]
        outdir = os.path.join(tempfile.gettempdir(), f"uvloop_lite_bench_{key}")
        path = os.path.join(outdir, name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
        if not os.path.exists(path):
            ffi = FFI()
            ffi.cdef(cdef)
            ffi.set_source(name, source, libraries=libraries, include_dirs=[here],
                           extra_compile_args=["-O2"])
            os.makedirs(outdir, exist_ok=True)
            with open(os.path.join(outdir, "build.log"), "w+") as log:
                # The compiler's chatter must not reach our stdout (the JSON
                # result), nor its errors our stderr: the caller says why.
                saved = os.dup(1), os.dup(2)
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                try:
                    built = ffi.compile(tmpdir=outdir)
                except Exception as exc:
                    log.seek(0)
                    errors = [line.strip() for line in log
                              if "error" in line.lower() or "cannot find" in line]
                    raise RuntimeError(errors[0] if errors else str(exc)) from exc
                finally:
                    os.dup2(saved[0], 1)
                    os.dup2(saved[1], 2)
                    os.close(saved[0])
                    os.close(saved[1])
            if os.path.abspath(built) != os.path.abspath(path):
                os.replace(built, path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _C_MODULES[name] = module
    module = _C_MODULES[name]
    return module.ffi, module.lib


def _load_c() -> Tuple[Any, Any]:
    ffi, lib = _build("loadgen.c", "_uvloop_lite_bench_loadgen", _LG_CDEF, [])
    assert lib.LG_HIST_BUCKETS == HIST_BUCKETS, "client.py and lg_hist.h disagree"
    return ffi, lib


def _load_c_tls() -> Tuple[Any, Any]:
    return _build("loadgen_tls.c", "_uvloop_lite_bench_loadgen_tls", _LGT_CDEF,
                  ["ssl", "crypto"])


def _available(loader: Callable[[], Any]) -> Optional[str]:
    """None if the module builds and loads, else why not (one line)."""
    if loader not in _C_ERRORS:
        try:
            loader()
            _C_ERRORS[loader] = None
        except Exception as exc:   # cffi missing, no compiler, no headers
            detail = str(exc).strip().splitlines()
            _C_ERRORS[loader] = f"{type(exc).__name__}: {detail[-1] if detail else ''}"
    return _C_ERRORS[loader]


def c_engine_available() -> bool:
    return _available(_load_c) is None


def c_tls_unavailable() -> Optional[str]:
    """None if the TLS C client builds (OpenSSL's headers and libssl are
    there), else the reason it does not."""
    return _available(_load_c_tls)


def run(port: int, mode: str, size: int, conns: int, duration: float, warmup: float,
        server_pid: Optional[int] = None, host: str = "127.0.0.1",
        engine: str = "auto") -> dict:
    request = http_request(size) if mode == "http" else echo_message(size)
    tls: Any = None
    if engine == "auto":
        ok = c_tls_unavailable() is None if mode == "tls" else c_engine_available()
        engine = "c" if ok else "python"
    if mode == "tls":
        tls = CTls() if engine == "c" else PyTls()

    def connect() -> Any:
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not tls:
            return s
        s.settimeout(10.0)   # TLS: no blocking call waits longer
        return tls.wrap(s)

    # One connection opened, used and closed first, so that the server has
    # seen a connection end before the measurement, as a server in service
    # has.  (It matters: on glibc, asyncio's first EOF read frees a 256 KiB
    # mmap()ed recv buffer, which raises malloc's mmap threshold; until then
    # every 256 KiB recv() costs an mmap/munmap pair.)
    s = connect()
    checked_exchange(s, mode, request, size)
    s.close()
    socks: List[Any] = [connect() for _ in range(conns)]
    resp_len = 0
    for s in socks:
        resp_len = len(checked_exchange(s, mode, request, size))
    for s in socks:
        s.setblocking(False)

    if tls:
        eng = tls.engine(socks, request, resp_len)
        negotiated = tls.describe(socks[0])
    else:
        eng = (CEngine if engine == "c" else PyEngine)(socks, request, resp_len)
    eng.run(warmup, True)
    cpu0 = os.times()
    srv0 = _cpu_ticks(server_pid)
    # (time, responses so far) every slice_len seconds: the best slices show
    # the rate the server reaches when nothing else runs on the machine.
    slice_len = min(0.25, duration / 4)
    count, slices = eng.run(duration, True, slice_len, record=True)
    hist = eng.hist
    srv1 = _cpu_ticks(server_pid)
    cpu1 = os.times()
    eng.run(10.0, False)   # let the requests in flight finish
    eng.close()
    for s in socks:   # still in step after the run?
        if tls:
            s.settimeout(10.0)
        else:
            s.setblocking(True)
        checked_exchange(s, mode, request, size)
        s.close()
    if tls:
        tls.close()
    seconds = slices[-1][0] - slices[0][0]
    result = {
        "mode": mode, "size": size, "conns": conns, "engine": eng.name,
        "requests": count, "seconds": seconds, "rps": count / seconds,
        "slice_rps": [(c1 - c0) / (t1 - t0)
                      for (t0, c0), (t1, c1) in zip(slices, slices[1:]) if t1 > t0],
        "client_cpu": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / seconds,
        "client_sys": (cpu1.system - cpu0.system) / seconds,
        "server_cpu": None, "server_sys": None,
        "latency_us": latency_summary(hist),
        # the histogram itself, sparse ([bucket, count], ...): bench/run.py
        # adds up the rounds of a cell before taking percentiles
        "latency_hist": None if hist is None else [[i, n] for i, n in enumerate(hist) if n],
    }
    if tls:
        result["tls"] = negotiated
    if srv0 is not None and srv1 is not None:
        tck = os.sysconf("SC_CLK_TCK") * seconds
        result["server_cpu"] = (srv1[0] + srv1[1] - srv0[0] - srv0[1]) / tck
        result["server_sys"] = (srv1[1] - srv0[1]) / tck
    return result


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=MODES, default="proto")
    ap.add_argument("--size", type=int, default=1024, help="message (or HTTP body) size")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    ap.add_argument("--server-pid", type=int, default=None,
                    help="report this process's CPU use over the measurement")
    ap.add_argument("--engine", choices=("auto", "c", "python"), default="auto",
                    help="request loop in C (built with cffi on first use) or Python; "
                         "auto: C if it builds")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        import pinning
        pinning.pin(args.cpu)   # os.sched_setaffinity, or libc's through ctypes (PyPy)
    result = run(args.port, args.mode, args.size, args.conns, args.duration, args.warmup,
                 args.server_pid, engine=args.engine)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
