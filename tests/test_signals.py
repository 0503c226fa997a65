"""add_signal_handler / remove_signal_handler: return values, errors and
delivery, one body run on asyncio's loop and on uvloop_lite.  What would kill
or interrupt the test process (SIGINT, a signal whose handler is gone) runs
in a child interpreter."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import LOOP_KINDS

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="Unix signals")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _restore_dispositions():
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT,
                                               signal.SIGCHLD, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        if signal.getsignal(s) is not h and h is not None:
            signal.signal(s, h)


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:
        return (type(exc), str(exc))


def test_return_values(loop):
    calls = []
    assert loop.add_signal_handler(signal.SIGUSR1, calls.append, 1) is None
    assert loop.add_signal_handler(signal.SIGUSR1, calls.append, 2) is None  # replaces
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert loop.remove_signal_handler(signal.SIGUSR2) is False
    assert loop.remove_signal_handler(signal.SIGKILL) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert calls == []


async def _coro():
    pass


BAD_SIGNALS = [
    (signal.SIGKILL, RuntimeError, "sig 9 cannot be caught"),
    (signal.SIGSTOP, RuntimeError, f"sig {int(signal.SIGSTOP)} cannot be caught"),
    (0, ValueError, "invalid signal number 0"),
    (-1, ValueError, "invalid signal number -1"),
    (signal.NSIG, ValueError, f"invalid signal number {signal.NSIG}"),
    (1000, ValueError, "invalid signal number 1000"),
    ("2", TypeError, "sig must be an int, not '2'"),
    (2.0, TypeError, "sig must be an int, not 2.0"),
    (None, TypeError, "sig must be an int, not None"),
]


@pytest.mark.parametrize("sig,exc_type,message", BAD_SIGNALS,
                         ids=[repr(s) for s, _, _ in BAD_SIGNALS])
def test_add_errors(loop, sig, exc_type, message):
    assert _outcome(lambda: loop.add_signal_handler(sig, lambda: None)) == (exc_type, message)


@pytest.mark.parametrize("sig,exc_type,message",
                         [b for b in BAD_SIGNALS if b[0] not in (signal.SIGKILL, signal.SIGSTOP)],
                         ids=[repr(s) for s, _, _ in BAD_SIGNALS
                              if s not in (signal.SIGKILL, signal.SIGSTOP)])
def test_remove_errors(loop, sig, exc_type, message):
    assert _outcome(lambda: loop.remove_signal_handler(sig)) == (exc_type, message)


def test_coroutine_callbacks_refused(loop):
    msg = "coroutines cannot be used with add_signal_handler()"
    assert _outcome(lambda: loop.add_signal_handler(signal.SIGUSR1, _coro)) == (TypeError, msg)
    coro = _coro()
    try:
        assert _outcome(lambda: loop.add_signal_handler(signal.SIGUSR1, coro)) == (TypeError, msg)
    finally:
        coro.close()
    # Checked before the signal number.
    assert _outcome(lambda: loop.add_signal_handler(0, _coro)) == (TypeError, msg)
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_closed_loop(loop):
    loop.close()
    assert _outcome(lambda: loop.add_signal_handler(signal.SIGUSR1, lambda: None)) == (
        RuntimeError, "Event loop is closed")
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_non_main_thread(loop):
    results = {}

    def in_thread():
        try:
            signal.set_wakeup_fd(-1)
        except ValueError as exc:
            results["want"] = str(exc)
        results["add"] = _outcome(lambda: loop.add_signal_handler(signal.SIGUSR1, lambda: None))

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(10)
    assert results["add"] == (RuntimeError, results["want"])
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_handler_runs_on_kill(loop):
    async def main():
        fut = loop.create_future()

        def handler(*args):
            assert asyncio.get_running_loop() is loop
            if not fut.done():
                fut.set_result(args)

        loop.add_signal_handler(signal.SIGUSR1, handler, "a", 2)
        loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        got = await fut
        assert loop.remove_signal_handler(signal.SIGUSR1)
        return got

    assert loop.run_until_complete(main()) == ("a", 2)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_while_loop_not_running(loop):
    fut = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR2, lambda: fut.done() or fut.set_result("late"))
    os.kill(os.getpid(), signal.SIGUSR2)   # the loop is not running
    assert not fut.done()
    assert loop.run_until_complete(fut) == "late"
    assert loop.remove_signal_handler(signal.SIGUSR2)


def test_replaced_handler(loop):
    async def main():
        calls = []
        done = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, calls.append, "old")

        def new():
            calls.append("new")
            done.set_result(None)

        loop.add_signal_handler(signal.SIGUSR1, new)
        os.kill(os.getpid(), signal.SIGUSR1)
        await done
        await asyncio.sleep(0)
        loop.remove_signal_handler(signal.SIGUSR1)
        return calls

    assert loop.run_until_complete(main()) == ["new"]


def test_python_handler_installed_over_loop_handler(loop):
    """uvicorn's capture_signals: ``old = signal.signal(sig, h)``, later
    ``signal.signal(sig, old)``.  Meanwhile the loop's handler still runs
    (asyncio's loop learns of every Python-handled signal from its wake-up
    fd), and once ``old`` is back it works as before."""
    async def main():
        got = asyncio.Queue()
        loop.add_signal_handler(signal.SIGUSR1, got.put_nowait, "loop")
        seen = []
        old = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            first = await asyncio.wait_for(got.get(), 10)
        finally:
            signal.signal(signal.SIGUSR1, old)
        os.kill(os.getpid(), signal.SIGUSR1)
        second = await asyncio.wait_for(got.get(), 10)
        await asyncio.sleep(0)
        assert got.empty()   # once each
        loop.remove_signal_handler(signal.SIGUSR1)
        return seen, first, second

    assert loop.run_until_complete(main()) == ([signal.SIGUSR1], "loop", "loop")


def test_handler_exception_goes_to_exception_handler(loop):
    contexts = []
    reported = loop.create_future()

    def exc_handler(lp, ctx):
        contexts.append(ctx)
        reported.set_result(None)

    loop.set_exception_handler(exc_handler)

    def bad():
        raise ZeroDivisionError("in handler")

    async def main():
        loop.add_signal_handler(signal.SIGUSR1, bad)
        os.kill(os.getpid(), signal.SIGUSR1)
        await reported
        # The loop goes on.
        await asyncio.sleep(0)
        loop.remove_signal_handler(signal.SIGUSR1)

    loop.run_until_complete(main())
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)
    assert contexts[0]["message"].startswith("Exception in callback")


def test_remove_restores_python_dispositions(loop):
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert loop.remove_signal_handler(signal.SIGINT)
    assert loop.remove_signal_handler(signal.SIGHUP)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_close_removes_handlers(loop):
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_sigchld_handler_and_subprocesses(loop):
    # A SIGCHLD handler added while a child runs, and removed while another
    # runs, must not cost the loop the exit of either.
    async def main():
        got = loop.create_future()
        p1 = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdin.read()", stdin=subprocess.PIPE)
        loop.add_signal_handler(signal.SIGCHLD, lambda: got.done() or got.set_result(1))
        p1.stdin.close()
        rc1 = await asyncio.wait_for(p1.wait(), 10)
        await asyncio.wait_for(got, 10)
        p2 = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdin.read()", stdin=subprocess.PIPE)
        assert loop.remove_signal_handler(signal.SIGCHLD)
        p2.stdin.close()
        rc2 = await asyncio.wait_for(p2.wait(), 10)
        return rc1, rc2

    asyncio.set_event_loop(loop)   # asyncio's child watcher attaches to it
    assert loop.run_until_complete(main()) == (0, 0)


# A background job (`./dev test &`, nohup) starts with SIGINT ignored and a child
# inherits that; each child starts from Python's own SIGINT handler instead.
SIGINT_PRELUDE = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def _run_child(code: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", SIGINT_PRELUDE + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


CTRL_C_CHILD = """
    import asyncio, os, signal, sys
    import uvloop_lite

    kind = sys.argv[1]
    loop = asyncio.SelectorEventLoop() if kind == "asyncio" else uvloop_lite.new_event_loop()

    async def caught():
        fut = loop.create_future()
        loop.add_signal_handler(signal.SIGINT, fut.set_result, "handled")
        os.kill(os.getpid(), signal.SIGINT)
        return await fut

    print(loop.run_until_complete(caught()), flush=True)
    print(loop.remove_signal_handler(signal.SIGINT), flush=True)
    print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)

    async def forever():
        loop.call_soon(os.kill, os.getpid(), signal.SIGINT)
        await loop.create_future()

    try:
        loop.run_until_complete(forever())
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    # The loop still works after the interrupt.
    print(loop.run_until_complete(asyncio.sleep(0, "alive")), flush=True)
    loop.close()
"""


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_ctrl_c_after_sigint_handler_removed(kind):
    proc = _run_child(CTRL_C_CHILD, kind)
    assert proc.stdout.split() == ["handled", "True", "True", "KeyboardInterrupt", "alive"], \
        proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_two_loops_same_signal_in_child():
    # Two uvloop_lite loops watching SIGUSR1: removing one loop's handler must
    # leave the other's working (and not reset SIGUSR1 to its default, which
    # would kill the process).
    code = """
        import asyncio, os, signal
        import uvloop_lite

        a, b = uvloop_lite.new_event_loop(), uvloop_lite.new_event_loop()
        fa, fb = a.create_future(), b.create_future()
        a.add_signal_handler(signal.SIGUSR1, lambda: fa.done() or fa.set_result("a"))
        b.add_signal_handler(signal.SIGUSR1, lambda: fb.done() or fb.set_result("b"))
        os.kill(os.getpid(), signal.SIGUSR1)
        print(b.run_until_complete(fb), flush=True)
        print(b.remove_signal_handler(signal.SIGUSR1), flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)
        print(a.run_until_complete(fa), flush=True)
        fa2 = a.create_future()
        a.add_signal_handler(signal.SIGUSR1, lambda: fa2.done() or fa2.set_result("a2"))
        a.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
        print(a.run_until_complete(fa2), flush=True)
        a.close()
        b.close()
        print(signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL, flush=True)
    """
    proc = _run_child(code)
    assert proc.stdout.split() == ["b", "True", "a", "a2", "True"], proc.stderr
    assert proc.returncode == 0, proc.stderr


# Replacing a handler must swap it in one step: a signal arriving while the
# old handler goes and the new one comes may not find the signal at its
# default action (SIGTERM: death).  A thread sends SIGTERM every millisecond
# while the main thread re-adds the handler for a bounded time.
REPLACE_CHILD = """
    import asyncio, os, signal, sys, threading, time
    import uvloop_lite

    kind, sig, seconds = sys.argv[1], getattr(signal, sys.argv[2]), float(sys.argv[3])
    loop = asyncio.SelectorEventLoop() if kind == "asyncio" else uvloop_lite.new_event_loop()
    stop = threading.Event()

    def pelt():
        while not stop.wait(0.001):
            os.kill(os.getpid(), sig)

    got = []
    loop.add_signal_handler(sig, got.append, -1)
    sender = threading.Thread(target=pelt)
    sender.start()
    replaced = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            loop.add_signal_handler(sig, got.append, replaced)
            replaced += 1
            if replaced % 100 == 0:
                loop.run_until_complete(asyncio.sleep(0))
    finally:
        stop.set()
        sender.join()
    # The last handler added receives a signal (one sent from this thread,
    # so it is delivered before kill() returns: how many of the pelting
    # thread's the loops' run calls above had seen is the scheduler's).
    os.kill(os.getpid(), sig)
    for _ in range(2):
        loop.run_until_complete(asyncio.sleep(0))
    # The handler in place at the end still works.
    last = loop.create_future()
    loop.add_signal_handler(sig, lambda: last.done() or last.set_result("last"))
    loop.call_soon(os.kill, os.getpid(), sig)
    print(loop.run_until_complete(last), replaced > 100, len(got) > 0, flush=True)
    loop.remove_signal_handler(sig)
    loop.close()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGCHLD"])
@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_replacing_handler_never_drops_to_default(kind, signame):
    proc = _run_child(REPLACE_CHILD, kind, signame, "1.5", timeout=40)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.split() == ["last", "True", "True"], proc.stderr


# A SIGINT while the handler of SIGINT is being removed (by
# remove_signal_handler() or loop.close()) must reach either the loop's
# handler or Python's (KeyboardInterrupt): SIGINT may never be at its default
# action (death) meanwhile.  The kernel sends the SIGINT, from a POSIX timer
# armed at a random point of the removal (ctypes: the GIL would otherwise
# decide when a sending thread runs), to the process: any thread may take it,
# and an idle thread is there as an application's executor would be.
REMOVE_CHILD = """
    import asyncio, ctypes, ctypes.util, os, random, signal, sys, threading, time
    import uvloop_lite

    kind, mode, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    new_loop = asyncio.SelectorEventLoop if kind == "asyncio" else uvloop_lite.new_event_loop

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    class Itimerspec(ctypes.Structure):
        _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]

    class Sigevent(ctypes.Structure):   # glibc's layout: 64 bytes
        _fields_ = [("sigev_value", ctypes.c_void_p), ("sigev_signo", ctypes.c_int),
                    ("sigev_notify", ctypes.c_int), ("pad", ctypes.c_int * 12)]

    def find(name):
        for path in (None, ctypes.util.find_library("rt")):
            try:
                dll = ctypes.CDLL(path, use_errno=True)
                getattr(dll, name)
                return dll
            except (OSError, AttributeError):
                pass
        raise SystemExit(f"no {name}")

    rt = find("timer_create")
    rt.timer_create.argtypes = [ctypes.c_int, ctypes.POINTER(Sigevent), ctypes.POINTER(ctypes.c_void_p)]
    rt.timer_settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(Itimerspec), ctypes.c_void_p]
    rt.timer_gettime.argtypes = [ctypes.c_void_p, ctypes.POINTER(Itimerspec)]
    timer = ctypes.c_void_p()
    event = Sigevent(sigev_signo=signal.SIGINT, sigev_notify=0)   # SIGEV_SIGNAL
    if rt.timer_create(time.CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)):
        raise OSError(ctypes.get_errno(), "timer_create")

    def arm(delay):
        spec = Itimerspec(it_value=Timespec(0, max(1, int(delay * 1e9))))
        assert rt.timer_settime(timer, 0, ctypes.byref(spec), None) == 0

    def expired():
        spec = Itimerspec()
        rt.timer_gettime(timer, ctypes.byref(spec))
        return spec.it_value.tv_sec == 0 and spec.it_value.tv_nsec == 0

    idle = threading.Event()
    executor = threading.Thread(target=idle.wait, daemon=True)
    executor.start()

    def one_round(delay):   # -> how long the removal took from the arming
        loop = new_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, lambda: None)
            t0 = time.perf_counter()
            if delay is not None:
                arm(delay)
            if mode == "remove":
                loop.remove_signal_handler(signal.SIGINT)
            else:
                loop.close()
            took = time.perf_counter() - t0
            if delay is not None:
                while not expired():
                    pass
                os.getppid()   # a system call: a signal queued for this thread is taken on return
                for _ in range(1000):
                    pass
            return took
        finally:
            loop.close()

    # The SIGINT comes at a random point of the removal, or a little after.
    span = sorted(one_round(None) for _ in range(20))[10]

    # Those arriving while the handler is still in place go to it (asyncio's
    # close() keeps it until its very end): how many raise varies.
    interrupted = 0
    for _ in range(rounds):
        try:
            one_round(random.uniform(0, 1.5 * span))
        except KeyboardInterrupt:
            interrupted += 1
    print("survived", rounds, flush=True)
    print("interrupted", interrupted, "of", rounds, file=sys.stderr)
    loop = new_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.remove_signal_handler(signal.SIGINT) if mode == "remove" else loop.close()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
    except KeyboardInterrupt:
        print("then KeyboardInterrupt", flush=True)
    loop.close()
"""


@pytest.mark.timeout(120)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's POSIX timers by ctypes")
@pytest.mark.parametrize("mode", ["remove", "close"])
@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_sigint_during_handler_removal_never_kills(kind, mode):
    proc = _run_child(REMOVE_CHILD, kind, mode, "200", timeout=90)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert proc.stdout.split() == ["survived", "200", "then", "KeyboardInterrupt"], proc.stderr
