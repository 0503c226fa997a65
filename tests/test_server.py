"""asyncio.Server on both loops: sockets, serving state, closing, options."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
from asyncio import trsock

import pytest

from netutil import LOCALHOST, Recorder, close_all, free_port


async def _connect_raw(loop, addr) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, addr)
    except BaseException:
        sock.close()
        raise
    return sock


async def _echo_once(loop, addr, data: bytes = b"ping") -> bytes:
    sock = await _connect_raw(loop, addr)
    with sock:
        await loop.sock_sendall(sock, data)
        got = b""
        while len(got) < len(data):
            chunk = await loop.sock_recv(sock, 1024)
            if not chunk:
                break
            got += chunk
        return got


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def test_server_sockets_and_state(loop):
    async def main():
        server = await loop.create_server(Echo, LOCALHOST, 0)
        socks = server.sockets
        state = dict(
            types={type(s) for s in socks},
            is_tuple=isinstance(socks, tuple),
            count=len(socks),
            serving=server.is_serving(),
            same_loop=server.get_loop() is loop,
            repr_ok=repr(server).startswith("<Server sockets=("),
            listening=socks[0].getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
            blocking=socks[0].gettimeout(),
        )
        state["echo"] = await _echo_once(loop, socks[0].getsockname())
        server.close()
        server.close()          # idempotent
        state["after_close"] = (server.is_serving(), server.sockets)
        await server.wait_closed()
        return state

    state = loop.run_until_complete(main())
    assert state == dict(types={trsock.TransportSocket}, is_tuple=True, count=1, serving=True,
                         same_loop=True, repr_ok=True, listening=1, blocking=0.0,
                         echo=b"ping", after_close=(False, ()))


def test_start_serving_false_then_start_serving(loop):
    async def main():
        server = await loop.create_server(Echo, LOCALHOST, 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        serving_before = server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            sock = await _connect_raw(loop, addr)
            sock.close()
        await server.start_serving()
        await server.start_serving()        # a second call is a no-op
        got = await _echo_once(loop, addr)
        serving_after = server.is_serving()
        server.close()
        await server.wait_closed()
        return serving_before, got, serving_after

    assert loop.run_until_complete(main()) == (False, b"ping", True)


def test_serve_forever_cancelled(loop):
    async def main():
        server = await loop.create_server(Echo, LOCALHOST, 0, start_serving=False)
        addr = server.sockets[0].getsockname()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already being awaited"):
            await server.serve_forever()
        got = await _echo_once(loop, addr)
        serving = server.is_serving()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = (server.is_serving(), server.sockets)
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()
        with pytest.raises(ConnectionRefusedError):
            (await _connect_raw(loop, addr)).close()
        return got, serving, after

    assert loop.run_until_complete(main()) == (b"ping", True, (False, ()))


def test_close_keeps_connections_and_wait_closed(loop):
    async def main():
        srv = Recorder(loop)
        server = await loop.create_server(lambda: srv, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        tr, cli = await loop.create_connection(lambda: Recorder(loop), *addr)
        await srv.made
        server.close()
        waiter = asyncio.ensure_future(server.wait_closed())
        for _ in range(5):
            await asyncio.sleep(0)
        done_early = waiter.done()
        # The accepted connection outlives the listening socket.
        tr.write(b"still here")
        got = await srv.until(10)
        with pytest.raises(ConnectionRefusedError):
            (await _connect_raw(loop, addr)).close()
        tr.close()
        await srv.lost
        await waiter
        return done_early, got

    done_early, got = loop.run_until_complete(main())
    # 3.12 waits for the connections too; 3.11 returns once the server closed.
    assert done_early == (sys.version_info < (3, 12))
    assert got == b"still here"


def test_async_with(loop):
    async def main():
        server = await loop.create_server(Echo, LOCALHOST, 0)
        async with server:
            inside = server.is_serving()
            got = await _echo_once(loop, server.sockets[0].getsockname())
        return inside, got, server.is_serving(), server.sockets

    assert loop.run_until_complete(main()) == (True, b"ping", False, ())


def test_several_hosts(loop):
    async def main():
        server = await loop.create_server(Echo, [LOCALHOST, "127.0.0.2"], 0)
        addrs = sorted(s.getsockname() for s in server.sockets)
        got = [await _echo_once(loop, a, b"to " + a[0].encode()) for a in addrs]
        await close_all(server)
        return [a[0] for a in addrs], got

    hosts, got = loop.run_until_complete(main())
    assert hosts == [LOCALHOST, "127.0.0.2"]
    assert got == [b"to 127.0.0.1", b"to 127.0.0.2"]


def test_reuse_address_and_reuse_port(loop):
    async def main():
        no_reuse = await loop.create_server(Echo, LOCALHOST, 0, reuse_address=False)
        default = await loop.create_server(Echo, LOCALHOST, 0)
        flags = (no_reuse.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0,
                 default.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0)
        await close_all(no_reuse)
        await close_all(default)

        port = free_port()
        one = await loop.create_server(Echo, LOCALHOST, port, reuse_port=True)
        two = await loop.create_server(Echo, LOCALHOST, port, reuse_port=True)
        reuse_port = [s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
                      for srv in (one, two) for s in srv.sockets]
        got = await _echo_once(loop, (LOCALHOST, port))
        await close_all(one)
        got2 = await _echo_once(loop, (LOCALHOST, port))
        await close_all(two)

        # Without reuse_port the port is taken: asyncio's bind error message.
        taken = await loop.create_server(Echo, LOCALHOST, 0)
        taken_port = taken.sockets[0].getsockname()[1]
        with pytest.raises(OSError) as ei:
            await loop.create_server(Echo, LOCALHOST, taken_port)
        await close_all(taken)
        return flags, reuse_port, got, got2, ei.value.errno, str(ei.value), taken_port

    flags, reuse_port, got, got2, err, msg, taken_port = loop.run_until_complete(main())
    assert flags == (False, True)
    assert reuse_port == [True, True]
    assert got == got2 == b"ping"
    assert err == errno.EADDRINUSE
    assert msg.startswith(f"[Errno {errno.EADDRINUSE}] error while attempting to bind "
                          f"on address ('127.0.0.1', {taken_port})")


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Server.close_clients() is new in 3.13")
def test_close_clients_and_abort_clients(loop):
    async def main():
        protos = []

        def factory():
            protos.append(Recorder(loop))
            return protos[-1]

        server = await loop.create_server(factory, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        clients = [await loop.create_connection(lambda: Recorder(loop), *addr)
                   for _ in range(2)]
        while len(protos) < 2:
            await asyncio.sleep(0)
        await asyncio.gather(*(p.made for p in protos))
        server.close()
        server.close_clients()
        results = [await p.lost for p in protos]
        await asyncio.gather(*(pr.lost for _, pr in clients))
        await server.wait_closed()

        server = await loop.create_server(factory, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        tr, pr = await loop.create_connection(lambda: Recorder(loop), *addr)
        while len(protos) < 3:
            await asyncio.sleep(0)
        await protos[2].made
        server.close()
        server.abort_clients()
        results.append(await protos[2].lost)
        await pr.lost
        await server.wait_closed()
        return results

    assert loop.run_until_complete(main()) == [None, None, None]


def test_connect_accepted_socket(loop):
    async def main():
        listener = socket.socket()
        listener.bind((LOCALHOST, 0))
        listener.listen(1)
        listener.setblocking(False)
        with listener:
            client = socket.socket()
            client.setblocking(False)
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(client, listener.getsockname())
            conn, peer = await accept
        with client:
            tr, pr = await loop.connect_accepted_socket(lambda: Recorder(loop), conn)
            names = (tr.get_extra_info("peername") == peer,
                     tr.get_extra_info("socket").fileno() == conn.fileno())
            await loop.sock_sendall(client, b"accepted")
            got = await pr.until(8)
            tr.write(b"reply")
            back = await loop.sock_recv(client, 100)
            tr.close()
            await pr.lost
            conn_closed = conn.fileno() == -1
        return names, got, back, conn_closed, pr.events

    names, got, back, conn_closed, events = loop.run_until_complete(main())
    assert names == (True, True)
    assert got == b"accepted"
    assert back == b"reply"
    assert conn_closed
    assert events == ["made", "data", "lost"]


def test_bad_server_arguments(loop):
    async def main():
        errors = []
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket()
        with udp, tcp:
            for call in (
                lambda: loop.create_server(Echo, LOCALHOST, 0, sock=udp),
                lambda: loop.create_server(Echo, sock=udp),
                lambda: loop.create_server(Echo),
                lambda: loop.create_server(Echo, LOCALHOST, 0, ssl_handshake_timeout=1),
                lambda: loop.connect_accepted_socket(Echo, udp),
                lambda: loop.connect_accepted_socket(Echo, tcp, ssl_handshake_timeout=1),
            ):
                with pytest.raises(ValueError) as ei:
                    await call()
                errors.append(str(ei.value).split(", got")[0])
            with pytest.raises(TypeError) as ei:
                await loop.create_server(Echo, LOCALHOST, 0, ssl=True)
            errors.append(str(ei.value))
        return errors

    assert loop.run_until_complete(main()) == [
        "host/port and sock can not be specified at the same time",
        "A Stream Socket was expected",
        "Neither host/port nor sock were specified",
        "ssl_handshake_timeout is only meaningful with ssl",
        "A Stream Socket was expected",
        "ssl_handshake_timeout is only meaningful with ssl",
        "ssl argument must be an SSLContext or None",
    ]


def test_protocol_factory_error_drops_the_connection(loop):
    async def main(debug: bool):
        handled = []
        loop.set_debug(debug)
        loop.set_exception_handler(lambda lp, ctx: handled.append(ctx))
        calls = []

        def factory():
            calls.append(1)
            if len(calls) == 1:
                raise ZeroDivisionError("no protocol")
            return Echo()

        server = await loop.create_server(factory, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        sock = await _connect_raw(loop, addr)
        # asyncio drops the accepted socket (it is closed once collected): do
        # not wait for the client to see it; just let the accept happen.
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        sock.close()
        # The server goes on serving.
        second = await _echo_once(loop, addr)
        await close_all(server)
        loop.set_debug(False)
        return calls, second, [(h["message"], type(h["exception"])) for h in handled]

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)   # asyncio drops the socket
        quiet = loop.run_until_complete(main(False))
        debug = loop.run_until_complete(main(True))
    assert quiet == ([1, 1], b"ping", [])
    assert debug == ([1, 1], b"ping", [("Error on transport creation for incoming connection",
                                     ZeroDivisionError)])
