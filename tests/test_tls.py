"""TLS over the loop's stream transports (asyncio's sslproto on top): one
body run on asyncio's loop and on uvloop_lite.

Certificates: with the ``cryptography`` package installed, a CA and a
localhost certificate it signed are made at test time; without it, the
self-signed pair in tests/data is used (made once with ``openssl req -x509
-newkey rsa:2048 -nodes -days 36500 -subj /CN=localhost -addext
subjectAltName=DNS:localhost,IP:127.0.0.1``), with unrelated-ca.pem as a
certificate that signed neither.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import ipaddress
import pathlib
import socket
import ssl
import sys
import uuid
import weakref

import pytest

from netutil import LOCALHOST, MIB, Recorder, payload

HOSTNAME = "localhost"
# Objects go as soon as nothing refers to them (CPython; PyPy has a GC only).
REFCOUNTED = sys.implementation.name == "cpython"

# From 3.11 (asyncio's rewritten sslproto) a peer's close_notify reaches the
# protocol as eof_received().  Before, sslproto answered it by shutting the
# connection down itself: connection_lost() came without eof_received().
CLOSE_NOTIFY_IS_EOF = sys.version_info >= (3, 11)


def _after_close_notify(pr):
    """The future to await once the peer of ``pr`` has sent close_notify."""
    return pr.eof if CLOSE_NOTIFY_IS_EOF else pr.lost


def _close_notify_events(*events: str) -> list[str]:
    """``events`` as the receiver of a close_notify sees them on this Python."""
    return [e for e in events if CLOSE_NOTIFY_IS_EOF or e != "eof"]


# -- certificates ------------------------------------------------------------------

def _make_with_cryptography(d: pathlib.Path) -> tuple[str, str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "uvloop_lite test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)]))
            .issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(HOSTNAME), x509.IPAddress(ipaddress.ip_address(LOCALHOST))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))

    ca_path, cert_path, key_path = d / "ca.pem", d / "cert.pem", d / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(pem_key(key))
    return str(ca_path), str(cert_path), str(key_path)


DATA = pathlib.Path(__file__).parent / "data"


def _have_cryptography() -> bool:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """(CA file, certificate file, key file)."""
    if _have_cryptography():
        return _make_with_cryptography(tmp_path_factory.mktemp("tls"))
    cert = str(DATA / "localhost-cert.pem")
    return cert, cert, str(DATA / "localhost-key.pem")


@pytest.fixture
def server_ctx(certs):
    ca, cert, key = certs
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
def client_ctx(certs):
    ca, cert, key = certs
    return ssl.create_default_context(cafile=ca)


@pytest.fixture
def sock_path():
    path = pathlib.Path("/tmp") / f"uvl-{uuid.uuid4().hex[:12]}.sock"
    yield path
    try:
        path.unlink()
    except FileNotFoundError:
        pass


async def _tls_pair(loop, server_ctx, client_ctx, *, srv=None, cli=None, **client_kw):
    srv = srv or Recorder(loop)
    server = await loop.create_server(lambda: srv, LOCALHOST, 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    tr, cli = await loop.create_connection(lambda: cli or Recorder(loop), LOCALHOST, port,
                                           ssl=client_ctx, server_hostname=HOSTNAME,
                                           **client_kw)
    await srv.made
    return server, tr, cli, srv


async def _shutdown(server, *pairs):
    for tr, pr in pairs:
        tr.close()
    for tr, pr in pairs:
        await asyncio.wait_for(pr.lost, 30)
    if server is not None:
        server.close()
        await server.wait_closed()


# -- connections -----------------------------------------------------------------------

def test_echo_create_connection_create_server(loop, server_ctx, client_ctx):
    data = payload(MIB, 3)

    class Echo(Recorder):
        def data_received(self, chunk):
            super().data_received(chunk)
            self.transport.write(chunk)

    async def main():
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx, srv=Echo(loop))
        tr.write(b"hello over TLS")
        assert await cli.until(14) == b"hello over TLS"
        tr.write(data)
        got = await asyncio.wait_for(cli.until(14 + len(data)), 30)
        tr.close()
        assert await asyncio.wait_for(cli.lost, 30) is None
        assert await asyncio.wait_for(srv.lost, 30) is None
        server.close()
        await server.wait_closed()
        return got, cli.events, srv.events, tr.is_closing()

    got, cli_events, srv_events, closing = loop.run_until_complete(main())
    assert got == b"hello over TLS" + data
    # close_notify reaches the server as end of file (3.11+), and its answer the
    # client; the closing of the socket reaches the client as end of file anyway.
    assert cli_events == ["made", "data", "eof", "lost"]
    assert srv_events == _close_notify_events("made", "data", "eof", "lost")
    assert closing


def test_extra_info(loop, server_ctx, client_ctx):
    async def main():
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx)
        sides = {}
        for name, t in (("client", tr), ("server", srv.transport)):
            obj = t.get_extra_info("ssl_object")
            sides[name] = dict(
                sslcontext=t.get_extra_info("sslcontext"),
                ssl_object=type(obj),
                server_side=obj.server_side,
                hostname=obj.server_hostname,
                peercert=t.get_extra_info("peercert"),
                cipher=t.get_extra_info("cipher"),
                compression=t.get_extra_info("compression"),
                peername=t.get_extra_info("peername"),
                sockname=t.get_extra_info("sockname"),
                socket_family=t.get_extra_info("socket").family,
                missing=t.get_extra_info("no-such-key", "default"),
                can_write_eof=t.can_write_eof(),
                is_reading=t.is_reading(),
            )
        await _shutdown(server, (tr, cli))
        return sides

    sides = loop.run_until_complete(main())
    cli, srv = sides["client"], sides["server"]
    assert cli["sslcontext"] is client_ctx and srv["sslcontext"] is server_ctx
    assert cli["ssl_object"] is ssl.SSLObject and srv["ssl_object"] is ssl.SSLObject
    assert (cli["server_side"], srv["server_side"]) == (False, True)
    assert cli["hostname"] == HOSTNAME
    assert dict(x[0] for x in cli["peercert"]["subject"]) == {"commonName": HOSTNAME}
    assert ("DNS", HOSTNAME) in cli["peercert"]["subjectAltName"]
    assert srv["peercert"] is None   # no client certificate asked for
    assert cli["cipher"] == srv["cipher"] and len(cli["cipher"]) == 3
    assert cli["compression"] is None and srv["compression"] is None
    assert cli["peername"] == srv["sockname"] and cli["sockname"] == srv["peername"]
    assert cli["socket_family"] == socket.AF_INET
    assert cli["missing"] == "default"
    assert cli["can_write_eof"] is False and srv["can_write_eof"] is False
    assert cli["is_reading"] and srv["is_reading"]


def test_client_certificate(loop, certs, server_ctx, client_ctx):
    ca, cert, key = certs
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(ca)
    client_ctx.load_cert_chain(cert, key)

    async def main():
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx)
        tr.write(b"x")
        await srv.until(1)   # the server checked the certificate by now (TLS 1.3)
        peercert = srv.transport.get_extra_info("peercert")
        await _shutdown(server, (tr, cli))
        return peercert

    peercert = loop.run_until_complete(main())
    assert dict(x[0] for x in peercert["subject"]) == {"commonName": HOSTNAME}


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets")
def test_unix_connection_and_server(loop, sock_path, server_ctx, client_ctx):
    data = payload(300_000, 8)

    async def main():
        srv = Recorder(loop, keep_open=True)
        server = await loop.create_unix_server(lambda: srv, str(sock_path), ssl=server_ctx)
        tr, cli = await loop.create_unix_connection(lambda: Recorder(loop), str(sock_path),
                                                    ssl=client_ctx, server_hostname=HOSTNAME)
        await srv.made
        tr.write(data)
        got = await asyncio.wait_for(srv.until(len(data)), 30)
        srv.transport.write(b"reply")
        await cli.until(5)
        info = (tr.get_extra_info("ssl_object").version(), tr.get_extra_info("peername"),
                srv.transport.get_extra_info("sockname"),
                tr.get_extra_info("socket").family)
        await _shutdown(server, (tr, cli))
        return got, info

    got, (version, peername, sockname, family) = loop.run_until_complete(main())
    assert got == data
    assert version.startswith("TLS")
    assert peername == sockname == str(sock_path)
    assert family == socket.AF_UNIX


def test_ssl_argument_errors(loop, client_ctx):
    async def main():
        out = []
        for kw in (dict(server_hostname=HOSTNAME), dict(ssl_handshake_timeout=1)):
            try:
                await loop.create_connection(asyncio.Protocol, LOCALHOST, 1, **kw)
            except ValueError as exc:
                out.append(str(exc))
        for kw in (dict(ssl=True), dict(ssl_handshake_timeout=1)):
            try:
                await loop.create_server(asyncio.Protocol, LOCALHOST, 0, **kw)
            except (ValueError, TypeError) as exc:
                out.append(f"{type(exc).__name__}: {exc}")
        return out

    assert loop.run_until_complete(main()) == [
        "server_hostname is only meaningful with ssl",
        "ssl_handshake_timeout is only meaningful with ssl",
        "TypeError: ssl argument must be an SSLContext or None",
        "ValueError: ssl_handshake_timeout is only meaningful with ssl",
    ]


# -- start_tls ----------------------------------------------------------------------------

def test_start_tls_both_sides(loop, server_ctx, client_ctx):
    big = payload(MIB // 2, 2)

    async def main():
        upgraded = loop.create_future()
        srv = Recorder(loop)

        class StartTLSServer(Recorder):
            def data_received(self, data):
                super().data_received(data)
                if bytes(self.data) == b"STARTTLS\n":
                    # Nothing more may be read in the clear: the next bytes
                    # are the TLS handshake.
                    self.transport.pause_reading()
                    self.transport.write(b"GO\n")
                    loop.create_task(self._upgrade())

            async def _upgrade(self):
                try:
                    tls = await loop.start_tls(self.transport, srv, server_ctx,
                                               server_side=True)
                except BaseException as exc:
                    upgraded.set_exception(exc)
                else:
                    upgraded.set_result(tls)

        plain_srv = StartTLSServer(loop)
        server = await loop.create_server(lambda: plain_srv, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        plain_tr, cli = await loop.create_connection(lambda: Recorder(loop), LOCALHOST, port)
        plain_tr.write(b"STARTTLS\n")
        assert await cli.until(3) == b"GO\n"
        tls_tr = await loop.start_tls(plain_tr, cli, client_ctx, server_hostname=HOSTNAME)
        srv_tls = await asyncio.wait_for(upgraded, 30)
        srv.transport = srv_tls
        info = (plain_tr.is_closing(), type(tls_tr.get_extra_info("ssl_object")),
                tls_tr.get_extra_info("peercert") is not None,
                srv_tls.get_extra_info("ssl_object").server_side)
        tls_tr.write(b"secret ")
        tls_tr.write(big)
        got = await asyncio.wait_for(srv.until(7 + len(big)), 30)
        srv_tls.write(b"secret reply")
        back = await asyncio.wait_for(cli.until(3 + 12), 30)
        tls_tr.close()
        await asyncio.wait_for(cli.lost, 30)
        await asyncio.wait_for(srv.lost, 30)
        server.close()
        await server.wait_closed()
        return info, got, back, srv.events, cli.events

    info, got, back, srv_events, cli_events = loop.run_until_complete(main())
    assert info == (False, ssl.SSLObject, True, True)
    assert got == b"secret " + big
    assert back == b"GO\nsecret reply"
    assert srv_events == _close_notify_events("data", "eof", "lost")
    assert cli_events == ["made", "data", "eof", "lost"]


def test_start_tls_stream_writer(loop, server_ctx, client_ctx):
    async def main():
        async def handle(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            await writer.start_tls(server_ctx)
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_ctx, server_hostname=HOSTNAME)
        writer.write(b"upgraded\n")
        got = await reader.read()
        cipher = writer.get_extra_info("cipher")
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return got, cipher is not None

    if sys.version_info < (3, 11):
        pytest.skip("StreamWriter.start_tls is 3.11+")
    assert loop.run_until_complete(main()) == (b"UPGRADED\n", True)


# -- handshake failures and timeouts -------------------------------------------------------

def test_handshake_timeout_silent_server(loop, client_ctx):
    async def main():
        accepted = []
        silent = await loop.create_server(
            lambda: _keep(accepted, Recorder(loop)), LOCALHOST, 0)
        port = silent.sockets[0].getsockname()[1]
        t0 = loop.time()
        try:
            await loop.create_connection(asyncio.Protocol, LOCALHOST, port, ssl=client_ctx,
                                         server_hostname=HOSTNAME, ssl_handshake_timeout=0.2)
        except Exception as exc:
            result = (type(exc), str(exc))
        else:
            result = "connected"
        elapsed = loop.time() - t0
        # The client aborted: the silent server sees the connection go.
        await asyncio.wait_for(accepted[0].lost, 30)
        silent.close()
        await silent.wait_closed()
        return result, elapsed

    result, elapsed = loop.run_until_complete(main())
    assert result == (ConnectionAbortedError,
                      "SSL handshake is taking longer than 0.2 seconds: aborting the connection")
    assert 0.15 < elapsed < 10


def _keep(lst, proto):
    lst.append(proto)
    return proto


def _tolerate_accept_errors(loop):
    """In debug mode (python -X dev) both loops report a failed server-side
    handshake to the exception handler: accept those reports only."""
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    return contexts


def _only_accept_errors(contexts):
    assert all(c["message"] == "Error on transport creation for incoming connection"
               for c in contexts), contexts


def test_handshake_timeout_silent_client(loop, server_ctx):
    contexts = _tolerate_accept_errors(loop)

    async def main():
        made = []
        server = await loop.create_server(lambda: _keep(made, Recorder(loop)), LOCALHOST, 0,
                                          ssl=server_ctx, ssl_handshake_timeout=0.2)
        port = server.sockets[0].getsockname()[1]
        raw = socket.create_connection((LOCALHOST, port))
        raw.setblocking(False)
        try:
            t0 = loop.time()
            data = await asyncio.wait_for(loop.sock_recv(raw, 100), 30)   # b"": closed
            elapsed = loop.time() - t0
        finally:
            raw.close()
        server.close()
        await server.wait_closed()
        return data, elapsed, made

    data, elapsed, made = loop.run_until_complete(main())
    _only_accept_errors(contexts)
    assert data == b""
    assert 0.15 < elapsed < 10
    assert made == [] or made[0].events == []   # the protocol never got connection_made


@pytest.fixture(scope="session")
def unrelated_ca():
    """A CA certificate (PEM) that did not sign ours."""
    if _have_cryptography():
        return _unrelated_ca_pem()
    return (DATA / "unrelated-ca.pem").read_text()


def test_certificate_verify_failed(loop, server_ctx, certs, unrelated_ca):
    contexts = _tolerate_accept_errors(loop)

    async def main():
        server = await loop.create_server(lambda: Recorder(loop), LOCALHOST, 0,
                                          ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        results = []
        untrusting = ssl.create_default_context()
        untrusting.load_verify_locations(cadata=unrelated_ca)
        trusting = ssl.create_default_context(cafile=certs[0])
        for ctx, hostname in ((untrusting, HOSTNAME), (trusting, "wrong.example")):
            try:
                await loop.create_connection(asyncio.Protocol, LOCALHOST, port, ssl=ctx,
                                             server_hostname=hostname)
            except ssl.SSLCertVerificationError as exc:
                results.append((type(exc), exc.verify_code, exc.reason))
            else:
                results.append("connected")
        server.close()
        await server.wait_closed()
        return results

    results = loop.run_until_complete(main())
    _only_accept_errors(contexts)
    assert [r[0] for r in results] == [ssl.SSLCertVerificationError] * 2
    assert results[0][2] == results[1][2] == "CERTIFICATE_VERIFY_FAILED"


@pytest.mark.parametrize("debug", [False, True])
def test_server_handshake_failure_reporting(loop, server_ctx, unrelated_ca, debug):
    # asyncio reports a failed handshake of an accepted connection to the
    # exception handler in debug mode only, with the app protocol and transport.
    loop.set_debug(debug)
    contexts = []
    reported = loop.create_future()

    def handler(lp, ctx):
        contexts.append(ctx)
        if not reported.done():
            reported.set_result(None)

    loop.set_exception_handler(handler)
    protocols = []

    async def main():
        server = await loop.create_server(lambda: _keep(protocols, Recorder(loop)),
                                          LOCALHOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        untrusting = ssl.create_default_context()
        untrusting.load_verify_locations(cadata=unrelated_ca)
        with pytest.raises(ssl.SSLCertVerificationError):
            await loop.create_connection(asyncio.Protocol, LOCALHOST, port, ssl=untrusting,
                                         server_hostname=HOSTNAME)
        if debug:
            await asyncio.wait_for(reported, 30)
        else:
            # The server saw the connection fail: a plain one still works.
            ok_ctx = ssl.create_default_context()
            ok_ctx.check_hostname = False
            ok_ctx.verify_mode = ssl.CERT_NONE
            tr, pr = await loop.create_connection(lambda: Recorder(loop), LOCALHOST, port,
                                                  ssl=ok_ctx, server_hostname=HOSTNAME)
            tr.close()
            await asyncio.wait_for(pr.lost, 30)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    if not debug:
        assert contexts == []
        return
    ctx = contexts[0]
    assert ctx["message"] == "Error on transport creation for incoming connection"
    assert isinstance(ctx["exception"], (ssl.SSLError, ConnectionError))
    assert ctx["protocol"] is protocols[0]
    assert protocols[0].events == []   # connection_made() never ran
    assert type(ctx["transport"]).__name__ == "_SSLProtocolTransport"


def _unrelated_ca_pem() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unrelated CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# -- EOF, close and flow control over TLS ----------------------------------------------------

class PausingReader(Recorder):
    """Pauses reading after every ``step`` bytes and resumes a little later."""

    def __init__(self, loop, step):
        super().__init__(loop, keep_open=True)
        self.step = step
        self.next_pause = step
        self.pauses = 0

    def data_received(self, data):
        super().data_received(data)
        if len(self.data) >= self.next_pause:
            self.next_pause = len(self.data) + self.step
            self.transport.pause_reading()
            self.pauses += 1
            self.loop.call_later(0.001, self._resume)

    def _resume(self):
        # (Before 3.11 a TLS transport whose connection was lost is not
        # "closing", and resume_reading() on it fails.)
        if self.transport.is_closing() or self.lost.done():
            return
        try:
            self.transport.resume_reading()
        except AttributeError:
            # 3.9/3.10's sslproto between losing the connection and calling
            # connection_lost() (seen on both loops, on PyPy under load).
            if sys.version_info >= (3, 11):
                raise


def test_large_payload_then_close_with_paused_reader(loop, server_ctx, client_ctx):
    data = payload(4 * MIB, 5)

    async def main():
        srv = PausingReader(loop, 256 * 1024)
        server, tr, cli, _ = await _tls_pair(loop, server_ctx, client_ctx, srv=srv)
        tr.write(data)
        tr.close()   # close_notify after everything written
        await asyncio.wait_for(_after_close_notify(srv), 30)
        got = bytes(srv.data)
        srv.transport.close()
        await asyncio.wait_for(srv.lost, 30)
        await asyncio.wait_for(cli.lost, 30)
        server.close()
        await server.wait_closed()
        return got, srv.events, srv.pauses

    got, events, pauses = loop.run_until_complete(main())
    assert len(got) == len(data) and got == data
    assert events == _close_notify_events("made", "data", "eof", "lost")
    assert pauses > 3


def test_server_writes_then_closes_client_pauses(loop, server_ctx, client_ctx):
    data = payload(3 * MIB, 6)

    async def main():
        cli = PausingReader(loop, 128 * 1024)
        server, tr, _, srv = await _tls_pair(loop, server_ctx, client_ctx, cli=cli)
        srv.transport.write(data)
        srv.transport.close()
        await asyncio.wait_for(_after_close_notify(cli), 30)
        got = bytes(cli.data)
        tr.close()
        await asyncio.wait_for(cli.lost, 30)
        await asyncio.wait_for(srv.lost, 30)
        server.close()
        await server.wait_closed()
        return got, cli.events, srv.events

    got, cli_events, srv_events = loop.run_until_complete(main())
    assert got == data
    assert cli_events == _close_notify_events("made", "data", "eof", "lost")
    assert srv_events == ["made", "eof", "lost"]


def test_write_flow_control_over_tls(loop, server_ctx, client_ctx):
    chunk = payload(256 * 1024, 1)

    async def main():
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx)
        srv.transport.pause_reading()
        tr.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        sent = 0
        while not cli.paused.done():
            tr.write(chunk)
            sent += len(chunk)
            assert sent < 512 * MIB
            await asyncio.sleep(0)   # let the TLS layer push into the socket
        srv.transport.resume_reading()
        await asyncio.wait_for(cli.resumed, 30)
        got = await asyncio.wait_for(srv.until(sent), 60)
        size = tr.get_write_buffer_size()
        await _shutdown(server, (tr, cli))
        return got == chunk * (sent // len(chunk)), size, cli.events

    ok, size, events = loop.run_until_complete(main())
    assert ok and size == 0
    assert events[:3] == ["made", "pause", "resume"] and events[-1] == "lost"


def test_closed_connection_releases_its_ssl_contexts(loop, certs):
    """Nothing of a closed TLS connection (protocol, SSL object, context) is
    kept alive by the loop or its transports."""
    ca, cert, key = certs

    async def main():
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.create_default_context(cafile=ca)
        refs = weakref.ref(server_ctx), weakref.ref(client_ctx)
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx)
        tr.write(b"ping")
        await srv.until(4)
        await _shutdown(server, (tr, cli))
        await asyncio.wait_for(srv.lost, 30)
        del server_ctx, client_ctx, server, tr, cli, srv
        for _ in range(3):
            await asyncio.sleep(0)
        if not REFCOUNTED:
            for _ in range(3):
                gc.collect()
        # On CPython without a garbage collection: no reference cycle may
        # hold them either.
        return [ref() is None for ref in refs]

    gc.collect()
    gc.disable()
    try:
        released = loop.run_until_complete(main())
    finally:
        gc.enable()
    assert released == [True, True]


class _CountingSSLObject(ssl.SSLObject):
    """An sslobject_class of the application's own: its methods must be used."""

    calls = 0

    def read(self, *args, **kwargs):
        type(self).calls += 1
        return super().read(*args, **kwargs)

    def write(self, data):
        type(self).calls += 1
        return super().write(data)


def test_custom_sslobject_class_is_used(loop, server_ctx, client_ctx):
    server_ctx.sslobject_class = _CountingSSLObject

    class Echo(Recorder):
        def data_received(self, chunk):
            super().data_received(chunk)
            self.transport.write(chunk)

    async def main():
        _CountingSSLObject.calls = 0
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx, srv=Echo(loop))
        for i in range(5):
            tr.write(b"message %d;" % i)
        got = await asyncio.wait_for(cli.until(50), 30)
        await _shutdown(server, (tr, cli))
        return got, _CountingSSLObject.calls >= 2

    assert loop.run_until_complete(main()) == (
        b"".join(b"message %d;" % i for i in range(5)), True)


def test_buffered_app_protocol_over_tls(loop, server_ctx, client_ctx):
    """An application BufferedProtocol over TLS gets every byte, in order."""
    data = payload(MIB, 7)

    class Sink(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(5000)
            self.got = bytearray()
            self.done = loop.create_future()
            self.made = loop.create_future()

        def connection_made(self, transport):
            self.made.set_result(transport)

        def get_buffer(self, sizehint):
            # A memoryview: asyncio's sslproto fills a bytearray's slice copy.
            return memoryview(self.buf)

        def buffer_updated(self, nbytes):
            self.got += self.buf[:nbytes]
            if len(self.got) >= len(data) and not self.done.done():
                self.done.set_result(bytes(self.got))

        def connection_lost(self, exc):
            pass

    async def main():
        sink = Sink()
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx, srv=sink)
        tr.write(data)
        got = await asyncio.wait_for(sink.done, 30)
        await _shutdown(server, (tr, cli))
        return len(got), got == data

    assert loop.run_until_complete(main()) == (len(data), True)


def test_abort(loop, server_ctx, client_ctx):
    async def main():
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx)
        tr.write(b"before abort")
        await srv.until(12)
        tr.abort()
        exc = await asyncio.wait_for(cli.lost, 30)
        srv_exc = await asyncio.wait_for(srv.lost, 30)
        server.close()
        await server.wait_closed()
        return exc, srv_exc is None or isinstance(srv_exc, OSError)

    assert loop.run_until_complete(main()) == (None, True)


def test_sendfile_over_tls(loop, server_ctx, client_ctx, tmp_path):
    data = payload(MIB, 11)
    path = tmp_path / "blob"
    path.write_bytes(data)

    async def main():
        server, tr, cli, srv = await _tls_pair(loop, server_ctx, client_ctx)
        with open(path, "rb") as f:
            sent = await loop.sendfile(tr, f, offset=100)
        got = await asyncio.wait_for(srv.until(len(data) - 100), 30)
        await _shutdown(server, (tr, cli))
        return sent, got

    sent, got = loop.run_until_complete(main())
    assert sent == len(data) - 100
    assert got == data[100:]


# -- records as they arrive ----------------------------------------------------------------
# A client on memory BIOs over a plain socket decides which records go out in
# which send(): several in one, one split over many, a forged one.

async def _memory_bio_client(loop, port, client_ctx):
    """(socket, SSLObject, incoming BIO, outgoing BIO) after a completed
    handshake."""
    sock = socket.create_connection((LOCALHOST, port))
    sock.setblocking(False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx.wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
    while True:
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        else:
            break
        finally:
            if outgoing.pending:
                await loop.sock_sendall(sock, outgoing.read())
        data = await loop.sock_recv(sock, 65536)
        if not data:
            raise ConnectionError("closed during the handshake")
        incoming.write(data)
    return sock, obj, incoming, outgoing


async def _server_and_client(loop, server_ctx, client_ctx):
    srv = Recorder(loop)
    server = await loop.create_server(lambda: srv, LOCALHOST, 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    sock, obj, incoming, outgoing = await _memory_bio_client(loop, port, client_ctx)
    await asyncio.wait_for(srv.made, 30)
    return server, srv, sock, obj, incoming, outgoing


async def _close_notify_and_wait(server, srv, sock, obj, outgoing):
    """Send our close_notify, wait for the server's protocol to lose the
    connection, close everything; return what connection_lost() got."""
    try:
        obj.unwrap()   # our close_notify; then it waits for the server's
    except ssl.SSLWantReadError:
        pass
    await asyncio.get_running_loop().sock_sendall(sock, outgoing.read())
    return await _lost_and_closed(server, srv, sock)


async def _lost_and_closed(server, srv, sock):
    """Wait for the server's protocol to lose the connection, then close the
    client socket and the server; return what connection_lost() got."""
    exc = await asyncio.wait_for(srv.lost, 30)
    sock.close()
    await _shutdown(server)
    return exc


def test_records_and_close_notify_in_one_send(loop, server_ctx, client_ctx):
    """Six application records and the close_notify after them, in one
    send(): the server's protocol gets every byte in order, then the
    close_notify's events."""
    parts = [payload(n, i) for i, n in enumerate((1, 700, 16384, 20000, 5))]

    async def main():
        server, srv, sock, obj, incoming, outgoing = await _server_and_client(
            loop, server_ctx, client_ctx)
        for part in parts:
            obj.write(part)
        exc = await _close_notify_and_wait(server, srv, sock, obj, outgoing)
        return bytes(srv.data) == b"".join(parts), len(srv.data), srv.events, exc

    same, size, events, exc = loop.run_until_complete(main())
    assert (same, size) == (True, sum(map(len, parts)))
    assert events == _close_notify_events("made", "data", "eof", "lost")
    assert exc is None


def test_record_split_over_many_sends(loop, server_ctx, client_ctx):
    """Records sent a few bytes at a time arrive whole, in order, and the
    connection goes on: the server's answer comes back."""
    message = payload(3000, 5)

    async def main():
        server, srv, sock, obj, incoming, outgoing = await _server_and_client(
            loop, server_ctx, client_ctx)
        obj.write(message)
        obj.write(b"!")
        records = outgoing.read()
        for i in range(0, len(records), 7):
            await loop.sock_sendall(sock, records[i:i + 7])
        got = await asyncio.wait_for(srv.until(len(message) + 1), 30)
        srv.transport.write(b"answer")
        answer = b""
        while len(answer) < 6:
            data = await loop.sock_recv(sock, 65536)
            if not data:
                break
            incoming.write(data)
            try:
                answer += obj.read(65536)
            except ssl.SSLWantReadError:
                pass
        exc = await _close_notify_and_wait(server, srv, sock, obj, outgoing)
        return got == message + b"!", answer, exc

    assert loop.run_until_complete(main()) == (True, b"answer", None)


def test_forged_record_after_handshake(loop, server_ctx, client_ctx):
    """An application-data record that does not decrypt, after good data:
    the good data is delivered, then the connection is lost with the
    ``ssl.SSLError``, and nothing reaches the exception handler."""

    async def main():
        server, srv, sock, obj, incoming, outgoing = await _server_and_client(
            loop, server_ctx, client_ctx)
        obj.write(b"good")
        await loop.sock_sendall(sock, outgoing.read())
        await asyncio.wait_for(srv.until(4), 30)
        # type 23 (application data), TLS 1.2 on the wire, 32 bytes of noise
        await loop.sock_sendall(sock, b"\x17\x03\x03\x00\x20" + bytes(range(32)))
        exc = await _lost_and_closed(server, srv, sock)
        return bytes(srv.data), srv.events, exc

    data, events, exc = loop.run_until_complete(main())
    assert data == b"good"
    assert events == ["made", "data", "lost"]
    assert isinstance(exc, ssl.SSLError), exc


# -- the asyncio docs' TLS echo, with streams ------------------------------------------------

def test_docs_echo_with_streams(loop, server_ctx, client_ctx):
    async def handle_echo(reader, writer):
        data = await reader.read(100)
        message = data.decode()
        addr = writer.get_extra_info("peername")
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        served.append((message, addr))

    served = []

    async def tcp_echo_client(message, port):
        reader, writer = await asyncio.open_connection(LOCALHOST, port, ssl=client_ctx,
                                                       server_hostname=HOSTNAME)
        writer.write(message.encode())
        await writer.drain()
        data = await reader.read(100)
        sockname = writer.get_extra_info("sockname")
        writer.close()
        await writer.wait_closed()
        return data.decode(), sockname

    async def main():
        server = await asyncio.start_server(handle_echo, LOCALHOST, 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            results = await asyncio.gather(*(tcp_echo_client(f"Hello World {i}!", port)
                                             for i in range(5)))
        return results

    results = loop.run_until_complete(main())
    assert [r[0] for r in results] == [f"Hello World {i}!" for i in range(5)]
    assert sorted(m for m, _ in served) == sorted(f"Hello World {i}!" for i in range(5))
    assert {a for _, a in served} == {s for _, s in results}
