"""Running and stopping the loop: run_forever, run_until_complete, stop, close,
is_running/is_closed, errors on a closed or already running loop, and time()."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import time
import warnings

import pytest

from conftest import make_loop


def test_run_until_complete_returns_coroutine_result(loop):
    async def main():
        await asyncio.sleep(0)
        return 42

    assert loop.run_until_complete(main()) == 42


def test_run_until_complete_raises_coroutine_exception(loop):
    async def main():
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(main())


def test_run_until_complete_future_set_by_callback(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"
    assert not loop.is_running()


def test_run_until_complete_done_future_returns_at_once(loop):
    fut = loop.create_future()
    fut.set_result(7)
    assert loop.run_until_complete(fut) == 7


def test_run_until_complete_stopped_before_future_done(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="stopped before Future completed"):
        loop.run_until_complete(fut)
    # The loop stays usable.
    loop.call_soon(fut.set_result, 1)
    assert loop.run_until_complete(fut) == 1


def test_run_forever_until_stop_from_callback(loop):
    seen = []

    def first():
        seen.append("first")
        loop.call_soon(second)

    def second():
        seen.append("second")
        loop.stop()

    loop.call_soon(first)
    loop.run_forever()
    assert seen == ["first", "second"]
    assert not loop.is_running()


def test_stop_before_run_forever_runs_one_iteration(loop):
    seen = []

    def cb():
        seen.append("cb")
        loop.call_soon(seen.append, "next")   # scheduled during that iteration

    loop.call_soon(cb)
    loop.stop()
    loop.run_forever()
    assert seen == ["cb"]
    loop.stop()
    loop.run_forever()
    assert seen == ["cb", "next"]


def test_stop_lets_already_scheduled_callbacks_run(loop):
    seen = []
    loop.call_soon(loop.stop)
    loop.call_soon(seen.append, 1)
    loop.run_forever()
    assert seen == [1]


def test_run_forever_idle_is_woken_by_timer(loop):
    # Nothing ready: the loop blocks in its poller until the timer is due.
    loop.call_later(0.01, loop.stop)
    loop.run_forever()


def test_is_running(loop):
    assert not loop.is_running()

    async def main():
        return loop.is_running(), asyncio.get_running_loop() is loop

    assert loop.run_until_complete(main()) == (True, True)
    assert not loop.is_running()


def test_is_running_after_exception_in_run(loop):
    async def main():
        raise KeyError("x")

    with pytest.raises(KeyError):
        loop.run_until_complete(main())
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_asyncgen_hooks_are_the_loops_while_it_runs_and_restored_after(loop):
    # Many run calls, so that on PyPy the JIT compiles the path through
    # run_forever (which reads the hooks outside its traces): every one of
    # them must still install the loop's hooks and put the caller's back.
    def firstiter(agen):
        pass

    def finalizer(agen):
        pass

    async def during():
        return sys.get_asyncgen_hooks()

    saved = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
    try:
        for i in range(3000):
            inside = loop.run_until_complete(during())
            outside = sys.get_asyncgen_hooks()
            assert outside.firstiter is firstiter and outside.finalizer is finalizer, i
            assert inside.firstiter == loop._asyncgen_firstiter_hook, i
            assert inside.finalizer == loop._asyncgen_finalizer_hook, i
        sys.set_asyncgen_hooks(None, None)
        loop.run_until_complete(during())
        assert sys.get_asyncgen_hooks() == (None, None)
    finally:
        sys.set_asyncgen_hooks(*saved)


def test_asyncgen_first_iterated_in_a_run_is_closed_by_shutdown_asyncgens(loop):
    closed = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.append("closed")

    gens = [agen() for _ in range(3)]

    async def first_steps():
        for g in gens:
            assert await g.__anext__() == 1

    for _ in range(2000):   # hot run calls first (PyPy's JIT, see above)
        loop.run_until_complete(asyncio.sleep(0))
    loop.run_until_complete(first_steps())
    assert closed == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert closed == ["closed"] * 3


def test_nested_run_until_complete_raises_before_scheduling(loop):
    async def inner():
        return "never"

    async def main():
        coro = inner()
        try:
            with pytest.raises(RuntimeError, match="already running"):
                loop.run_until_complete(coro)
            # Nothing was wrapped in a task and the coroutine never started.
            assert asyncio.all_tasks(loop) == {asyncio.current_task()}
            assert inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
        finally:
            coro.close()
        return loop.is_running()

    assert loop.run_until_complete(main()) is True


# CPython 3.13.0's run_forever() runs its cleanup when its own "already
# running" check fails, so the outer loop forgets it is running.
_NESTED_CLEANUP_BUG = sys.version_info[:3] == (3, 13, 0)


def test_nested_run_forever_raises_and_outer_keeps_running(loop, loop_kind):
    if loop_kind == "asyncio" and _NESTED_CLEANUP_BUG:
        pytest.xfail("CPython 3.13.0 resets the running loop on this error")

    async def main():
        with pytest.raises(RuntimeError, match="already running"):
            loop.run_forever()
        await asyncio.sleep(0)
        return loop.is_running(), asyncio.get_running_loop() is loop

    assert loop.run_until_complete(main()) == (True, True)


def test_run_while_another_loop_runs_in_thread(loop, loop_kind):
    other_kind = "uvloop_lite" if loop_kind == "asyncio" else "asyncio"
    if other_kind == "asyncio" and _NESTED_CLEANUP_BUG:
        pytest.xfail("CPython 3.13.0 resets the running loop on this error")
    other = make_loop(other_kind)

    async def main():
        with pytest.raises(RuntimeError, match="another loop is running"):
            other.run_forever()
        fut = other.create_future()
        with pytest.raises(RuntimeError, match="another loop is running"):
            other.run_until_complete(fut)
        await asyncio.sleep(0)
        return other.is_running(), asyncio.get_running_loop() is loop

    try:
        assert loop.run_until_complete(main()) == (False, True)
    finally:
        other.close()


def test_run_in_a_non_main_thread(loop_kind):
    result = []

    def target():
        lp = make_loop(loop_kind)
        try:
            result.append(lp.run_until_complete(asyncio.sleep(0.001, "thread")))
        finally:
            lp.close()

    t = threading.Thread(target=target)
    t.start()
    t.join(10)
    assert result == ["thread"]


def test_close(loop):
    assert not loop.is_closed()
    loop.close()
    assert loop.is_closed()
    loop.close()   # a second close is a no-op
    assert loop.is_closed()


def test_close_while_running_raises(loop):
    async def main():
        with pytest.raises(RuntimeError, match="running"):
            loop.close()
        return loop.is_closed()

    assert loop.run_until_complete(main()) is False


def test_close_drops_pending_callbacks(loop):
    seen = []
    loop.call_soon(seen.append, 1)
    loop.call_later(0.001, seen.append, 2)
    loop.close()
    assert seen == []


@pytest.mark.parametrize("call", [
    "run_forever", "run_until_complete", "call_soon", "call_later", "call_at",
    "call_soon_threadsafe", "create_task", "run_in_executor",
])
def test_closed_loop_raises_runtime_error(loop, call):
    loop.close()

    async def coro():
        pass

    calls = {
        "run_forever": lambda: loop.run_forever(),
        "run_until_complete": lambda: loop.run_until_complete(loop.create_future()),
        "call_soon": lambda: loop.call_soon(print),
        "call_later": lambda: loop.call_later(1, print),
        "call_at": lambda: loop.call_at(loop.time() + 1, print),
        "call_soon_threadsafe": lambda: loop.call_soon_threadsafe(print),
        "create_task": lambda: loop.create_task(c),
        "run_in_executor": lambda: loop.run_in_executor(None, print),
    }
    c = coro()
    try:
        # No ResourceWarning either: a closed loop must not open anything.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(RuntimeError, match="Event loop is closed"):
                calls[call]()
    finally:
        c.close()
    assert loop.is_closed()


def test_time_is_monotonic_clock(loop):
    before = time.monotonic()
    t = loop.time()
    after = time.monotonic()
    assert before <= t <= after


def test_time_never_goes_back(loop):
    samples = [loop.time() for _ in range(10000)]
    assert samples == sorted(samples)


def test_time_has_sub_millisecond_resolution(loop):
    t0 = loop.time()
    t1 = t0
    while t1 == t0:
        t1 = loop.time()
    assert 0 < t1 - t0 < 1e-3


def test_time_inside_running_loop_advances(loop):
    async def main():
        t0 = loop.time()
        await asyncio.sleep(0.002)
        return loop.time() - t0

    assert loop.run_until_complete(main()) >= 0.002


def test_loop_attributes_are_slots():
    """Every attribute of a uvloop_lite loop, asyncio's and its own, is a slot
    (``_loop._ASYNCIO_ATTRS``, ``_OWN_ATTRS``): an attribute added without one
    lands in the instance dict, and past 30 entries CPython's lookups on the
    loop (several per call_at, cancel, future...) take a slower path."""
    import uvloop_lite

    loop = uvloop_lite.new_event_loop()
    try:
        async def main():
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.001)   # a wait: the signal wake-up fd too

        loop.run_until_complete(main())
        assert vars(loop) == {}
    finally:
        loop.close()
