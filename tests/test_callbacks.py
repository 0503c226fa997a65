"""Callback scheduling: call_soon, call_later, call_at, call_soon_threadsafe."""

from __future__ import annotations

import asyncio
import contextvars
import os
import random
import socket
import threading
import time

import pytest

from conftest import make_loop


def test_call_soon_runs_in_fifo_order_with_args(loop):
    seen = []
    for i in range(20):
        loop.call_soon(seen.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == list(range(20))


def test_call_soon_returns_handle_not_timer_handle(loop):
    h = loop.call_soon(print)
    assert isinstance(h, asyncio.Handle)
    assert not isinstance(h, asyncio.TimerHandle)
    h.cancel()


def test_call_soon_with_context(loop):
    var = contextvars.ContextVar("var", default="outer")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inner")
    seen = []
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_soon(lambda: seen.append(var.get()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["inner", "outer"]


def test_callbacks_scheduled_while_running_go_to_next_iteration(loop):
    seen = []

    def a():
        seen.append("a")
        loop.call_soon(seen.append, "a-child")

    loop.call_soon(a)
    loop.call_soon(seen.append, "b")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # stop() ends the loop after the iteration it was called in.
    assert seen == ["a", "b"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["a", "b", "a-child"]


@pytest.mark.parametrize("delay", [0, -1, 0.0, 1e-6, 0.5])
def test_call_later_always_returns_timer_handle(loop, delay):
    h = loop.call_later(delay, print)
    assert isinstance(h, asyncio.TimerHandle)
    h.cancel()


def test_call_at_when_is_exact(loop):
    when = loop.time() + 123.456789
    h = loop.call_at(when, print)
    assert isinstance(h, asyncio.TimerHandle)
    assert h.when() == when
    h.cancel()


def test_call_later_when_is_now_plus_delay(loop):
    before = loop.time()
    h = loop.call_later(10.25, print)
    after = loop.time()
    assert before + 10.25 <= h.when() <= after + 10.25
    h.cancel()


@pytest.mark.parametrize("delay", [0.0003, 0.001, 0.0015, 0.004, 0.0105])
def test_call_later_never_runs_before_its_time(loop, delay):
    ran_at = []
    done = loop.create_future()

    def cb(h_box):
        ran_at.append((loop.time(), h_box[0].when()))
        if len(ran_at) == 5:
            done.set_result(None)

    for _ in range(5):
        box = []
        box.append(loop.call_later(delay, cb, box))
    loop.run_until_complete(done)
    for now, when in ran_at:
        assert now >= when


def test_call_at_never_runs_before_its_time_with_blocking_wait(loop):
    # Only the timer is pending: the loop sleeps in its poller for it.
    fut = loop.create_future()
    when = loop.time() + 0.0123
    loop.call_at(when, lambda: fut.set_result(loop.time()))
    assert loop.run_until_complete(fut) >= when


def test_call_at_in_the_past_runs_on_next_iteration(loop):
    seen = []
    loop.call_at(loop.time() - 100, seen.append, "past")
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["past"]


def test_call_later_zero_runs_after_ready_callbacks(loop):
    seen = []
    loop.call_soon(seen.append, "soon-1")
    loop.call_later(0, seen.append, "later-0")
    loop.call_soon(seen.append, "soon-2")
    fut = loop.create_future()
    loop.call_later(0.001, fut.set_result, None)
    loop.run_until_complete(fut)
    assert seen == ["soon-1", "soon-2", "later-0"]


def test_due_timer_from_a_callback_runs_after_what_the_callback_scheduled(loop):
    # A timer already due when created inside a callback does not overtake the
    # callbacks scheduled in that iteration, whichever was scheduled first.
    seen = []

    def first():
        loop.call_later(0, seen.append, "later-0")
        loop.call_at(loop.time() - 1, seen.append, "past")
        loop.call_soon(seen.append, "soon")

    loop.call_soon(first)
    fut = loop.create_future()
    loop.call_later(0.001, fut.set_result, None)
    loop.run_until_complete(fut)
    assert seen == ["soon", "past", "later-0"]


@pytest.mark.parametrize("via", ["protocol", "reader"])
def test_due_timer_from_an_io_callback_runs_after_what_it_scheduled(loop, via):
    # The same from an I/O callback (data_received, an add_reader callback),
    # which on uvloop_lite runs inside libuv's poll rather than as a Handle.
    seen = []
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    done = loop.create_future()

    def note(what):
        seen.append(what)
        if len(seen) == 3:
            done.set_result(None)

    def on_io():
        loop.call_later(0, note, "later-0")
        loop.call_at(loop.time() - 1, note, "past")
        loop.call_soon(note, "soon")

    class Proto(asyncio.Protocol):
        def data_received(self, data):
            on_io()

    async def main():
        if via == "protocol":
            transport, _ = await loop.create_connection(Proto, sock=a)
        else:
            def ready():
                loop.remove_reader(a)
                a.recv(10)
                on_io()
            loop.add_reader(a, ready)
        b.send(b"x")
        await done
        if via == "protocol":
            transport.close()

    try:
        loop.run_until_complete(main())
    finally:
        a.close()
        b.close()
    assert seen == ["soon", "past", "later-0"]


def test_task_starts_before_a_due_timer_created_after_it(loop):
    # A timer due at once, cancelling a task created just before it: the task
    # has started by then (test_waitfor's test_wait_for_waits_for_task_
    # cancellation: wait_for() with a deadline already past on a busy machine).
    started = []

    async def inner():
        started.append(True)
        await asyncio.sleep(10)

    async def main():
        task = loop.create_task(inner())
        loop.call_at(loop.time() - 1, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task

    loop.run_until_complete(main())
    assert started == [True]


def test_timers_run_in_deadline_order(loop):
    base = loop.time() + 0.005
    offsets = [i * 0.0004 for i in range(25)]
    shuffled = offsets[:]
    random.Random(1234).shuffle(shuffled)
    seen = []
    for off in shuffled:
        loop.call_at(base + off, seen.append, off)
    done = loop.create_future()
    loop.call_at(base + offsets[-1] + 0.001, done.set_result, None)
    loop.run_until_complete(done)
    assert seen == offsets


def _equal_deadline_scenario(lp) -> list:
    """Timers sharing one deadline, surrounded by earlier and later ones."""
    seen = []
    when = lp.time() + 0.003
    lp.call_at(when - 0.001, seen.append, "early")
    for i in range(10):
        lp.call_at(when, seen.append, i)
    lp.call_at(when + 0.001, seen.append, "late")
    done = lp.create_future()
    lp.call_at(when + 0.002, done.set_result, None)
    lp.run_until_complete(done)
    return seen


def test_equal_deadlines_run_together_in_asyncio_order(loop):
    seen = _equal_deadline_scenario(loop)
    assert seen[0] == "early" and seen[-1] == "late"
    assert sorted(seen[1:-1]) == list(range(10))
    reference = asyncio.SelectorEventLoop()
    try:
        assert seen == _equal_deadline_scenario(reference)
    finally:
        reference.close()


def test_equal_deadlines_scheduled_first_runs_first_for_two(loop):
    seen = []
    when = loop.time() + 0.002
    loop.call_at(when, seen.append, "first")
    loop.call_at(when, seen.append, "second")
    done = loop.create_future()
    loop.call_at(when, done.set_result, None)
    loop.run_until_complete(done)
    assert seen == ["first", "second"]


def test_cancelled_timer_never_runs(loop):
    seen = []
    h = loop.call_later(0.001, seen.append, "cancelled")
    h.cancel()
    assert h.cancelled()
    fut = loop.create_future()
    loop.call_later(0.005, fut.set_result, None)
    loop.run_until_complete(fut)
    assert seen == []


def test_cancel_timer_from_earlier_callback_of_same_iteration(loop):
    seen = []
    when = loop.time() + 0.002
    late = []
    loop.call_at(when, lambda: late[0].cancel())
    late.append(loop.call_at(when + 1e-7, seen.append, "cancelled"))
    fut = loop.create_future()
    loop.call_at(when + 0.003, fut.set_result, None)
    loop.run_until_complete(fut)
    assert seen == []


def test_cancelled_call_soon_never_runs(loop):
    seen = []
    h = loop.call_soon(seen.append, "x")
    h.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == []
    assert h.cancelled()


def test_far_cancelled_timer_does_not_delay_completion(loop):
    h = loop.call_later(3600, print)
    h.cancel()
    t0 = time.monotonic()
    loop.run_until_complete(asyncio.sleep(0.001))
    assert time.monotonic() - t0 < 1


def _wait_until_polling(tid: int, deadline: float) -> None:
    """Spin (no sleep) until thread tid sleeps in epoll; Linux only, else no-op."""
    path = f"/proc/{os.getpid()}/task/{tid}/wchan"
    if not os.path.exists(path):
        return
    while time.monotonic() < deadline:
        with open(path) as fp:
            if "epoll" in fp.read():
                return
    raise AssertionError("the loop never blocked in its poller")


def test_call_soon_threadsafe_wakes_loop_blocked_on_far_timer(loop):
    far = loop.call_later(3600, print)
    fut = loop.create_future()
    loop_tid = threading.get_native_id()
    started = threading.Event()

    def thread():
        started.wait(5)
        _wait_until_polling(loop_tid, time.monotonic() + 5)
        loop.call_soon_threadsafe(fut.set_result, time.monotonic())

    t = threading.Thread(target=thread)
    loop.call_soon(started.set)
    t.start()
    try:
        sent = loop.run_until_complete(fut)
        woke = time.monotonic()
    finally:
        t.join(5)
        far.cancel()
    assert woke - sent < 0.5


def test_call_soon_threadsafe_from_many_threads(loop):
    n_threads, per_thread = 8, 200
    total = n_threads * per_thread
    seen: list[tuple[int, int]] = []
    done = loop.create_future()
    barrier = threading.Barrier(n_threads)

    def record(tid, i):
        seen.append((tid, i))
        if len(seen) == total:
            done.set_result(None)

    def worker(tid):
        barrier.wait(5)
        for i in range(per_thread):
            loop.call_soon_threadsafe(record, tid, i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    try:
        loop.run_until_complete(asyncio.wait_for(done, 10))
    finally:
        for t in threads:
            t.join(5)
    assert len(seen) == total
    for tid in range(n_threads):
        assert [i for t, i in seen if t == tid] == list(range(per_thread))


def test_call_soon_threadsafe_returns_handle_and_can_be_cancelled(loop):
    seen = []
    h = loop.call_soon_threadsafe(seen.append, "x")
    assert isinstance(h, asyncio.Handle)
    h.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == []


def test_call_soon_threadsafe_after_close_raises_in_other_thread(loop_kind):
    lp = make_loop(loop_kind)
    lp.close()
    errors = []

    def thread():
        try:
            lp.call_soon_threadsafe(print)
        except RuntimeError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=thread)
    t.start()
    t.join(5)
    assert errors == ["Event loop is closed"]


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_scheduling_after_close_raises(loop, method):
    loop.close()
    args = {"call_soon": (), "call_later": (0,), "call_at": (0,)}[method]
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        getattr(loop, method)(*args, print)
