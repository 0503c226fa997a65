"""Benchmark servers for bench/run.py: one process, one event loop, one workload.

    python bench/servers.py --loop uvloop_lite --mode proto [--port 0] [--cpu 0]

Prints ``READY <port>`` on stdout once it listens on 127.0.0.1, then serves
until it is killed.  The same server code runs on every loop:

``proto``    echo with an ``asyncio.Protocol`` (data_received -> transport.write)
``streams``  echo with ``asyncio.start_server`` (reader.read / writer.write / drain)
``sock``     echo with ``loop.sock_accept`` / ``sock_recv`` / ``sock_sendall``
``sock256k`` ``sock`` with ``sock_recv(conn, 262144)``: a common "whatever is
             there" size, which asyncio allocates in full on every call
``http``     HTTP/1.1 keep-alive on a Protocol: request line and headers parsed,
             ``GET /<n>`` answered with a fixed body of n bytes
``tls``      the ``proto`` echo server with ``ssl=``: the loop's TLS (asyncio's
             sslproto on asyncio and uvloop_lite, uvloop's own on uvloop), with
             tests/data/localhost-cert.pem and localhost-key.pem
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any, Callable, Dict, Optional

LOOPS = ("asyncio", "uvloop", "uvloop_lite")
MODES = ("proto", "streams", "sock", "http", "tls", "sock256k")
_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data")
TLS_CERT = os.path.join(_DATA, "localhost-cert.pem")
TLS_KEY = os.path.join(_DATA, "localhost-key.pem")

# Big enough for a whole 100 KiB message in one read, as uvloop's own
# benchmarks do; the same on every loop.
_READ_SIZE = 256 * 1024
# sock_recv(n) allocates n bytes up front: above 128 KiB glibc serves that with
# mmap/munmap on every call, which would swamp the loop differences.
_SOCK_RECV_SIZE = 64 * 1024
# sock256k: that case on purpose.
_SOCK_RECV_SIZE_BIG = 256 * 1024


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "asyncio":
        return asyncio.new_event_loop
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    if name == "uvloop_lite":
        _use_source_tree()
        import uvloop_lite
        return uvloop_lite.new_event_loop
    raise ValueError(f"unknown loop {name!r}")


def _use_source_tree() -> None:
    # `python bench/servers.py` from a source checkout: import the in-place build.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(os.path.join(root, "uvloop_lite")) and root not in sys.path:
        sys.path.insert(0, root)


# -- echo: Protocol --------------------------------------------------------------

class EchoProtocol(asyncio.Protocol):
    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.transport = None


# -- echo: streams ---------------------------------------------------------------

async def echo_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


# -- echo: sock_* methods --------------------------------------------------------

async def sock_server(lsock: socket.socket, size: int = _SOCK_RECV_SIZE) -> None:
    loop = asyncio.get_running_loop()
    while True:
        conn, _ = await loop.sock_accept(lsock)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop.create_task(echo_sock(loop, conn, size))


async def echo_sock(loop: asyncio.AbstractEventLoop, conn: socket.socket,
                    size: int = _SOCK_RECV_SIZE) -> None:
    try:
        while True:
            data = await loop.sock_recv(conn, size)
            if not data:
                break
            await loop.sock_sendall(conn, data)
    except (ConnectionError, OSError):
        pass
    finally:
        conn.close()


# -- HTTP/1.1 keep-alive ---------------------------------------------------------

_RESPONSES: Dict[bytes, bytes] = {}


def http_response(path: bytes) -> bytes:
    resp = _RESPONSES.get(path)
    if resp is None:
        try:
            size = int(path.lstrip(b"/") or b"0")
        except ValueError:
            size = -1
        if not 0 <= size <= 16 * 1024 * 1024:
            return (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                    b"Connection: keep-alive\r\n\r\n")
        body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
        resp = _RESPONSES[path] = (
            b"HTTP/1.1 200 OK\r\n"
            b"Server: bench\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: keep-alive\r\n"
            b"\r\n" % size) + body
    return resp


class HttpProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1: the request line and headers are split and looked at
    (Connection, Content-Length), the body (if any) skipped."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = b""
        self.skip = 0   # bytes of a request body still to discard

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while buf:
            if self.skip:
                n = min(self.skip, len(buf))
                self.skip -= n
                buf = buf[n:]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            lines = buf[:end].split(b"\r\n")
            buf = buf[end + 4:]
            try:
                method, path, version = lines[0].split(b" ", 2)
            except ValueError:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
                self.transport.close()
                return
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            conn = headers.get(b"connection", b"").lower()
            keep_alive = conn != b"close" if version == b"HTTP/1.1" else conn == b"keep-alive"
            self.skip = int(headers.get(b"content-length", b"0"))
            self.transport.write(http_response(path))
            if not keep_alive:
                self.transport.close()
                return
        self.buf = buf

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.transport = None


# -- main ------------------------------------------------------------------------

async def serve(mode: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server: Any
    if mode in ("sock", "sock256k"):
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", port))
        lsock.listen(128)
        lsock.setblocking(False)
        bound = lsock.getsockname()[1]
        task = loop.create_task(sock_server(
            lsock, _SOCK_RECV_SIZE_BIG if mode == "sock256k" else _SOCK_RECV_SIZE))
        print(f"READY {bound}", flush=True)
        await task
        return
    if mode == "proto":
        server = await loop.create_server(EchoProtocol, "127.0.0.1", port, backlog=128)
    elif mode == "streams":
        server = await asyncio.start_server(echo_streams, "127.0.0.1", port, backlog=128)
    elif mode == "http":
        server = await loop.create_server(HttpProtocol, "127.0.0.1", port, backlog=128)
    elif mode == "tls":
        import ssl
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(TLS_CERT, TLS_KEY)
        server = await loop.create_server(EchoProtocol, "127.0.0.1", port, backlog=128,
                                          ssl=ctx)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loop", choices=LOOPS, default="asyncio")
    ap.add_argument("--mode", choices=MODES, default="proto")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        import pinning
        pinning.pin(args.cpu)   # os.sched_setaffinity, or libc's through ctypes (PyPy)
    loop = loop_factory(args.loop)()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(args.mode, args.port))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
