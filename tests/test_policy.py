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

    real = uvloop_lite._policy.new_event_loop
    try:
        uvloop_lite._policy.new_event_loop = lambda: created.append(1) or real()
        assert uvloop_lite.run(main()) == "ok"
    finally:
        uvloop_lite._policy.new_event_loop = real
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


# --- run(main, *, loop_factory=None, debug=None, **run_kwargs), as uvloop.run() ---

class SubLoop(uvloop_lite.Loop):
    pass


@pytest.mark.parametrize("debug", [None, True])
def test_run_loop_factory(debug):
    made = []

    def factory():
        made.append(SubLoop())
        return made[-1]

    loop_type, got_debug, loop = uvloop_lite.run(_loop_info(), loop_factory=factory,
                                                 debug=debug)
    assert made == [loop] and loop_type is SubLoop
    assert got_debug is bool(debug)
    assert loop.is_closed()


def test_run_loop_factory_must_make_a_uvloop_lite_loop():
    made = []

    def factory():
        made.append(asyncio.SelectorEventLoop())
        return made[-1]

    coro = _loop_info()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError, match="needs a uvloop_lite loop"):
            uvloop_lite.run(coro, loop_factory=factory)
        _collect()
    # The foreign loop is closed and main is closed, not left "never awaited".
    assert made[0].is_closed()
    assert coro.cr_frame is None
    assert [str(w.message) for w in caught] == []


def _call_error(fn, *args, **kwargs):
    """The exception type and message fn(*args, **kwargs) raises."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:
        return type(exc), str(exc)
    raise AssertionError(f"{fn} did not raise")


def test_run_rejects_unknown_keyword_as_asyncio_run_does():
    coros = [_loop_info(), _loop_info()]
    try:
        ours = _call_error(uvloop_lite.run, coros[0], bogus=1)
        theirs = _call_error(asyncio.run, coros[1], bogus=1)
    finally:
        for c in coros:
            c.close()
    assert ours[0] is theirs[0] is TypeError
    assert "unexpected keyword argument 'bogus'" in ours[1]
    assert "unexpected keyword argument 'bogus'" in theirs[1]


def test_run_passes_asyncio_run_keywords_on():
    # asyncio.run()'s own keywords may come through **run_kwargs, as with
    # uvloop.run(main, **kwargs).
    kwargs = {"debug": True}
    loop_type, got_debug, _ = uvloop_lite.run(_loop_info(), **kwargs)
    assert loop_type is uvloop_lite.Loop and got_debug is True


def test_run_non_coroutine_error_matches_asyncio_run():
    ours = _call_error(uvloop_lite.run, asyncio.sleep)
    theirs = _call_error(asyncio.run, asyncio.sleep)
    assert ours == theirs


def test_run_current_event_loop_as_asyncio_run():
    """Inside main, get_event_loop() is the running loop; afterwards the
    current loop is what asyncio.run() leaves (None on 3.9/3.10, untouched
    with a loop factory on 3.11+)."""
    async def main():
        return asyncio.get_event_loop() is asyncio.get_running_loop()

    assert uvloop_lite.run(main()) is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy_loop = asyncio.get_event_loop_policy()._local._loop
    assert policy_loop is None


def test_run_is_typed_like_uvloop_run():
    import inspect
    sig = inspect.signature(uvloop_lite.run)
    assert list(sig.parameters) == ["main", "loop_factory", "debug", "run_kwargs"]
    assert sig.parameters["loop_factory"].default is None
    assert sig.parameters["loop_factory"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["run_kwargs"].kind is inspect.Parameter.VAR_KEYWORD


# --- EventLoopPolicy: the child-watcher methods, as asyncio's policy has them ---

@pytest.mark.skipif(sys.version_info >= (3, 14), reason="child watchers are gone in 3.14")
def test_policy_child_watcher_methods_as_asyncio():
    """get_child_watcher()/set_child_watcher() exist and behave (and warn, from
    3.12) as on asyncio's default policy: the abstract methods are
    implemented, so EventLoopPolicy() is a concrete class to type checkers."""
    results = []
    for policy in (asyncio.DefaultEventLoopPolicy(), uvloop_lite.EventLoopPolicy()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            watcher = policy.get_child_watcher()
            assert isinstance(watcher, asyncio.AbstractChildWatcher)
            assert policy.get_child_watcher() is watcher
            policy.set_child_watcher(None)
        results.append((type(watcher),
                        [(w.category, str(w.message)) for w in caught]))
    assert results[0] == results[1]
    deprecated = [w for w in results[1][1] if w[0] is DeprecationWarning]
    assert bool(deprecated) == (sys.version_info >= (3, 12))


def test_subprocess_after_child_watcher_was_fetched():
    """A child watcher asked for (as old code does) does not get in the way of
    the loop's own child handling (libuv reaps)."""
    uvloop_lite.install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.get_event_loop_policy().get_child_watcher()

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print('hi')", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return type(asyncio.get_running_loop()), out, proc.returncode

    assert asyncio.run(main()) == (uvloop_lite.Loop, b"hi\n", 0)
