"""UVHandle: the lifetime protocol every libuv handle wrapper follows, and the
last-resort handler for exceptions escaping a callback from libuv.

Handles
-------
libuv owns no memory: every ``uv_*_t`` lives in memory Python allocated
(``ffi.new``), which cffi frees when the owning cdata is collected.  libuv
keeps raw pointers to it from ``uv_*_init`` until the close callback has run,
and calls back into Python through them.  So, for that whole span, two things
stay alive: the C memory (``self._ptr``) and the wrapper (``ptr.data`` is
``ffi.new_handle(self)``, turned back into ``self`` by the callbacks).

The loop holds the wrapper in ``loop._handles`` from a successful init until
``uvl_on_close``; the wrapper holds ``_ptr`` and ``_self_handle``.  ``close()``
only asks libuv (``uv_close``); references go in ``_on_close``, after libuv's
last use.  No ``__del__`` calls libuv and no handle gets ``ffi.gc``.

States: ``NEW`` -> ``OPEN`` (init succeeded) -> ``CLOSING`` (uv_close called)
-> ``CLOSED`` (close callback ran).  ``UVHandle.close`` is the one place that
calls ``uv_close``, guarded by the state, so a handle is closed exactly once.
Once a handle is not ``OPEN`` its callbacks only release memory (a write or
send libuv reports, cancelled or finished, pops its request and returns): no
protocol code runs for a closing handle.  Requests (``uv_write_t`` and
friends) are kept alive by whatever issued them, until their callback, which
libuv always makes (with ``UV_ECANCELED`` at the latest when the handle
closes).

Closing the loop
----------------
``loop.close()`` either finishes libuv's teardown or keeps libuv's memory for
good, whatever raises on the way and in whatever thread:

* The Python steps first (signal handlers, subprocesses, servers, polls);
  what they raise (``ValueError`` outside the main thread, a warning turned
  into an error, a ``KeyboardInterrupt``) is kept and raised only once libuv
  is closed.  So is the ``ResourceWarning`` about handles left open.
* Then every wrapper still in ``loop._handles`` gets the base
  ``UVHandle.close`` (no transport logic): ``CLOSING`` before libuv can call
  back, so no protocol callback runs from inside ``close()``.
* ``uvl_loop_finish`` (C) closes anything left, runs non-blocking iterations
  until every close callback ran, then ``uv_loop_close`` and frees the loop.
  Its progress is a state C writes into Python memory before returning, so
  the teardown is resumed, never repeated, after an exception between steps.
* The ``uv_loop_t`` is malloc'd: freed only after ``uv_loop_close``
  succeeded, never by the garbage collector (libuv's process-wide signal
  tree and thread pool may point into it).  Failing that, it is kept.
* ``close()`` does not wait for the thread pool (asyncio's close does not wait
  for its executor).  A resolver request still running is abandoned to C:
  its memory is malloc'd, its callback becomes a C function that frees it and
  its result, and a detached C thread runs the loop until the worker is done,
  then closes and frees it.  No Python runs there.
* An unclosed loop's ``__del__`` does the same, also when its warning is an
  error.  In a fork child the parent's loop is never touched: its memory is
  kept (``_ABANDONED``).

Exceptions
----------
A callback first recovers ``self`` from ``data`` (returning if it is NULL) and
deals with its own errors; ``callback_error`` (the ``onerror`` of every
``def_extern``) is the net under that: nothing may unwind into C.  What it
catches (``KeyboardInterrupt``, ``SystemExit``) waits in this thread's slot
and is raised once ``uv_run`` returns; more of them in the same iteration are
raised by the next run calls, one each, as asyncio's ready queue does.
"""

from __future__ import annotations

import threading
from asyncio.log import logger
from typing import TYPE_CHECKING, Any

from .._errors import uv_error
from .._ffi import ffi, lib
from .._typing import Handle

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["UVHandle", "NEW", "OPEN", "CLOSING", "CLOSED", "callback_error", "pending_slot",
           "TimedContext", "debug_context"]

NEW, OPEN, CLOSING, CLOSED = range(4)


class _Slot:
    """Where a BaseException raised inside a libuv callback waits for the
    loop to re-raise it once uv_run() has returned; ``later`` holds those
    raised after it in the same iteration (each leaves its own run call,
    as with asyncio, where each is a callback of the ready queue)."""

    __slots__ = ("exc", "later")

    def __init__(self) -> None:
        self.exc: BaseException | None = None
        self.later: list[BaseException] = []


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.slot = _Slot()


_per_thread = _PerThread()


def pending_slot() -> _Slot:
    """This thread's slot (the loop keeps it: a plain attribute is much
    cheaper to test each iteration than a thread-local one)."""
    return _per_thread.slot


def callback_error(exc_type: type, exc: BaseException, tb: Any) -> None:
    """``onerror`` of every extern "Python" callback.

    KeyboardInterrupt and SystemExit (and anything else escaping a handle's own
    handling) are kept for the loop to raise after uv_run() returns, exactly as
    they would escape a callback run by asyncio's loop.
    """
    if exc is None:
        exc = exc_type()
    if exc.__traceback__ is None and tb is not None:
        exc = exc.with_traceback(tb)
    slot = _per_thread.slot
    if slot.exc is None:
        slot.exc = exc
    else:  # a second one in the same iteration: raised by the next run call
        slot.later.append(exc)


class TimedContext:
    """Debug mode: a transport's read context that logs a call taking the
    loop's ``slow_callback_duration`` or more.  asyncio's loop runs each read
    of a transport as a Handle and logs the slow ones; ours are libuv
    callbacks, which run the protocol through this context's :meth:`run`."""

    __slots__ = ("context", "transport")

    def __init__(self, context: Any, transport: Any) -> None:
        self.context = context
        self.transport = transport

    def run(self, fn: Any, /, *args: Any) -> Any:
        loop = self.transport._loop
        t0 = loop.time()
        try:
            return self.context.run(fn, *args)
        finally:
            dt = loop.time() - t0
            if dt >= loop.slow_callback_duration:
                name = getattr(fn, "__qualname__", None) or repr(fn)
                logger.warning("Executing %s took %.3f seconds",
                               f"<I/O callback {name}() of {self.transport!r}>", dt)

    def copy(self) -> Any:
        return self.context.copy()


def debug_context(transport: Any, context: Any, debug: bool) -> Any:
    """``context`` as a transport's read context: timed (:class:`TimedContext`)
    in debug mode, the context itself otherwise."""
    if type(context) is TimedContext:
        context = context.context
    if debug and context is not None:
        return TimedContext(context, transport)
    return context


def _reraise(exc: BaseException) -> None:
    raise exc


def take_pending(slot: _Slot, loop: LoopBase) -> BaseException:
    """The exception to raise now; any raised after it in the same iteration
    go to the front of the loop's ready queue, to be raised in turn by the
    next run calls (callbacks the exception skipped go on)."""
    exc, slot.exc = slot.exc, None
    later = slot.later
    if later:
        slot.later = []
        loop._ready.extendleft(
            reversed([Handle(_reraise, (e,), loop, None) for e in later]))
    return exc   # type: ignore[return-value]   # the caller saw slot.exc set


class UVHandle:
    """Owns one ``uv_*_t``; subclasses call their ``uv_*_init`` and then
    ``_init_done(rc)``."""

    # Empty __slots__, so that the stream transports (also asyncio's slotted
    # Transports) can have slots only, and no __dict__: they list these
    # attributes (_ptr, _self_handle, _state, _loop) themselves.  Subclasses
    # without __slots__ get a __dict__ as usual.  (Hidden from mypy, which
    # would take the class for one without a __dict__.)
    if not TYPE_CHECKING:
        __slots__ = ()
    _ctype = "uv_handle_t *"

    def __init__(self, loop: LoopBase) -> None:
        if loop._uv_closed:
            raise RuntimeError("Event loop is closed")
        if loop._polls_idle:
            # Before libuv watches another fd: see _sock.py on idle polls.
            loop._close_idle_polls()
        self._loop = loop
        self._ptr = ffi.new(self._ctype)
        self._self_handle: Any = None
        self._state = NEW

    @property
    def _handle(self) -> Any:
        """``_ptr`` as the ``uv_handle_t *`` of libuv's generic calls (made
        when needed: a cast kept per handle would be some 50 bytes each)."""
        return ffi.cast("uv_handle_t *", self._ptr)

    def _init_done(self, rc: int) -> None:
        """Finish init: on failure libuv never saw the memory, so just raise."""
        if rc < 0:
            self._state = CLOSED
            raise uv_error(rc)
        self._self_handle = ffi.new_handle(self)
        self._ptr.data = self._self_handle
        self._state = OPEN
        self._loop._handle_opened(self)

    def _ensure_open(self) -> None:
        if self._state != OPEN:
            raise RuntimeError(f"{type(self).__name__} is closed")

    def is_open(self) -> bool:
        return self._state == OPEN

    def close(self) -> None:
        """Ask libuv to close the handle; memory is released in _on_close."""
        if self._state == OPEN:
            self._state = CLOSING
            lib.uv_close(self._handle, lib.uvl_on_close)

    def ref(self) -> None:
        if self._state == OPEN:
            lib.uv_ref(self._handle)

    def unref(self) -> None:
        if self._state == OPEN:
            lib.uv_unref(self._handle)

    def _on_close(self) -> None:
        self._state = CLOSED
        self._ptr.data = ffi.NULL
        self._loop._handle_closed(self)
        # libuv is done with both: the handle for ``data`` (which refers back
        # to the wrapper: dropping it ends that reference cycle, so a closed
        # wrapper goes as soon as nothing else holds it) and, with the
        # wrapper, the memory.
        self._self_handle = None

    def __repr__(self) -> str:
        state = ("new", "open", "closing", "closed")[self._state]
        return f"<{type(self).__name__} {state}>"


@ffi.def_extern(onerror=callback_error)
def uvl_on_close(handle: Any) -> None:
    data = handle.data
    if data != ffi.NULL:
        ffi.from_handle(data)._on_close()
