"""Type-checking views of the classes the loop is built on (for mypy only).

typeshed declares asyncio's public API; the loop and its transports also use
asyncio's private attributes (``Handle._callback``, ``BaseEventLoop._ready``,
``_FlowControlMixin._maybe_pause_protocol``, ...), and the mixins that make up
:class:`~uvloop_lite._loop.Loop` use each other's.  Under ``TYPE_CHECKING``
the names below are subclasses that declare those attributes; at run time
they are asyncio's own classes, and ``LoopBase`` is ``object``, so nothing
changes and nothing costs.

``LoopBase`` is the loop as its mixins (``_sock.py``, ``_streams.py``, ...)
and the libuv handle wrappers (``_handles/``) see it: ``asyncio.BaseEventLoop``
plus the attributes of :class:`Loop` they use.  Each mixin derives from it, so
``self`` in a mixin method is typed as that loop.
"""

from __future__ import annotations

from asyncio import base_events, events, transports
from typing import TYPE_CHECKING

__all__ = ["Handle", "TimerHandle", "LoopBase", "FlowControlMixin", "Server"]

if TYPE_CHECKING:
    import asyncio
    import collections
    import contextvars
    import socket
    import ssl
    import traceback
    import weakref
    from asyncio import futures, protocols, sslproto
    from typing import Any, Callable

    from typing_extensions import TypeVarTuple, Unpack

    from ._handles.base import UVHandle
    from ._handles.poll import UVPoll, UVPollGuard
    from ._handles.stream import UVStreamTransport
    from ._uv import CBuffer, CData

    Ts = TypeVarTuple("Ts")

    class Handle(events.Handle):
        """asyncio's Handle, with the private attributes the loop uses."""
        _callback: Callable[..., object]
        _args: tuple[Any, ...]
        _context: contextvars.Context
        _loop: events.AbstractEventLoop
        _repr: str | None
        _source_traceback: traceback.StackSummary | None

    class TimerHandle(events.TimerHandle, Handle):
        """asyncio's TimerHandle, with its heap bookkeeping."""
        _when: float
        _scheduled: bool

    class FlowControlMixin(transports._FlowControlMixin):
        """asyncio's write flow control (high/low water marks)."""
        _protocol_paused: bool
        _high_water: int
        _low_water: int

        def _set_write_buffer_limits(self, high: int | None = None,
                                     low: int | None = None) -> None: ...
        def _maybe_pause_protocol(self) -> None: ...
        def _maybe_resume_protocol(self) -> None: ...

    class Server(base_events.Server):
        """asyncio's Server, with the hook a loop's create_*_server calls."""
        def _start_serving(self) -> None: ...

    class LoopBase(asyncio.BaseEventLoop):
        """What the mixins and handles use of the loop beyond typeshed's
        ``BaseEventLoop``."""

        # asyncio.BaseEventLoop's private state and helpers.
        _ready: collections.deque[Handle]
        _scheduled: list[TimerHandle]
        _debug: bool
        _stopping: bool
        _closed: bool
        _clock_resolution: float
        _timer_cancelled_count: int
        _current_handle: Handle | None

        def call_soon(self, callback: Callable[[Unpack[Ts]], object], *args: Unpack[Ts],
                      context: contextvars.Context | None = None) -> Handle: ...
        def call_later(self, delay: float, callback: Callable[[Unpack[Ts]], object],
                       *args: Unpack[Ts], context: contextvars.Context | None = None
                       ) -> TimerHandle: ...
        def call_at(self, when: float, callback: Callable[[Unpack[Ts]], object],
                    *args: Unpack[Ts], context: contextvars.Context | None = None
                    ) -> TimerHandle: ...
        def _signal_wakeup_needed(self) -> None: ...
        def _check_closed(self) -> None: ...
        def _check_running(self) -> None: ...
        def _write_to_self(self) -> None: ...
        async def _ensure_resolved(self, address: Any, *, family: int = 0,
                                   type: int = socket.SOCK_STREAM, proto: int = 0,
                                   flags: int = 0, loop: events.AbstractEventLoop
                                   ) -> list[tuple[Any, ...]]: ...
        async def _create_connection_transport(
                self, sock: socket.socket, protocol_factory: Callable[[], Any],
                ssl: Any, server_hostname: str | None, server_side: bool = False,
                ssl_handshake_timeout: float | None = None,
                ssl_shutdown_timeout: float | None = None
                ) -> tuple[transports.Transport, protocols.BaseProtocol]: ...

        # Loop (_loop.py): libuv's loop and the shared read buffer.
        _uv: CData
        _uv_data: CData
        _uv_closed: bool
        _read_bytes: CBuffer
        _read_view: memoryview

        def _handle_opened(self, handle: UVHandle) -> None: ...
        def _handle_closed(self, handle: UVHandle) -> None: ...

        # SockMixin (_sock.py): fd watchers.
        _transports: dict[int, weakref.ref[Any]]
        _polls_idle: list[UVPoll]
        _poll_guard: UVPollGuard | None

        _stream_fds: dict[int, Any]

        def _add_transport(self, fd: int, transport: Any) -> None: ...
        def _add_stream(self, fd: int, transport: Any) -> None: ...
        def _close_idle_polls(self) -> None: ...
        def _add_reader(self, fd: Any, callback: Callable[..., object],
                        *args: Any) -> Handle: ...
        def _add_writer(self, fd: Any, callback: Callable[..., object],
                        *args: Any) -> Handle: ...
        def _remove_reader(self, fd: Any) -> bool: ...
        def _remove_writer(self, fd: Any) -> bool: ...

        # StreamsMixin (_streams.py): transports for accepted connections.
        _addr_cache: list[Any]
        def _make_socket_transport(self, sock: socket.socket, protocol: Any,
                                   waiter: futures.Future[Any] | None = None, *,
                                   extra: dict[str, Any] | None = None,
                                   server: Any = None,
                                   context: contextvars.Context | None = None,
                                   peername: Any = None) -> UVStreamTransport: ...
        def _make_ssl_protocol(self, protocol: Any, sslcontext: ssl.SSLContext,
                               waiter: futures.Future[Any], *,
                               server_side: bool = False,
                               server_hostname: str | None = None,
                               ssl_handshake_timeout: float | None = None,
                               ssl_shutdown_timeout: float | None = None,
                               call_connection_made: bool = True
                               ) -> sslproto.SSLProtocol: ...
else:
    Handle = events.Handle
    TimerHandle = events.TimerHandle
    FlowControlMixin = transports._FlowControlMixin
    Server = base_events.Server
    LoopBase = object
