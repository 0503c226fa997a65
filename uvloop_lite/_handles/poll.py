"""UVPoll (uv_poll_t): readiness of a file descriptor libuv does not own.

Serves ``add_reader``/``add_writer`` and the loop's signal wake-up socket.  A
``uv_poll_t`` watches one fd for both directions, so the wrapper keeps the
reader and writer callbacks and restarts the poll with the union of the
events still wanted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .._errors import uv_error
from .._ffi import ffi, lib
from .base import OPEN, UVHandle, callback_error

if TYPE_CHECKING:
    from .._loop import Loop

__all__ = ["UVPoll", "READABLE", "WRITABLE", "DISCONNECT"]

READABLE: int = lib.UV_READABLE
WRITABLE: int = lib.UV_WRITABLE
DISCONNECT: int = lib.UV_DISCONNECT


class UVPoll(UVHandle):
    """Calls ``callback(poll, events, status)`` when the fd is ready; ``status``
    < 0 is a libuv error (the fd was closed under the watcher, for example).
    ``reader``/``writer`` hold the asyncio Handles of add_reader/add_writer."""

    _ctype = "uv_poll_t *"

    def __init__(self, loop: Loop, fd: int, callback: Callable[[UVPoll, int, int], Any]) -> None:
        super().__init__(loop)
        self.fd = fd
        self.reader: Any = None
        self.writer: Any = None
        self.sock: Any = None   # the socket object of the sock_* calls using it
        self._events = 0
        self._callback = callback
        self._init_done(lib.uv_poll_init(loop._uv, self._ptr, fd))

    @property
    def events(self) -> int:
        return self._events

    def start(self, events: int) -> None:
        """Watch for exactly ``events`` (0 stops watching)."""
        self._ensure_open()
        if events == self._events:
            return
        if events:
            rc = lib.uv_poll_start(self._ptr, events, lib.uvl_on_poll)
            if rc < 0:
                raise uv_error(rc)
        else:
            lib.uv_poll_stop(self._ptr)
        self._events = events

    def close(self) -> None:
        self._events = 0
        self._callback = None
        super().close()


@ffi.def_extern(onerror=callback_error)
def uvl_on_poll(handle: Any, status: int, events: int) -> None:
    data = handle.data
    if data == ffi.NULL:
        return
    poll = ffi.from_handle(data)
    if poll._state == OPEN and poll._callback is not None:
        poll._callback(poll, events, status)
