"""TLS on uvloop_lite's transports: asyncio's own ``SSLProtocol``, with a
leaner steady state.  Most of this module is for 3.11 and later, whose
SSLProtocol works on memory BIOs; for 3.9 and 3.10 (asyncio's ``_SSLPipe``)
see the class at the end, which does the second and third points below.

The handshake, shutdown, flow control, timeouts and error reporting are
asyncio's, unchanged.  What changes is the path every record takes once the
connection is up:

* the transport reads into the loop's buffer and hands the bytes straight to
  the incoming BIO (``_uvl_feed``), instead of asking for a buffer with
  ``get_buffer()`` (a second C-to-Python call per read);
* reading application data stops as soon as neither the incoming BIO nor the
  SSL object holds any more bytes, instead of asking OpenSSL once more and
  catching the ``SSLWantReadError`` it raises (an exception per read);
* a write with nothing queued before it goes straight to OpenSSL;
* outgoing records are collected only when there are some, and the write
  flow control is only re-checked then (nothing else changes its input);
* the application transport's ``write()`` of bytes goes to that path directly,
  and the flow-control checks return early while below the high-water marks;
* ``ssl.SSLObject``'s read/write/pending are called on the C object under
  it, when the context's ``sslobject_class`` is the standard one.

Each keeps the behaviour of the method it replaces; the tests in
``tests/test_tls.py`` run the same bodies on asyncio's loop and on ours.
"""

from __future__ import annotations

import ssl
import sys
from asyncio import protocols, sslproto
from typing import TYPE_CHECKING, Any

__all__ = ["SSLProtocol"]

if sys.version_info >= (3, 11):
    _State = sslproto.SSLProtocolState
    _WRAPPED = _State.WRAPPED
    _READING = (_State.WRAPPED, _State.FLUSHING)
    _AGAIN = sslproto.SSLAgainErrors

    if TYPE_CHECKING:
        from asyncio import transports

        class _AsyncioSSLProtocol(sslproto.SSLProtocol):
            """For mypy: asyncio's SSLProtocol (3.11+) with the private
            state and steps used here, which typeshed leaves out."""
            _sslobj: Any   # an ssl.SSLObject, or the context's sslobject_class
            _incoming: ssl.MemoryBIO
            _outgoing: ssl.MemoryBIO
            _state: sslproto.SSLProtocolState
            _app_reading_paused: bool
            _app_writing_paused: bool
            _ssl_reading_paused: bool
            _ssl_writing_paused: bool
            _incoming_high_water: int
            _outgoing_high_water: int
            _app_transport_created: bool
            # A Protocol or a BufferedProtocol (_app_protocol_is_buffer).
            _app_protocol: Any
            # Set from connection_made() to connection_lost(), when the
            # methods below run.
            _transport: transports.Transport

            def _get_app_transport(self) -> sslproto._SSLProtocolTransport: ...
            def _do_handshake(self) -> None: ...
            def _do_flush(self) -> None: ...
            def _do_shutdown(self) -> None: ...
            def _do_read__buffered(self) -> None: ...
            def _do_write(self) -> None: ...
            def _process_outgoing(self) -> None: ...
            def _control_ssl_reading(self) -> None: ...
            def _control_app_writing(self) -> None: ...
            def _call_eof_received(self) -> None: ...
    else:
        _AsyncioSSLProtocol = sslproto.SSLProtocol

    class SSLProtocol(_AsyncioSSLProtocol):
        """asyncio's SSLProtocol with the fast paths described above."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            sslobj = self._sslobj
            # The C object behind a standard SSLObject (its methods only
            # forward to it); a custom sslobject_class is called as it is.
            # (SSLObject._sslobj is private: typeshed does not declare it.)
            self._uvl_ssl: Any = (
                sslobj._sslobj  # type: ignore[attr-defined]
                if type(sslobj) is ssl.SSLObject else sslobj)

        def _uvl_feed(self, data: Any) -> None:
            """buffer_updated() for bytes the transport read into its own
            buffer, valid during the call only (the BIO copies them)."""
            self._incoming.write(data)
            state = self._state
            if state is _WRAPPED:
                self._do_read()
            elif state is _State.DO_HANDSHAKE:
                self._do_handshake()
            elif state is _State.FLUSHING:
                self._do_flush()
            elif state is _State.SHUTDOWN:
                self._do_shutdown()

        def _do_read(self) -> None:
            # asyncio's _do_read() with _do_read__copied() and the early-out
            # of _control_ssl_reading() inlined.
            if self._state not in _READING:
                return
            try:
                if not self._app_reading_paused:
                    if self._app_protocol_is_buffer:
                        self._do_read__buffered()
                    else:
                        self._uvl_read_copied()
                    if self._write_backlog:
                        self._do_write()
                    elif self._outgoing.pending:
                        self._process_outgoing()
                if (self._ssl_reading_paused
                        or self._incoming.pending >= self._incoming_high_water):
                    self._control_ssl_reading()
            except Exception as ex:
                self._fatal_error(ex, "Fatal error on SSL protocol")

        def _uvl_read_copied(self) -> None:
            """_do_read__copied(), without the read that only raises."""
            sslobj = self._uvl_ssl
            incoming = self._incoming
            read = sslobj.read
            max_size = self.max_size
            first = None
            chunks = None
            chunk = b"1"
            try:
                while True:
                    chunk = read(max_size)
                    if not chunk:
                        break   # close_notify
                    if first is None:
                        first = chunk
                    elif chunks is None:
                        chunks = [first, chunk]
                    else:
                        chunks.append(chunk)
                    # Nothing left to decrypt: another read() would only raise
                    # SSLWantReadError.
                    if not incoming.pending and not sslobj.pending():
                        break
            except _AGAIN:
                pass
            if chunks is not None:
                self._app_protocol.data_received(b"".join(chunks))
            elif first is not None:
                self._app_protocol.data_received(first)
            if not chunk:
                self._call_eof_received()
                self._start_shutdown()

        def _get_app_transport(self) -> sslproto._SSLProtocolTransport:
            if self._app_transport is None and not self._app_transport_created:
                self._app_transport = _AppTransport(self._loop, self)
                self._app_transport_created = True
            return super()._get_app_transport()

        def _write_appdata(self, list_of_data: Any) -> None:
            # write() passes a 1-tuple; writelines() any iterable (a generator too)
            if (self._state is not _WRAPPED or self._write_backlog
                    or type(list_of_data) is not tuple or len(list_of_data) != 1):
                super()._write_appdata(list_of_data)
            else:
                self._uvl_write(list_of_data[0])

        def _uvl_write(self, data: Any) -> None:
            """_write_appdata() of one buffer with nothing queued before it,
            the connection up."""
            try:
                try:
                    count = self._uvl_ssl.write(data)
                except _AGAIN:
                    count = 0
                size = len(data)
                if count < size:
                    self._write_backlog.append(data[count:])
                    self._write_buffer_size += size - count
                self._process_outgoing()
            except Exception as ex:
                self._fatal_error(ex, "Fatal error on SSL protocol")

        def _process_outgoing(self) -> None:
            # With the early-out of _control_app_writing() inlined: below the
            # high-water mark and not paused, it has nothing to do.
            outgoing = self._outgoing
            if not self._ssl_writing_paused and outgoing.pending:
                self._transport.write(outgoing.read())
            if (self._app_writing_paused or outgoing.pending + self._write_buffer_size
                    >= self._outgoing_high_water):
                self._control_app_writing()

    class _AppTransport(sslproto._SSLProtocolTransport):
        """The transport the application sees: write() of bytes goes to the
        fast path when the protocol can take it there."""

        _ssl_protocol: SSLProtocol | None

        def write(self, data: Any) -> None:
            proto = self._ssl_protocol
            if (type(data) is bytes and data and proto is not None
                    and proto._state is _WRAPPED and not proto._write_backlog):
                proto._uvl_write(data)
            else:
                super().write(data)

    # Named as asyncio's class, as type() and repr() show it.
    _AppTransport.__name__ = _AppTransport.__qualname__ = "_SSLProtocolTransport"
    _AppTransport.__module__ = sslproto.__name__

else:
    # 3.9 and 3.10: asyncio's SSLProtocol of those versions, on its _SSLPipe.
    _PIPE_WRAPPED = sslproto._WRAPPED
    _RETRY_ERRNOS = (ssl.SSL_ERROR_WANT_READ, ssl.SSL_ERROR_WANT_WRITE, ssl.SSL_ERROR_SYSCALL)
    # asyncio's helper for a BufferedProtocol fed bytes (private, untyped)
    _feed_buffered: Any = getattr(protocols, "_feed_data_to_buffered_proto")

    class SSLProtocol(sslproto.SSLProtocol):
        """asyncio's SSLProtocol (3.9/3.10), with a leaner steady state.

        Once the connection is up, a read stops as soon as neither the
        incoming BIO nor the SSL object holds any more bytes, instead of
        asking OpenSSL once more and catching the ``SSLWantReadError`` it
        raises (on PyPy that costs more than the record's decryption); and a
        write with nothing queued before it goes straight to OpenSSL instead
        of through the backlog.  Anything else (the handshake, shutdown, a
        write that OpenSSL does not take at once, errors) is asyncio's code.
        """

        def data_received(self, data: bytes) -> None:
            pipe: Any = self._sslpipe
            if pipe is None or pipe._state != _PIPE_WRAPPED:
                super().data_received(data)
                return
            pipe._need_ssldata = False
            incoming = pipe._incoming
            if data:
                incoming.write(data)
            sslobj: Any = pipe._sslobj
            read = sslobj.read
            max_size = pipe.max_size
            chunks = []
            eof = False
            try:
                while True:
                    chunk = read(max_size)
                    if not chunk:   # close_notify
                        eof = True
                        break
                    chunks.append(chunk)
                    # Nothing left to decrypt: another read() would only raise
                    # SSLWantReadError.
                    if not incoming.pending and not sslobj.pending():
                        pipe._need_ssldata = True
                        break
            except (ssl.SSLError, ssl.CertificateError) as exc:
                errno = getattr(exc, "errno", None)
                if errno not in _RETRY_ERRNOS:
                    self._fatal_error(exc, "SSL error in data received")
                    return
                pipe._need_ssldata = errno == ssl.SSL_ERROR_WANT_READ
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "SSL error in data received")
                return
            outgoing = pipe._outgoing
            if outgoing.pending:   # a renegotiation's or a key update's records
                transport: Any = self._transport
                transport.write(outgoing.read())
            app: Any = self._app_protocol
            for chunk in chunks:
                try:
                    if self._app_protocol_is_buffer:
                        _feed_buffered(app, chunk)
                    else:
                        app.data_received(chunk)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as ex:
                    self._fatal_error(ex, "application protocol failed to receive SSL data")
                    return
            if eof:
                self._start_shutdown()

        def _write_appdata(self, data: Any) -> None:
            pipe: Any = self._sslpipe
            transport: Any = self._transport
            # (b"" is _start_shutdown()'s: the backlog's shutdown marker.)
            if (self._write_backlog or pipe is None or transport is None
                    or pipe._state != _PIPE_WRAPPED or not data):
                super()._write_appdata(data)
                return
            pipe._need_ssldata = False
            try:
                pipe._sslobj.write(data)
            except ssl.SSLError:
                # Not taken (OpenSSL writes all or nothing here): asyncio's
                # backlog tries again and deals with the error.
                super()._write_appdata(data)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error on SSL transport")
                return
            outgoing = pipe._outgoing
            if outgoing.pending:
                transport.write(outgoing.read())
