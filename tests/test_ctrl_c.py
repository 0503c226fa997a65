"""Ctrl-C: SIGINT sent to a process whose loop sleeps in its poller must
surface as KeyboardInterrupt at once, and leave the loop usable for cleanup.

Each case runs a child process (the signal goes to the whole interpreter);
the parent waits until the child's main thread is asleep in the kernel, so the
signal really lands while the loop is idle, then times the KeyboardInterrupt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import LOOP_KINDS

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the child's state from /proc")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A background job (`./dev test &`, nohup) starts with SIGINT ignored, and a
# child inherits that: Python then installs no handler of its own (nor does
# asyncio.Runner).  Every child that gets a SIGINT sets its disposition first.
SIGINT_PRELUDE = textwrap.dedent("""
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
""")

CHILD = SIGINT_PRELUDE + textwrap.dedent("""
    import asyncio, sys
    import uvloop_lite

    kind, mode = sys.argv[1], sys.argv[2]
    new_loop = (asyncio.SelectorEventLoop if kind == "asyncio"
                else uvloop_lite.new_event_loop)

    def say(line):
        print(line, flush=True)

    if mode == "runner":
        async def main():
            try:
                asyncio.get_running_loop().call_soon(say, "READY")
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                say("main cancelled")
                raise
        try:
            if kind == "asyncio":
                asyncio.run(main())
            else:
                uvloop_lite.run(main())
        except KeyboardInterrupt:
            say("KeyboardInterrupt")
        # A fresh run works after the interrupted one.
        say("after: " + str(uvloop_lite.run(asyncio.sleep(0, "ok"))))
        sys.exit(0)

    loop = new_loop()
    loop.call_soon(say, "READY")
    try:
        if mode == "run_forever":
            loop.run_forever()
        else:
            loop.run_until_complete(loop.create_future())
    except KeyboardInterrupt:
        say("KeyboardInterrupt")
    say("running: " + str(loop.is_running()))
    say("after: " + str(loop.run_until_complete(asyncio.sleep(0.001, "ok"))))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    say("closed")
""")


def _wait_until_asleep(pid: int, deadline: float) -> None:
    """Spin (no sleep) until the child's main thread sleeps in the kernel."""
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as fp:
            state = fp.read().rpartition(")")[2].split()[0]
        if state == "S":
            return
    raise AssertionError("child never went idle")


# Starts the command after it with SIGINT ignored, as a background job would.
IGNORING_SIGINT = [sys.executable, "-c", "import os, signal, sys; "
                   "signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   "os.execv(sys.executable, sys.argv[1:])"]


@pytest.mark.parametrize("inherited", ["default", "ignored"])
@pytest.mark.parametrize("mode", ["run_forever", "run_until_complete", "runner"])
@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_sigint_interrupts_idle_loop(kind, mode, inherited):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", CHILD, kind, mode]
    if inherited == "ignored":
        cmd = IGNORING_SIGINT + cmd
    proc = subprocess.Popen(cmd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "READY"
        _wait_until_asleep(proc.pid, time.monotonic() + 10)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        lines = []
        while True:
            line = proc.stdout.readline()
            assert line, f"child ended early: {lines!r} {proc.stderr.read()}"
            lines.append(line.strip())
            if line.strip() == "KeyboardInterrupt":
                break
        elapsed = time.monotonic() - t0
        # Go on through the buffered pipe (communicate() would bypass it).
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += out.splitlines()
    assert proc.returncode == 0, err
    assert elapsed < 0.5, f"KeyboardInterrupt took {elapsed:.3f}s"
    if mode == "runner":
        assert sorted(lines) == sorted(["main cancelled", "KeyboardInterrupt", "after: ok"])
    else:
        assert lines == ["KeyboardInterrupt", "running: False", "after: ok", "closed"]
    assert "Traceback" not in err


# Ctrl-C while the main thread is itself inside call_soon_threadsafe():
# asyncio.Runner's SIGINT handler (and the "handler" mode's, for every Python)
# calls call_soon_threadsafe() again from the middle of the first call, so the
# wake-up must not take a lock the interrupted call may hold.  Each round sends
# one SIGINT from a thread after a random delay and must end in
# KeyboardInterrupt; a hang is caught by the bound on the child.  (An
# exception raised by a signal handler that runs inside a weakref callback is
# "ignored" by the interpreter: PyPy's GC runs those anywhere, so a few rounds
# may end by the handler's flag alone.)
THREADSAFE_CHILD = SIGINT_PRELUDE + textwrap.dedent("""
    import asyncio, os, random, signal, sys, threading, time
    import uvloop_lite

    kind, mode, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    new_loop = (asyncio.SelectorEventLoop if kind == "asyncio"
                else uvloop_lite.new_event_loop)

    def noop():
        pass

    def sigint_after(started, delay):
        started.wait()
        time.sleep(delay)
        os.kill(os.getpid(), signal.SIGINT)

    seen = [False]

    async def main(started):
        loop = asyncio.get_running_loop()
        started.set()
        while not seen[0]:
            for _ in range(200):
                loop.call_soon_threadsafe(noop)
            await asyncio.sleep(0)

    def one_round():
        started = threading.Event()
        seen[0] = False
        killer = threading.Thread(target=sigint_after,
                                  args=(started, random.uniform(0, 0.003)))
        killer.start()
        try:
            if mode == "runner":
                with asyncio.Runner(loop_factory=new_loop) as runner:
                    runner.run(main(started))
            else:
                loop = new_loop()
                # The interrupted task may be left pending for good (a
                # KeyboardInterrupt can land inside its own scheduling).
                loop.set_exception_handler(lambda loop, context: None)
                def on_sigint(signum, frame):
                    # What asyncio.Runner does on the first Ctrl-C, then raise.
                    seen[0] = True
                    loop.call_soon_threadsafe(noop)
                    raise KeyboardInterrupt
                signal.signal(signal.SIGINT, on_sigint)
                try:
                    loop.run_until_complete(main(started))
                finally:
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    loop.close()
        except KeyboardInterrupt:
            return True
        finally:
            killer.join()
        return False

    interrupted = sum(one_round() for _ in range(rounds))
    print(rounds, interrupted, flush=True)
""")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", [
    "handler",
    pytest.param("runner", marks=pytest.mark.skipif(sys.version_info < (3, 11),
                                                     reason="asyncio.Runner is 3.11+")),
])
@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_sigint_inside_call_soon_threadsafe(kind, mode):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rounds = 300
    try:
        proc = subprocess.run([sys.executable, "-c", THREADSAFE_CHILD, kind, mode, str(rounds)],
                              capture_output=True, text=True, env=env, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"child hung: {exc.stdout!r} {exc.stderr!r}") from None
    assert proc.returncode == 0, proc.stderr
    done, interrupted = map(int, proc.stdout.split())
    assert done == rounds
    assert interrupted >= rounds - rounds // 20, proc.stderr
