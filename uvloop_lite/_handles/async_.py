"""UVAsync (uv_async_t): wakes the loop from another thread, for
``call_soon_threadsafe``.

``send()`` may be called from any thread.  A lock orders it against
``close()``: once the handle is closing, libuv's memory and file descriptors
may go away, so a late ``send()`` from another thread must become a no-op
rather than a write into a closed (or reused) descriptor.

The lock is reentrant because a Python signal handler runs in the main thread
between any two bytecodes, including inside ``send()`` with the lock held, and
may call ``send()`` itself: asyncio.Runner's SIGINT handler does, through
``call_soon_threadsafe``.  A plain lock would deadlock there on Ctrl-C.
Reentry is harmless: Python code never runs in the middle of the C calls
(``uv_async_send``, ``uv_close``) that the lock keeps apart.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .._ffi import lib
from .base import OPEN, UVHandle

if TYPE_CHECKING:
    from .._loop import Loop

__all__ = ["UVAsync"]


class UVAsync(UVHandle):
    _ctype = "uv_async_t *"

    def __init__(self, loop: Loop) -> None:
        super().__init__(loop)
        self._lock = threading.RLock()
        self._init_done(lib.uvl_async_init_wakeup(loop._uv, self._ptr))

    def send(self) -> None:
        with self._lock:
            if self._state == OPEN:
                lib.uv_async_send(self._ptr)

    def close(self) -> None:
        with self._lock:
            super().close()
