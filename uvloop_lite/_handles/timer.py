"""UVTimer (uv_timer_t): the loop's wake-up timer.

asyncio's TimerHandles stay in the loop's heap, so that their ordering and
cancellation are exactly asyncio's; before each blocking iteration the loop
arms this one libuv timer for the earliest deadline (``uvl_run`` in the shim),
and libuv's poll wakes up when it is due.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._ffi import lib
from .base import UVHandle

if TYPE_CHECKING:
    from .._loop import Loop

__all__ = ["UVTimer"]


class UVTimer(UVHandle):
    _ctype = "uv_timer_t *"

    def __init__(self, loop: Loop) -> None:
        super().__init__(loop)
        self._init_done(lib.uv_timer_init(loop._uv, self._ptr))
