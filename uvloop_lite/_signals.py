"""add_signal_handler / remove_signal_handler on uv_signal_t, with asyncio's
checks and error messages.  Signals without a handler here keep Python's own
handlers (Ctrl-C still raises KeyboardInterrupt)."""

from __future__ import annotations

import errno
import signal
import sys
import threading
import warnings
from asyncio import coroutines, events
from typing import Any

from ._handles.signal import UVSignal, watched

__all__ = ["SignalsMixin"]


def _noop(signum: int, frame: Any) -> None:
    """Python-level placeholder: libuv's C handler does the work."""


def _libuv_needs(sig: int) -> bool:
    """Whether libuv's own C handler must stay installed for ``sig``: another
    watcher (of any loop) has it, or it is SIGCHLD, which libuv watches itself
    while a child started by uv_spawn runs.  Calling signal.signal() then would
    replace that handler for good (libuv installs it for the first watcher
    only) and, for SIGCHLD, lose the exit of every running child."""
    return sig == getattr(signal, "SIGCHLD", None) or watched(sig)


class SignalsMixin:
    """Unix signal handlers of :class:`Loop`."""

    _signal_handlers: dict[int, tuple[events.Handle, UVSignal]]

    def _init_signals(self) -> None:
        self._signal_handlers = {}

    def _check_signal(self, sig: int) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig: int, callback: Any, *args: Any) -> None:
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
        if not _libuv_needs(sig):
            try:
                # Validates the number as asyncio does (SIGKILL -> EINVAL) and
                # keeps Python's view of the disposition honest.
                signal.signal(sig, _noop)
                signal.siginterrupt(sig, False)
            except OSError as exc:
                self._restore_python_handler(sig)
                if exc.errno == errno.EINVAL:
                    raise RuntimeError(f"sig {sig:d} cannot be caught")
                raise
        handle = events.Handle(callback, args, self, None)
        old = self._signal_handlers.pop(sig, None)
        if old is not None:
            old[1].close()
        self._signal_handlers[sig] = (handle, UVSignal(self, sig, self._on_signal))

    def _on_signal(self, sig: int) -> None:
        entry = self._signal_handlers.get(sig)
        if entry is None:
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
        entry[1].close()
        if not _libuv_needs(sig):
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
            for _handle, uvsig in self._signal_handlers.values():
                uvsig.close()
            self._signal_handlers.clear()
            return
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
