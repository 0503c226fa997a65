"""Entry points: install(), EventLoopPolicy, new_event_loop(), run(), the
asyncio.Runner loop factory, __version__ and libuv_version()."""

from __future__ import annotations

import asyncio
import gc
import re
import sys
import warnings

import pytest

import uvloop_lite
import uvloop_lite._policy

requires_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+")


def _collect() -> None:
    """Collect garbage fully (PyPy needs several passes for finalizers)."""
    for _ in range(3):
        gc.collect()


@pytest.fixture(autouse=True)
def restore_policy():
    yield
    asyncio.set_event_loop_policy(None)
    asyncio.set_event_loop(None)


async def _loop_info():
    loop = asyncio.get_running_loop()
    return type(loop), loop.get_debug(), loop


def test_new_event_loop_returns_loop():
    loop = uvloop_lite.new_event_loop()
    try:
        assert type(loop) is uvloop_lite.Loop
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_each_new_event_loop_is_a_new_loop():
    a, b = uvloop_lite.new_event_loop(), uvloop_lite.new_event_loop()
    try:
        assert a is not b
    finally:
        a.close()
        b.close()


def test_policy_new_event_loop():
    policy = uvloop_lite.EventLoopPolicy()
    assert isinstance(policy, asyncio.AbstractEventLoopPolicy)
    loop = policy.new_event_loop()
    try:
        assert type(loop) is uvloop_lite.Loop
    finally:
        loop.close()


def test_install_makes_asyncio_use_loop():
    uvloop_lite.install()
    assert isinstance(asyncio.get_event_loop_policy(), uvloop_lite.EventLoopPolicy)
    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is uvloop_lite.Loop
    finally:
        loop.close()
    loop_type, _, loop = asyncio.run(_loop_info())
    assert loop_type is uvloop_lite.Loop
    assert loop.is_closed()


def test_policy_set_directly_makes_asyncio_run_use_loop():
    asyncio.set_event_loop_policy(uvloop_lite.EventLoopPolicy())
    loop_type, debug, _ = asyncio.run(_loop_info(), debug=True)
    assert loop_type is uvloop_lite.Loop
    assert debug is True


def test_without_install_asyncio_uses_its_own_loop():
    loop_type, _, _ = asyncio.run(_loop_info())
    assert loop_type is not uvloop_lite.Loop


@pytest.mark.parametrize("debug", [None, True, False])
def test_run(debug):
    loop_type, got_debug, loop = uvloop_lite.run(_loop_info(), debug=debug)
    assert loop_type is uvloop_lite.Loop
    assert got_debug is bool(debug)
    assert loop.is_closed()
    # run() does not install the policy.
    assert not isinstance(asyncio.get_event_loop_policy(), uvloop_lite.EventLoopPolicy)


def test_run_propagates_exception():
    async def main():
        await asyncio.sleep(0)
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        uvloop_lite.run(main())


def test_run_cancels_leftover_tasks_and_closes_asyncgens():
    events = []

    async def background():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("task cancelled")
            raise

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("agen closed")

    async def main():
        asyncio.get_running_loop().create_task(background())
        g = agen()
        await g.__anext__()
        await asyncio.sleep(0)
        main.gen = g   # keep it alive: only shutdown_asyncgens() closes it
        return "done"

    assert uvloop_lite.run(main()) == "done"
    assert events == ["task cancelled", "agen closed"]


def test_run_shuts_default_executor_down():
    async def main():
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sum, [1, 2])
        return loop

    loop = uvloop_lite.run(main())
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, print)


def test_run_rejects_non_coroutine():
    with pytest.raises(ValueError, match="coroutine was expected"):
        uvloop_lite.run(asyncio.sleep)


def test_run_from_running_loop_raises_before_creating_a_loop():
    created = []

    async def main():
        coro = _loop_info()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with pytest.raises(RuntimeError,
                                   match="cannot be called from a running event loop"):
                    uvloop_lite.run(coro)
                _collect()
        finally:
            coro.close()
        # Like asyncio.run(): refused up front, no loop built and torn down.
        assert [str(w.message) for w in caught] == []
        return "ok"

    real = uvloop_lite._policy.Loop
    try:
        uvloop_lite._policy.Loop = lambda: created.append(1) or real()
        assert uvloop_lite.run(main()) == "ok"
    finally:
        uvloop_lite._policy.Loop = real
    assert created == [1]   # only the outer run() built a loop


@requires_311
def test_runner_with_loop_factory():
    with asyncio.Runner(loop_factory=uvloop_lite.new_event_loop, debug=True) as runner:
        loop = runner.get_loop()
        assert type(loop) is uvloop_lite.Loop
        first = runner.run(_loop_info())
        second = runner.run(_loop_info())
    assert first[0] is uvloop_lite.Loop and first[1] is True
    assert first[2] is second[2] is loop
    assert loop.is_closed()


def test_version():
    from uvloop_lite._version import __version__ as version
    assert uvloop_lite.__version__ == version
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", uvloop_lite.__version__)


def test_libuv_version():
    assert uvloop_lite.libuv_version() == "1.50.0"
