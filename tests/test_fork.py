"""os.fork() with a loop around: in the child, the parent's loop either fails
cleanly (uvloop_lite: RuntimeError) or works (asyncio), a new loop works, and
the parent's loop keeps working afterwards (a TCP echo round trip through a
server made before the fork, and a timer).

Each case runs in a child interpreter, so that forking never involves the
pytest process; the forked grandchild reports on the shared stdout and leaves
with os._exit().
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import LOOP_KINDS

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = """
    import asyncio, os, sys
    import uvloop_lite

    kind = sys.argv[1]

    def new_loop():
        return asyncio.SelectorEventLoop() if kind == "asyncio" else uvloop_lite.new_event_loop()

    def say(*words):
        print(*words, flush=True)

    class Echo(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr

        def data_received(self, data):
            self.tr.write(data)

    async def echo_round_trip(port, message=b"ping"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(message)
        got = await asyncio.wait_for(reader.readexactly(len(message)), 10)
        writer.close()
        await writer.wait_closed()
        return got

    async def timer():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, "fired")
        return await asyncio.wait_for(fut, 10)

    async def fresh_work():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        got = await echo_round_trip(port, b"child")
        server.close()
        await server.wait_closed()
        return got == b"child" and await timer() == "fired"

    def outcome(fn):
        try:
            fn()
        except RuntimeError:
            return "RuntimeError"
        except Exception as exc:
            return type(exc).__name__
        return "ok"
"""

IDLE_FORK = COMMON + """
    loop = new_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    say("before", loop.run_until_complete(echo_round_trip(port)).decode())

    pid = os.fork()
    if pid == 0:
        try:
            say("child-parent-loop", outcome(
                lambda: loop.run_until_complete(asyncio.sleep(0))))
            if kind == "uvloop_lite":
                # Closing it here must leave the parent's libuv state alone.
                loop.close()
                say("child-closed", loop.is_closed())
            child_loop = new_loop()
            asyncio.set_event_loop(child_loop)
            say("child-new-loop", child_loop.run_until_complete(fresh_work()))
            child_loop.close()
        except BaseException as exc:
            say("child-error", repr(exc))
        finally:
            os._exit(0)

    _, status = os.waitpid(pid, 0)
    say("child-exit", os.waitstatus_to_exitcode(status))
    say("parent-echo", loop.run_until_complete(echo_round_trip(port)).decode())
    say("parent-timer", loop.run_until_complete(timer()))
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()
    say("done")
"""


def _run(script: str, kind: str) -> list[list[str]]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), kind],
                          capture_output=True, text=True, timeout=45, env=env)
    assert proc.returncode == 0, proc.stderr
    return [line.split() for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_fork_with_idle_loop(kind):
    lines = _run(IDLE_FORK, kind)
    child_use = "RuntimeError" if kind == "uvloop_lite" else "ok"
    want = [["before", "ping"], ["child-parent-loop", child_use]]
    if kind == "uvloop_lite":
        want.append(["child-closed", "True"])
    want += [["child-new-loop", "True"], ["child-exit", "0"], ["parent-echo", "ping"],
             ["parent-timer", "fired"], ["done"]]
    assert lines == want


RUNNING_FORK = COMMON + """
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        say("before", (await echo_round_trip(port)).decode())
        pid = os.fork()
        if pid == 0:
            try:
                # Still "running" in the child: running it again fails.
                say("child-parent-loop", outcome(
                    lambda: loop.run_until_complete(asyncio.sleep(0))))
                child_loop = new_loop()
                # asyncio forgets the running loop in a forked child from 3.12.
                result = outcome(lambda: child_loop.run_until_complete(fresh_work()))
                say("child-new-loop", result)
                child_loop.close()
            except BaseException as exc:
                say("child-error", repr(exc))
            finally:
                os._exit(0)
        _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
        say("child-exit", os.waitstatus_to_exitcode(status))
        say("parent-echo", (await echo_round_trip(port)).decode())
        say("parent-timer", await timer())
        server.close()
        await server.wait_closed()

    loop = new_loop()
    loop.run_until_complete(main())
    loop.close()
    say("done")
"""


def test_fork_inside_running_loop():
    # Whether a new loop runs in the child depends on whether this Python
    # resets the running loop at fork (recent 3.11 and 3.12+ do): compare.
    by_kind = {kind: _run(RUNNING_FORK, kind) for kind in LOOP_KINDS}
    assert by_kind["uvloop_lite"] == by_kind["asyncio"]
    lines = by_kind["uvloop_lite"]
    assert lines[2][0] == "child-new-loop" and lines[2][1] in ("ok", "RuntimeError")
    del lines[2]
    assert lines == [["before", "ping"], ["child-parent-loop", "RuntimeError"],
                     ["child-exit", "0"], ["parent-echo", "ping"], ["parent-timer", "fired"],
                     ["done"]]


SUBPROCESS_AFTER_FORK = COMMON + """
    # The parent's loop starts children before and after a fork (libuv's
    # SIGCHLD handling must survive the child going away).
    async def run_child():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "print('hi')",
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        return out.decode().strip(), proc.returncode

    loop = new_loop()
    asyncio.set_event_loop(loop)
    say("before", *loop.run_until_complete(run_child()))
    pid = os.fork()
    if pid == 0:
        try:
            child_loop = new_loop()
            asyncio.set_event_loop(child_loop)
            say("child", *child_loop.run_until_complete(run_child()))
            child_loop.close()
        except BaseException as exc:
            say("child-error", repr(exc))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    say("child-exit", os.waitstatus_to_exitcode(status))
    say("after", *loop.run_until_complete(run_child()))
    loop.close()
"""


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_subprocesses_around_fork(kind):
    assert _run(SUBPROCESS_AFTER_FORK, kind) == [
        ["before", "hi", "0"], ["child", "hi", "0"], ["child-exit", "0"],
        ["after", "hi", "0"]]
