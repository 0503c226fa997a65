"""UVSignal (uv_signal_t): one signal number watched by libuv, for a SIGCHLD
handler (see _signals.py for why only that one).

libuv installs its own C-level handler for the signal when its first watcher
(of any loop) starts and resets the signal to SIG_DFL when its last one stops;
it reports the signal from its signal pipe inside ``uv_run``, so a signal that
arrives while the loop is not running is handled as soon as it runs again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .._errors import uv_error
from .._ffi import ffi, lib
from .base import OPEN, UVHandle, callback_error

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["UVSignal"]


class UVSignal(UVHandle):
    """Calls ``callback(signum)`` from the loop each time ``signum`` arrives."""

    _ctype = "uv_signal_t *"

    def __init__(self, loop: LoopBase, signum: int, callback: Callable[[int], Any]) -> None:
        super().__init__(loop)
        self._callback = callback
        self._init_done(lib.uv_signal_init(loop._uv, self._ptr))
        rc = lib.uv_signal_start(self._ptr, lib.uvl_on_signal, signum)
        if rc < 0:
            self.close()
            raise uv_error(rc)
        # Like asyncio's signal handlers, it does not keep the loop alive.
        self.unref()


@ffi.def_extern(onerror=callback_error)
def uvl_on_signal(handle: Any, signum: int) -> None:
    data = handle.data
    if data != ffi.NULL:
        sig = ffi.from_handle(data)
        if sig._state == OPEN:
            sig._callback(signum)
