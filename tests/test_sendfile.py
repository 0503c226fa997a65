"""loop.sendfile() on transports and loop.sock_sendfile() on sockets."""

from __future__ import annotations

import asyncio
import io
import pathlib
import socket
import ssl
import sysconfig

import pytest

from netutil import LOCALHOST, MIB, Recorder, close_all, payload, tcp_pair

DATA = payload(MIB + 12345, 11)


@pytest.fixture
def datafile(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    with open(path, "rb") as f:
        yield f


def _keycert() -> str | None:
    """CPython's test certificate (a self-signed one for localhost), if the
    test package is installed."""
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for cand in (stdlib / "test" / "certdata" / "keycert.pem", stdlib / "test" / "keycert.pem"):
        if cand.exists():
            return str(cand)
    return None


def test_sendfile_native(loop, datafile):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        tr.write(b"head:")                       # queued data goes first
        sent = await loop.sendfile(tr, datafile)
        pos = datafile.tell()
        tr.write(b":tail")                       # the transport works afterwards
        got = await srv.until(len(DATA) + 10)
        reading = tr.is_reading()
        await close_all(server, tr)
        return sent, pos, got, reading

    sent, pos, got, reading = loop.run_until_complete(main())
    assert sent == len(DATA)
    assert pos == len(DATA)
    assert got == b"head:" + DATA + b":tail"
    assert reading is True


def test_sendfile_offset_and_count(loop, datafile):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        results = []
        results.append(await loop.sendfile(tr, datafile, offset=1000, count=5000))
        results.append(datafile.tell())
        results.append(await loop.sendfile(tr, datafile, offset=len(DATA) - 10, count=1000))
        results.append(datafile.tell())
        got = await srv.until(5010)
        await close_all(server, tr)
        return results, got

    results, got = loop.run_until_complete(main())
    assert results == [5000, 6000, 10, len(DATA)]
    assert got == DATA[1000:6000] + DATA[-10:]


def test_sendfile_fallback(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        buf = io.BytesIO(DATA)                    # no fileno(): no native sendfile
        with pytest.raises(asyncio.SendfileNotAvailableError):
            await loop.sendfile(tr, buf, fallback=False)
        sent = await loop.sendfile(tr, buf, offset=10, count=len(DATA))
        pos = buf.tell()
        got = await srv.until(len(DATA) - 10)
        await close_all(server, tr)
        return sent, pos, got

    sent, pos, got = loop.run_until_complete(main())
    assert sent == len(DATA) - 10
    assert pos == len(DATA)
    assert got == DATA[10:]


def test_sendfile_errors(loop, datafile, tmp_path):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        errors = []
        text = open(tmp_path / "t.txt", "w")
        with text:
            with pytest.raises(ValueError) as ei:
                await loop.sendfile(tr, text)
            errors.append(str(ei.value))
        for kwargs in (dict(count=0), dict(count=-1), dict(offset=-1), dict(count=1.5)):
            with pytest.raises((ValueError, TypeError)) as ei:
                await loop.sendfile(tr, datafile, **kwargs)
            errors.append(str(ei.value))
        # write() while a sendfile runs.
        task = asyncio.ensure_future(loop.sendfile(tr, datafile))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError) as ei:
            tr.write(b"x")
        errors.append(str(ei.value))
        await task
        tr.close()
        with pytest.raises(RuntimeError) as ei:
            await loop.sendfile(tr, datafile)
        errors.append(str(ei.value))
        await close_all(server)
        return errors

    assert loop.run_until_complete(main()) == [
        "file should be opened in binary mode",
        "count must be a positive integer (got 0)",
        "count must be a positive integer (got -1)",
        "offset must be a non-negative integer (got -1)",
        "count must be a positive integer (got 1.5)",
        "unable to write; sendfile is in progress",
        "Transport is closing",
    ]


def test_sendfile_unix(loop, datafile, tmp_path):
    path = str(tmp_path / "s")

    async def main():
        srv = Recorder(loop)
        server = await loop.create_unix_server(lambda: srv, path)
        tr, cli = await loop.create_unix_connection(lambda: Recorder(loop), path)
        sent = await loop.sendfile(tr, datafile, count=70000)
        got = await srv.until(70000)
        await close_all(server, tr)
        return sent, got

    sent, got = loop.run_until_complete(main())
    assert sent == 70000
    assert got == DATA[:70000]


@pytest.mark.skipif(_keycert() is None, reason="no test certificate")
def test_sendfile_over_tls_falls_back(loop, datafile):
    certfile = _keycert()

    async def main():
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(certfile)
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        srv = Recorder(loop)
        server = await loop.create_server(lambda: srv, LOCALHOST, 0, ssl=sctx)
        tr, cli = await loop.create_connection(
            lambda: Recorder(loop), LOCALHOST, server.sockets[0].getsockname()[1],
            ssl=cctx, server_hostname="localhost")
        with pytest.raises(RuntimeError) as ei:
            await loop.sendfile(tr, datafile, fallback=False)
        msg = str(ei.value)
        sent = await loop.sendfile(tr, datafile)
        got = await srv.until(len(DATA))
        tr.close()
        await cli.lost
        await srv.lost
        await close_all(server)
        return msg, sent, got

    msg, sent, got = loop.run_until_complete(main())
    assert msg.startswith("fallback is disabled and native sendfile is not supported "
                          "for transport <asyncio.sslproto._SSLProtocolTransport")
    assert sent == len(DATA)
    assert got == DATA


def test_sock_sendfile(loop, datafile):
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b:
            async def reader(n):
                got = bytearray()
                while len(got) < n:
                    chunk = await loop.sock_recv(b, 65536)
                    assert chunk
                    got += chunk
                return bytes(got)

            results = []
            task = asyncio.ensure_future(reader(len(DATA)))
            results.append(await loop.sock_sendfile(a, datafile))
            results.append(datafile.tell())
            results.append(await task == DATA)
            task = asyncio.ensure_future(reader(100))
            results.append(await loop.sock_sendfile(a, datafile, 5, 100))
            results.append(await task == DATA[5:105])
            buf = io.BytesIO(DATA)
            with pytest.raises(asyncio.SendfileNotAvailableError):
                await loop.sock_sendfile(a, buf, fallback=False)
            task = asyncio.ensure_future(reader(300))
            results.append(await loop.sock_sendfile(a, buf, 7, 300))
            results.append(await task == DATA[7:307])
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.setblocking(False)
            with udp:
                with pytest.raises(ValueError) as ei:
                    await loop.sock_sendfile(udp, datafile)
            results.append(str(ei.value))
            # An empty file sends nothing.
            empty = io.BytesIO(b"")
            results.append(await loop.sock_sendfile(a, empty))
        return results

    assert loop.run_until_complete(main()) == [
        len(DATA), len(DATA), True, 100, True, 300, True,
        "only SOCK_STREAM type sockets are supported", 0]
