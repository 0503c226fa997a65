"""UVSignal (uv_signal_t): one signal number watched by libuv for
``add_signal_handler``.

libuv installs its own C-level handler for the signal and reports it from its
signal pipe inside ``uv_run``, so a signal that arrives while the loop is not
running is handled as soon as it runs again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .._errors import uv_error
from .._ffi import ffi, lib
from .base import OPEN, UVHandle, callback_error

if TYPE_CHECKING:
    from .._loop import Loop

__all__ = ["UVSignal", "watched"]

# Started watchers per signal number, over every loop of the process: libuv
# installs its C handler when the first starts and resets the signal to SIG_DFL
# when the last stops.  Replacing the disposition (signal.signal()) while one
# runs would silence them all, since libuv would not install its handler again.
_watching: dict[int, int] = {}


def watched(signum: int) -> bool:
    """Whether some UVSignal (of any loop) watches ``signum``."""
    return _watching.get(signum, 0) > 0


class UVSignal(UVHandle):
    """Calls ``callback(signum)`` from the loop each time ``signum`` arrives."""

    _ctype = "uv_signal_t *"

    def __init__(self, loop: Loop, signum: int, callback: Callable[[int], Any]) -> None:
        super().__init__(loop)
        self._callback = callback
        self._init_done(lib.uv_signal_init(loop._uv, self._ptr))
        self._signum: int | None = None
        rc = lib.uv_signal_start(self._ptr, lib.uvl_on_signal, signum)
        if rc < 0:
            self.close()
            raise uv_error(rc)
        self._signum = signum
        _watching[signum] = _watching.get(signum, 0) + 1
        # Like asyncio's signal handlers, it does not keep the loop alive.
        self.unref()

    def close(self) -> None:
        # uv_close() stops the watcher at once.
        if self._state == OPEN and self._signum is not None:
            _watching[self._signum] -= 1
            self._signum = None
        super().close()


@ffi.def_extern(onerror=callback_error)
def uvl_on_signal(handle: Any, signum: int) -> None:
    data = handle.data
    if data != ffi.NULL:
        sig = ffi.from_handle(data)
        if sig._state == OPEN:
            sig._callback(signum)
