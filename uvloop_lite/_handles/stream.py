"""UVStreamTransport (uv_stream_t): the asyncio Transport shared by TCP and
Unix-socket connections, and StreamServer, the listening side.

Reading: ``uv_read_start`` with the loop-wide read buffer (the bytes are
copied out once, into the ``bytes`` handed to ``data_received``), or, for a
``BufferedProtocol``, with the protocol's own buffer from ``get_buffer()``.
After a large read a Protocol's transport reads "directly": libuv only
reports readiness and ``socket.recv()`` fills the ``bytes`` itself, with no
copy (``_go_direct``), until a short read brings it back to the loop's buffer.
Writing: ``write()`` first tries ``uv_try_write`` when nothing is queued;
what the kernel does not take is queued in libuv with ``uv_write`` and kept
alive (with its request) until libuv's write callback.  Data accepted by
``write()`` is never dropped or reordered, except by ``abort()`` or a fatal
error, as with asyncio.

Connection state follows asyncio's selector transport, with its names:
``_closing`` (close() called), ``_conn_lost`` (connection_lost scheduled),
``_eof`` (write_eof() called).  connection_lost() runs from the ready queue
once the last queued write finished (or at once for abort()), and only then
is the libuv handle closed; its memory is freed by uvl_on_close.

Contexts, as asyncio's selector transports have them (request-scoped
contextvars rely on this): the transport is made in some context C (the
caller's, or for an accepted connection a fresh copy of the server's, in
which the protocol factory also ran).  connection_made() runs in a copy of C
(call_soon), every read callback (data_received, get_buffer/buffer_updated,
eof_received, and a fatal error's connection_lost scheduled from them) in one
other copy of C (for an accepted connection C itself, which nothing else
enters once the transport is made: the same values, one Context less), made
again by resume_reading() from its caller's context, as asyncio's new reader
Handle is; a queued write completes (resume_writing,
connection_lost after close()) in a copy of the context of the write() that
started the queue, as asyncio's writer Handle.  Each is one Context.run()
per libuv callback.

One fd per connection, as asyncio: libuv polls the fd of the transport's
Python socket itself (extra info 'socket' wraps that socket), and the socket
object never closes it: ``uv_close`` does, and the socket is detached right
before (or, for a handle the loop's close() shut, in the close callback), so
a later ``close()`` or collection of the socket object cannot close the
number once it names another file.  A user's socket (``sock=``) thus reads
``fileno() == -1`` after the transport closed it, as with asyncio.

Servers (StreamServer) accept as asyncio's selector loop does, from a reader
on the listening socket: libuv's own accept would shed load at the fd limit
by accepting and closing the waiting clients, unreported.
"""

from __future__ import annotations

import collections
import errno
from contextvars import Context, copy_context
import socket
import sys
from asyncio import constants, events, futures, protocols, trsock
from asyncio.log import logger
from typing import TYPE_CHECKING, Any, Callable

from .._errors import report_transport_error, uv_error
from .._ffi import ffi, lib
from .._typing import FlowControlMixin
from .base import OPEN, UVHandle, callback_error, debug_context

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["UVStreamTransport", "StreamServer"]

_UV_EOF = lib.UV_EOF
_UV_EAGAIN = lib.UV_EAGAIN
_UV_ECANCELED = lib.UV_ECANCELED
_UV_ENOBUFS = lib.UV_ENOBUFS
_from_buffer = ffi.from_buffer
_from_handle = ffi.from_handle
_new = ffi.new
_try_write = lib.uvl_try_write
_copy_context = copy_context
# asyncio.Server tracks its transports from 3.13 on (close_clients()).
_SERVER_TRACKS_TRANSPORTS = sys.version_info >= (3, 13)
# UVStreamTransport._pending before its first queued write (typed as the
# deque it stands in for: only len(), truth and iteration meet it).
_NO_WRITES: Any = ()
# asyncio's default write buffer marks (_FlowControlMixin._set_write_buffer_limits).
_HIGH_WATER = 64 * 1024
_LOW_WATER = _HIGH_WATER // 4
_UNSET: Any = object()   # an address not taken (None: taken, failed)
_NO_EXTRA: dict[str, Any] = {}   # (read only)
_FALSE_LINES_SKIPPED = sys.version_info >= (3, 12)
# Reads of at least this many bytes switch a Protocol's transport to direct
# reads (see _go_direct); a shorter direct read switches it back.  From about
# 4-8 KiB on, the copy out of the loop's buffer costs more than the extra
# Python calls of a direct read.  A direct read asks for less than glibc's
# default mmap threshold (128 KiB), so its bytes come from the heap:
# socket.recv(256 KiB), asyncio's size, costs an mmap/munmap pair per call
# until glibc's dynamic threshold has grown.  On PyPy, socket.recv() copies
# once more itself: the loop's buffer stays the cheaper path there.
_DIRECT_MIN = 0 if sys.implementation.name == "pypy" else 8 * 1024
_DIRECT_MAX = 126 * 1024


# _FlowControlMixin is private to asyncio, but asyncio's own sendfile fallback
# insists on it (isinstance check), and it is asyncio's exact pause/resume
# logic for the high/low water marks.  This is the one place it is used.
class UVStreamTransport(UVHandle, FlowControlMixin):
    """A connected stream (``uv_tcp_t`` or ``uv_pipe_t``) as an asyncio Transport."""

    _ctype = "uv_stream_t *"
    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.FALLBACK

    # Slots, no __dict__: an idle connection is mostly this object (asyncio's
    # Transport classes have the slots _extra, _loop, _protocol_paused,
    # _high_water and _low_water).  Subclasses add ``__slots__ = ()`` to keep
    # it so; the pipe transports have a __dict__ for their own attributes.
    __slots__ = (
        "__weakref__", "_ptr", "_self_handle", "_state",   # UVHandle's
        "_stream", "_protocol", "_buffered", "_feed", "_read_bytes", "_read_view",
        "_server", "_sock", "_sock_outlives_uv", "_closing", "_conn_lost", "_eof",
        "_reading", "_read_started", "_protocol_connected", "_pending", "_buffer_size",
        "_empty_waiter", "_read_keep", "_in_alloc", "_stop_after_read", "_alloc_error",
        "_shutdown_req", "_read_context", "_write_context", "_fd",
        "_sockname", "_peername", "_tsock", "_direct",
        # As asyncio's transports, instances take other attributes too (tests
        # and libraries patch methods such as write() on one): the dict is
        # made only when one is set.
        "__dict__",
    )

    if TYPE_CHECKING:   # each kind of stream (tcp.py, pipe.py) has its own
        def _uv_open(self, fd: int) -> int: ...
        def _accepted(self) -> None: ...

    def __init__(self, loop: LoopBase, protocol: protocols.BaseProtocol,
                 extra: dict[str, Any] | None = None, server: Any = None,
                 context: Context | None = None) -> None:
        UVHandle.__init__(self, loop)
        # A TCP handle is allocated as the uv_stream_t it is (tcp.py): no cast
        # to keep (some 40 bytes).
        ptr = self._ptr
        self._stream = ptr if self._ctype == "uv_stream_t *" else ffi.cast("uv_stream_t *", ptr)
        # Extra info: the caller's dict (as asyncio's BaseTransport keeps it,
        # None if none), then the addresses and the socket in slots of their
        # own (a dict of them is some 180 bytes a connection).
        self._extra: dict[str, Any] | None = extra
        self._sockname: Any = _UNSET
        self._peername: Any = _UNSET
        self._tsock: trsock.TransportSocket | None = None   # made on first use
        self._protocol_paused = False
        self._protocol: Any = None
        self._buffered = False
        self._direct = False   # direct reads (see _go_direct)
        self._feed: Any = None
        self._read_bytes = loop._read_bytes     # where plain reads land
        self._read_view = loop._read_view       # the same, as a memoryview
        self._server = server
        self._sock: socket.socket | None = None   # shares libuv's fd (see the module doc)
        self._sock_outlives_uv = False   # _sock is a duplicate, see _outlive_loop()
        self._fd = -1   # its key in loop._stream_fds, once there
        self._closing = False
        self._conn_lost = 0
        self._eof = False
        self._reading = True           # reading wanted (not paused)
        self._read_started = False     # uv_read_start in effect
        self._protocol_connected = False
        # (req, keepalive, size) of the writes libuv has not finished: a deque
        # from the first one on (an empty deque is about 600 bytes, which an
        # idle connection does without).
        self._pending: collections.deque[tuple[Any, Any, int]] = _NO_WRITES
        self._buffer_size = 0
        self._empty_waiter: futures.Future[None] | None = None
        self._read_keep: Any = None    # the get_buffer() buffer of the read in progress
        # libuv calls the read callback right after the alloc callback, through
        # the pointer uv_read_stop() clears: a stop asked for from inside
        # get_buffer() waits for that read callback.
        self._in_alloc = False
        self._stop_after_read = False
        self._alloc_error: tuple[BaseException, str] | None = None
        self._shutdown_req: Any = None
        # Contexts, as asyncio's reader and writer Handles have them (see
        # "Contexts" in the module doc): reads run in _read_context, write
        # completions in _write_context.  The reader's is a copy of the
        # context the transport is made (and _start()ed) in, as asyncio's
        # reader Handle, made from a call_soon() of that context -- or
        # ``context`` itself, which the caller passes when that is a context
        # only the transport is left to use (StreamServer's per-connection
        # one), with the same values as the copy would have.
        self._read_context: Context = _copy_context() if context is None else context
        if loop._debug:   # timed: see base.TimedContext
            self._read_context = debug_context(self, self._read_context, True)
        self._write_context: Context | None = None
        # The mixin's default marks, as its __init__ sets them, but shared
        # int objects (its low mark is a new int each time: 32 bytes).
        self._high_water = _HIGH_WATER
        self._low_water = _LOW_WATER
        self.set_protocol(protocol)

    # -- set-up ----------------------------------------------------------------

    def _open_socket(self, sock: socket.socket) -> None:
        """Attach to a connected ``sock``: libuv takes its fd (closed with the
        transport); the socket stays the transport's (extra info 'socket')."""
        _open_shared(self, sock)
        self._sock = sock   # _start() records its addresses
        self._accepted()

    def _close_handle(self) -> None:
        """uv_close() the handle, which closes the fd: the socket lets go of
        it first."""
        if self._state == OPEN:
            _release(self._sock)
        UVHandle.close(self)

    def _start(self, waiter: futures.Future[Any] | None) -> None:
        """Schedule connection_made(), then reading, then the waiter, in that
        order, as asyncio's transports do."""
        # Like asyncio, take the addresses now (unless the caller's extra
        # has them): they stay available after the connection is lost.
        # ('socket' is made on first use: see get_extra_info().)  A server's
        # connections mostly have one sockname, a client's one peername:
        # equal addresses in a row share one object (values, not identities,
        # are what asyncio promises; some 150 bytes a connection).
        sock = self._python_socket()
        if sock is not None:
            extra = self._extra or _NO_EXTRA
            cache = self._loop._addr_cache
            if self._sockname is _UNSET and "sockname" not in extra:
                self._sockname = _shared(cache, 0, _sock_call(sock, "getsockname"))
            if self._peername is _UNSET and "peername" not in extra:
                self._peername = _shared(cache, 1, _sock_call(sock, "getpeername"))
        if self._server is not None:
            if _SERVER_TRACKS_TRANSPORTS:
                self._server._attach(self)
            else:
                self._server._attach()
        self._loop.call_soon(self._connection_made, waiter)

    def _connection_made(self, waiter: futures.Future[Any] | None) -> None:
        # Also when the transport was closed meanwhile: as with asyncio, the
        # protocol then sees connection_made() and right after connection_lost().
        self._protocol_connected = True
        try:
            self._protocol.connection_made(self)
        finally:
            # Even if connection_made() raised (the loop reports it), as
            # asyncio, which runs these as separate callbacks.
            if self._reading and not self._closing:
                self._read_start()
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- protocol ----------------------------------------------------------------

    def set_protocol(self, protocol: protocols.BaseProtocol) -> None:
        was_buffered = self._buffered
        # uvloop_lite's own TLS protocol takes the bytes from the loop's buffer
        # (see _tls.py); other buffered protocols get theirs from get_buffer().
        self._feed = getattr(protocol, "_uvl_feed", None)
        self._buffered = self._feed is None and isinstance(protocol, protocols.BufferedProtocol)
        self._protocol = protocol
        if self._direct:   # _read_direct serves a Protocol only
            self._leave_direct()
        if self._read_started and was_buffered != self._buffered:
            self._read_stop()
            self._read_start()

    def get_protocol(self) -> protocols.BaseProtocol:
        # _protocol is Any: the methods of Protocol or BufferedProtocol are
        # called on it, as _buffered says.
        return self._protocol   # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        if self._closing or not self._reading:
            return
        self._reading = False
        self._read_stop()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def _debug_changed(self, enabled: bool) -> None:
        """loop.set_debug(): time this transport's reads from now on, or stop."""
        self._read_context = debug_context(self, self._read_context, enabled)

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        # asyncio adds a new reader Handle here: reads from now on run in a
        # copy of the caller's context.
        self._read_context = debug_context(self, _copy_context(), self._loop._debug)
        if self._protocol_connected:
            self._read_start()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _read_start(self) -> None:
        if self._read_started or self._state != OPEN:
            return
        if self._stop_after_read:   # stopped and restarted inside get_buffer()
            self._stop_after_read = False
            self._read_started = True
            return
        if self._buffered:
            rc = lib.uvl_read_start_buffered(self._stream)
        else:
            rc = lib.uvl_read_start(self._stream)
            self._direct = False   # uvl_read_start reads into the loop's buffer
        if rc < 0:
            self._fatal_error(uv_error(rc), "Fatal error: uv_read_start() failed")
        else:
            self._read_started = True

    def _read_stop(self) -> None:
        if self._read_started:
            self._read_started = False
            if self._in_alloc:
                self._stop_after_read = True
            elif self._state == OPEN:
                lib.uv_read_stop(self._stream)

    # -- reading (called from uvl_on_alloc / uvl_on_stream_read) ---------------------

    def _on_alloc(self, buf: Any) -> None:
        self._in_alloc = True
        try:
            pybuf = self._protocol.get_buffer(-1)
            if not len(pybuf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            buf.len = 0
            self._in_alloc = False
            raise
        except BaseException as exc:
            # libuv then reports UV_ENOBUFS to the read callback, which fails
            # the transport (not here: that would stop reading in the alloc).
            buf.len = 0
            self._alloc_error = (exc, "Fatal error: protocol.get_buffer() call failed.")
            self._in_alloc = False
            return
        self._in_alloc = False
        try:
            cbuf = _from_buffer(pybuf, require_writable=True)
        except (TypeError, BufferError) as exc:   # what recv_into() refuses
            buf.len = 0
            err = TypeError(f"get_buffer() must return a writable buffer: {exc}")
            self._alloc_error = (err, "Fatal read error on socket transport")
            return
        self._read_keep = cbuf
        buf.base = cbuf
        buf.len = len(cbuf)

    def _on_read(self, nread: int) -> None:
        """What uvl_on_stream_read leaves: a read into a BufferedProtocol's
        buffer, end of file, errors."""
        if self._stop_after_read:
            self._stop_after_read = False
            if self._state == OPEN:
                lib.uv_read_stop(self._stream)
        if nread > 0:   # into the buffer get_buffer() returned
            self._read_keep = None
            try:
                self._protocol.buffer_updated(nread)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
            return
        self._read_keep = None
        if nread == 0 or self._conn_lost:   # EAGAIN, or an error already reported
            return
        if nread == _UV_EOF:
            self._on_eof()
        elif nread == _UV_ENOBUFS:   # get_buffer() failed, or a direct read
            if self._direct:
                self._read_direct()
                return
            err, self._alloc_error = self._alloc_error, None
            if err is not None:
                self._fatal_error(*err)
        else:
            self._fatal_error(uv_error(nread), "Fatal read error on socket transport")

    def _go_direct(self) -> None:
        """After a large read: read with the socket's own recv() from now on
        (libuv reports readiness as UV_ENOBUFS, see uvl_read_direct), which
        fills the bytes for data_received() directly, as asyncio's recv()
        does, instead of copying them out of the loop's buffer."""
        sock = self._sock
        if (sock is not None and sock.gettimeout() == 0.0 and self._state == OPEN
                and lib.uvl_read_direct(self._stream, 1)):
            self._direct = True

    def _leave_direct(self) -> None:
        """Back to reads into the loop's buffer."""
        self._direct = False
        lib.uvl_read_direct(self._stream, 0)

    def _read_direct(self) -> None:
        """One read of a transport in direct mode: what libuv's read would do."""
        try:
            data = self._sock.recv(_DIRECT_MAX)   # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._on_eof()
            return
        if len(data) < _DIRECT_MIN:   # small reads again
            self._leave_direct()
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _on_eof(self) -> None:
        self._read_stop()
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -- writing ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        is_bytes = type(data) is bytes
        if not is_bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not is_bytes:
            data = bytes(data)   # the caller may reuse a mutable buffer at once
        size = len(data)
        if not self._pending:
            if self._state != OPEN:
                self._write_without_loop(data)
                return
            n = _try_write(self._stream, data, size)
            if n == size:
                return
            if n < 0:
                if n != _UV_EAGAIN:
                    self._fatal_error(uv_error(n), "Fatal write error on socket transport")
                    return
                n = 0
            # What is queued now completes in a copy of this context, as
            # asyncio's writer Handle, added by the write() that queues first.
            self._write_context = _copy_context()
            req = _new("uv_write_t *")
            # libuv writes from this memory later: keep the from_buffer() cdata
            # itself (PyPy may move ``data`` once that is gone, and a bytes
            # argument to a char * is only valid during the call there).
            keep = _from_buffer(data)
            rc = lib.uvl_write(req, self._stream, keep + n, size - n)
            size -= n
        else:
            req = _new("uv_write_t *")
            keep = _from_buffer(data)
            rc = lib.uvl_write(req, self._stream, keep, size)
        if rc < 0:
            self._fatal_error(uv_error(rc), "Fatal write error on socket transport")
            return
        if self._pending is _NO_WRITES:
            self._pending = collections.deque()
        self._pending.append((req, keep, size))
        self._buffer_size += size
        self._maybe_pause_protocol()

    def _write_without_loop(self, data: bytes | bytearray | memoryview) -> None:
        """write() on a transport left open when its loop closed (libuv's fd
        is gone, the transport's socket is not).  As asyncio's transport:
        send what the kernel takes at once; more would need the loop
        (RuntimeError, as asyncio's add_writer() raises), an error is fatal
        (and scheduling connection_lost() then raises RuntimeError too)."""
        sock = self._sock
        if sock is None:
            # No socket left to send with (libuv's fd went with the loop): as
            # a write after a lost connection, dropped (asyncio would send).
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on socket transport")
            return
        if n != len(data):
            self._loop._check_closed()
            raise RuntimeError("cannot queue data: the loop is gone")   # pragma: no cover

    def writelines(self, list_of_data: Any) -> None:
        """Write every buffer with one vectored write."""
        if self._eof:
            raise RuntimeError("Cannot call writelines() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to writelines; sendfile is in progress")
        if _FALSE_LINES_SKIPPED and not list_of_data:
            return   # asyncio 3.12+ (writelines(None) included)
        # Buffers only, all checked before any is sent, as asyncio: bytes()
        # would turn an int into NUL bytes and a list of ints into bytes.
        chunks = [d if type(d) is bytes else bytes(memoryview(d)) for d in list_of_data]
        if len(chunks) <= 1 or self._pending or self._conn_lost or self._closing \
                or self._state != OPEN:
            for chunk in chunks:
                self.write(chunk)
            return
        chunks = [c for c in chunks if c]
        if not chunks:
            return
        nbufs = len(chunks)
        bufs = _new("uv_buf_t[]", nbufs)
        keep = []
        total = 0
        for i, chunk in enumerate(chunks):
            cb = _from_buffer(chunk)
            keep.append(cb)
            bufs[i].base = cb
            bufs[i].len = len(chunk)
            total += len(chunk)
        n = lib.uv_try_write(self._stream, bufs, nbufs)
        if n == total:
            return
        if n < 0:
            if n != _UV_EAGAIN:
                self._fatal_error(uv_error(n), "Fatal write error on socket transport")
                return
            n = 0
        # Queue what is left as one request: skip the fully written buffers and
        # advance into the first partly written one.
        first = 0
        while n >= bufs[first].len:
            n -= bufs[first].len
            first += 1
        rest = _new("uv_buf_t[]", nbufs - first)
        for j in range(first, nbufs):
            rest[j - first].base = bufs[j].base
            rest[j - first].len = bufs[j].len
        rest[0].base = rest[0].base + n
        rest[0].len = rest[0].len - n
        size = sum(rest[j].len for j in range(nbufs - first))
        self._write_context = _copy_context()   # as in write()
        req = _new("uv_write_t *")
        rc = lib.uvl_writev(req, self._stream, rest, nbufs - first)
        if rc < 0:
            self._fatal_error(uv_error(rc), "Fatal write error on socket transport")
            return
        if self._pending is _NO_WRITES:
            self._pending = collections.deque()
        self._pending.append((req, (keep, chunks, rest), size))
        self._buffer_size += size
        self._maybe_pause_protocol()

    def _on_write(self, status: int) -> None:
        if not self._pending:   # pragma: no cover - libuv calls back once per request
            return
        _req, _keep, size = self._pending.popleft()
        if self._state != OPEN:
            # Closing (the transport's close, or the loop's): a cancelled write,
            # or one libuv finished in uv_write() and reports now.  Release only.
            return
        if not self._conn_lost:   # else _force_close() already emptied the count
            self._buffer_size -= size
        if status < 0:
            if status != _UV_ECANCELED and not self._conn_lost:
                self._fatal_error(uv_error(status), "Fatal write error on socket transport")
            return
        self._maybe_resume_protocol()
        if self._pending:
            return
        if self._empty_waiter is not None:
            if not self._empty_waiter.done():
                self._empty_waiter.set_result(None)
        if self._closing:
            if not self._conn_lost:
                self._conn_lost += 1
                self._call_connection_lost(None)
        elif self._eof:
            self._shutdown()

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._pending:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._shutdown_req is not None or self._state != OPEN:
            return
        req = self._shutdown_req = _new("uv_shutdown_t *")
        rc = lib.uvl_shutdown(req, self._stream)
        if rc < 0:
            self._shutdown_req = None

    def _on_shutdown(self, status: int) -> None:
        self._shutdown_req = None   # ENOTCONN and friends: the peer is gone already

    # -- sendfile support ----------------------------------------------------------

    def _make_empty_waiter(self) -> futures.Future[None]:
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._pending:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._read_stop()
        if not self._pending:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on transport") -> None:
        report_transport_error(self, exc, message)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._pending:
            # libuv cancels the queued writes when the handle closes.
            self._buffer_size = 0
        if self._empty_waiter is not None and not self._empty_waiter.done():
            if exc is None:
                self._empty_waiter.set_result(None)
            else:
                self._empty_waiter.set_exception(exc)
        if not self._closing:
            self._closing = True
            self._read_stop()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._close_handle()
            self._protocol = self._feed = None
            server = self._server
            if server is not None:
                self._server = None
                if _SERVER_TRACKS_TRANSPORTS:
                    server._detach(self)
                else:
                    server._detach()

    def _outlive_loop(self) -> None:
        """The loop closes with this transport open, and libuv's close takes
        the fd.  asyncio's transport keeps its socket then (write() still
        sends through it): this one keeps a socket of its own on a duplicate
        of the fd, made before libuv closes it.  A ``sock=`` socket object
        lets go of its number (``fileno() == -1``), as after the transport
        closes it."""
        sock = self._sock
        if self._state != OPEN or sock is None or sock.fileno() < 0:
            return
        try:
            kept = sock.dup()
        except OSError:   # no fd to spare: from now on as if disconnected
            return
        sock.detach()
        self._sock = kept
        self._sock_outlives_uv = True
        self._tsock = None

    def _on_close(self) -> None:
        # Closed by the loop's close() (not _close_handle): libuv closed the
        # fd in uv_close, so the socket must not own that number any more
        # (unless it is the duplicate _outlive_loop() made).
        if not self._sock_outlives_uv:
            _release(self._sock)
        fds = self._loop._stream_fds
        if fds.get(self._fd) is self:   # (the number may name another one's by now)
            del fds[self._fd]
        self._pending = _NO_WRITES
        self._read_keep = None
        self._shutdown_req = None
        UVHandle._on_close(self)

    # -- extra info ----------------------------------------------------------------

    def _fileno(self) -> int:
        fd = _new("uv_os_fd_t *")
        rc = lib.uv_fileno(self._handle, fd)
        if rc < 0:
            raise uv_error(rc)
        return fd[0]

    def _python_socket(self) -> socket.socket | None:
        """The socket object over the transport's fd (None once closed)."""
        sock = self._sock
        if sock is None or sock.fileno() < 0:
            return None
        return sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = self._extra
        if name in (_NO_EXTRA if extra is None else extra):   # (TypeError if unhashable)
            return extra[name]   # type: ignore[index]
        if name == "socket":
            # As if made with the transport (asyncio's is): the transport's
            # socket, also once closed.
            tsock = self._tsock
            if tsock is None:
                if self._sock is None:
                    return default
                tsock = self._tsock = trsock.TransportSocket(self._sock)
            return tsock
        if name == "sockname":
            value = self._sockname
        elif name == "peername":
            value = self._peername
        else:
            return default
        if value is _UNSET:   # not taken when the connection started: now, if open
            value = _sock_call(self._python_socket(), "get" + name)
            if value is None:
                return default
            if name == "sockname":
                self._sockname = value
            else:
                self._peername = value
        return value

    def __repr__(self) -> str:
        # The transport's own state, as asyncio shows it: a transport left open
        # when its loop closed still reads "open".
        info = [type(self).__name__]
        if self._state == OPEN:
            try:
                info.append(f"fd={self._fileno()}")
            except OSError:
                pass
        if self._conn_lost:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        else:
            info.append("open")
            info.append("reading" if self._reading else "idle")
            info.append(f"write=<bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))


def _open_shared(handle: Any, sock: socket.socket) -> None:
    """Hand ``sock``'s own fd to libuv (``handle._uv_open``).  On failure
    libuv took nothing: the socket still owns its fd, for the caller to close."""
    fd = sock.fileno()
    drop_watchers(handle._loop, fd)
    rc = handle._uv_open(fd)
    if rc < 0:
        UVHandle.close(handle)
        raise uv_error(rc)


def drop_watchers(loop: LoopBase, fd: int) -> None:
    """The transport made on ``fd`` replaces its reader and writer (asyncio's
    transport replaces the reader too); their poll closes now, as libuv lets
    only one watcher per fd number in."""
    if loop._remove_reader(fd) | loop._remove_writer(fd):
        loop._close_idle_polls()


def _release(sock: socket.socket | None) -> None:
    """``sock``'s fd is (being) closed by libuv: make the socket object let go
    of the number without closing it (a no-op if already let go or closed)."""
    if sock is not None and sock.fileno() >= 0:
        sock.detach()


def _shared(cache: list[Any], i: int, addr: Any) -> Any:
    """``addr``, or the equal address ``cache[i]`` holds; ``addr`` is kept
    there otherwise, with the host string of the one before if the same
    (a client's own address, a server's peers on one host: some 60 bytes)."""
    last = cache[i]
    if type(last) is type(addr):
        if last == addr:
            return last
        if type(addr) is tuple and addr and last and type(addr[0]) is str \
                and addr[0] == last[0]:
            addr = (last[0],) + addr[1:]
    cache[i] = addr
    return addr


def _sock_call(sock: socket.socket | None, method: str) -> Any:
    if sock is None:
        return None
    try:
        return getattr(sock, method)()
    except OSError:
        return None


# accept() errors that mean "out of fds or memory": asyncio reports them and
# pauses accepting for a while instead of spinning on a listening socket that
# stays readable.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class StreamServer:
    """Serves one listening socket (TCP or Unix) of an ``asyncio.Server`` as
    asyncio's selector loop does: ``_accept_ready`` is the socket's reader
    (the loop's add_reader machinery, a ``uv_poll_t`` on the socket's own fd)
    and accepts up to ``backlog`` connections into new transports.

    The listening socket stays Python's (libuv never owns it): the Server
    closes it after ``close()`` stopped the reader.  At the fd limit (EMFILE
    and friends) the error goes to the exception handler and accepting pauses
    for ``ACCEPT_RETRY_DELAY``; the clients wait in the backlog meanwhile.
    """

    def __init__(self, loop: LoopBase, sock: socket.socket, protocol_factory: Callable[[], Any],
                 sslcontext: Any, server: Any, backlog: int,
                 ssl_handshake_timeout: Any, ssl_shutdown_timeout: Any) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol_factory = protocol_factory
        self._sslcontext = sslcontext
        self._server = server
        self._backlog = max(backlog, 1)
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._reading = False
        self._retry: events.TimerHandle | None = None
        self._start()

    def _start(self) -> None:
        self._retry = None
        if self._sock.fileno() != self._fd:   # closed under the server meanwhile
            return
        self._loop._add_reader(self._fd, self._accept_ready)
        self._reading = True

    def close(self) -> None:
        """Stop accepting (before the Server closes the socket)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._stop_reading()
        # A closed server serves no more: _serve() never runs again.
        self._protocol_factory = self._sslcontext = self._server = None  # type: ignore[assignment]

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            # Cancels the reader Handle (which refers back to this server),
            # and closes its poll now, while the fd is still open.
            self._loop._remove_reader(self._fd)
            self._loop._close_idle_polls()

    def _accept_ready(self) -> None:
        sock = self._sock
        for _ in range(self._backlog):
            if not self._reading:   # closed, or paused, by a callback meanwhile
                return
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return   # nothing more waiting (or a client gave up first)
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise   # reported as this callback's error; serving goes on
                self._loop.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": trsock.TransportSocket(sock),
                })
                # The socket stays readable: stop watching it for a while.
                self._stop_reading()
                self._retry = self._loop.call_later(constants.ACCEPT_RETRY_DELAY, self._start)
                return
            conn.setblocking(False)
            # As asyncio's per-connection task: the factory, the transport
            # and everything they schedule start from a copy of this context
            # (the reader's: where serving started).
            ctx = _copy_context()
            ctx.run(self._serve, conn, addr, ctx)

    def _serve(self, conn: socket.socket, addr: Any, ctx: Context) -> None:
        """A transport and protocol for the accepted ``conn``.  What fails
        here drops that connection only; KeyboardInterrupt and SystemExit
        leave the loop as with asyncio, and accepting goes on afterwards.

        Runs in ``ctx``, which nothing else can enter once this returns
        (call_soon() and the like take copies): the transport's reads run in
        it instead of in a copy made in it (one Context less per connection).
        Nothing sets a variable between the transport's making and the end
        of this call, so the values are the copy's."""
        loop = self._loop
        protocol = None
        try:
            protocol = self._protocol_factory()
            if self._sslcontext is None:
                loop._make_socket_transport(conn, protocol, server=self._server,
                                            context=ctx, peername=addr)
                return
            waiter = loop.create_future()
            ssl_protocol = loop._make_ssl_protocol(
                protocol, self._sslcontext, waiter, server_side=True,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
                ssl_shutdown_timeout=self._ssl_shutdown_timeout)
            transport = loop._make_socket_transport(conn, ssl_protocol, server=self._server,
                                                    context=ctx, peername=addr)
        except BaseException as exc:
            # No transport kept it (a failing _make_socket_transport leaves
            # the socket, or detaches it once libuv closed its fd).
            conn.close()
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            if loop.get_debug():   # as asyncio: reported in debug mode only
                context = {"message": "Error on transport creation for incoming connection",
                           "exception": exc}
                if protocol is not None:
                    context["protocol"] = protocol
                loop.call_exception_handler(context)
            return
        # (mypy infers no lambda with more parameters than the callback has.)
        waiter.add_done_callback(
            lambda fut, tr=transport, pr=protocol,  # type: ignore[misc]
            app=ssl_protocol._app_transport: _ssl_accept_done(loop, fut, tr, pr, app))


def _ssl_accept_done(loop: LoopBase, fut: futures.Future[Any], transport: UVStreamTransport,
                     app_protocol: Any = None, app_transport: Any = None) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None:
        if loop.get_debug():   # as asyncio: reported in debug mode only
            context = {"message": "Error on transport creation for incoming connection",
                       "exception": exc}
            if app_protocol is not None:
                context["protocol"] = app_protocol
            if app_transport is not None:
                context["transport"] = app_transport
            loop.call_exception_handler(context)
        transport.close()


@ffi.def_extern(onerror=callback_error)
def uvl_on_alloc(handle: Any, suggested_size: int, buf: Any) -> None:
    data = handle.data
    if data == ffi.NULL:
        buf.len = 0
        return
    self = ffi.from_handle(data)
    self._read_context.run(self._on_alloc, buf)


@ffi.def_extern(onerror=callback_error)
def uvl_on_stream_read(data: Any, nread: int) -> None:
    # uvl__read_cb (shim.c) passes stream->data, never NULL.
    self = _from_handle(data)
    if nread <= 0 or self._buffered:
        self._read_context.run(self._on_read, nread)
        return
    # Bytes read into the loop's buffer: to data_received(), or to our TLS
    # protocol's BIO (_tls.py).  Inlined here: most reads take this path.
    feed = self._feed
    try:
        if feed is None:
            if nread >= _DIRECT_MIN > 0:
                self._go_direct()
            self._read_context.run(self._protocol.data_received, self._read_bytes[:nread])
        else:
            self._read_context.run(feed, self._read_view[:nread])
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        self._read_context.run(
            self._fatal_error, exc,
            "Fatal error: protocol.data_received() call failed." if feed is None
            else "Fatal error: protocol.buffer_updated() call failed.")


@ffi.def_extern(onerror=callback_error)
def uvl_on_write(req: Any, status: int) -> None:
    data = req.handle.data
    if data != ffi.NULL:
        self = ffi.from_handle(data)
        ctx = self._write_context
        if ctx is None:   # pragma: no cover - set whenever a write is queued
            self._on_write(status)
        else:
            ctx.run(self._on_write, status)


@ffi.def_extern(onerror=callback_error)
def uvl_on_shutdown(req: Any, status: int) -> None:
    data = req.handle.data
    if data != ffi.NULL:
        ffi.from_handle(data)._on_shutdown(status)
