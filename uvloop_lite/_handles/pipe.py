"""uv_pipe_t: connections on Unix stream sockets (UnixTransport) and the
transports of connect_read_pipe/connect_write_pipe."""

from __future__ import annotations

import os
import socket
import stat
from asyncio import constants
from contextvars import Context
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

from .._errors import uv_error
from .._ffi import lib
from .base import UVHandle
from .poll import READABLE, UVPoll
from .stream import _NO_EXTRA, UVStreamTransport, _open_shared

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["UnixTransport", "ReadPipeTransport", "WritePipeTransport"]


class UnixTransport(UVStreamTransport):
    __slots__ = ()
    _ctype = "uv_pipe_t *"
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop: LoopBase, protocol: Any, extra: dict[str, Any] | None = None,
                 server: Any = None, context: Context | None = None) -> None:
        super().__init__(loop, protocol, extra, server, context)
        self._init_done(lib.uv_pipe_init(loop._uv, self._ptr, 0))

    def _uv_open(self, fd: int) -> int:
        return lib.uv_pipe_open(self._ptr, fd)

    def _accepted(self) -> None:
        pass


def _pipe_mode(pipe: Any) -> int:
    return os.fstat(pipe.fileno()).st_mode


class _PipeTransport(UVStreamTransport):
    """Common part of the read and write pipe transports: a ``uv_pipe_t`` on
    the pipe's fd, the pipe object closed with the transport.  A socket is
    shared as a connection's socket is (libuv closes the fd; the socket is
    detached first).  Anything else gets libuv a duplicate of its fd: a file
    object cannot let go of its fd, and a write pipe's peer watch (a
    ``uv_poll_t``) needs a fd number libuv's pipe handle does not use."""

    _ctype = "uv_pipe_t *"
    _start_tls_compatible = False
    # As asyncio's pipe transports: loop.sendfile() refuses them (its fallback
    # would pause reading, which a write pipe transport cannot).
    _sendfile_compatible = constants._SendfileMode.UNSUPPORTED

    def __init__(self, loop: LoopBase, pipe: Any, protocol: Any, extra: dict[str, Any] | None,
                 share: bool = False) -> None:
        super().__init__(loop, protocol, extra)
        if extra is None:
            extra = self._extra = {}
        extra["pipe"] = pipe   # in the caller's dict, as asyncio
        self._init_done(lib.uv_pipe_init(loop._uv, self._ptr, 0))
        if share:
            _open_shared(self, pipe)
            self._sock = pipe   # released with the handle, as a connection's
        else:
            _open_dup(self, pipe)
        self._pipe = pipe

    def _close_handle(self) -> None:
        super()._close_handle()
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()   # a no-op for a shared socket, detached by now

    def _uv_open(self, fd: int) -> int:
        return lib.uv_pipe_open(self._ptr, fd)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self._extra or _NO_EXTRA).get(name, default)

    def _python_socket(self) -> None:
        return None   # a pipe has no socket (_sock may hold a shared pipe socket)


def _open_dup(handle: Any, pipe: Any) -> None:
    """Give libuv its own duplicate of ``pipe``'s fd (see _PipeTransport)."""
    fd = os.dup(pipe.fileno())
    rc = handle._uv_open(fd)
    if rc < 0:
        os.close(fd)
        UVHandle.close(handle)
        raise uv_error(rc)


class _Absent:
    """A method asyncio's class does not have: looking it up raises
    AttributeError (and hasattr() is False), as on asyncio's transport."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        raise AttributeError(f"{(owner or type(obj)).__name__!r} object has no "
                             f"attribute {self._name!r}")


class PipeDataError(TypeError, AssertionError):
    """write() of something that is not a bytes-like object to a write pipe:
    asyncio's pipe transport fails an ``assert`` there (AssertionError),
    its socket transports raise TypeError; this is both."""


class ReadPipeTransport(_PipeTransport):
    """``connect_read_pipe``: pipes, sockets, character devices and PTYs.
    At end of file it calls eof_received() and then connection_lost(None)."""

    # A read-only transport, as asyncio's: no writing side at all (a write
    # would go to the read end of the pipe).
    write = writelines = write_eof = can_write_eof = abort = _Absent()
    get_write_buffer_size = get_write_buffer_limits = set_write_buffer_limits = _Absent()

    def __init__(self, loop: LoopBase, pipe: Any, protocol: Any,
                 extra: dict[str, Any] | None = None) -> None:
        mode = _pipe_mode(pipe)
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            raise ValueError("Pipe transport is for pipes/sockets only.")
        super().__init__(loop, pipe, protocol, extra, share=isinstance(pipe, socket.socket))

    def _on_eof(self) -> None:
        self._read_stop()
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)


class WritePipeTransport(_PipeTransport):
    """``connect_write_pipe``: writes queue in libuv; closing the transport
    (or write_eof()) closes the pipe once everything queued is written.  The
    reader going away is noticed through a ``uv_poll_t`` on the pipe's own fd."""

    def __init__(self, loop: LoopBase, pipe: Any, protocol: Any,
                 extra: dict[str, Any] | None = None) -> None:
        mode = _pipe_mode(pipe)
        is_fifo, is_socket = stat.S_ISFIFO(mode), stat.S_ISSOCK(mode)
        if not (stat.S_ISCHR(mode) or is_fifo or is_socket):
            raise ValueError("Pipe transport is only for pipes, sockets and character devices")
        super().__init__(loop, pipe, protocol, extra)
        self._reading = False   # never: a write transport
        self._watch: UVPoll | None = None
        if is_fifo or is_socket:
            try:
                self._watch = UVPoll(loop, pipe.fileno(), self._on_peer_event)
            except BaseException:
                UVHandle.close(self)
                raise

    def _connection_made(self, waiter: Any) -> None:
        if self._closing:
            return
        self._protocol_connected = True
        self._protocol.connection_made(self)
        if self._watch is not None and not self._closing:
            self._watch.start(READABLE)
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)

    def _on_peer_event(self, poll: UVPoll, events: int, status: int) -> None:
        # Nothing is ever read from a write pipe: readiness means the reader
        # closed its end (EPOLLERR/EPOLLHUP).  Handled from the ready queue,
        # after the callbacks already there, as asyncio's loop would: a write
        # queued before the event still fails with BrokenPipeError.
        poll.start(0)
        # In a copy of the reader's context, as asyncio's pipe reader Handle.
        self._loop.call_soon(self._peer_closed, context=self._read_context.copy())

    def _peer_closed(self) -> None:
        if not self._conn_lost:
            self._force_close(BrokenPipeError() if self._pending else None)

    # asyncio's write pipe transport inherits these from ReadTransport (through
    # Transport), which raises NotImplementedError on every version.
    def is_reading(self) -> bool:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise PipeDataError(f"data argument must be a bytes-like object, "
                                f"not {type(data).__name__!r}")
        if not data:
            return
        if self._conn_lost or self._closing:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        super().write(data)

    def writelines(self, list_of_data: Any) -> None:
        # asyncio's WriteTransport.writelines(), which its pipe transport uses
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._pending:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def close(self) -> None:
        self.write_eof()

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        super()._call_connection_lost(exc)
