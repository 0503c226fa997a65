"""Subprocesses: subprocess_exec/subprocess_shell and the asyncio.subprocess
API, one body run on asyncio's loop and on uvloop_lite, compared with each
other or with what subprocess.run() gives for the same command."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from netutil import MIB, payload

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

PY = sys.executable
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT
# A child that says it is ready, then waits for its stdin to close.
WAITER = "import sys; print('ready', flush=True); sys.stdin.read()"


# conftest's ``loop`` fixture makes each loop the current one, which is all
# asyncio's child watcher (ThreadedChildWatcher by default up to 3.13) needs;
# uvloop_lite needs none.  (No same-named override here: pytest < 9 loses the
# loop_kind parametrisation of a fixture that overrides ``loop``.)


async def _wait(aw, timeout=30):
    return await asyncio.wait_for(aw, timeout)


class Recorder(asyncio.SubprocessProtocol):
    """Records every SubprocessProtocol callback."""

    def __init__(self, loop):
        self.events: list[tuple] = []
        self.data = {1: bytearray(), 2: bytearray()}
        self.made = loop.create_future()
        self.exited = loop.create_future()
        self.lost = loop.create_future()
        self.got_stdout = loop.create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append(("made",))
        self.made.set_result(None)

    def pipe_data_received(self, fd, data):
        assert isinstance(data, bytes)
        self.data[fd] += data
        if fd == 1 and not self.got_stdout.done():
            self.got_stdout.set_result(None)

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_lost", fd, exc))

    def process_exited(self):
        self.events.append(("exited", self.transport.get_returncode()))
        self.exited.set_result(self.transport.get_returncode())

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


# -- the asyncio documentation's examples ---------------------------------------

class DfProtocol(asyncio.SubprocessProtocol):
    """The docs' "subprocess protocol" example, on `df`."""

    def __init__(self, exit_future):
        self.exit_future = exit_future
        self.output = bytearray()
        self.pipe_closed = False
        self.exited = False

    def pipe_connection_lost(self, fd, exc):
        self.pipe_closed = True
        self.check_for_exit()

    def pipe_data_received(self, fd, data):
        self.output.extend(data)

    def process_exited(self):
        self.exited = True
        self.check_for_exit()

    def check_for_exit(self):
        if self.pipe_closed and self.exited:
            self.exit_future.set_result(True)


def _df_header_and_mounts(text: str):
    lines = text.splitlines()
    return lines[0], [line.split()[-1] for line in lines[1:]]


DF = shutil.which("df")
needs_df = pytest.mark.skipif(DF is None, reason="no df")


@needs_df
def test_docs_df_with_protocol(loop):
    async def main():
        exit_future = loop.create_future()
        transport, protocol = await loop.subprocess_exec(
            lambda: DfProtocol(exit_future), DF, "-P", "/", stdin=None, stderr=None)
        await _wait(exit_future)
        transport.close()
        return bytes(protocol.output).decode(), transport.get_returncode()

    out, rc = loop.run_until_complete(main())
    want = subprocess.run([DF, "-P", "/"], capture_output=True, text=True, check=True).stdout
    assert rc == 0
    assert _df_header_and_mounts(out) == _df_header_and_mounts(want)


@needs_df
def test_docs_df_with_streams(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(DF, "-P", "/", stdout=PIPE)
        header = await proc.stdout.readline()
        rest = await proc.stdout.read()
        rc = await _wait(proc.wait())
        shell = await asyncio.create_subprocess_shell(f"{DF} -P / | head -n 1", stdout=PIPE)
        shell_out, _ = await _wait(shell.communicate())
        return (header + rest).decode(), rc, shell_out.decode(), shell.returncode

    out, rc, shell_out, shell_rc = loop.run_until_complete(main())
    want = subprocess.run([DF, "-P", "/"], capture_output=True, text=True, check=True).stdout
    assert rc == 0 and shell_rc == 0
    assert _df_header_and_mounts(out) == _df_header_and_mounts(want)
    assert shell_out == want.splitlines(keepends=True)[0]


def test_docs_shell_with_stderr(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "ls /nonexistent-dir-xyz; echo out", stdout=PIPE, stderr=PIPE)
        stdout, stderr = await _wait(proc.communicate())
        return proc.returncode, stdout, stderr

    want = subprocess.run("ls /nonexistent-dir-xyz; echo out", shell=True, capture_output=True)
    assert loop.run_until_complete(main()) == (want.returncode, want.stdout, want.stderr)


def test_docs_date_readline(loop):
    code = "import datetime; print(datetime.datetime(2000, 1, 2, 3, 4, 5))"

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE)
        data = await proc.stdout.readline()
        line = data.decode("ascii").rstrip()
        await _wait(proc.wait())
        return line, proc.returncode

    assert loop.run_until_complete(main()) == ("2000-01-02 03:04:05", 0)


# -- stdin / stdout / stderr -------------------------------------------------------

def test_write_to_stdin(loop):
    data = payload(2 * MIB, 4)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; d = sys.stdin.buffer.read(); print(len(d), hash(d))",
            stdin=PIPE, stdout=PIPE)
        proc.stdin.write(data)
        await proc.stdin.drain()
        proc.stdin.close()
        await proc.stdin.wait_closed()
        out = await proc.stdout.read()
        return await _wait(proc.wait()), out

    rc, out = loop.run_until_complete(main())
    n, h = out.split()
    assert rc == 0 and int(n) == len(data)


def test_communicate_large_both_ways(loop):
    data = payload(3 * MIB, 6)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; d = sys.stdin.buffer.read(); "
                      "sys.stdout.buffer.write(d[::-1]); sys.stderr.write('done')",
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await _wait(proc.communicate(data))
        return proc.returncode, out, err

    rc, out, err = loop.run_until_complete(main())
    assert (rc, err) == (0, b"done")
    assert out == data[::-1]


def test_stdio_none_devnull_and_stdout(loop):
    code = "import sys; print('out'); print('err', file=sys.stderr); print(repr(sys.stdin.read()))"

    async def main():
        results = []
        for stdin, stdout, stderr in ((DEVNULL, PIPE, STDOUT), (DEVNULL, PIPE, DEVNULL),
                                      (DEVNULL, DEVNULL, PIPE)):
            proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdin=stdin,
                                                        stdout=stdout, stderr=stderr)
            attrs = (proc.stdin is None, proc.stdout is None, proc.stderr is None)
            out, err = await _wait(proc.communicate())
            results.append((attrs, proc.returncode, out, err))
        return results

    assert loop.run_until_complete(main()) == [
        ((True, False, True), 0, b"out\nerr\n''\n", None),
        ((True, False, True), 0, b"out\n''\n", None),
        ((True, True, False), 0, None, b"err\n"),
    ]


def test_stdio_file_objects_and_fds(loop, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"from a file\n")
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    code = "import sys; data = sys.stdin.read(); print(data.upper(), end=''); print('E', file=sys.stderr)"

    async def main():
        with open(src, "rb") as fin, open(out_path, "wb") as fout:
            err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdin=fin,
                                                            stdout=fout, stderr=err_fd)
                rc = await _wait(proc.wait())
            finally:
                os.close(err_fd)
        return rc

    assert loop.run_until_complete(main()) == 0
    assert out_path.read_bytes() == b"FROM A FILE\n"
    assert err_path.read_bytes() == b"E\n"


# -- Popen arguments -----------------------------------------------------------------

def _run_py(loop, code, **kwargs):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdout=PIPE, **kwargs)
        out, _ = await _wait(proc.communicate())
        return proc.returncode, out.decode().strip()

    return loop.run_until_complete(main())


def test_cwd(loop, tmp_path):
    assert _run_py(loop, "import os; print(os.getcwd())", cwd=tmp_path) == (0, str(tmp_path))
    assert _run_py(loop, "import os; print(os.getcwd())", cwd=str(tmp_path)) == (
        0, str(tmp_path))


def test_env(loop):
    code = "import os; print(sorted((k, v) for k, v in os.environ.items() if k != 'LC_CTYPE'))"
    assert _run_py(loop, code, env={"FOO": "bar", "EMPTY": ""}) == (
        0, "[('EMPTY', ''), ('FOO', 'bar')]")
    assert _run_py(loop, code, env={b"BYTES": b"yes"}) == (0, "[('BYTES', 'yes')]")


def test_pass_fds_and_close_fds(loop):
    r, w = os.pipe()
    inheritable_r, inheritable_w = os.pipe()
    os.set_inheritable(inheritable_w, True)
    probe = ("import os, sys\n"
             "def state(fd):\n"
             "    try:\n        os.fstat(fd)\n    except OSError:\n        return 'closed'\n"
             "    return 'open'\n"
             "os.write({w}, b'via pass_fds')\n"
             "print(state({inh}))\n")
    try:
        rc, out = _run_py(loop, probe.format(w=w, inh=inheritable_w), pass_fds=(w,))
        assert (rc, out) == (0, "closed")   # close_fds=True: not passed on
        assert os.read(r, 100) == b"via pass_fds"
        # With close_fds=False the inheritable fd is inherited.
        assert _run_py(loop, "import os; os.fstat(%d); print('open')" % inheritable_w,
                       close_fds=False) == (0, "open")
        assert os.get_inheritable(inheritable_w)   # left as it was
        assert not os.get_inheritable(w)
    finally:
        for fd in (r, w, inheritable_r, inheritable_w):
            os.close(fd)


def test_spawn_makes_no_filesystem_call_in_loop_thread(loop, monkeypatch):
    """close_fds=True (the default) closes the inherited fds in C, as Popen's
    child does: no os.stat/os.listdir (what anyio's blockbuster flags as a
    blocking call) runs in the loop's thread while the process starts."""
    called = []
    me = threading.get_ident()
    watching = False

    def watch(name, real):
        def wrapper(*args, **kwargs):
            if watching and threading.get_ident() == me:
                called.append(name)
            return real(*args, **kwargs)
        return wrapper

    for name in ("stat", "lstat", "listdir", "scandir"):
        monkeypatch.setattr(os, name, watch("os." + name, getattr(os, name)))
    for name in ("isdir", "exists"):
        monkeypatch.setattr(os.path, name, watch("os.path." + name, getattr(os.path, name)))
    # Inheritable fds for close_fds to hide: more than the C side's first array.
    fds = [fd for _ in range(20) for fd in os.pipe()]
    for fd in fds:
        os.set_inheritable(fd, True)
    child = ("import os\n"
             "for fd in %r:\n"
             "    try:\n        os.fstat(fd)\n    except OSError:\n        continue\n"
             "    raise SystemExit('inherited %%d' %% fd)\n" % fds)

    async def main():
        nonlocal watching
        watching = True
        try:
            proc = await asyncio.create_subprocess_exec(PY, "-c", child, stderr=PIPE)
        finally:
            watching = False
        _, err = await _wait(proc.communicate())
        return proc.returncode, err

    try:
        assert loop.run_until_complete(main()) == (0, b"")   # none was inherited
        assert all(os.get_inheritable(fd) for fd in fds)    # and they are as they were
    finally:
        for fd in fds:
            os.close(fd)
    assert called == []


def test_start_new_session(loop):
    code = "import os; print(os.getsid(0) == os.getpid(), os.getsid(0) != %d)" % os.getsid(0)
    assert _run_py(loop, code, start_new_session=True) == (0, "True True")
    assert _run_py(loop, "import os; print(os.getsid(0) == %d)" % os.getsid(0)) == (0, "True")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="process_group is 3.11+")
def test_process_group(loop):
    code = "import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == %d)" % os.getsid(0)
    assert _run_py(loop, code, process_group=0) == (0, "True True")


def test_preexec_fn(loop, tmp_path):
    # Runs in the child after fork (and after cwd=): it wins.
    code = "import os; print(os.getcwd(), oct(os.umask(0)))"
    rc, out = _run_py(loop, code, cwd="/", preexec_fn=lambda: os.chdir(tmp_path))
    assert (rc, out.split()[0]) == (0, str(tmp_path))
    assert _run_py(loop, code, umask=0o027) == (0, f"{os.getcwd()} 0o27")


def _sig_ign_mask(**popen_kw) -> str:
    return subprocess.run(["grep", "SigIgn", "/proc/self/status"], capture_output=True,
                          text=True, **popen_kw).stdout


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc")
def test_ignored_signals_stay_ignored(loop):
    # exec keeps ignored signals ignored (nohup); restore_signals resets only
    # SIGPIPE and SIGXFSZ.
    async def run(**kw):
        proc = await asyncio.create_subprocess_exec("grep", "SigIgn", "/proc/self/status",
                                                    stdout=PIPE, **kw)
        out, _ = await _wait(proc.communicate())
        return out.decode()

    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        got = [loop.run_until_complete(run()),
               loop.run_until_complete(run(restore_signals=False))]
        want = [_sig_ign_mask(), _sig_ign_mask(restore_signals=False)]
    finally:
        signal.signal(signal.SIGHUP, old)
    assert got == want
    assert loop.run_until_complete(run()) == _sig_ign_mask()


# -- errors ----------------------------------------------------------------------------

def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:
        return (type(exc), str(exc), getattr(exc, "errno", None), getattr(exc, "filename", None))


@pytest.mark.parametrize("args,kwargs", [
    (["/nonexistent/program"], {}),
    (["nonexistent-program-xyz"], {}),
    ([PY, "-c", "pass"], {"cwd": "/nonexistent/dir"}),
    (["/"], {}),
    ([PY, "-c", "pass\0"], {}),
    ([PY, "-c", "pass"], {"env": {"A=B": "1"}}),
    ([PY, "-c", "pass"], {"env": {"A": "1\0"}}),
])
def test_exec_errors_as_popen(loop, args, kwargs):
    want = _outcome(lambda: subprocess.Popen(args, **kwargs).wait())

    async def main():
        proc = await asyncio.create_subprocess_exec(*args, **kwargs)
        return await proc.wait()

    assert want[0] is not "ok"
    assert _outcome(lambda: loop.run_until_complete(main())) == want


def test_not_executable(loop, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    want = _outcome(lambda: subprocess.Popen([str(script)]).wait())

    async def main():
        proc = await asyncio.create_subprocess_exec(str(script))
        return await proc.wait()

    assert want[0] is PermissionError
    assert _outcome(lambda: loop.run_until_complete(main())) == want


def test_argument_errors(loop):
    async def main():
        results = []
        for make in (lambda: loop.subprocess_shell(asyncio.SubprocessProtocol, ["ls"]),
                     lambda: loop.subprocess_shell(asyncio.SubprocessProtocol, b"true",
                                                   universal_newlines=True),
                     lambda: loop.subprocess_exec(asyncio.SubprocessProtocol, "true",
                                                  bufsize=1),
                     lambda: loop.subprocess_exec(asyncio.SubprocessProtocol, "true",
                                                  text=True),
                     lambda: asyncio.create_subprocess_shell(["ls"])):
            try:
                await make()
            except Exception as exc:
                results.append((type(exc), str(exc)))
        return results

    assert loop.run_until_complete(main()) == [
        (ValueError, "cmd must be a string"),
        (ValueError, "universal_newlines must be False"),
        (ValueError, "bufsize must be 0"),
        (ValueError, "text must be False"),
        (ValueError, "cmd must be a string"),
    ]


# -- signals, return codes, the transport ------------------------------------------------

@pytest.mark.parametrize("action,want", [
    ("terminate", -signal.SIGTERM),
    ("kill", -signal.SIGKILL),
    ("send_signal", -signal.SIGUSR1),
])
def test_signals_and_returncode(loop, action, want):
    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", WAITER, stdin=PIPE, stdout=PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        assert proc.returncode is None
        if action == "send_signal":
            proc.send_signal(signal.SIGUSR1)
        else:
            getattr(proc, action)()
        rc = await _wait(proc.wait())
        again = await proc.wait()
        # A finished process: further signals are not sent; once its pipes
        # closed too, the transport is done (ProcessLookupError).
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        return rc, again, proc.returncode

    assert loop.run_until_complete(main()) == (want, want, want)


def test_child_handles_sigterm(loop):
    code = ("import signal, sys\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n")

    async def main():
        proc = await asyncio.create_subprocess_exec(PY, "-c", code, stdin=PIPE, stdout=PIPE)
        assert await proc.stdout.readline() == b"ready\n"
        proc.terminate()
        return await _wait(proc.wait())

    assert loop.run_until_complete(main()) == 7


def test_exit_codes(loop):
    async def main():
        codes = []
        for cmd in ("exit 0", "exit 3", "exit 255", "kill -TERM $$"):
            proc = await asyncio.create_subprocess_shell(cmd)
            codes.append(await _wait(proc.wait()))
        return codes

    assert loop.run_until_complete(main()) == [0, 3, 255, -signal.SIGTERM]


def test_transport_api_and_protocol_events(loop):
    code = "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.stderr.write('err')"

    async def main():
        tr, pr = await loop.subprocess_exec(lambda: Recorder(loop), PY, "-c", code,
                                            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        pid = tr.get_pid()
        info = dict(
            pid_ok=isinstance(pid, int) and pid > 0,
            popen_pid=tr.get_extra_info("subprocess").pid == pid,
            rc_before=tr.get_returncode(),
            pipes=[tr.get_pipe_transport(fd) is not None for fd in (0, 1, 2, 3)],
            closing=tr.is_closing(),
        )
        stdin = tr.get_pipe_transport(0)
        stdin.write(b"shout")
        stdin.close()
        await _wait(pr.lost)
        info["rc_after"] = tr.get_returncode()
        tr.close()
        info["closing_after"] = tr.is_closing()
        return info, pr.events, bytes(pr.data[1]), bytes(pr.data[2])

    info, events, out, err = loop.run_until_complete(main())
    assert info == dict(pid_ok=True, popen_pid=True, rc_before=None,
                        pipes=[True, True, True, False], closing=False, rc_after=0,
                        closing_after=True)
    assert (out, err) == (b"SHOUT", b"err")
    assert events[0] == ("made",)
    assert events[-1] == ("lost", None)
    assert sorted(e for e in events[1:-1] if e[0] == "pipe_lost") == [
        ("pipe_lost", 0, None), ("pipe_lost", 1, None), ("pipe_lost", 2, None)]
    assert [e for e in events if e[0] == "exited"] == [("exited", 0)]


def test_stdin_pipe_transport_has_no_reading_side(loop):
    # asyncio's stdin transport is a write pipe transport: is_reading(),
    # pause_reading() and resume_reading() raise NotImplementedError (3.9-3.13),
    # and it keeps working after them.
    async def main():
        tr, pr = await loop.subprocess_exec(
            lambda: Recorder(loop), PY, "-c", "import sys; sys.stdout.write(sys.stdin.read())",
            stdin=PIPE, stdout=PIPE)
        stdin = tr.get_pipe_transport(0)
        raised = []
        for name in ("is_reading", "pause_reading", "resume_reading"):
            try:
                getattr(stdin, name)()
            except NotImplementedError as exc:
                raised.append((name, str(exc)))
        shown = repr(stdin).startswith("<")   # the repr does not ask is_reading()
        stdin.write(b"still writes")
        stdin.close()
        await _wait(pr.lost)
        tr.close()
        return raised, shown, bytes(pr.data[1])

    raised, shown, out = loop.run_until_complete(main())
    assert raised == [("is_reading", ""), ("pause_reading", ""), ("resume_reading", "")]
    assert shown
    assert out == b"still writes"


def test_exit_reported_after_all_pipes_closed(loop):
    # The child exits at once, but a grandchild keeps its stdout open until
    # our stdin closes: connection_lost() waits for that pipe.
    code = ("import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', "
            "'import sys; sys.stdin.read(); print(\"grandchild\")'])\n")

    async def main():
        tr, pr = await loop.subprocess_exec(lambda: Recorder(loop), PY, "-c", code,
                                            stdin=PIPE, stdout=PIPE)
        rc = await _wait(pr.exited)
        for _ in range(5):
            await asyncio.sleep(0)
        lost_early = pr.lost.done()
        tr.get_pipe_transport(0).close()
        await _wait(pr.lost)
        tr.close()
        return rc, lost_early, bytes(pr.data[1]), pr.events[-1]

    rc, lost_early, out, last = loop.run_until_complete(main())
    assert (rc, lost_early, out, last) == (0, False, b"grandchild\n", ("lost", None))


def test_process_wait_and_pipes(loop):
    # Process.wait() ends with the exit (3.11) or once the pipes closed too
    # (3.12+): either way read() then has everything.
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys; sys.stdout.buffer.write(b'x' * 50000)", stdout=PIPE)
        rc = await _wait(proc.wait())
        out = await proc.stdout.read()
        return rc, len(out)

    assert loop.run_until_complete(main()) == (0, 50000)


def test_transport_close_kills_child(loop):
    async def main():
        tr, pr = await loop.subprocess_exec(lambda: Recorder(loop), PY, "-c", WAITER,
                                            stdin=PIPE, stdout=PIPE)
        await _wait(pr.got_stdout)   # "ready": the child runs its code
        tr.close()
        rc = await _wait(pr.exited)
        await _wait(pr.lost)
        return rc, tr.get_returncode()

    assert loop.run_until_complete(main()) == (-signal.SIGKILL, -signal.SIGKILL)


def test_signal_after_transport_closed(loop):
    async def main():
        tr, pr = await loop.subprocess_exec(lambda: Recorder(loop), "true")
        await _wait(pr.lost)
        tr.close()
        results = []
        for call in (lambda: tr.send_signal(signal.SIGTERM), tr.terminate, tr.kill):
            try:
                call()
                results.append("ok")
            except ProcessLookupError:
                results.append("ProcessLookupError")
        return tr.get_returncode(), results

    assert loop.run_until_complete(main()) == (0, ["ProcessLookupError"] * 3)


def test_many_concurrent_children(loop):
    async def one(i):
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", f"import sys; print({i}); sys.exit({i % 7})", stdout=PIPE)
        out, _ = await proc.communicate()
        return proc.returncode, int(out)

    async def main():
        return await _wait(asyncio.gather(*(one(i) for i in range(20))), 60)

    assert loop.run_until_complete(main()) == [(i % 7, i) for i in range(20)]


def test_shell_with_cwd_env_and_pipeline(loop, tmp_path):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            'echo "$GREETING from $(pwd)" | tr a-z A-Z', stdout=PIPE, cwd=tmp_path,
            env={"GREETING": "hello", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        out, _ = await _wait(proc.communicate())
        return proc.returncode, out

    assert loop.run_until_complete(main()) == (
        0, f"HELLO FROM {str(tmp_path).upper()}\n".encode())


# -- the loop closing with a child still running (uvloop_lite) -------------------------

def _reaper(pid):
    for t in threading.enumerate():
        if t.name == f"uvloop_lite-reap-{pid}":
            return t
    return None


def _gone_or_not_zombie(pid) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            state = [line for line in f if line.startswith("State:")][0]
    except FileNotFoundError:
        return True
    return "Z" not in state.split()[1]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
@pytest.mark.filterwarnings("ignore::ResourceWarning")   # closed with children running
@pytest.mark.parametrize("popen", [False, True], ids=["uv_spawn", "popen"])
def test_no_zombie_after_loop_closes(uv_loop, popen):
    # Children still running when the loop closes are reaped once they exit
    # (from a thread): none stays a zombie.
    async def start():
        kw = {"preexec_fn": os.getpid} if popen else {}
        procs = []
        for _ in range(2):
            p = await asyncio.create_subprocess_exec(PY, "-c", WAITER, stdin=PIPE,
                                                     stdout=PIPE, **kw)
            assert await p.stdout.readline() == b"ready\n"
            procs.append(p)
        return procs

    procs = uv_loop.run_until_complete(start())
    pids = [p.pid for p in procs]
    uv_loop.close()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        reaper = _reaper(pid)   # None: it reaped the child and ended already
        if reaper is not None:
            reaper.join(10)
            assert not reaper.is_alive()
        assert _gone_or_not_zombie(pid), f"child {pid} is a zombie"
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    for p in procs:   # their transports belong to a closed loop: drop quietly
        p._transport._closed = True
