"""Loop: asyncio's event loop with libuv underneath.

The generic parts of asyncio's loop (the ready queue and its ordering, the
timer heap, call_soon/call_later/call_at, tasks and their factory, executors,
async generators, the exception handler, debug mode) come from
``asyncio.BaseEventLoop`` unchanged, so they behave exactly as asyncio's.
What it leaves to a concrete loop is libuv's here: the wait for events is one
``uv_run`` iteration (with a libuv timer armed for the earliest deadline),
``call_soon_threadsafe`` wakes it with a ``uv_async_t``, and Ctrl-C wakes it
through the signal wake-up fd watched by a ``uv_poll_t``.

The one private hook of BaseEventLoop used is the poller it calls
(``self._selector.select(timeout)`` then ``self._process_events(events)``);
it has the same shape on CPython 3.9 to 3.13 and on PyPy.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import os
import signal
import socket
import threading
import warnings
from asyncio.base_events import (
    _MIN_CANCELLED_TIMER_HANDLES_FRACTION, _MIN_SCHEDULED_TIMER_HANDLES, MAXIMUM_SELECT_TIMEOUT)
from asyncio.events import Handle
from typing import Any

from ._errors import check
from ._ffi import ffi, lib
from ._handles import base as _base
from ._handles.async_ import UVAsync
from ._handles.base import UVHandle
from ._handles.poll import READABLE, UVPoll
from ._handles.timer import UVTimer
from ._datagram import DatagramMixin
from ._dns import DnsMixin
from ._pipes import PipesMixin
from ._signals import SignalsMixin
from ._sock import SockMixin
from ._streams import StreamsMixin
from ._subprocess import SubprocessMixin

__all__ = ["Loop"]

# uv_loop_t memory that could not be released (a loop abandoned after fork(), or
# one libuv still had requests on): kept for the life of the process.
_ABANDONED: list[Any] = []


class _UVPoller:
    """What BaseEventLoop._run_once waits on: one libuv iteration."""

    __slots__ = ("_uv", "_wake", "_loop")

    def __init__(self, loop: Loop) -> None:
        self._uv = loop._uv
        self._wake = loop._wake_timer._ptr
        self._loop = loop

    def select(self, timeout: float | None) -> tuple:
        if timeout is None:
            ms = -1
        elif timeout <= 0:
            ms = 0
        else:
            # Round up: waking before the earliest TimerHandle is due would only
            # cost another iteration, but never run it early.
            ms = math.ceil(timeout * 1000.0)
        if self._loop._polls_started:   # fds closed under a new watcher: see there
            self._loop._check_started_polls()
        lib.uvl_run(self._uv, self._wake, ms)
        exc = _base.pending.exc
        if exc is not None:
            _base.pending.exc = None
            raise exc
        return ()

    def close(self) -> None:
        pass


# Size of the loop-wide buffer every plain (non-buffered) stream reads into.
_READ_BUFFER_SIZE = 256 * 1024


class Loop(SockMixin, StreamsMixin, DatagramMixin, PipesMixin, SignalsMixin,
           SubprocessMixin, DnsMixin, asyncio.BaseEventLoop):
    """An ``asyncio`` event loop whose I/O, timers and wake-ups come from libuv.

    Use it through :func:`uvloop_lite.new_event_loop`,
    :class:`uvloop_lite.EventLoopPolicy` or :func:`uvloop_lite.run`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pid = os.getpid()
        self._handles: set[UVHandle] = set()
        self._handle_stats: dict[str, list[int]] = {}
        self._uv = ffi.new("uv_loop_t *")
        check(lib.uv_loop_init(self._uv))
        self._uv_closed = False
        self._read_buffer = ffi.new("char[]", _READ_BUFFER_SIZE)
        self._read_buffer_desc = ffi.new("uvl_read_buffer_t *", (self._read_buffer, _READ_BUFFER_SIZE))
        self._uv.data = self._read_buffer_desc
        self._init_sock()
        self._init_streams()
        self._init_signals()
        self._init_subprocess()
        self._init_dns()
        self._wake_timer = UVTimer(self)
        # Referenced on purpose: with nothing else to wait for, uv_run blocks
        # on it as asyncio's loop blocks on its self-pipe.
        self._async = UVAsync(self)
        self._selector = _UVPoller(self)
        self._sig_rsock: socket.socket | None = None
        self._sig_wsock: socket.socket | None = None
        self._sig_poll: UVPoll | None = None

    # -- libuv handle bookkeeping ----------------------------------------------

    def _handle_opened(self, handle: UVHandle) -> None:
        self._handles.add(handle)
        stats = self._handle_stats.get(type(handle).__name__)
        if stats is None:
            stats = self._handle_stats[type(handle).__name__] = [0, 0]
        stats[0] += 1

    def _handle_closed(self, handle: UVHandle) -> None:
        self._handles.discard(handle)
        self._handle_stats[type(handle).__name__][1] += 1

    def _uv_handle_stats(self) -> dict[str, tuple[int, int]]:
        """{handle class: (opened, closed)} over the loop's life (for tests)."""
        return {name: (o, c) for name, (o, c) in self._handle_stats.items()}

    def _internal_handles(self) -> list[UVHandle]:
        names = ("_wake_timer", "_async", "_sig_poll")
        return [h for h in (getattr(self, n, None) for n in names) if h is not None]

    # -- the run loop ------------------------------------------------------------

    # call_soon() and _run_once() are BaseEventLoop's, statement for statement,
    # with the helper method calls inlined and attribute reads hoisted: they run
    # for every callback and every iteration.  Debug mode takes asyncio's own
    # code paths (source tracebacks, slow-callback warnings).

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> Handle:
        """Arrange for ``callback(*args)`` to be called soon (FIFO order)."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
            handle = self._call_soon(callback, args, context)
            if handle._source_traceback:
                del handle._source_traceback[-1]
            return handle
        handle = Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def _run_once(self) -> None:
        if self._debug:
            return asyncio.BaseEventLoop._run_once(self)
        scheduled = self._scheduled
        if scheduled:
            sched_count = len(scheduled)
            if (sched_count > _MIN_SCHEDULED_TIMER_HANDLES and
                    self._timer_cancelled_count / sched_count >
                    _MIN_CANCELLED_TIMER_HANDLES_FRACTION):
                new_scheduled = []
                for handle in scheduled:
                    if handle._cancelled:
                        handle._scheduled = False
                    else:
                        new_scheduled.append(handle)
                heapq.heapify(new_scheduled)
                scheduled = self._scheduled = new_scheduled
                self._timer_cancelled_count = 0
            else:
                while scheduled and scheduled[0]._cancelled:
                    self._timer_cancelled_count -= 1
                    handle = heapq.heappop(scheduled)
                    handle._scheduled = False
        ready = self._ready
        timeout = None
        if ready or self._stopping:
            timeout = 0
        elif scheduled:
            timeout = min(max(0, scheduled[0]._when - self.time()), MAXIMUM_SELECT_TIMEOUT)
        self._selector.select(timeout)   # no events to process: libuv ran them
        if scheduled:
            end_time = self.time() + self._clock_resolution
            while scheduled:
                handle = scheduled[0]
                if handle._when >= end_time:
                    break
                handle = heapq.heappop(scheduled)
                handle._scheduled = False
                ready.append(handle)
        popleft = ready.popleft
        for _ in range(len(ready)):
            handle = popleft()
            if handle._cancelled:
                continue
            handle._run()
        handle = None  # break cycles when an exception occurs

    def _process_events(self, event_list: Any) -> None:
        # libuv already ran the I/O callbacks inside uv_run().
        pass

    def _write_to_self(self) -> None:
        self._async.send()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError(
                "this event loop was created in another process; after fork() "
                "create a new loop in the child")

    def run_forever(self) -> None:
        """Run until :meth:`stop` is called."""
        self._check_fork()
        # Fail as asyncio does before touching libuv or the wake-up fd.
        self._check_closed()
        self._check_running()
        wakeup = self._install_signal_wakeup()
        try:
            super().run_forever()
        finally:
            if wakeup is not None:
                self._restore_signal_wakeup(wakeup)

    # Ctrl-C: Python's C-level signal handler only sets a flag, and libuv would
    # go back to sleep in epoll_wait after EINTR.  While the loop runs in the
    # main thread, the signal wake-up fd points at a socket libuv polls, so the
    # loop wakes, Python runs its handler (raising KeyboardInterrupt, say) and
    # the exception leaves run_forever() as it would on asyncio's loop.

    def _install_signal_wakeup(self) -> tuple[int] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        if self._sig_poll is None:
            self._sig_rsock, self._sig_wsock = socket.socketpair()
            self._sig_rsock.setblocking(False)
            self._sig_wsock.setblocking(False)
            self._sig_poll = UVPoll(self, self._sig_rsock.fileno(), self._on_signal_wakeup)
            self._sig_poll.start(READABLE)
            self._sig_poll.unref()
        try:
            old = signal.set_wakeup_fd(self._sig_wsock.fileno())
        except (ValueError, OSError):
            return None
        return (old,)

    def _restore_signal_wakeup(self, saved: tuple[int]) -> None:
        try:
            signal.set_wakeup_fd(saved[0])
        except (ValueError, OSError):
            pass

    def _on_signal_wakeup(self, poll: UVPoll, events: int, status: int) -> None:
        try:
            while self._sig_rsock.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # -- closing -------------------------------------------------------------------

    def close(self) -> None:
        """Close the loop: drop pending callbacks, shut the default executor
        down without waiting, and release every libuv handle."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        super().close()
        self._close_uv()

    def _close_uv(self) -> None:
        if self._uv_closed:
            return
        self._uv_closed = True
        if os.getpid() != self._pid:
            # Closing handles here would edit the parent's epoll set, which the
            # child shares: abandon the memory instead.
            _ABANDONED.append((self._uv, self._handles))
            return
        self._close_signals()
        self._orphan_subprocesses()
        self._close_servers()
        self._close_polls()
        for handle in self._internal_handles():
            handle.close()
        leftovers = [h for h in self._handles if h.is_open()]
        if leftovers:
            warnings.warn(f"{self!r} closed with {len(leftovers)} open libuv "
                          f"handle(s): {leftovers!r}", ResourceWarning, source=self)
        self._cancel_dns()
        lib.uvl_close_all(self._uv, lib.uvl_on_close)
        # Let every close callback run (and requests in libuv's thread pool end).
        lib.uv_run(self._uv, lib.UV_RUN_DEFAULT)
        exc, _base.pending.exc = _base.pending.exc, None
        rc = lib.uv_loop_close(self._uv)
        if rc < 0:  # pragma: no cover - requests still pending in libuv
            _ABANDONED.append((self._uv, self._handles))
        for sock in (self._sig_rsock, self._sig_wsock):
            if sock is not None:
                sock.close()
        if exc is not None:
            raise exc

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_uv_closed", True):
            return
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            self._closed = True
        self._close_uv()
