"""UVPoll (uv_poll_t): readiness of a file descriptor libuv does not own.

Serves ``add_reader``/``add_writer`` and the loop's signal wake-up socket.  A
``uv_poll_t`` watches one fd for both directions, so the wrapper keeps the
reader and writer callbacks and restarts the poll with the union of the
events still wanted.

libuv aborts the process when epoll refuses a poll's fd, which happens when
the fd was closed behind the poll and its number reused by another file
(a regular file: EPERM).  So the C shim remembers which file the fd named
when the poll was made: :meth:`UVPoll.start` raises instead of starting a
poll whose fd names another file now (``stale``), and :class:`UVPollGuard`
stops such polls right before libuv's poll phase, whatever started them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .._errors import uv_error
from .._ffi import ffi, lib
from .base import OPEN, UVHandle, callback_error

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["UVPoll", "UVPollGuard", "READABLE", "WRITABLE", "DISCONNECT"]

READABLE: int = lib.UV_READABLE
WRITABLE: int = lib.UV_WRITABLE
DISCONNECT: int = lib.UV_DISCONNECT


class UVPoll(UVHandle):
    """Calls ``callback(poll, events, status)`` when the fd is ready; ``status``
    < 0 is a libuv error (the fd was closed under the watcher, for example).
    ``reader``/``writer`` hold the asyncio Handles of add_reader/add_writer."""

    _ctype = "uvl_poll_t *"

    def __init__(self, loop: LoopBase, fd: int,
                 callback: Callable[[UVPoll, int, int], Any]) -> None:
        if loop._poll_guard is None:
            loop._poll_guard = UVPollGuard(loop)
        super().__init__(loop)
        self._poll = self._ptr   # owns the memory: a uv_poll_t and the file's identity
        self._ptr = ffi.cast("uv_poll_t *", self._poll)
        self.fd = fd
        self.reader: Any = None
        self.writer: Any = None
        self.sock: Any = None   # the socket object of the sock_* calls using it
        self.fileobj: Any = fd  # what add_reader/add_writer were given (see _sock.py)
        self._events = 0
        self._callback: Callable[[UVPoll, int, int], Any] | None = callback
        self._init_done(lib.uvl_poll_init(loop._uv, self._poll, fd))

    @property
    def events(self) -> int:
        return self._events

    def start(self, events: int) -> None:
        """Watch for exactly ``events`` (0 stops watching).  Raises the
        OSError epoll would give (EBADF, EPERM, ENOENT) if the fd was closed
        or names another file now; the poll is then stale for good."""
        self._ensure_open()
        if events == self._events:
            return
        rc = lib.uvl_poll_start(self._poll, events)
        if rc < 0:
            raise uv_error(rc)
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


class UVPollGuard(UVHandle):
    """The loop's ``uv_prepare_t`` that keeps stale polls away from libuv's
    epoll_ctl() (see the module's doc).  Unreferenced: it never keeps the
    loop alive."""

    _ctype = "uv_prepare_t *"

    def __init__(self, loop: LoopBase) -> None:
        super().__init__(loop)
        self._init_done(lib.uvl_poll_guard_init(loop._uv, self._ptr))
