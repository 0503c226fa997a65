"""Loop methods that make stream transports and servers on libuv handles:
TCP (uv_tcp_t) and Unix sockets (uv_pipe_t), plain or with TLS.

``BaseEventLoop`` already implements create_connection, create_server,
connect_accepted_socket, start_tls and sendfile on top of a few hooks; this
module provides those hooks (``_make_socket_transport``,
``_make_ssl_transport``, ``_start_serving``, ``_stop_serving``,
``_sendfile_native``) plus the Unix-socket variants, which asyncio keeps in
its Unix-only loop.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
from asyncio import base_events, constants, exceptions, sslproto, tasks
from asyncio.log import logger
from contextvars import Context
from typing import Any

from ._handles.pipe import UnixTransport
from ._handles.stream import StreamServer, UVStreamTransport, _shared
from ._handles.tcp import TCPTransport
from ._tls import SSLProtocol
from ._typing import LoopBase, Server

__all__ = ["StreamsMixin"]

_SSL_SHUTDOWN_TIMEOUT = sys.version_info >= (3, 11)


def _is_unix(sock: socket.socket) -> bool:
    return sock.family == getattr(socket, "AF_UNIX", None)


class StreamsMixin(LoopBase):
    """Stream transports and servers of :class:`Loop`."""

    _servers: dict[socket.socket, StreamServer]
    _unix_server_sockets: dict[socket.socket, int]

    def _init_streams(self) -> None:
        self._servers = {}
        self._unix_server_sockets = {}
        # The last sockname and peername a stream transport recorded: an
        # equal one is shared (see UVStreamTransport._start).
        self._addr_cache = [None, None]

    # -- transports ------------------------------------------------------------

    def _make_socket_transport(self, sock: socket.socket, protocol: Any, waiter: Any = None,
                               *, extra: dict[str, Any] | None = None,
                               server: Any = None, context: Context | None = None,
                               peername: Any = None) -> UVStreamTransport:
        """asyncio's hook; ``context``: see UVStreamTransport.__init__;
        ``peername``: the address accept() gave (as asyncio's extra)."""
        self._check_closed()   # before libuv sees the closed loop
        cls = UnixTransport if _is_unix(sock) else TCPTransport
        transport = cls(self, protocol, extra, server, context)
        if peername is not None:
            transport._peername = _shared(self._addr_cache, 1, peername)
        transport._open_socket(sock)
        try:
            self._add_stream(sock.fileno(), transport)
            transport._start(waiter)
        except BaseException:
            transport._close_handle()
            raise
        return transport

    def _make_ssl_protocol(self, protocol: Any, sslcontext: Any, waiter: Any, *,
                           server_side: bool = False, server_hostname: str | None = None,
                           ssl_handshake_timeout: float | None = None,
                           ssl_shutdown_timeout: float | None = None,
                           call_connection_made: bool = True) -> sslproto.SSLProtocol:
        kwargs: dict[str, Any] = dict(ssl_handshake_timeout=ssl_handshake_timeout,
                                      call_connection_made=call_connection_made)
        if _SSL_SHUTDOWN_TIMEOUT:
            kwargs["ssl_shutdown_timeout"] = ssl_shutdown_timeout
        return SSLProtocol(self, protocol, sslcontext, waiter,
                                    server_side, server_hostname, **kwargs)

    def _make_ssl_transport(self, rawsock: socket.socket, protocol: Any, sslcontext: Any,
                            waiter: Any = None, *, server_side: bool = False,
                            server_hostname: str | None = None, extra: dict[str, Any] | None = None,
                            server: Any = None,
                            ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout: float | None = None,
                            call_connection_made: bool = True) -> Any:
        # (_SSL_SHUTDOWN_TIMEOUT spelled out, for mypy: 3.11's constant.)
        if ssl_shutdown_timeout is None and sys.version_info >= (3, 11):
            ssl_shutdown_timeout = constants.SSL_SHUTDOWN_TIMEOUT
        ssl_protocol = self._make_ssl_protocol(
            protocol, sslcontext, waiter, server_side=server_side,
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=call_connection_made)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    # -- servers ---------------------------------------------------------------------

    def _start_serving(self, protocol_factory: Any, sock: socket.socket,
                       sslcontext: Any = None, server: Any = None, backlog: int = 100,
                       ssl_handshake_timeout: float | None = constants.SSL_HANDSHAKE_TIMEOUT,
                       ssl_shutdown_timeout: float | None = None) -> None:
        self._check_closed()   # before libuv sees the closed loop
        if sock in self._servers:
            return
        self._servers[sock] = StreamServer(
            self, sock, protocol_factory, sslcontext, server, backlog,
            ssl_handshake_timeout, ssl_shutdown_timeout)

    def _stop_serving(self, sock: socket.socket) -> None:
        path = None
        if sock in self._unix_server_sockets:
            try:
                path = sock.getsockname()
            except OSError:
                path = None
        handle = self._servers.pop(sock, None)
        if handle is not None:
            handle.close()
        sock.close()
        if sock in self._unix_server_sockets:
            ino = self._unix_server_sockets.pop(sock)
            if path:
                _remove_socket_file(path, ino)

    def _close_servers(self) -> None:
        for sock in list(self._servers):
            self._stop_serving(sock)

    # -- Unix sockets --------------------------------------------------------------

    async def create_unix_connection(
            self, protocol_factory: Any, path: Any = None, *, ssl: Any = None,
            sock: socket.socket | None = None, server_hostname: str | None = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        """Connect to the Unix socket ``path`` (or use the connected ``sock``)."""
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        kwargs: dict[str, Any] = dict(ssl_handshake_timeout=ssl_handshake_timeout)
        if _SSL_SHUTDOWN_TIMEOUT:
            kwargs["ssl_shutdown_timeout"] = ssl_shutdown_timeout
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname, **kwargs)

    async def create_unix_server(
            self, protocol_factory: Any, path: Any = None, *,
            sock: socket.socket | None = None, backlog: int = 100, ssl: Any = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None,
            start_serving: bool = True, cleanup_socket: bool = True) -> base_events.Server:
        """Listen on the Unix socket ``path`` (a stale socket file there is
        removed first; an abstract name starts with a NUL) or on ``sock``."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if path[0] not in (0, "\x00"):
                try:
                    if stat.S_ISSOCK(os.stat(path).st_mode):
                        os.remove(path)
                except FileNotFoundError:
                    pass
                except OSError as err:
                    logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        # Python 3.13 removes the socket file when the server closes.
        if cleanup_socket and sys.version_info >= (3, 13):
            name = sock.getsockname()
            if name and name[0] not in (0, "\x00"):
                try:
                    self._unix_server_sockets[sock] = os.stat(name).st_ino
                except FileNotFoundError:
                    pass
        sock.setblocking(False)
        args: list[Any] = [self, [sock], protocol_factory, ssl, backlog, ssl_handshake_timeout]
        if _SSL_SHUTDOWN_TIMEOUT:
            args.append(ssl_shutdown_timeout)
        server = Server(*args)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        return server

    # -- sendfile on a transport ------------------------------------------------------

    async def _sendfile_native(self, transp: UVStreamTransport, file: Any,
                               offset: int, count: int | None) -> int:
        sock = transp._python_socket()
        if sock is None:
            raise exceptions.SendfileNotAvailableError("the transport has no socket")
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        # sock_sendfile() waits on a uv_poll_t, which must not share the fd
        # number of the transport's own libuv handle (closing the poll would
        # drop the handle's epoll registration): it gets a duplicate, for the
        # time of the call.
        dup = None
        try:
            dup = sock.dup()
            dup.setblocking(False)
            return await self.sock_sendfile(dup, file, offset, count, fallback=False)
        finally:
            if dup is not None:
                self._close_idle_polls()   # the dup's poll goes before the dup
                dup.close()
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()


def _remove_socket_file(path: Any, ino: int) -> None:
    try:
        if os.stat(path).st_ino == ino:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)
