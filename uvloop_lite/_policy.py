"""Entry points: new_event_loop(), EventLoopPolicy, install() and run()."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Coroutine, TypeVar

from ._loop import Loop

__all__ = ["new_event_loop", "EventLoopPolicy", "install", "run"]

_T = TypeVar("_T")


def new_event_loop() -> Loop:
    """Return a new uvloop_lite event loop."""
    return Loop()


class EventLoopPolicy(asyncio.events.BaseDefaultEventLoopPolicy):
    """An asyncio event loop policy whose loops are uvloop_lite loops.

    ``asyncio.set_event_loop_policy(uvloop_lite.EventLoopPolicy())`` makes
    ``asyncio.run()``, ``asyncio.new_event_loop()`` and everything built on them
    use uvloop_lite.  Subprocesses need no child watcher: libuv reaps children.
    """

    def _loop_factory(self) -> Loop:  # type: ignore[override]
        return Loop()


def install() -> None:
    """Make uvloop_lite asyncio's event loop: sets :class:`EventLoopPolicy`."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run the coroutine ``main`` on a new uvloop_lite loop, as ``asyncio.run``
    does: then cancel what is left, finalize async generators, shut the default
    executor down and close the loop."""
    # Refuse before building a loop, as asyncio.run() does (Runner would build
    # one, fail, then fail again tearing it down with a less helpful error).
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("uvloop_lite.run() cannot be called from a running event loop")
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_legacy(main, debug)


def _run_legacy(main: Coroutine[Any, Any, _T], debug: bool | None) -> _T:
    # Python 3.9/3.10: asyncio.run() takes no loop factory.
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop: Loop) -> None:
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler({
                "message": "unhandled exception during asyncio.run() shutdown",
                "exception": task.exception(),
                "task": task,
            })
