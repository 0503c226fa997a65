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

CHILD = textwrap.dedent("""
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


@pytest.mark.parametrize("mode", ["run_forever", "run_until_complete", "runner"])
@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_sigint_interrupts_idle_loop(kind, mode):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, kind, mode],
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
