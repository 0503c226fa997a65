"""add_signal_handler / remove_signal_handler, with asyncio's checks and
error messages.

A signal is received the way asyncio's loop receives it: Python's own C-level
handler, and at Python level ``_dispatch``, which queues a callback on every
loop that has a handler for it and wakes them.  Installing, replacing and
removing a handler are then each one sigaction() (``signal.signal``) or none,
so a signal always finds the old handler or the new one, never the default
action.  libuv's uv_signal_t cannot promise that: libuv resets a signal to
SIG_DFL when its last watcher stops, before Python can put its own handler
back, and a SIGINT or SIGTERM arriving in between killed the process
(blocking the signal meanwhile would only cover the calling thread).

SIGCHLD is the exception: libuv watches it itself while a child of uv_spawn
runs, and replacing its C handler (signal.signal) would lose every child's
exit, so a SIGCHLD handler is a uv_signal_t.  Its default action is to be
ignored, and a replaced watcher stops only once the new one runs.

Signals without a handler here keep Python's own handlers (Ctrl-C still
raises KeyboardInterrupt).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import warnings
import weakref
from asyncio import coroutines
from typing import TYPE_CHECKING, Any, Callable

from ._handles.signal import UVSignal
from ._typing import Handle, LoopBase

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._typing import Ts

__all__ = ["SignalsMixin"]

# The loops with a handler for each signal (weakly: a loop dropped without
# close() is closed by its __del__, which removes its handlers).
_receivers: dict[int, weakref.WeakSet[Any]] = {}


def _dispatch(signum: int, frame: Any) -> None:
    """Python-level handler of every signal a loop handles here.  It runs in
    the main thread between any two bytecodes, so it only queues and wakes."""
    for loop in list(_receivers.get(signum, ())):
        loop._signal_received(signum)


def _libuv_watches(sig: int) -> bool:
    return sig == getattr(signal, "SIGCHLD", None)


class SignalsMixin(LoopBase):
    """Unix signal handlers of :class:`Loop`."""

    _signal_handlers: dict[int, tuple[Handle, UVSignal | None]]
    _pid: int

    def _init_signals(self) -> None:
        self._signal_handlers = {}

    def _check_signal(self, sig: int) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig: int, callback: Callable[[Unpack[Ts]], object],
                           *args: Unpack[Ts]) -> None:
        """Call ``callback(*args)`` from the loop whenever signal ``sig``
        arrives.  Main thread only, as with asyncio."""
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if threading.current_thread() is not threading.main_thread():
            # asyncio reports signal.set_wakeup_fd()'s refusal, whose wording
            # differs between CPython and PyPy: ask it for its own.
            try:
                old = signal.set_wakeup_fd(-1)
            except ValueError as exc:
                raise RuntimeError(str(exc)) from None
            signal.set_wakeup_fd(old)
            raise RuntimeError("set_wakeup_fd only works in main thread of the main interpreter")
        handle = Handle(callback, args, self, None)
        old_entry = self._signal_handlers.get(sig)
        if _libuv_watches(sig):
            # The new watcher starts before the old one stops: libuv would
            # reset the signal to its default when its last watcher stops.
            self._signal_handlers[sig] = (handle, UVSignal(self, sig, self._on_signal))
            if old_entry is not None and old_entry[1] is not None:
                old_entry[1].close()
            return
        # Registered first: a signal arriving once the handler is installed
        # finds this loop.
        self._signal_handlers[sig] = (handle, None)
        _receivers.setdefault(sig, weakref.WeakSet()).add(self)
        # A running loop learns from now on of the signals other handlers get.
        self._signal_wakeup_needed()
        try:
            # Also validates the number as asyncio does (SIGKILL -> EINVAL).
            # When _dispatch is in place already, this swaps it for itself.
            signal.signal(sig, _dispatch)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            _receivers[sig].discard(self)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def _signal_received(self, sig: int) -> None:
        # Called from _dispatch, inside a signal handler: the deque append is
        # atomic wherever the loop's own code was interrupted.  In a child
        # after fork() the loop is unusable and its wake-up fd the parent's.
        if self._pid != os.getpid():
            return
        self._ready.append(Handle(self._on_signal, (sig,), self, None))
        self._write_to_self()

    def _signals_seen(self, data: bytes) -> None:
        """The signal wake-up fd's bytes, one signal number per delivery of a
        signal with a Python-level handler.  Those whose handler is _dispatch
        were queued by it.  A handler installed over it by other code
        (``old = signal.signal(sig, h)`` ... ``signal.signal(sig, old)``, as
        uvicorn's capture_signals does) still lets the loop's handler run, as
        on asyncio's loop, which learns of signals from its wake-up fd only."""
        for sig in data:
            entry = self._signal_handlers.get(sig)
            if entry is not None and entry[1] is None and signal.getsignal(sig) is not _dispatch:
                self._ready.append(Handle(self._on_signal, (sig,), self, None))

    def _on_signal(self, sig: int) -> None:
        entry = self._signal_handlers.get(sig)
        if entry is None:   # removed since: dropped, as asyncio's loop does
            return
        handle = entry[0]
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._ready.append(handle)

    def remove_signal_handler(self, sig: int) -> bool:
        """Remove the handler of ``sig``; True if there was one."""
        self._check_signal(sig)
        entry = self._signal_handlers.pop(sig, None)
        if entry is None:
            return False
        if entry[1] is not None:
            entry[1].close()
            return True
        receivers = _receivers.get(sig)
        if receivers is not None:
            receivers.discard(self)
        if not receivers:
            # Last step (a KeyboardInterrupt may follow it at once): Python's
            # handler replaces _dispatch in one sigaction().
            self._restore_python_handler(sig)
        return True

    def _restore_python_handler(self, sig: int) -> None:
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def _close_signals(self) -> None:
        if not self._signal_handlers:
            return
        if sys.is_finalizing():
            warnings.warn(f"Closing the loop {self!r} on interpreter shutdown stage, "
                          f"skipping signal handlers removal", ResourceWarning, source=self)
            for sig, (_handle, uvsig) in self._signal_handlers.items():
                if uvsig is not None:
                    uvsig.close()
                receivers = _receivers.get(sig)
                if receivers is not None:
                    receivers.discard(self)
            self._signal_handlers.clear()
            return
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
