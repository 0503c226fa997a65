"""Loop: asyncio's event loop with libuv underneath.

The generic parts of asyncio's loop (Handle and TimerHandle, the timer heap and
its cancellation bookkeeping, call_later/call_at, tasks and their factory,
executors, async generators, the exception handler, debug checks) come from
``asyncio.BaseEventLoop``.  The run loop itself is ours (``_run_once``): one
libuv iteration with a libuv timer armed for the earliest deadline, I/O
callbacks called by libuv, ``call_soon_threadsafe`` woken by a ``uv_async_t``
and Ctrl-C by the signal wake-up fd on a ``uv_poll_t``.
"""

from __future__ import annotations

import asyncio
import heapq
import importlib
import math
import os
import signal
import socket
import sys
import threading
import warnings
from asyncio import format_helpers
from contextvars import copy_context as _copy_context
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

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
from ._typing import Handle, TimerHandle

if TYPE_CHECKING:
    from contextvars import Context
    from typing import Callable

    from typing_extensions import Unpack

    from ._typing import TimerHandle, Ts

__all__ = ["Loop"]

# uv_loop_t memory that could not be released (a loop abandoned after fork(), or
# one libuv still had requests on): kept for the life of the process.
_ABANDONED: list[Any] = []


_UV_OPEN, _UV_BUSY, _UV_KEPT = lib.UVL_LOOP_OPEN, lib.UVL_LOOP_BUSY, lib.UVL_LOOP_KEPT
# How often close() resumes libuv's teardown after an exception between steps.
_TEARDOWN_TRIES = 10

# Longest single wait (asyncio caps its selector timeout the same way).
_MAX_WAIT = 24 * 3600.0
# Rebuild the timer heap once cancelled handles are over half of at least this many.
_REBUILD_MIN_TIMERS = 100


# How many times this process is a child of os.fork() (after_in_child hooks).
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


def _describe(handle: Handle) -> str:
    """How a slow callback is named in the debug log: its task, if it is a
    task's step, else the handle."""
    owner = getattr(handle._callback, "__self__", None)
    return repr(owner) if isinstance(owner, asyncio.Task) else str(handle)


_PYPY = sys.implementation.name == "pypy"


def _get_asyncgen_hooks() -> Any:
    """``sys.get_asyncgen_hooks()``."""
    return sys.get_asyncgen_hooks()


if _PYPY:
    try:   # (imported by name: no stubs for mypy to find)
        _residual_call = importlib.import_module("pypyjit").residual_call
    except (ImportError, AttributeError):   # (a PyPy without its JIT)
        pass
    else:
        def _get_asyncgen_hooks() -> Any:
            """``sys.get_asyncgen_hooks()``, called where PyPy's JIT does
            not trace it.  Traced, the read makes the compiled code depend on
            the hooks staying the same (a quasi-immutable field), so the
            ``set_asyncgen_hooks()`` that follows aborts every trace through
            a run call: run_until_complete() on its own would run 3x slower,
            as it does on asyncio's loop."""
            return _residual_call(sys.get_asyncgen_hooks)


_new_handle = object.__new__
_HAS_SETUP = hasattr(asyncio.BaseEventLoop, "_run_forever_setup")
# asyncio.events, whose running-loop functions are looked up at each call, as
# asyncio's loop does (CPython's tests swap them for the pure-Python ones).
_events = asyncio.events
_per_thread = _base._per_thread
_heappush = heapq.heappush
_heappop = heapq.heappop
_uvl_run = lib.uvl_run
# The same for the timeouts of nearly every iteration (-1, 0), with the loop
# as the only argument: cheaper to call through cffi.
_uvl_run_wait = lib.uvl_run_wait
_uvl_run_nowait = lib.uvl_run_nowait


def _report_callback_error(handle: Handle, exc: BaseException) -> None:
    """What Handle._run() does with an exception from its callback."""
    cb = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {"message": f"Exception in callback {cb}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


# _run_once's "no due timers popped": never appended to.
_NO_DUE: list[TimerHandle] = []

# Size of the loop-wide buffer every plain (non-buffered) stream reads into.
_READ_BUFFER_SIZE = 256 * 1024

# Every attribute of a Loop is a slot: asyncio.BaseEventLoop's (3.9-3.13) and
# ours (the mixins' too).  CPython (3.11+) keeps at most 30 attributes in an
# object's inline values; with more (a Loop has 45) its dict becomes an
# ordinary one, and every attribute and method lookup on the loop (asyncio's
# call_at, cancel, create_future... make several per operation) takes the
# slow path.  An attribute missing here still works, from the instance dict.
_ASYNCIO_ATTRS = (
    "_asyncgens", "_asyncgens_shutdown_called", "_clock_resolution", "_closed",
    "_coroutine_origin_tracking_enabled", "_coroutine_origin_tracking_saved_depth",
    "_current_handle", "_debug", "_default_executor", "_exception_handler",
    "_executor_shutdown_called", "_internal_fds", "_old_agen_hooks", "_ready",
    "_scheduled", "_stopping", "_task_factory", "_thread_id", "_timer_cancelled_count",
    "slow_callback_duration",
)
_OWN_ATTRS = (
    # _loop.py
    "_async", "_forks", "_handle_stats", "_handles", "_pending", "_pid", "_read_buffer",
    "_read_bytes", "_read_view", "_sig_poll", "_sig_rsock", "_sig_wsock", "_sig_saved",
    "_uv", "_uv_closed", "_uv_data", "_uv_state", "_wake_timer", "_io_scheduled",
    # the mixins
    "_dns_requests", "_poll_guard", "_polls", "_polls_changed", "_polls_idle", "_recv_buf_made", "_recv_bufs",
    "_servers", "_signal_handlers", "_subprocesses", "_transports", "_addr_cache",
    "_stream_fds",
    "_unix_server_sockets",
)


class Loop(SockMixin, StreamsMixin, DatagramMixin, PipesMixin, SignalsMixin,
           SubprocessMixin, DnsMixin, asyncio.BaseEventLoop):
    """An ``asyncio`` event loop whose I/O, timers and wake-ups come from libuv.

    Use it through :func:`uvloop_lite.new_event_loop`,
    :class:`uvloop_lite.EventLoopPolicy` or :func:`uvloop_lite.run`.
    """

    # asyncio's own loops have a selector here; some code (CPython's tests
    # among it) reads the attribute.  libuv is ours, so there is none.
    _selector = None

    __slots__ = _ASYNCIO_ATTRS + _OWN_ATTRS

    if TYPE_CHECKING:   # asyncio's, used by run_forever() (not in typeshed)
        _thread_id: int | None

        def _run_forever_setup(self) -> None: ...
        def _run_forever_cleanup(self) -> None: ...
        def _set_coroutine_origin_tracking(self, enabled: bool) -> None: ...
        def _asyncgen_firstiter_hook(self, agen: Any) -> None: ...
        def _asyncgen_finalizer_hook(self, agen: Any) -> None: ...

    def __init__(self) -> None:
        super().__init__()
        self._pid = os.getpid()
        self._forks = _forks[0]
        # The open handles (a dict used as a set: about half the memory of a
        # set's table, some 30 bytes a handle instead of 50 to 100).
        self._handles: dict[UVHandle, None] = {}
        self._handle_stats: dict[str, list[int]] = {}
        # malloc'd, not cffi memory: see "Closing the loop" in _handles/base.py.
        uv = lib.uvl_loop_new()
        if uv == ffi.NULL:
            raise MemoryError("cannot create a libuv loop")
        self._uv = uv
        self._uv_state = ffi.new("int *", _UV_OPEN)   # written by C: see shim.h
        self._uv_closed = False
        self._pending = _base.pending_slot()
        self._io_scheduled: list[TimerHandle] = []   # see _run_once
        self._read_buffer = ffi.new("char[]", _READ_BUFFER_SIZE)
        # Slicing the cffi buffer copies the bytes out (the quickest way);
        # the memoryview lends them without a copy.
        self._read_bytes = ffi.buffer(self._read_buffer)
        self._read_view = memoryview(self._read_bytes)
        self._uv_data = ffi.new("uvl_loop_data_t *", (self._read_buffer, _READ_BUFFER_SIZE))
        self._uv.data = self._uv_data
        self._init_sock()
        self._init_streams()
        self._init_signals()
        self._init_subprocess()
        self._init_dns()
        self._wake_timer = UVTimer(self)
        # Referenced on purpose: with nothing else to wait for, uv_run blocks
        # on it as asyncio's loop blocks on its self-pipe.
        self._async = UVAsync(self)
        self._uv_data.wake = self._wake_timer._ptr
        self._sig_rsock: socket.socket | None = None
        self._sig_wsock: socket.socket | None = None
        self._sig_poll: UVPoll | None = None
        # The wake-up fd's previous value while a run call has it installed; ()
        # when not installed, None when run_forever() would install it.
        self._sig_saved: tuple[int] | tuple[()] | None = ()

    # -- libuv handle bookkeeping ----------------------------------------------

    def _handle_opened(self, handle: UVHandle) -> None:
        self._handles[handle] = None
        stats = self._handle_stats.get(type(handle).__name__)
        if stats is None:
            stats = self._handle_stats[type(handle).__name__] = [0, 0]
        stats[0] += 1

    def _handle_closed(self, handle: UVHandle) -> None:
        self._handles.pop(handle, None)
        self._handle_stats[type(handle).__name__][1] += 1

    def _uv_handle_stats(self) -> dict[str, tuple[int, int]]:
        """{handle class: (opened, closed)} over the loop's life (for tests)."""
        return {name: (o, c) for name, (o, c) in self._handle_stats.items()}

    def set_debug(self, enabled: bool) -> None:
        """Turn debug mode on or off (asyncio's checks and slow-callback log;
        the transports' reads are timed too, see _handles.base.TimedContext)."""
        super().set_debug(enabled)
        # (asyncio's __init__ calls this before the handles exist.)
        for handle in list(getattr(self, "_handles", ())):
            changed = getattr(handle, "_debug_changed", None)
            if changed is not None:
                changed(bool(enabled))

    def _internal_handles(self) -> list[UVHandle]:
        names = ("_wake_timer", "_async", "_sig_poll")
        return [h for h in (getattr(self, n, None) for n in names) if h is not None]

    # -- the run loop ------------------------------------------------------------

    # One iteration of the loop, in asyncio's order: first the callbacks that
    # were ready when the iteration began, then the I/O that libuv reports
    # (libuv calls the transports, which call their protocols at once instead
    # of queueing a Handle per event), then the TimerHandles that are due --
    # unless the first callbacks scheduled some: then the due timers wait for
    # the next iteration, behind those (asyncio looks at its timers before
    # running the ready callbacks, so a timer created by one, even already
    # due, never overtakes a callback scheduled in the same iteration).
    # Callbacks scheduled by any of these wait for the next iteration.  The
    # poll blocks only when nothing is ready: until the earliest deadline (a
    # libuv timer rounded up to the next millisecond, so a TimerHandle never
    # runs early), an I/O event, or a wake-up from call_soon_threadsafe().

    def call_soon(self, callback: Callable[[Unpack[Ts]], object], *args: Unpack[Ts],
                  context: Context | None = None) -> Handle:
        """Schedule ``callback(*args)`` for the next iteration, in FIFO order."""
        if self._debug:   # asyncio's checks: thread, callback type, traceback
            handle = super().call_soon(callback, *args, context=context)
            if handle._source_traceback:
                del handle._source_traceback[-1]   # this frame
            return handle
        if self._closed:
            raise RuntimeError("Event loop is closed")
        # Handle(callback, args, self, context), without the Python-level
        # __init__ call and its debug check.
        handle = _new_handle(Handle)
        handle._context = _copy_context() if context is None else context
        handle._loop = self
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[[Unpack[Ts]], object],
                   *args: Unpack[Ts], context: Context | None = None) -> TimerHandle:
        """Schedule ``callback(*args)`` in ``delay`` seconds."""
        if self._debug or (type(delay) is not float and type(delay) is not int):
            # asyncio's own, with its checks and errors for odd delays (None...)
            timer = super().call_later(delay, callback, *args, context=context)
            if timer._source_traceback:
                del timer._source_traceback[-1]   # this frame
            return timer
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(self, when: float, callback: Callable[[Unpack[Ts]], object],
                *args: Unpack[Ts], context: Context | None = None) -> TimerHandle:
        """Schedule ``callback(*args)`` at loop time ``when``."""
        if self._debug or self._closed or type(when) is not float:
            # asyncio's own: debug checks, its errors, other types of deadline
            timer = super().call_at(when, callback, *args, context=context)
            if timer._source_traceback:
                del timer._source_traceback[-1]   # this frame
            return timer
        # TimerHandle(when, callback, args, self, context) without the two
        # Python-level __init__ calls and their debug check, as in call_soon.
        timer = _new_handle(TimerHandle)
        timer._context = _copy_context() if context is None else context
        timer._loop = self
        timer._callback = callback
        timer._args = args
        timer._cancelled = False
        timer._repr = None
        timer._source_traceback = None
        timer._when = when
        timer._scheduled = True   # (heappush compares _when only)
        _heappush(self._scheduled, timer)
        return timer

    def _run_once(self) -> None:
        ready = self._ready
        if ready:
            if self._debug or _PYPY:
                self._run_ready(len(ready))
            else:
                # _run_ready() inlined: one Python call less per iteration on
                # CPython (PyPy's JIT, which inlines the call, does better
                # with the loop in a function of its own).
                popleft = ready.popleft
                for _ in range(len(ready)):
                    h = popleft()
                    if h._cancelled:
                        continue
                    try:
                        h._context.run(h._callback, *h._args)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as err:
                        _report_callback_error(h, err)
                        err = None  # type: ignore[assignment]   # see _run_ready
                del h   # (ready was not empty: bound)
        # What those callbacks scheduled runs before any timer due now (asyncio
        # looks at its timers only in the next iteration, after those).
        queued = len(ready)
        scheduled = self._scheduled
        if scheduled:
            self._drop_cancelled_timers()
            scheduled = self._scheduled
        if ready or self._stopping:
            ms = 0
        elif scheduled:
            # A NaN deadline (call_later(nan)) is due at once, as in asyncio:
            # every comparison with NaN is False, so test for "later", not
            # "due", and ceil() only ever sees a number in (0, _MAX_WAIT].
            delay = scheduled[0]._when - self.time()
            ms = math.ceil(min(delay, _MAX_WAIT) * 1000.0) if delay > 0 else 0
        else:
            ms = -1
        if self._polls_changed:
            self._sync_polls()
        if ms and self._sig_saved is None:   # the first wait of this run call
            self._sig_saved = self._install_signal_wakeup()
        # Timers that the I/O callbacks create go to a list of their own: in
        # asyncio those callbacks are Handles of this iteration, so even a
        # timer already due waits for the next one, behind what they queued
        # with call_soon(). They join the heap after the due timers are out.
        io_timers = self._io_scheduled
        self._scheduled = io_timers
        try:
            if ms < 0:
                _uvl_run_wait(self._uv)
            elif ms:
                _uvl_run(self._uv, ms)
            else:
                _uvl_run_nowait(self._uv)
        finally:
            self._scheduled = scheduled
        pending = self._pending
        due: list[TimerHandle] | None = _NO_DUE
        if scheduled and pending.exc is None:
            # Due timers go ahead of what the I/O callbacks just scheduled, and
            # run now (any left by an exception run first next time) unless the
            # ready callbacks above scheduled some.
            end = self.time() + self._clock_resolution
            # Nothing queued meanwhile: the due timers go straight to the
            # ready queue; else to a list, to go ahead of what is queued.
            if ready:
                due = []
                add = due.append
            else:
                due = None
                add = ready.append
            while scheduled and not scheduled[0]._when >= end:   # NaN: due
                handle = _heappop(scheduled)
                handle._scheduled = False
                add(handle)
        if io_timers:
            self._merge_io_timers(io_timers)
        if pending.exc is not None:
            exc = _base.take_pending(pending, self)
            raise exc
        if due is None:
            if ready:
                self._run_ready(len(ready))
            return
        if due and queued:
            # Behind what the callbacks before the poll scheduled, for the
            # next iteration: rotate those out of the way and back.
            ready.rotate(-queued)
            due.reverse()
            ready.extendleft(due)
            ready.rotate(queued)
        elif due:
            due.reverse()
            ready.extendleft(due)
            count, due = len(due), None
            self._run_ready(count)

    def _run_ready(self, count: int) -> None:
        """Run the first ``count`` handles of the ready queue."""
        # A frame kept alive by a traceback keeps its locals: the handle is
        # dropped once run, or a finished task would live on through it.
        popleft = self._ready.popleft
        handle = None
        if self._debug:
            for _ in range(count):
                handle = popleft()
                if not handle._cancelled:
                    self._run_timed(handle)
        else:
            # Handle._run() inlined: one Python call less per callback.
            for _ in range(count):
                handle = popleft()
                if handle._cancelled:
                    continue
                try:
                    handle._context.run(handle._callback, *handle._args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    _report_callback_error(handle, exc)
                    exc = None  # type: ignore[assignment]   # dropped, as handle is
        handle = None

    def _run_timed(self, handle: Handle) -> None:
        # Debug mode: remember the running handle and log slow callbacks.
        self._current_handle = handle
        try:
            t0 = self.time()
            handle._run()
            dt = self.time() - t0
            if dt >= self.slow_callback_duration:
                logger.warning("Executing %s took %.3f seconds", _describe(handle), dt)
        finally:
            self._current_handle = None
            handle = None  # type: ignore[assignment]   # see _run_ready

    def _merge_io_timers(self, io_timers: list[TimerHandle]) -> None:
        """Move the timers the I/O callbacks created into the heap."""
        scheduled = self._scheduled
        for timer in io_timers:
            _heappush(scheduled, timer)
        io_timers.clear()

    def _drop_cancelled_timers(self) -> None:
        """Forget cancelled TimerHandles: rebuild the heap when they are most
        of a large one, else pop those at its head."""
        scheduled = self._scheduled
        if (len(scheduled) > _REBUILD_MIN_TIMERS
                and self._timer_cancelled_count * 2 > len(scheduled)):
            live = []
            for handle in scheduled:
                if handle._cancelled:
                    handle._scheduled = False
                else:
                    live.append(handle)
            heapq.heapify(live)
            self._scheduled = live
            self._timer_cancelled_count = 0
            return
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            heapq.heappop(scheduled)._scheduled = False

    def _write_to_self(self) -> None:
        self._async.send()

    def _check_fork(self) -> None:
        # getpid() is a system call: asked only once a fork has happened.
        if _forks[0] != self._forks and os.getpid() != self._pid:
            raise RuntimeError(
                "this event loop was created in another process; after fork() "
                "create a new loop in the child")

    def run_forever(self) -> None:
        """Run until :meth:`stop` is called."""
        # (Every run_until_complete() call comes here: the checks are inlined,
        # the methods called only to raise their errors.)
        if _forks[0] != self._forks:
            self._check_fork()
        # Fail as asyncio does before touching libuv or the wake-up fd.
        if self._closed:
            self._check_closed()
        if self._thread_id is not None or _events._get_running_loop() is not None:
            self._check_running()
        self._pending = _per_thread.slot   # this thread's (_base.pending_slot())
        if self._sig_poll is None and threading.current_thread() is threading.main_thread():
            self._open_signal_wakeup()
        # The signal wake-up fd is installed before the first wait for I/O
        # (_run_once), not here: a run call that never waits, such as
        # run_until_complete() of a coroutine that does not block, leaves it
        # alone.  With signal handlers it is there from the start, as
        # asyncio's own is while its loop has handlers.
        self._sig_saved = self._install_signal_wakeup() if self._signal_handlers else None
        try:
            if _HAS_SETUP:   # 3.13+: asyncio's own steps, for subclasses too
                try:
                    self._run_forever_setup()
                    while True:
                        self._run_once()
                        if self._stopping:
                            break
                finally:
                    self._run_forever_cleanup()
            else:
                # What BaseEventLoop.run_forever() does (3.9-3.12), in this
                # frame, one call less per run call; on PyPy the hooks are
                # read outside the JIT's traces (_get_asyncgen_hooks).
                self._set_coroutine_origin_tracking(self._debug)
                hooks = _get_asyncgen_hooks()
                try:
                    self._thread_id = threading.get_ident()
                    sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                                           finalizer=self._asyncgen_finalizer_hook)
                    _events._set_running_loop(self)
                    while True:
                        self._run_once()
                        if self._stopping:
                            break
                finally:
                    self._stopping = False
                    self._thread_id = None
                    _events._set_running_loop(None)
                    self._set_coroutine_origin_tracking(False)
                    sys.set_asyncgen_hooks(*hooks)
        finally:
            saved, self._sig_saved = self._sig_saved, ()
            if saved:
                self._restore_signal_wakeup(saved)

    # Ctrl-C: Python's C-level signal handler only sets a flag, and libuv would
    # go back to sleep in epoll_wait after EINTR.  While the loop waits in the
    # main thread, the signal wake-up fd points at a socket libuv polls, so the
    # loop wakes, Python runs its handler (raising KeyboardInterrupt, say) and
    # the exception leaves run_forever() as it would on asyncio's loop.  A
    # signal arriving while the loop runs Python code is handled by Python
    # between two bytecodes, as on asyncio's loop.

    def _install_signal_wakeup(self) -> tuple[int] | tuple[()]:
        """Point the signal wake-up fd at the loop; return ``(old fd,)``, or
        ``()`` where it cannot be (outside the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return ()
        if self._sig_poll is None:
            self._open_signal_wakeup()
        try:
            old = signal.set_wakeup_fd(self._sig_wsock.fileno())  # type: ignore[union-attr]
        except (ValueError, OSError):
            return ()
        return (old,)

    def _open_signal_wakeup(self) -> None:
        """The socket pair the wake-up fd writes to, and its poll handle
        (once, by the first run call in the main thread)."""
        self._sig_rsock, self._sig_wsock = socket.socketpair()
        self._sig_rsock.setblocking(False)
        self._sig_wsock.setblocking(False)
        self._sig_poll = UVPoll(self, self._sig_rsock.fileno(), self._on_signal_wakeup)
        self._sig_poll.start(READABLE)
        self._sig_poll.unref()

    def _signal_wakeup_needed(self) -> None:
        """A handler was added (add_signal_handler) while the loop runs: the
        wake-up fd is installed now if this run call has not done it yet."""
        if self._sig_saved is None:
            self._sig_saved = self._install_signal_wakeup()

    def _restore_signal_wakeup(self, saved: tuple[int]) -> None:
        try:
            signal.set_wakeup_fd(saved[0])
        except (ValueError, OSError):
            pass

    def _on_signal_wakeup(self, poll: UVPoll, events: int, status: int) -> None:
        try:   # (the poll of _sig_rsock calls this)
            while True:
                data = self._sig_rsock.recv(4096)  # type: ignore[union-attr]
                if not data:
                    break
                self._signals_seen(data)
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
        try:
            super().close()
        finally:
            self._close_uv()

    def _close_uv(self) -> None:
        """Release libuv: the rules are in _handles/base.py ("Closing the
        loop").  Whatever the Python-level steps raise (signal handlers outside
        the main thread, a warning turned into an error, a KeyboardInterrupt),
        libuv's teardown runs to its end; the first error, and the warning
        about handles left open, come after it."""
        if self._uv_closed:
            return
        self._uv_closed = True
        if os.getpid() != self._pid:
            # Closing handles here would edit the parent's epoll set, which the
            # child shares: abandon the memory instead.
            _ABANDONED.append((self._uv, self._handles))
            return
        errors: list[BaseException] = []
        leftovers: list[UVHandle] = []
        try:
            for step in (self._close_signals, self._orphan_subprocesses,
                         self._close_servers, self._close_polls,
                         self._transports_outlive_loop):
                try:
                    step()
                except BaseException as exc:   # raised once libuv is closed
                    errors.append(exc)
            internal = self._internal_handles()
            leftovers = [h for h in self._handles if h.is_open() and h not in internal]
        finally:
            self._teardown_uv(errors)
        try:
            if leftovers:
                warnings.warn(f"{self!r} closed with {len(leftovers)} open libuv "
                              f"handle(s): {leftovers!r}", ResourceWarning, source=self)
        finally:
            if errors:
                first: BaseException | None
                first = errors[0]
                errors, leftovers = [], []
                try:
                    raise first
                finally:
                    first = None

    def _transports_outlive_loop(self) -> None:
        """Stream transports left open keep a socket of their own, as
        asyncio's do (``UVStreamTransport._outlive_loop``)."""
        for handle in list(self._handles):
            outlive = getattr(handle, "_outlive_loop", None)
            if outlive is not None:
                outlive()

    def _teardown_uv(self, errors: list[BaseException]) -> None:
        """Close every handle, run their close callbacks, close the loop (or
        hand it to a thread that closes it once libuv's thread pool is done
        with it).  Repeated until done: whatever is raised meanwhile (a
        KeyboardInterrupt between two steps, say) is recorded in ``errors``."""
        state = self._uv_state
        for _ in range(_TEARDOWN_TRIES):
            try:
                self._teardown_step(state, errors)
            except BaseException as exc:
                errors.append(exc)
            if state[0] != _UV_OPEN and state[0] != _UV_BUSY:
                break
        else:   # pragma: no cover - a step fails every time: keep it all
            state[0] = _UV_KEPT
            _ABANDONED.append((self._uv, self._handles))
        self._uv = ffi.NULL
        for sock in (self._sig_rsock, self._sig_wsock):
            if sock is not None:
                sock.close()

    def _teardown_step(self, state: Any, errors: list[BaseException]) -> None:
        if state[0] == _UV_OPEN:
            # The base close, libuv's only (no transport logic): each wrapper
            # is CLOSING before libuv can call it back, so its callbacks only
            # release memory, and no handle is closed twice.
            for handle in list(self._handles):
                UVHandle.close(handle)
            self._cancel_dns()   # those not started yet end now, as cancelled
            slot = _base.pending_slot()
            saved, slot.exc, slot.later = (slot.exc, slot.later), None, []
            try:
                lib.uvl_loop_finish(self._uv, lib.uvl_on_close, state)
            finally:
                if slot.exc is not None:   # raised by a close callback
                    errors.append(slot.exc)
                    errors.extend(slot.later)
                slot.exc, slot.later = saved
        if state[0] == _UV_BUSY:
            # A lookup still runs in libuv's thread pool (asyncio's close does
            # not wait for its executor either): its request becomes C's, and
            # a thread closes and frees the loop once the lookup ends.
            self._abandon_dns()
            lib.uvl_loop_close_later(self._uv, state)
        if state[0] == _UV_KEPT:   # pragma: no cover - libuv would not let go
            _ABANDONED.append((self._uv, self._handles))

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_uv_closed", True):
            return
        try:
            if not self.is_closed():
                self._closed = True
                _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
        finally:   # also when the warning is an error (-W error)
            self._close_uv()
