"""Unix stream sockets: create_unix_server / create_unix_connection."""

from __future__ import annotations

import asyncio
import errno
import os
import pathlib
import socket
import sys
import uuid

import pytest

from netutil import Recorder, close_all, payload

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")


@pytest.fixture
def sock_path(tmp_path):
    # Unix socket paths are limited to ~107 bytes: keep it short.
    path = pathlib.Path("/tmp") / f"uvl-{uuid.uuid4().hex[:12]}.sock"
    yield path
    try:
        path.unlink()
    except FileNotFoundError:
        pass


async def _unix_pair(loop, server_path, client_path=None, keep_open=None):
    srv = Recorder(loop, keep_open=keep_open)
    server = await loop.create_unix_server(lambda: srv, server_path)
    tr, cli = await loop.create_unix_connection(lambda: Recorder(loop),
                                                client_path or server_path)
    await srv.made
    return server, tr, cli, srv


@pytest.mark.parametrize("kind", ["str", "bytes", "pathlib"])
def test_paths(loop, sock_path, kind):
    path = {"str": str(sock_path), "bytes": os.fsencode(sock_path), "pathlib": sock_path}[kind]
    data = payload(300_000, 4)

    async def main():
        server, tr, cli, srv = await _unix_pair(loop, path, keep_open=True)
        info = dict(
            listen_sockname=server.sockets[0].getsockname(),
            family=server.sockets[0].family,
            client_peer=tr.get_extra_info("peername"),
            client_sockname=tr.get_extra_info("sockname"),
            server_peer=srv.transport.get_extra_info("peername"),
            server_sockname=srv.transport.get_extra_info("sockname"),
            can_write_eof=tr.can_write_eof(),
        )
        tr.write(data)
        tr.write_eof()
        await srv.eof
        srv.transport.write(b"done")
        await cli.until(4)
        await close_all(server, tr, srv.transport)
        await cli.lost
        info["received"] = bytes(srv.data) == data
        info["file_exists"] = sock_path.exists()
        return info

    info = loop.run_until_complete(main())
    assert info["listen_sockname"] == str(sock_path)
    assert info["family"] == socket.AF_UNIX
    assert info["client_peer"] == str(sock_path)
    assert info["client_sockname"] == ""
    assert info["server_peer"] == ""
    assert info["server_sockname"] == str(sock_path)
    assert info["can_write_eof"] is True
    assert info["received"]
    # 3.13 removes the socket file when the server closes; before, it stays.
    assert info["file_exists"] == (sys.version_info < (3, 13))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux abstract namespace")
def test_abstract_namespace(loop):
    name = f"\0uvl-{uuid.uuid4().hex}"

    async def main():
        server, tr, cli, srv = await _unix_pair(loop, name)
        tr.write(b"abstract")
        got = await srv.until(8)
        sockname = server.sockets[0].getsockname()
        peer = tr.get_extra_info("peername")
        await close_all(server, tr)
        return got, sockname, peer

    got, sockname, peer = loop.run_until_complete(main())
    assert got == b"abstract"
    assert sockname == name.encode()
    assert peer == name.encode()


def test_stale_socket_file_is_replaced(loop, sock_path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()                     # leaves the socket file behind
    assert sock_path.exists()

    async def main():
        server, tr, cli, srv = await _unix_pair(loop, sock_path)
        tr.write(b"fresh")
        got = await srv.until(5)
        await close_all(server, tr)
        return got

    assert loop.run_until_complete(main()) == b"fresh"


def test_path_in_use_by_a_regular_file(loop, sock_path):
    sock_path.write_bytes(b"not a socket")

    async def main():
        with pytest.raises(OSError) as ei:
            await loop.create_unix_server(asyncio.Protocol, sock_path)
        return ei.value.errno, str(ei.value)

    err, msg = loop.run_until_complete(main())
    assert err == errno.EADDRINUSE
    assert msg == f"[Errno {errno.EADDRINUSE}] Address {str(sock_path)!r} is already in use"
    assert sock_path.read_bytes() == b"not a socket"   # never removed


def test_connect_errors(loop, sock_path):
    async def main():
        errors = []
        with pytest.raises(OSError) as ei:
            await loop.create_unix_connection(asyncio.Protocol, sock_path)
        errors.append(type(ei.value))
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(sock_path))
        stale.close()
        with pytest.raises(OSError) as ei:
            await loop.create_unix_connection(asyncio.Protocol, sock_path)
        errors.append(type(ei.value))
        tcp = socket.socket()
        with tcp:
            for coro in (
                loop.create_unix_connection(asyncio.Protocol, sock=tcp),
                loop.create_unix_server(asyncio.Protocol, sock=tcp),
                loop.create_unix_connection(asyncio.Protocol),
                loop.create_unix_server(asyncio.Protocol),
                loop.create_unix_connection(asyncio.Protocol, sock_path, sock=tcp),
                loop.create_unix_connection(asyncio.Protocol, sock_path, server_hostname="x"),
                loop.create_unix_connection(asyncio.Protocol, sock_path,
                                            ssl_handshake_timeout=1),
            ):
                with pytest.raises(ValueError) as ei:
                    await coro
                errors.append(str(ei.value).split(", got")[0])
            with pytest.raises(TypeError) as ei:
                await loop.create_unix_server(asyncio.Protocol, sock_path, ssl=True)
            errors.append(str(ei.value))
        return errors

    assert loop.run_until_complete(main()) == [
        FileNotFoundError,
        ConnectionRefusedError,
        "A UNIX Domain Stream Socket was expected",
        "A UNIX Domain Stream Socket was expected",
        "no path and sock were specified",
        "path was not specified, and no sock specified",
        "path and sock can not be specified at the same time",
        "server_hostname is only meaningful with ssl",
        "ssl_handshake_timeout is only meaningful with ssl",
        "ssl argument must be an SSLContext or None",
    ]


def test_server_and_connection_on_sockets(loop, sock_path):
    async def main():
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(str(sock_path))
        srv = Recorder(loop)
        server = await loop.create_unix_server(lambda: srv, sock=lsock)
        csock = socket.socket(socket.AF_UNIX)
        csock.connect(str(sock_path))
        tr, cli = await loop.create_unix_connection(lambda: Recorder(loop), sock=csock)
        await srv.made
        tr.write(b"on socks")
        got = await srv.until(8)
        await close_all(server, tr)
        await cli.lost
        return got, csock.fileno(), lsock.fileno()

    got, cfd, lfd = loop.run_until_complete(main())
    assert got == b"on socks"
    assert cfd == -1 and lfd == -1     # both sockets were handed over and closed


def test_start_serving_false(loop, sock_path):
    async def main():
        srv = Recorder(loop)
        server = await loop.create_unix_server(lambda: srv, sock_path, start_serving=False)
        before = server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_unix_connection(asyncio.Protocol, sock_path)
        await server.start_serving()
        tr, cli = await loop.create_unix_connection(lambda: Recorder(loop), sock_path)
        await srv.made
        await close_all(server, tr)
        await cli.lost
        return before, server.is_serving()

    assert loop.run_until_complete(main()) == (False, False)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="cleanup_socket is new in 3.13")
def test_cleanup_on_close(loop, sock_path):
    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, sock_path)
        exists = sock_path.exists()
        server.close()
        await server.wait_closed()
        removed = not sock_path.exists()

        keep = await loop.create_unix_server(asyncio.Protocol, sock_path, cleanup_socket=False)
        keep.close()
        await keep.wait_closed()
        kept = sock_path.exists()
        sock_path.unlink()

        # A file replaced under the server is not the server's to remove.
        server = await loop.create_unix_server(asyncio.Protocol, sock_path)
        sock_path.unlink()
        sock_path.write_bytes(b"someone else's")
        server.close()
        await server.wait_closed()
        return exists, removed, kept, sock_path.read_bytes()

    assert loop.run_until_complete(main()) == (True, True, True, b"someone else's")
