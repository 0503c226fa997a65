"""Entry points: new_event_loop(), EventLoopPolicy, install() and run()."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, Coroutine, TypeVar

from ._loop import Loop

__all__ = ["new_event_loop", "EventLoopPolicy", "install", "run"]

_T = TypeVar("_T")


def new_event_loop() -> Loop:
    """Return a new uvloop_lite event loop."""
    return Loop()


if sys.version_info >= (3, 14):
    # The public names of the policy classes warn from 3.14 (and the child
    # watchers are gone, so the base class is all of asyncio's policy).
    _AsyncioPolicy = asyncio.events._BaseDefaultEventLoopPolicy
else:
    _AsyncioPolicy = asyncio.DefaultEventLoopPolicy


class EventLoopPolicy(_AsyncioPolicy):
    """An asyncio event loop policy whose loops are uvloop_lite loops.

    ``asyncio.set_event_loop_policy(uvloop_lite.EventLoopPolicy())`` makes
    ``asyncio.run()``, ``asyncio.new_event_loop()`` and everything built on them
    use uvloop_lite.

    It is asyncio's own default policy with another loop class, so the rest
    (the per-thread current loop, and up to Python 3.13 the child-watcher
    methods, deprecated from 3.12 as asyncio's are) behaves as asyncio's does.
    uvloop_lite's loops need no child watcher: libuv reaps their children.
    """

    def _loop_factory(self) -> Loop:
        return Loop()


def install() -> None:
    """Make uvloop_lite asyncio's event loop: sets :class:`EventLoopPolicy`.

    Frameworks that pick a loop class themselves (uvicorn's ``--loop``) bypass
    the policy: give them :func:`new_event_loop` as the loop factory instead.
    """
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, _T], *,
        loop_factory: Callable[[], Loop] | None = None,
        debug: bool | None = None, **run_kwargs: Any) -> _T:
    """Run the coroutine ``main`` on a new uvloop_lite loop, as ``asyncio.run``
    does: then cancel what is left, finalize async generators, shut the default
    executor down and close the loop.

    ``loop_factory`` (default :func:`new_event_loop`) makes the loop; like
    ``uvloop.run()`` it must return a uvloop_lite :class:`Loop` (a subclass
    will do), else ``TypeError``.  ``debug`` is ``asyncio.run``'s, and any
    other keyword goes to ``asyncio.run`` (Python 3.12+) or ``asyncio.Runner``
    (3.11), which reject those they do not know, as on 3.9 and 3.10.  The
    global event loop policy is neither used nor changed.
    """
    # Refuse before building a loop, as asyncio.run() does (Runner would build
    # one, fail, then fail again tearing it down with a less helpful error).
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("uvloop_lite.run() cannot be called from a running event loop")
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    factory = _checked_factory(new_event_loop if loop_factory is None else loop_factory, main)
    if sys.version_info >= (3, 12):
        return asyncio.run(main, loop_factory=factory, debug=debug, **run_kwargs)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=factory, **run_kwargs) as runner:
            return runner.run(main)
    if run_kwargs:
        # What asyncio.run() (and a Runner) say of a keyword they do not take.
        raise TypeError(f"run() got an unexpected keyword argument {next(iter(run_kwargs))!r}")
    return _run_legacy(main, factory, debug)


def _checked_factory(factory: Callable[[], Loop],
                     main: Coroutine[Any, Any, Any]) -> Callable[[], Loop]:
    """``factory``, refusing a loop that is not uvloop_lite's (as uvloop.run()
    refuses one that is not uvloop's) before ``main`` starts on it."""
    def make() -> Loop:
        loop = factory()
        if not isinstance(loop, Loop):
            if isinstance(loop, asyncio.AbstractEventLoop):
                loop.close()
            # main will never run: close it rather than warn "never awaited".
            main.close()
            raise TypeError(f"uvloop_lite.run() needs a uvloop_lite loop; "
                            f"loop_factory {factory!r} returned {loop!r}")
        return loop
    return make


def _run_legacy(main: Coroutine[Any, Any, _T], factory: Callable[[], Loop],
                debug: bool | None) -> _T:
    # Python 3.9/3.10: asyncio.run() takes no loop factory.
    loop = factory()
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
