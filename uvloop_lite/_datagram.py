"""DatagramTransport for create_datagram_endpoint on Unix datagram sockets
(and any datagram socket libuv's uv_udp_t refuses), driven by the loop's
uv_poll_t readiness (add_reader / add_writer on the socket).  UDP over IPv4
and IPv6 runs on uv_udp_t instead (``_handles/udp.py``), with the same
semantics: asyncio's, for each Python version.  sendto() tries at once,
queues on EAGAIN, reports OSError through error_received().  What the two
share (start-up, close/abort/connection_lost, socket errors) is
``DatagramCommon`` in ``_handles/udp.py``.
"""

from __future__ import annotations

import collections
import socket
from typing import Any

from ._handles.udp import _HEADER, _SKIP, DatagramCommon, UVUDPTransport
from ._typing import LoopBase

__all__ = ["DatagramTransport", "DatagramMixin"]


class DatagramTransport(DatagramCommon):
    max_size = 256 * 1024   # bytes asked of each recvfrom()

    def __init__(self, loop: Any, sock: socket.socket, protocol: Any,
                 address: Any = None, waiter: Any = None,
                 extra: dict[str, Any] | None = None) -> None:
        self._init_datagram(loop, sock, protocol, address, extra)
        self._buffer: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._connect(waiter)

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
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._socket_error(exc, "Fatal read error on datagram transport")
        else:
            self._protocol.datagram_received(data, addr)

    # -- sending ---------------------------------------------------------------------

    def sendto(self, data: Any, addr: Any = None) -> None:
        addr = self._sendto_checks(data, addr)
        if addr is _SKIP:
            return
        if not self._buffer:
            try:
                if self._connected:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop._add_writer(self._sock_fd, self._sendto_ready)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._socket_error(exc, "Fatal write error on datagram transport")
                return
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data) + _HEADER
        self._maybe_pause_protocol()

    def _sendto_ready(self) -> None:
        while self._buffer:
            data, addr = self._buffer.popleft()
            self._buffer_size -= len(data) + _HEADER
            try:
                if self._connected:
                    self._sock.send(data)
                else:
                    self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                self._buffer.appendleft((data, addr))
                self._buffer_size += len(data) + _HEADER
                break
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._socket_error(exc, "Fatal write error on datagram transport")
                return
        self._maybe_resume_protocol()
        if not self._buffer:
            self._loop._remove_writer(self._sock_fd)
            if self._closing:
                self._call_connection_lost(None)

    # -- closing ---------------------------------------------------------------------

    def _queued(self) -> bool:
        return bool(self._buffer)

    def _drop_queue(self) -> None:
        self._buffer.clear()
        self._buffer_size = 0
        self._loop._remove_writer(self._sock_fd)

    def _writer_done(self) -> None:
        self._loop._remove_writer(self._sock_fd)


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
