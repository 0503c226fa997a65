"""The exception handler and debug mode."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import socket
import sys
import threading
import time

import pytest

from conftest import make_loop


def _collect() -> None:
    """Collect garbage fully (PyPy needs several passes for finalizers)."""
    for _ in range(3):
        gc.collect()


def test_set_and_get_exception_handler(loop):
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None

    def handler(lp, ctx):
        pass

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler
    with pytest.raises(TypeError):
        loop.set_exception_handler("not callable")
    assert loop.get_exception_handler() is handler


def test_call_exception_handler_uses_custom_handler(loop):
    calls = []
    loop.set_exception_handler(lambda lp, ctx: calls.append((lp, ctx)))
    context = {"message": "something happened", "extra": 1}
    loop.call_exception_handler(context)
    assert calls == [(loop, context)]


def test_default_exception_handler_logs(loop, caplog):
    loop.set_exception_handler(None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        try:
            raise KeyError("inside")
        except KeyError as exc:
            loop.call_exception_handler({"message": "a custom message",
                                         "exception": exc, "extra": "value"})
    record, = [r for r in caplog.records if r.name == "asyncio"]
    assert record.levelno == logging.ERROR
    assert "a custom message" in record.getMessage()
    assert "extra: 'value'" in record.getMessage()
    assert record.exc_info[0] is KeyError


def test_default_exception_handler_callable_directly(loop, caplog):
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.default_exception_handler({"message": "direct call"})
    assert any("direct call" in r.getMessage() for r in caplog.records)


def test_error_in_custom_handler_is_logged(loop, caplog):
    def bad_handler(lp, ctx):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler({"message": "original"})
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert any("Unhandled error in exception handler" in m for m in messages)


@pytest.mark.parametrize("schedule", ["call_soon", "call_later"])
def test_exception_in_callback_goes_to_handler(loop, schedule):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def fail():
        raise ValueError("from callback")

    if schedule == "call_soon":
        handle = loop.call_soon(fail)
    else:
        handle = loop.call_later(0.001, fail)
    fut = loop.create_future()
    loop.call_later(0.002, fut.set_result, None)
    loop.run_until_complete(fut)   # the loop survives the failing callback
    ctx, = contexts
    assert ctx["message"].startswith("Exception in callback")
    assert isinstance(ctx["exception"], ValueError)
    assert ctx["handle"] is handle


def test_never_retrieved_task_exception_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def fail():
        raise OSError("lost")

    async def main():
        task = loop.create_task(fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()

    loop.run_until_complete(main())
    _collect()
    assert [c["message"] for c in contexts] == ["Task exception was never retrieved"]
    assert isinstance(contexts[0]["exception"], OSError)


def test_handler_runs_in_failing_callback_context(loop):
    # 3.12+ calls the exception handler in the failing callback's context;
    # before, in the loop's.
    var = contextvars.ContextVar("var", default="loop context")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "callback context")
    seen = []
    loop.set_exception_handler(lambda lp, c: seen.append(var.get()))

    def fail():
        raise ValueError

    loop.call_soon(fail, context=ctx)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["callback context" if sys.version_info >= (3, 12) else "loop context"]


def test_keyboard_interrupt_in_callback_escapes_loop(loop):
    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    assert loop.run_until_complete(asyncio.sleep(0, "usable")) == "usable"


def test_debug_coroutine_passed_to_call_soon_raises_type_error(loop):
    loop.set_debug(True)   # the callback is only checked in debug mode

    async def coro_fn():
        pass

    methods = [("call_soon", ()), ("call_later", (0,)), ("call_at", (0,)),
               ("call_soon_threadsafe", ())]
    coro = coro_fn()
    try:
        for method, args in methods:
            with pytest.raises(TypeError, match="coroutines cannot be used"):
                getattr(loop, method)(*args, coro)
            with pytest.raises(TypeError, match="coroutines cannot be used"):
                getattr(loop, method)(*args, coro_fn)
            with pytest.raises(TypeError, match="callable"):
                getattr(loop, method)(*args, 42)
    finally:
        coro.close()


def test_set_get_debug(loop):
    loop.set_debug(True)
    assert loop.get_debug() is True
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_slow_callback_is_logged(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow():
        time.sleep(0.03)   # the slowness under test

    def fast():
        pass

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow)
        loop.call_soon(fast)
        loop.call_soon(loop.stop)
        loop.run_forever()
    messages = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    slow_msgs = [m for m in messages if m.startswith("Executing") and "took" in m]
    assert len(slow_msgs) == 1
    assert "slow" in slow_msgs[0]


def test_no_slow_callback_log_without_debug(loop, caplog):
    loop.slow_callback_duration = 0.001
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(time.sleep, 0.005)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert not [r for r in caplog.records if r.getMessage().startswith("Executing")]


# A read that takes long is logged in debug mode on both loops: asyncio's
# names the transport's reader Handle (``_read_ready``), ours the protocol
# method libuv's read callback ran (README, "Differences from asyncio").
_SLOW = 0.03


def _slow_read_messages(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.name == "asyncio"
            and r.getMessage().startswith("Executing")
            and ("_read_ready" in r.getMessage() or "_received" in r.getMessage())]


@pytest.mark.parametrize("when", ["before", "after"])
def test_debug_slow_data_received_is_logged(loop, caplog, when):
    """Debug mode on before the connection is made, or turned on once it is
    (and off again: the next slow read is not logged)."""
    loop.slow_callback_duration = 0.02
    if when == "before":
        loop.set_debug(True)
    reads = asyncio.Queue()
    made = loop.create_future()

    class Slow(asyncio.Protocol):
        def connection_made(self, transport):
            made.set_result(transport)

        def data_received(self, data):
            time.sleep(_SLOW)   # the slowness under test
            reads.put_nowait(data)

    async def main():
        server = await loop.create_server(Slow, "127.0.0.1", 0)
        client = socket.create_connection(server.sockets[0].getsockname()[:2])
        try:
            await made
            loop.set_debug(True)
            client.sendall(b"one")
            assert await reads.get() == b"one"
            first = len(_slow_read_messages(caplog))
            loop.set_debug(False)
            client.sendall(b"two")
            assert await reads.get() == b"two"
            return first
        finally:
            client.close()
            made.result().close()
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        first = loop.run_until_complete(main())
    assert first == 1
    assert len(_slow_read_messages(caplog)) == 1


def test_debug_slow_datagram_received_is_logged(loop, caplog):
    loop.slow_callback_duration = 0.02
    loop.set_debug(True)
    got = loop.create_future()

    class Slow(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            time.sleep(_SLOW)   # the slowness under test
            if not got.done():
                got.set_result(data)

    async def main():
        transport, _ = await loop.create_datagram_endpoint(Slow, local_addr=("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", transport.get_extra_info("sockname"))
            try:
                return await got
            finally:
                transport.close()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        assert loop.run_until_complete(main()) == b"ping"
    messages = _slow_read_messages(caplog)
    assert len(messages) == 1, messages


def test_debug_call_soon_from_wrong_thread_raises(loop):
    loop.set_debug(True)
    errors = []

    def thread():
        for method, args in (("call_soon", ()), ("call_later", (1,)),
                             ("call_at", (0,))):
            try:
                getattr(loop, method)(*args, print)
            except RuntimeError as exc:
                errors.append(str(exc))
        # The thread-safe variant is fine from any thread.
        loop.call_soon_threadsafe(done.set_result, None)

    async def main():
        t = threading.Thread(target=thread)
        t.start()
        await done
        t.join(5)

    done = loop.create_future()
    loop.run_until_complete(main())
    assert len(errors) == 3
    assert all("thread" in e for e in errors)


def test_debug_wrong_thread_not_checked_when_not_running(loop):
    # _check_thread only applies while the loop runs, on both loops.
    loop.set_debug(True)
    handles = []
    t = threading.Thread(target=lambda: handles.append(loop.call_soon(print)))
    t.start()
    t.join(5)
    assert len(handles) == 1
    handles[0].cancel()


def test_unclosed_loop_warns_resource_warning(loop_kind):
    lp = make_loop(loop_kind)
    lp.set_debug(True)
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        _collect()
