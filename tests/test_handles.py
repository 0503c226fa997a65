"""uvloop_lite only: the libuv handles behind the loop are all released."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import threading
import weakref

import pytest

import uvloop_lite
from netutil import close_all, tcp_pair
from uvloop_lite._handles.timer import UVTimer


def _collect() -> None:
    """Collect garbage fully (PyPy needs several passes for finalizers)."""
    for _ in range(3):
        gc.collect()


def _balanced(stats: dict) -> bool:
    return all(opened == closed for opened, closed in stats.values())


def _exercise(loop) -> None:
    async def main():
        loop.call_later(0.001, int)
        await asyncio.sleep(0.002)
        await loop.run_in_executor(None, sum, [1])
        fut = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe,
                         args=(fut.set_result, None)).start()
        await fut

    loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_default_executor())


def test_handle_stats_balanced_after_close(uv_loop):
    _exercise(uv_loop)
    stats = uv_loop._uv_handle_stats()
    assert stats["UVTimer"] == (1, 0)
    assert stats["UVAsync"] == (1, 0)
    assert stats["UVPoll"] == (1, 0)   # the signal wake-up socket (main thread)
    assert stats["UVPollGuard"] == (1, 0)   # made with the first poll
    uv_loop.close()
    stats = uv_loop._uv_handle_stats()
    assert set(stats) == {"UVTimer", "UVAsync", "UVPoll", "UVPollGuard"}
    assert _balanced(stats)
    assert not uv_loop._handles


def test_close_twice_is_fine(uv_loop):
    _exercise(uv_loop)
    uv_loop.close()
    before = uv_loop._uv_handle_stats()
    uv_loop.close()
    assert uv_loop.is_closed()
    assert uv_loop._uv_handle_stats() == before


def test_never_run_loop_closes_cleanly():
    loop = uvloop_lite.new_event_loop()
    loop.close()
    stats = loop._uv_handle_stats()
    assert "UVPoll" not in stats   # the signal socket is made on first run
    assert _balanced(stats)


def test_loop_run_in_thread_has_no_signal_poll():
    stats = []

    def target():
        loop = uvloop_lite.new_event_loop()
        try:
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
        stats.append(loop._uv_handle_stats())

    t = threading.Thread(target=target)
    t.start()
    t.join(10)
    assert "UVPoll" not in stats[0]
    assert _balanced(stats[0])


def test_run_restores_signal_wakeup_fd(uv_loop):
    """The loop's signal wake-up fd is in place from a run call's first wait
    (so that Ctrl-C wakes libuv's poll), the caller's before it and after the
    run."""
    a, b = socket.socketpair()
    a.setblocking(False)
    mine = a.fileno()
    seen = []

    def probe():
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        seen.append(fd)

    def probe_and_stop():
        probe()
        uv_loop.stop()

    # The second probe is a reader's: with nothing ready and no timer, the
    # loop's next step is a wait (a timer might be due at once on a slow
    # machine, and the loop would then not wait at all).
    c, d = socket.socketpair()
    d.send(b"x")
    old = signal.set_wakeup_fd(mine)
    try:
        uv_loop.call_soon(probe)             # before the loop has waited
        uv_loop.add_reader(c, probe_and_stop)
        uv_loop.run_forever()
        uv_loop.remove_reader(c)
        assert signal.set_wakeup_fd(old) == mine
    finally:
        signal.set_wakeup_fd(old)
        for s in (a, b, c, d):
            s.close()
    assert len(seen) == 2
    assert seen[0] == mine
    assert seen[1] not in (-1, mine)


def test_run_that_never_waits_leaves_signal_wakeup_fd(loop):
    """run_until_complete() of a coroutine that never blocks does not touch
    the wake-up fd (as on asyncio's loop, which never does)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    mine = a.fileno()

    async def main():
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        return fd

    old = signal.set_wakeup_fd(mine)
    try:
        assert loop.run_until_complete(main()) == mine
        assert signal.set_wakeup_fd(old) == mine
    finally:
        signal.set_wakeup_fd(old)
        a.close()
        b.close()


def test_unclosed_loop_del_warns_and_releases_handles():
    loop = uvloop_lite.new_event_loop()
    _exercise(loop)
    stats = loop._handle_stats            # the live dict, updated on release
    refs = [weakref.ref(h) for h in loop._handles]
    assert refs and not _balanced({k: tuple(v) for k, v in stats.items()})
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del loop
        _collect()
    assert _balanced({k: tuple(v) for k, v in stats.items()})
    _collect()
    assert all(r() is None for r in refs)


def test_close_warns_about_and_closes_leftover_handles(uv_loop):
    timer = UVTimer(uv_loop)   # opened and never closed by its owner
    with pytest.warns(ResourceWarning, match="open libuv handle"):
        uv_loop.close()
    assert not timer.is_open()
    assert _balanced(uv_loop._uv_handle_stats())


def test_closed_handle_methods_are_no_ops(uv_loop):
    timer = UVTimer(uv_loop)
    timer.close()
    timer.close()
    timer.ref()
    timer.unref()
    uv_loop.run_until_complete(asyncio.sleep(0))   # the close callback runs
    assert repr(timer) == "<UVTimer closed>"
    assert uv_loop._uv_handle_stats()["UVTimer"] == (2, 1)   # the loop's own is open


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_loop_refuses_to_run_in_forked_child(uv_loop):
    uv_loop.run_until_complete(asyncio.sleep(0))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: report and leave without running pytest's teardown
        code = 1
        try:
            try:
                uv_loop.run_until_complete(asyncio.sleep(0))
            except RuntimeError as exc:
                code = 0 if "another process" in str(exc) else 2
            uv_loop.close()   # abandons libuv memory; must not touch the parent
        finally:
            os.write(w, bytes([code]))
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"\x00"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    # The parent's loop is unaffected.
    assert uv_loop.run_until_complete(asyncio.sleep(0, "parent")) == "parent"


def test_stream_transports_keep_their_attributes_in_slots(uv_loop, tmp_path):
    """An idle connection's memory is mostly its transport: TCP and Unix
    transports keep their own attributes in slots (a forgotten slot would
    put an entry in the instance dict, which is made only when something
    else is set), are weakly referable still, and the loop forgets them
    once closed."""
    async def main():
        server, tr, cli, srv = await tcp_pair(uv_loop)
        path = str(tmp_path / "s")
        userver = await uv_loop.create_unix_server(asyncio.Protocol, path)
        utr, _ = await uv_loop.create_unix_connection(asyncio.Protocol, path)
        transports = [tr, srv.transport, utr]
        seen = [(dict(vars(t)), weakref.ref(t)() is t) for t in transports]
        assert len(uv_loop._stream_fds) >= 3
        utr.close()
        await close_all(server, tr)
        userver.close()
        await userver.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0)
        return seen, len(uv_loop._stream_fds)

    seen, left = uv_loop.run_until_complete(main())
    assert seen == [({}, True)] * 3
    assert left == 0
