"""Futures and tasks, the task factory, executors and async generators."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import re
import sys
import threading

import pytest

requires_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.11+ API")
requires_312 = pytest.mark.skipif(sys.version_info < (3, 12), reason="Python 3.12+ API")


def _collect() -> None:
    """Collect garbage fully (PyPy needs several passes for finalizers)."""
    for _ in range(3):
        gc.collect()


def test_create_future_is_bound_to_loop(loop):
    fut = loop.create_future()
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, "r")
    assert loop.run_until_complete(fut) == "r"


def test_create_task_runs_coroutine(loop):
    async def coro(x):
        await asyncio.sleep(0)
        return x * 2

    task = loop.create_task(coro(21))
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == 42


def test_create_task_name(loop):
    async def coro():
        return asyncio.current_task().get_name()

    named = loop.create_task(coro(), name="worker-1")
    unnamed = loop.create_task(coro())
    assert named.get_name() == "worker-1"
    assert unnamed.get_name().startswith("Task-")
    assert loop.run_until_complete(named) == "worker-1"
    loop.run_until_complete(unnamed)


@requires_311
def test_create_task_context(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")

    async def coro():
        var.set(var.get() + "+task")
        return var.get()

    assert loop.run_until_complete(loop.create_task(coro(), context=ctx)) == "in-ctx+task"
    # The task ran in ctx itself, not in a copy.
    assert ctx[var] == "in-ctx+task"
    assert var.get() == "default"


def _factory_calls(lp) -> list:
    """create_task through a recording factory; returns how it was called."""
    calls = []

    def factory(*args, **kwargs):
        loop_arg, coro = args
        calls.append((loop_arg is lp, type(coro).__name__, len(args), sorted(kwargs)))
        return asyncio.Task(coro, loop=loop_arg, **kwargs)

    async def coro():
        return asyncio.current_task().get_name()

    lp.set_task_factory(factory)
    assert lp.get_task_factory() is factory
    names = [lp.run_until_complete(lp.create_task(coro())),
             lp.run_until_complete(lp.create_task(coro(), name="given"))]
    if sys.version_info >= (3, 11):
        ctx = contextvars.copy_context()
        names.append(lp.run_until_complete(lp.create_task(coro(), context=ctx)))
    lp.set_task_factory(None)
    assert lp.get_task_factory() is None
    # Default names count globally: compare their shape only.
    return [calls, [re.sub(r"^Task-\d+$", "Task-N", n) for n in names[1:]]]


def test_task_factory_called_as_asyncio_calls_it(loop):
    calls, names = _factory_calls(loop)
    # Without a context: the legacy two-argument call, name set afterwards.
    assert calls[0] == (True, "coroutine", 2, [])
    assert calls[1] == (True, "coroutine", 2, [])
    assert names[0] == "given"
    if sys.version_info >= (3, 11):
        assert calls[2] == (True, "coroutine", 2, ["context"])
    reference = asyncio.SelectorEventLoop()
    try:
        assert [calls, names] == _factory_calls(reference)
    finally:
        reference.close()


def test_task_factory_rejects_non_callable(loop):
    with pytest.raises(TypeError):
        loop.set_task_factory(42)
    assert loop.get_task_factory() is None


def test_task_factory_result_is_returned(loop):
    class MyTask(asyncio.Task):
        pass

    loop.set_task_factory(lambda lp, coro, **kw: MyTask(coro, loop=lp, **kw))
    task = loop.create_task(asyncio.sleep(0, "mine"))
    assert type(task) is MyTask
    assert loop.run_until_complete(task) == "mine"


@requires_312
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    steps = []

    async def quick():
        steps.append("quick ran")
        return "eager"

    async def main():
        task = loop.create_task(quick())
        steps.append("after create_task")
        # It completed synchronously inside create_task.
        return task.done(), task.result()

    assert loop.run_until_complete(main()) == (True, "eager")
    assert steps == ["quick ran", "after create_task"]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="eager tasks exist")
def test_no_eager_task_factory_below_312():
    assert not hasattr(asyncio, "eager_task_factory")


def test_run_in_executor_default(loop):
    main_thread = threading.get_ident()

    def work(a, b):
        return a + b, threading.get_ident() != main_thread

    fut = loop.run_in_executor(None, work, 2, 3)
    assert isinstance(fut, asyncio.Future)
    assert loop.run_until_complete(fut) == (5, True)


def test_run_in_executor_exception(loop):
    def fail():
        raise ZeroDivisionError("in thread")

    with pytest.raises(ZeroDivisionError, match="in thread"):
        loop.run_until_complete(loop.run_in_executor(None, fail))


def test_run_in_executor_explicit_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="explicit") as ex:
        name = loop.run_until_complete(
            loop.run_in_executor(ex, lambda: threading.current_thread().name))
    assert name.startswith("explicit")


def test_run_in_executor_many_concurrent(loop):
    async def main():
        return await asyncio.gather(*(loop.run_in_executor(None, pow, i, 2)
                                      for i in range(50)))

    assert loop.run_until_complete(main()) == [i * i for i in range(50)]


def test_set_default_executor(loop):
    ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="default-ex")
    loop.set_default_executor(ex)
    name = loop.run_until_complete(
        loop.run_in_executor(None, lambda: threading.current_thread().name))
    assert name.startswith("default-ex")
    loop.run_until_complete(loop.shutdown_default_executor())
    # shutdown_default_executor() shut down the executor we gave it.
    with pytest.raises(RuntimeError):
        ex.submit(print)


def test_shutdown_default_executor_joins_threads(loop):
    idents = set()

    def work():
        idents.add(threading.get_ident())

    loop.run_until_complete(asyncio.gather(*(loop.run_in_executor(None, work)
                                             for _ in range(4))))
    loop.run_until_complete(loop.shutdown_default_executor())
    alive = {t.ident for t in threading.enumerate()}
    assert not idents & alive
    with pytest.raises(RuntimeError, match="shutdown"):
        loop.run_in_executor(None, work)


def test_shutdown_default_executor_without_executor(loop):
    assert loop.run_until_complete(loop.shutdown_default_executor()) is None


@pytest.mark.skipif(sys.version_info < (3, 13),
                    reason="the timeout only bounds the wait in later 3.12 patches and 3.13")
def test_shutdown_default_executor_timeout(loop):
    release = threading.Event()
    loop.run_in_executor(None, release.wait, 10)
    try:
        with pytest.warns(RuntimeWarning, match="did not finish"):
            loop.run_until_complete(loop.shutdown_default_executor(timeout=0.01))
    finally:
        release.set()


def test_shutdown_asyncgens_closes_suspended_generators(loop):
    finalized = []

    async def agen(tag):
        try:
            yield 1
            yield 2
        finally:
            await asyncio.sleep(0)   # aclose() runs on the loop
            finalized.append(tag)

    gens = [agen("a"), agen("b")]

    async def main():
        for g in gens:
            assert await g.__anext__() == 1

    loop.run_until_complete(main())
    assert finalized == []
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert sorted(finalized) == ["a", "b"]


def test_shutdown_asyncgens_reports_errors_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def agen():
        try:
            yield 1
        finally:
            raise ValueError("in finally")

    g = agen()

    async def first():   # the loop's hooks see the generator start
        return await g.__anext__()

    loop.run_until_complete(first())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert len(contexts) == 1
    assert "asynchronous generator" in contexts[0]["message"]
    assert isinstance(contexts[0]["exception"], ValueError)
    assert contexts[0]["asyncgen"] is g


def test_asyncgen_first_iterated_after_shutdown_warns(loop):
    async def agen():
        yield 1

    loop.run_until_complete(loop.shutdown_asyncgens())
    g = agen()

    async def first():
        return await g.__anext__()

    with pytest.warns(ResourceWarning, match="shutdown_asyncgens"):
        loop.run_until_complete(first())
    loop.run_until_complete(g.aclose())


def test_abandoned_asyncgen_is_finalized_on_the_loop(loop):
    finalized = loop.create_future()

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.set_result(asyncio.get_running_loop() is loop)

    async def main():
        g = agen()
        await g.__anext__()
        del g
        _collect()
        return await asyncio.wait_for(finalized, 5)

    assert loop.run_until_complete(main()) is True
