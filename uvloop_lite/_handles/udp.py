"""UVUDPTransport (uv_udp_t): the DatagramTransport of create_datagram_endpoint
for IPv4 and IPv6 sockets.  (Unix datagram sockets, which uv_udp_t does not
take, stay on the uv_poll transport of ``_datagram.py``.)

libuv takes the socket's own fd (``uvl_udp_open``, which leaves the socket's
options as they were): one fd per endpoint, as asyncio.  The Python socket
stays the transport's socket (extra info 'socket'); libuv's uv_close closes
the fd, so the socket is detached right before (or in the close callback, if
the loop's close() shut the handle) and never closes a number that may name
another file by then.

Receiving: ``uv_udp_recv_start`` into the loop-wide read buffer.  shim.c's
callback passes the transport, nread and the sender's raw sockaddr; the
address becomes the tuple ``socket.recvfrom()`` would give (through a small
cache: most traffic comes from few peers).  Each datagram, and each receive
error (ECONNREFUSED from an ICMP message on a connected socket...), is
delivered as asyncio's reader Handle runs its ``_read_ready``: in the context
of a Handle made when reading (re)started, with an exception from
datagram_received() or error_received() reported as that Handle's
"Exception in callback".
libuv reads up to 32 datagrams per readiness event where asyncio reads one;
pause_reading() or close() from a protocol callback stops it at once.

Sending: ``sendto()`` tries ``uvl_udp_try_send`` (uv_udp_try_send's contract,
with send()/sendto()) when nothing is queued; what would block is queued in
libuv with ``uv_udp_send`` (request and bytes kept alive in ``_pending`` until
the send callback, which runs in the context of the first queued sendto(), as
asyncio's writer Handle).  An address is turned into a
sockaddr here only when that is unambiguous (a numeric host of the socket's
family, exact int port...); any other address (a host name, '' or
'<broadcast>', a scope suffix, a wrong type) is sent with the Python socket's
own ``sendto()``, for its exact resolution and errors.  Such a datagram that
has to wait goes to ``_deferred`` (behind everything in libuv's queue), and
waits for writability if the kernel pushes back, on a duplicate of the fd
made for that wait (a ``uv_poll_t`` must not share the fd number of libuv's
own handle).
Buffer accounting, flow control and errors follow asyncio's selector
transport for each Python version, as ``_datagram.py`` does.
"""

from __future__ import annotations

import collections
import contextvars
import socket
import sys
from asyncio import constants, format_helpers, transports, trsock
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

from .._errors import report_transport_error, uv_error
from .._ffi import ffi, lib
from .._typing import FlowControlMixin, Handle
from .base import OPEN, UVHandle, callback_error, debug_context
from .stream import drop_watchers

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["UVUDPTransport"]

# 3.13 sends empty datagrams and counts 8 header bytes per queued datagram.
_SEND_EMPTY = sys.version_info >= (3, 13)
_HEADER = 8 if sys.version_info >= (3, 13) else 0

_UV_EAGAIN = lib.UV_EAGAIN
_UV_ECANCELED = lib.UV_ECANCELED
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_SIN_SIZE = ffi.sizeof("struct sockaddr_in")
_SIN6_SIZE = ffi.sizeof("struct sockaddr_in6")
_unpack = ffi.unpack
_from_buffer = ffi.from_buffer
_from_handle = ffi.from_handle
_new = ffi.new
_NULL = ffi.NULL
_try_send = lib.uvl_udp_try_send
_send = lib.uvl_udp_send
_inet_ntop = socket.inet_ntop
_inet_pton = socket.inet_pton
_from_bytes = int.from_bytes
_BYTEORDER = sys.byteorder
# Address caches are dropped whole when they grow past this.
_CACHE_MAX = 1024


def _peer_tuple(key: bytes) -> Any:
    """The raw sockaddr ``key`` as ``socket.recvfrom()`` gives it.  Offsets
    are those of POSIX's sockaddr_in/sockaddr_in6 (the family field, one or
    two bytes, comes first)."""
    if len(key) == _SIN_SIZE:
        return (_inet_ntop(_AF_INET, key[4:8]), _from_bytes(key[2:4], "big"))
    if len(key) == _SIN6_SIZE:
        return (_inet_ntop(_AF_INET6, key[8:24]), _from_bytes(key[2:4], "big"),
                _from_bytes(key[4:8], "big"), _from_bytes(key[24:28], _BYTEORDER))
    return None   # pragma: no cover - a UDP socket of another family


def _sockaddr(family: int, addr: tuple[Any, ...]) -> bytes | None:
    """``addr`` as a struct sockaddr when it is exactly what socket.sendto()
    would make of it without a lookup or an error; else None."""
    n = len(addr)
    if n != 2 and (family == _AF_INET or n not in (3, 4)):
        return None
    host, port = addr[0], addr[1]
    if type(host) is not str or type(port) is not int or not 0 <= port <= 0xFFFF:
        return None
    if family == _AF_INET:
        try:
            packed = _inet_pton(_AF_INET, host)
        except (OSError, ValueError):
            return None
        sin = _new("struct sockaddr_in *")
        sin.sin_family = _AF_INET
        sin.sin_port = socket.htons(port)
        ffi.memmove(ffi.cast("char *", sin) + 4, packed, 4)
        return bytes(ffi.buffer(sin))
    flowinfo = addr[2] if n > 2 else 0
    scope_id = addr[3] if n > 3 else 0
    if type(flowinfo) is not int or not 0 <= flowinfo <= 0xFFFFF \
            or type(scope_id) is not int or not 0 <= scope_id <= 0xFFFFFFFF:
        return None
    if "%" in host:   # a scope by name: socket.sendto() resolves it
        return None
    try:
        packed = _inet_pton(_AF_INET6, host)
    except (OSError, ValueError):
        return None
    sin6 = _new("struct sockaddr_in6 *")
    sin6.sin6_family = _AF_INET6
    sin6.sin6_port = socket.htons(port)
    sin6.sin6_flowinfo = socket.htonl(flowinfo)
    sin6.sin6_scope_id = scope_id
    ffi.memmove(ffi.cast("char *", sin6) + 8, packed, 16)
    return bytes(ffi.buffer(sin6))


def _set_result_unless_cancelled(fut: Any, result: Any) -> None:
    if not fut.cancelled():
        fut.set_result(result)


_SKIP = object()   # _sendto_checks(): nothing to send


class DatagramCommon(FlowControlMixin, transports.DatagramTransport):
    """What both datagram transports share (this one and the uv_poll one in
    _datagram.py): start-up, protocol, reading state, socket errors, and the
    send queue's part in close(), abort() and connection_lost().  A subclass
    starts and stops receiving in ``_recv_start``/``_recv_stop``, and says
    what its send queue holds and how it lets go of it in ``_queued``,
    ``_drop_queue``, ``_writer_done`` and ``_release``."""

    # _FlowControlMixin: asyncio's own pause/resume logic, and asyncio's
    # datagram transport is one (it is an asyncio.Transport too).
    _protocol: Any
    _protocol_connected: bool
    _closing: bool
    _paused: bool
    _buffer_size: int
    _address: Any
    _conn_lost: int
    _loop: LoopBase
    # None once connection_lost() ran: nothing sends or reads any more then
    # (_sendto_checks() and _conn_lost see to it).
    _sock: Any
    _sock_fd: int
    _connected: bool
    _extra: dict[str, Any]

    if TYPE_CHECKING:   # each transport's own
        def _recv_start(self) -> None: ...
        def _recv_stop(self) -> None: ...

    def _init_datagram(self, loop: Any, sock: socket.socket, protocol: Any,
                       address: Any, extra: dict[str, Any] | None) -> None:
        """The state both transports start with (before their own)."""
        transports._FlowControlMixin.__init__(self, extra, loop)
        self._record_socket(sock)
        self._sock = sock
        self._sock_fd = sock.fileno()
        # asyncio sends with send() when the socket has a peer (and libuv
        # agrees: uv_udp_open() sees it connected), and then ignores the address.
        self._connected = bool(self._extra["peername"])
        self._protocol = protocol
        self._protocol_connected = True
        self._address = address
        self._closing = False
        self._conn_lost = 0
        self._paused = False
        self._buffer_size = 0

    def _connect(self, waiter: Any) -> None:
        """Register with the loop; connection_made(), then reading, then the
        waiter, in the loop's next iteration (asyncio's order)."""
        loop = self._loop
        loop._add_transport(self._sock_fd, self)
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    def _record_socket(self, sock: socket.socket) -> None:
        """Extra info known at the start, as asyncio records it."""
        self._extra["socket"] = trsock.TransportSocket(sock)
        for key, method in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            if key not in self._extra:
                try:
                    self._extra[key] = method()
                except OSError:
                    self._extra[key] = None

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._recv_stop()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._recv_start()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def _start_reading(self) -> None:
        if not self._closing and not self._paused:
            self._recv_start()

    def _sendto_checks(self, data: Any, addr: Any) -> Any:
        """asyncio's checks before a datagram is sent: the address to send to,
        or _SKIP when there is nothing to send (as the Python version says)."""
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if not data and not _SEND_EMPTY:
            return _SKIP
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        # Without an address asyncio still sends until connection_lost(), and
        # then fails with an AttributeError from its dropped socket (a bug):
        # here there is nothing to send on then, and the datagram is dropped.
        if self._conn_lost and (self._address or self._sock is None):
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return _SKIP
        return addr

    def _socket_error(self, exc: BaseException, message: str) -> bool:
        """A socket call raised ``exc`` (not BlockingIOError, InterruptedError,
        SystemExit or KeyboardInterrupt): an OSError goes to error_received()
        (True), anything else is fatal with ``message`` (False)."""
        if isinstance(exc, OSError):
            self._protocol.error_received(exc)
            return True
        self._fatal_error(exc, message)
        return False

    # -- closing ---------------------------------------------------------------------

    def _queued(self) -> bool:
        """Whether datagrams wait to be sent."""
        raise NotImplementedError

    def _drop_queue(self) -> None:
        """abort(): forget the datagrams waiting to be sent."""
        raise NotImplementedError

    def _writer_done(self) -> None:
        """close() with nothing queued: stop waiting for writability."""

    def _release(self) -> None:
        """After connection_lost(): let go of what the transport holds beside
        its socket."""

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._recv_stop()
        if not self._queued():
            self._conn_lost += 1
            self._writer_done()
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        report_transport_error(self, exc, message)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._queued():
            self._drop_queue()
        if not self._closing:
            self._closing = True
            self._recv_stop()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._release()
            if self._sock is not None:
                self._loop._transports.pop(self._sock_fd, None)
                self._sock.close()   # a no-op once detached
                self._sock = None
            self._protocol = None

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else ("closing" if self._closing else "open")
        return f"<{type(self).__name__} fd={self._sock_fd} {state}>"


class UVUDPTransport(DatagramCommon, UVHandle):
    """A UDP socket (IPv4/IPv6) as an asyncio DatagramTransport on uv_udp_t."""

    _ctype = "uv_udp_t *"
    max_size = 256 * 1024   # asyncio's; reads use the loop's buffer of this size

    def __init__(self, loop: LoopBase, sock: socket.socket, protocol: Any,
                 address: Any = None, waiter: Any = None,
                 extra: dict[str, Any] | None = None) -> None:
        UVHandle.__init__(self, loop)
        self._init_datagram(loop, sock, protocol, address, extra)
        self._family = sock.family
        self._recv_started = False
        self._read_handle: Handle | None = None
        self._read_context: contextvars.Context | None = None
        self._write_handle: Handle | None = None
        self._pending: collections.deque[tuple[Any, Any, int]] = collections.deque()
        self._deferred: collections.deque[tuple[bytes, Any, int]] = collections.deque()
        self._writer_watched = False   # _deferred waits for writability
        self._peers: dict[bytes, Any] = {}        # raw sockaddr -> address tuple
        self._read_bytes = loop._read_bytes       # where every read lands
        self._sockaddrs: dict[Any, bytes] = {}    # address tuple -> raw sockaddr
        self._writer_sock: socket.socket | None = None   # see _watch_writer
        self._init_done(lib.uv_udp_init(loop._uv, self._ptr))
        drop_watchers(loop, self._sock_fd)
        rc = lib.uvl_udp_open(self._ptr, self._sock_fd)
        if rc < 0:   # libuv took nothing: the socket stays its owner's
            UVHandle.close(self)
            raise uv_error(rc)
        self._connect(waiter)

    # -- receiving -------------------------------------------------------------------

    def _debug_changed(self, enabled: bool) -> None:
        """loop.set_debug(): time this transport's reads from now on, or stop."""
        self._read_context = debug_context(self, self._read_context, enabled)

    def _recv_start(self) -> None:
        # As asyncio's add_reader(): a new Handle, in the caller's context.
        self._read_handle = Handle(self._read_ready, (), self._loop, None)
        self._read_context = debug_context(self, self._read_handle._context,
                                           self._loop._debug)
        if self._recv_started or self._state != OPEN:
            return
        rc = lib.uvl_udp_recv_start(self._ptr)
        if rc < 0:
            raise uv_error(rc)
        self._recv_started = True

    def _recv_stop(self) -> None:
        if self._recv_started:
            self._recv_started = False
            if self._state == OPEN:
                lib.uv_udp_recv_stop(self._ptr)

    def _read_ready(self, nread: int, addr: Any, addrlen: int) -> None:
        if self._conn_lost:
            return
        if nread < 0:
            self._protocol.error_received(uv_error(nread))
            return
        key = _unpack(addr, addrlen)
        peer = self._peers.get(key)
        if peer is None:
            peer = _peer_tuple(key)
            if len(self._peers) >= _CACHE_MAX:
                self._peers.clear()
            self._peers[key] = peer
        self._protocol.datagram_received(self._read_bytes[:nread], peer)

    # -- sending ---------------------------------------------------------------------

    def _sockaddr_of(self, addr: Any) -> Any:
        """The sockaddr to hand libuv for ``addr``: NULL on a connected socket,
        None when the Python socket must send (see the module's docstring)."""
        if self._state != OPEN:
            return None
        if self._connected:
            return _NULL
        if type(addr) is not tuple:
            return None
        try:
            sa = self._sockaddrs.get(addr)
        except TypeError:   # unhashable items: socket.sendto() explains
            return None
        # An equal tuple is not always the same address for sendto(): a port
        # of 80.0 or True equals 80 or 1 but is refused or taken differently.
        if sa is not None and type(addr[1]) is int and (
                len(addr) == 2 or all(type(x) is int for x in addr[2:])):
            return sa
        sa = _sockaddr(self._family, addr)
        if sa is not None:
            if len(self._sockaddrs) >= _CACHE_MAX:
                self._sockaddrs.clear()
            self._sockaddrs[addr] = sa
        return sa

    def sendto(self, data: Any, addr: Any = None) -> None:
        addr = self._sendto_checks(data, addr)
        if addr is _SKIP:
            return
        if type(data) is bytes and not self._pending and not self._deferred:
            # The common case, inline: bytes, nothing queued, a known address.
            if self._connected:
                sa = _NULL if self._state == OPEN else None
            else:
                sa = None
                if type(addr) is tuple and len(addr) == 2 and type(addr[1]) is int \
                        and self._state == OPEN:
                    try:
                        sa = self._sockaddrs.get(addr)
                    except TypeError:
                        pass
                if sa is None:
                    sa = self._sockaddr_of(addr)
            if sa is not None:
                rc = _try_send(self._ptr, data, len(data), sa)
                if rc >= 0:
                    return
                if rc != _UV_EAGAIN:
                    self._protocol.error_received(uv_error(rc))
                    return
                self._queue_uv(data, len(data), sa, len(data) + _HEADER)
                return
        self._sendto_other(data, addr)

    def _sendto_other(self, data: Any, addr: Any) -> None:
        """sendto() off the fast path: a queue, a buffer that is not bytes, or
        an address for the Python socket."""
        if self._deferred:
            self._defer(bytes(data), addr, len(data) + _HEADER)
            return
        sa = self._sockaddr_of(addr)
        if sa is not None:
            if type(data) is bytes:
                self._send_uv(data, len(data), sa, len(data) + _HEADER)
                return
            try:
                cbuf = _from_buffer(data)
            except (TypeError, BufferError):
                pass   # what socket.sendto() refuses: let it raise
            else:
                self._send_uv(cbuf, len(cbuf), sa, len(data) + _HEADER, data)
                return
        if self._pending:
            self._defer(bytes(data), addr, len(data) + _HEADER)
            return
        try:
            if self._connected:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
            return
        except (BlockingIOError, InterruptedError):
            self._watch_writer()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._socket_error(exc, "Fatal write error on datagram transport")
            return
        self._defer(bytes(data), addr, len(data) + _HEADER)

    def _send_uv(self, buf: Any, nbytes: int, sa: Any, size: int, orig: Any = None) -> None:
        """Send ``buf`` (bytes, or a cdata over ``orig``) through libuv: at
        once if nothing is queued and the kernel takes it, else queued."""
        if not self._pending:
            rc = _try_send(self._ptr, buf, nbytes, sa)
            if rc >= 0:
                return
            if rc != _UV_EAGAIN:
                self._protocol.error_received(uv_error(rc))
                return
        if orig is not None:
            buf = bytes(orig)   # the caller may reuse its buffer at once
            nbytes = len(buf)
        self._queue_uv(buf, nbytes, sa, size)

    def _queue_uv(self, buf: Any, nbytes: int, sa: Any, size: int) -> None:
        """Queue ``buf`` (bytes) in libuv, behind what is there already."""
        req = _new("uv_udp_send_t *")
        # libuv reads the bytes after this call returns: pin them (a bytes
        # argument is only guaranteed in place during the call, on PyPy).
        pinned = ffi.from_buffer(buf)
        rc = _send(req, self._ptr, pinned, nbytes, sa)
        if rc < 0:
            self._protocol.error_received(uv_error(rc))
            return
        if self._write_handle is None:
            # As asyncio's add_writer(): the callback's Handle, in this context.
            self._write_handle = Handle(self._sendto_ready, (), self._loop, None)
        self._pending.append((req, (buf, pinned), size))
        self._buffer_size += size
        self._maybe_pause_protocol()

    def _defer(self, data: bytes, addr: Any, size: int) -> None:
        self._deferred.append((data, addr, size))
        self._buffer_size += size
        self._maybe_pause_protocol()

    def _watch_writer(self) -> None:
        if not self._writer_watched:
            try:
                sock = self._sock.dup()
            except OSError:   # out of fds: try again in a while
                self._loop.call_later(0.1, self._retry_flush)
                return
            self._writer_sock = sock
            self._writer_watched = True
            self._loop._add_writer(sock.fileno(), self._flush_ready)

    def _retry_flush(self) -> None:
        if not self._conn_lost and not self._writer_watched and self._deferred:
            self._flush_ready()

    def _unwatch_writer(self) -> None:
        if self._writer_watched:
            self._writer_watched = False
            sock: socket.socket   # set while _writer_watched
            sock, self._writer_sock = self._writer_sock, None  # type: ignore[assignment]
            self._loop._remove_writer(sock.fileno())
            self._loop._close_idle_polls()   # its poll goes before its fd
            sock.close()

    def _sendto_ready(self, status: int) -> None:
        """libuv sent (or failed to send) the oldest queued datagram."""
        if not self._pending:   # pragma: no cover - one callback per request
            return
        _req, _buf, size = self._pending.popleft()
        if status == _UV_ECANCELED or self._state != OPEN:
            return   # the handle is closing: _force_close() or the loop's close()
        self._buffer_size -= size
        try:
            if status < 0:
                self._protocol.error_received(uv_error(status))
        finally:   # even if error_received() raised: the queue goes on
            if not self._pending:
                self._flush_ready()
            else:
                self._maybe_resume_protocol()

    def _flush_ready(self) -> None:
        """Send what waits in _deferred, in order, then finish a close() that
        waited for the queue."""
        deferred = self._deferred
        try:
            while deferred:
                data, addr, size = deferred[0]
                sa = self._sockaddr_of(addr)
                if sa is not None:
                    deferred.popleft()
                    self._buffer_size -= size
                    self._send_uv(data, len(data), sa, size)
                    continue
                if self._pending:
                    break   # libuv's send callback calls again
                try:
                    if self._connected:
                        self._sock.send(data)
                    else:
                        self._sock.sendto(data, addr)
                except (BlockingIOError, InterruptedError):
                    break
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    if isinstance(exc, OSError):   # dropped, and the queue goes on
                        deferred.popleft()
                        self._buffer_size -= size
                    if self._socket_error(exc, "Fatal write error on datagram transport"):
                        continue
                    return
                deferred.popleft()
                self._buffer_size -= size
        finally:
            # Left over with nothing in libuv to call back (the kernel pushed
            # back, or a protocol callback raised): wait for writability.
            if deferred and not self._pending and not self._conn_lost:
                self._watch_writer()
            elif not deferred:
                self._unwatch_writer()
        self._maybe_resume_protocol()   # may queue more
        if not self._pending and not self._deferred:
            self._write_handle = None   # the next queue gets its sender's context
            if self._closing and not self._conn_lost:
                self._call_connection_lost(None)

    # -- closing ---------------------------------------------------------------------

    def _queued(self) -> bool:
        return bool(self._pending or self._deferred)

    def _drop_queue(self) -> None:
        self._deferred.clear()
        self._unwatch_writer()
        self._buffer_size = 0
        if self._pending:
            # Drop what libuv still has queued, as asyncio drops its buffer:
            # closing the handle cancels the requests.
            self._close_handle()

    def _release(self) -> None:
        self._unwatch_writer()
        self._close_handle()

    def _close_handle(self) -> None:
        """uv_close() the handle, which closes the fd: the socket lets go of
        it first."""
        if self._state == OPEN and self._sock is not None and self._sock.fileno() >= 0:
            self._sock.detach()
        UVHandle.close(self)

    def _on_close(self) -> None:
        # Closed by the loop's close(): libuv closed the fd in uv_close.
        if self._sock is not None and self._sock.fileno() >= 0:
            self._sock.detach()
        self._pending.clear()
        self._read_handle = self._write_handle = None
        UVHandle._on_close(self)


def _callback_failed(handle: Handle, exc: BaseException) -> None:
    """Report ``exc`` as ``handle._run()`` would have."""
    cb = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {"message": f"Exception in callback {cb}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


@ffi.def_extern(onerror=callback_error)
def uvl_on_udp_recv(data: Any, nread: int, addr: Any, addrlen: int) -> None:
    # uvl__udp_recv_cb (shim.c) passes handle->data, never NULL.
    transport = _from_handle(data)
    # What transport._read_handle._run() does, with the arguments of this read.
    try:
        transport._read_context.run(transport._read_ready, nread, addr, addrlen)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        _callback_failed(transport._read_handle, exc)


@ffi.def_extern(onerror=callback_error)
def uvl_on_udp_send(data: Any, status: int) -> None:
    transport = _from_handle(data)
    handle = transport._write_handle
    try:
        handle._context.run(transport._sendto_ready, status)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        _callback_failed(handle, exc)
