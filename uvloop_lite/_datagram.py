"""DatagramTransport for create_datagram_endpoint on Unix datagram sockets
(and any datagram socket libuv's uv_udp_t refuses), driven by the loop's
uv_poll_t readiness (add_reader / add_writer on the socket).  UDP over IPv4
and IPv6 runs on uv_udp_t instead (``_handles/udp.py``), with the same
semantics: asyncio's, for each Python version.  sendto() tries at once,
queues on EAGAIN, reports OSError through error_received().
"""

from __future__ import annotations

import collections
import socket
from asyncio import transports
from typing import Any

from ._handles.udp import (
    _HEADER, _SKIP, DatagramCommon, UVUDPTransport, _set_result_unless_cancelled)
from ._typing import FlowControlMixin, LoopBase

__all__ = ["DatagramTransport", "DatagramMixin"]


class DatagramTransport(DatagramCommon, FlowControlMixin,
                        transports.DatagramTransport):
    max_size = 256 * 1024   # bytes asked of each recvfrom()

    def __init__(self, loop: Any, sock: socket.socket, protocol: Any,
                 address: Any = None, waiter: Any = None,
                 extra: dict[str, Any] | None = None) -> None:
        transports._FlowControlMixin.__init__(self, extra, loop)
        self._record_socket(sock)
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._protocol = protocol
        self._protocol_connected = True
        self._address = address
        self._buffer: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._buffer_size = 0
        self._closing = False
        self._conn_lost = 0
        self._paused = False
        loop._add_transport(self._sock_fd, self)
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def _recv_start(self) -> None:
        self._loop._add_reader(self._sock_fd, self._read_ready)

    def _recv_stop(self) -> None:
        self._loop._remove_reader(self._sock_fd)

    # -- receiving -------------------------------------------------------------------

    def _read_ready(self) -> None:
        if self._conn_lost:
            return
        try:
            data, addr = self._sock.recvfrom(self.max_size)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
        else:
            self._protocol.datagram_received(data, addr)

    # -- sending ---------------------------------------------------------------------

    def sendto(self, data: Any, addr: Any = None) -> None:
        addr = self._sendto_checks(data, addr)
        if addr is _SKIP:
            return
        if not self._buffer:
            try:
                if self._extra["peername"]:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop._add_writer(self._sock_fd, self._sendto_ready)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data) + _HEADER
        self._maybe_pause_protocol()

    def _sendto_ready(self) -> None:
        while self._buffer:
            data, addr = self._buffer.popleft()
            self._buffer_size -= len(data) + _HEADER
            try:
                if self._extra["peername"]:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                self._buffer.appendleft((data, addr))
                self._buffer_size += len(data) + _HEADER
                break
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        self._maybe_resume_protocol()
        if not self._buffer:
            self._loop._remove_writer(self._sock_fd)
            if self._closing:
                self._call_connection_lost(None)

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop._remove_reader(self._sock_fd)
        if not self._buffer:
            self._conn_lost += 1
            self._loop._remove_writer(self._sock_fd)
            self._loop.call_soon(self._call_connection_lost, None)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._loop._remove_writer(self._sock_fd)
        if not self._closing:
            self._closing = True
            self._loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            if self._sock is not None:
                self._loop._transports.pop(self._sock_fd, None)
                self._sock.close()
                self._sock = None  # type: ignore[assignment]  # see DatagramCommon
            self._protocol = None

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else ("closing" if self._closing else "open")
        return f"<{type(self).__name__} fd={self._sock_fd} {state}>"


class DatagramMixin(LoopBase):
    """The datagram hook of :class:`Loop` (create_datagram_endpoint itself is
    asyncio's BaseEventLoop code)."""

    def _make_datagram_transport(self, sock: socket.socket, protocol: Any, address: Any = None,
                                 waiter: Any = None, extra: dict[str, Any] | None = None) -> Any:
        # uv_udp_t for UDP; Unix datagram sockets (which it does not take), or
        # a socket libuv refuses to open, on uv_poll_t.
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                return UVUDPTransport(self, sock, protocol, address, waiter, extra)
            except OSError:
                pass
        return DatagramTransport(self, sock, protocol, address, waiter, extra)
