"""UVProcess (uv_process_t): child processes started with ``uv_spawn``, and the
SubprocessTransport of subprocess_exec/subprocess_shell.

libuv reaps its own children from its SIGCHLD handling and reports the exit
status to ``uvl_on_exit``, so no child watcher is involved.  The transport's
generic part -- connecting the stdio pipes, the order of process_exited(),
pipe_connection_lost() and connection_lost(), wait() -- is asyncio's own
``BaseSubprocessTransport`` (the one private asyncio class used here), so it
behaves as on the running Python version.

Popen options that uv_spawn cannot express (``preexec_fn``, ``process_group``,
``extra_groups``, ``umask``, ``user``/``group``, ``restore_signals=False``, and
signals ignored in this process, which a Popen child keeps ignored while
libuv's resets them) start the child with ``subprocess.Popen`` instead and
watch its exit through a pidfd on a ``uv_poll_t`` (Linux); without pidfds
(PyPy 3.9, old kernels) a thread waits for it, as asyncio's
ThreadedChildWatcher does.

process_exited() and the connection_lost() that follows run in the context
asyncio's child watcher gives them: from 3.12, where pidfds work, a copy of
the spawner's context (the watcher's pidfd reader Handle); else a thread's
empty one (ThreadedChildWatcher's, the default before 3.12).
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import threading
from asyncio import base_subprocess
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .._errors import uv_error
from .._ffi import ffi, lib
from .base import OPEN, UVHandle, callback_error
from .poll import READABLE, UVPoll

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["UVProcess", "SubprocessTransport"]

# Popen keyword arguments uv_spawn can honour, and the others with the value
# that means "not used": any other value starts the child with Popen instead.
# Popen(stdout=STDOUT) raises ValueError from 3.13 (before: EBADF in the child).
_POPEN_CHECKS_STDOUT = sys.version_info >= (3, 13)
_INT_MAX = 2 ** 31 - 1
_SPAWN_OK = {"executable", "cwd", "env", "pass_fds", "start_new_session",
             "close_fds", "restore_signals", "pipesize"}
_UNUSED = {"preexec_fn": None, "process_group": None, "extra_groups": None,
           "umask": -1, "user": None, "group": None, "creationflags": 0,
           "startupinfo": None}


# libuv's child resets signals 1 to 31 to SIG_DFL before exec.  exec itself
# keeps ignored signals ignored, and Popen resets only these (restore_signals).
_RESET_BY_LIBUV = [s for s in signal.valid_signals()
                   if 0 < s < 32 and s not in (signal.SIGKILL, signal.SIGSTOP)]
_RESTORED_BY_POPEN = {getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ")
                      if hasattr(signal, name)}


def _ignored_here() -> set[int]:
    """The signals this process ignores.  The kernel's word where /proc gives
    it: PyPy's signal.getsignal() does not see a SIG_IGN inherited from the
    parent (nohup, a shell's background job), CPython's does."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"SigIgn:"):
                    mask = int(line.split()[1], 16)
                    return {s for s in _RESET_BY_LIBUV if mask >> (s - 1) & 1}
    except (OSError, ValueError, IndexError):
        pass
    getsignal, ign = signal.getsignal, signal.SIG_IGN
    return {s for s in _RESET_BY_LIBUV if getsignal(s) == ign}


def _keeps_ignored(restore_signals: bool) -> bool:
    """Whether a Popen child would start with a signal ignored (SIG_IGN here,
    as with nohup), which uv_spawn's child would not."""
    restored = _RESTORED_BY_POPEN if restore_signals else set()
    return bool(_ignored_here() - restored)


class UVProcess(UVHandle):
    """A child started by ``uv_spawn``; ``on_exit(returncode)`` runs once."""

    _ctype = "uv_process_t *"

    def __init__(self, loop: LoopBase, args: list[bytes], executable: bytes | None,
                 cwd: bytes | None, env: list[bytes] | None, stdio: list[int],
                 detached: bool, on_exit: Callable[[int], Any]) -> None:
        super().__init__(loop)
        self._on_exit_cb: Callable[[int], Any] | None = on_exit
        self.returncode: int | None = None
        keep = []   # C strings must live through uv_spawn()

        def cstr(b: bytes) -> Any:
            c = ffi.new("char[]", b)
            keep.append(c)
            return c

        argv = ffi.new("char*[]", len(args) + 1)
        for i, a in enumerate(args):
            argv[i] = cstr(a)
        opts = ffi.new("uv_process_options_t *")
        opts.exit_cb = lib.uvl_on_exit
        opts.file = cstr(executable if executable is not None else args[0])
        opts.args = argv
        if env is not None:
            envp = ffi.new("char*[]", len(env) + 1)
            for i, e in enumerate(env):
                envp[i] = cstr(e)
            opts.env = envp
        if cwd is not None:
            opts.cwd = cstr(cwd)
        containers = ffi.new("uv_stdio_container_t[]", len(stdio))
        for i, fd in enumerate(stdio):
            if fd < 0:
                containers[i].flags = lib.UV_IGNORE
            else:
                containers[i].flags = lib.UV_INHERIT_FD
                containers[i].data.fd = fd
        opts.stdio_count = len(stdio)
        opts.stdio = containers
        if detached:
            opts.flags = lib.UV_PROCESS_DETACHED
        # uv_spawn registers the handle even when it fails: close it then.
        self._self_handle = ffi.new_handle(self)
        self._ptr.data = self._self_handle
        rc = lib.uv_spawn(loop._uv, self._ptr, opts)
        self._state = OPEN
        loop._handle_opened(self)
        if rc < 0:
            self.close()
            raise _spawn_error(rc, args[0] if executable is None else executable, cwd)
        self.pid: int = self._ptr.pid

    def _on_exit(self, exit_status: int, term_signal: int) -> None:
        self._on_exit_status(-term_signal if term_signal else exit_status)

    def reaped_elsewhere(self, returncode: int) -> None:
        """The child was reaped through Popen-style poll()/wait(): report the
        exit from the loop, as libuv would have."""
        if self.returncode is None and self._state == OPEN and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._on_exit_status, returncode)

    def _on_exit_status(self, returncode: int) -> None:
        if self.returncode is None and self._state == OPEN:
            self.returncode = returncode
            self.close()
            cb, self._on_exit_cb = self._on_exit_cb, None
            if cb is not None:
                cb(returncode)

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None or self._state != OPEN:
            return
        rc = lib.uv_process_kill(self._ptr, sig)
        if rc < 0 and rc != -3:   # ESRCH: it is exiting; its exit is on the way
            raise uv_error(rc)

    def orphan(self) -> None:
        """The loop is closing with the child still running: reap it from a
        thread when it exits, so that it never stays a zombie."""
        if self.returncode is None and self._state == OPEN:
            pid = self.pid
            threading.Thread(target=_reap, args=(pid,), daemon=True,
                             name=f"uvloop_lite-reap-{pid}").start()


_EXIT_IN_SPAWN_CONTEXT: bool | None = None


def _exit_in_spawn_context() -> bool:
    """Whether asyncio's default child watcher here would report exits from
    a pidfd reader (3.12+, pidfds working), in the spawner's context."""
    global _EXIT_IN_SPAWN_CONTEXT
    if _EXIT_IN_SPAWN_CONTEXT is None:
        can_use_pidfd = None
        if sys.version_info >= (3, 12):
            from asyncio import unix_events
            can_use_pidfd = getattr(unix_events, "can_use_pidfd", None)
        _EXIT_IN_SPAWN_CONTEXT = bool(can_use_pidfd is not None and can_use_pidfd())
    return _EXIT_IN_SPAWN_CONTEXT


def _check_pass_fds(fds: Iterable[Any]) -> list[int]:
    """``pass_fds`` as Popen takes them (int() of each; Popen's ValueError
    for a negative or too large one, EBADF for one not open), before they
    size the stdio array: a negative fd would replace stderr, a huge one
    would grow the array without end."""
    fds = sorted(set(map(int, fds)))
    if fds and not (0 <= fds[0] and fds[-1] <= _INT_MAX):
        raise ValueError("bad value(s) in fds_to_keep")
    for fd in fds:
        os.fstat(fd)   # OSError(EBADF), as the child's would be
    return fds


def _set_pipe_size(fd: int, size: int) -> None:
    if size is not None and size > 0 and hasattr(fcntl, "F_SETPIPE_SZ"):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _spawn_error(rc: int, program: bytes, cwd: bytes | None) -> OSError:
    exc = uv_error(rc)
    if isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError)):
        # As subprocess.Popen does: name what failed, the working directory
        # (libuv does not say whether chdir or exec failed) or the program.
        name = program
        if cwd is not None and not (os.path.isdir(cwd) and os.access(cwd, os.X_OK)):
            name = cwd
        return type(exc)(exc.errno, exc.strerror, os.fsdecode(name))
    return exc


def _no_nul(value: bytes) -> bytes:
    # C strings: Popen refuses what would be cut short at a NUL.
    if b"\0" in value:
        raise ValueError("embedded null byte")
    return value


def _hide_inherited_fds(keep: list[int]) -> list[int]:
    """close_fds=True, which uv_spawn has no option for: make the inheritable
    fds (from 3, not in ``keep``) non-inheritable for the spawn, as the child
    of Popen would close them.  Returns them, to be made inheritable again.
    The fd directory is read in C (shim.c): no Python filesystem call, which
    a blocking-call detector would flag, runs in the loop's thread."""
    out = ffi.new("int*[1]")
    n = lib.uvl_hide_inherited_fds(keep, len(keep), out)
    if n < 0:
        raise MemoryError
    try:
        return list(ffi.unpack(out[0], n)) if n else []
    finally:
        lib.uvl_free(out[0])


@ffi.def_extern(onerror=callback_error)
def uvl_on_exit(handle: Any, exit_status: int, term_signal: int) -> None:
    data = handle.data
    if data != ffi.NULL:
        ffi.from_handle(data)._on_exit(exit_status, term_signal)


class _ChildProc:
    """What BaseSubprocessTransport and users (extra info 'subprocess') expect
    of a Popen object, for a child started by uv_spawn: pid, the parent's pipe
    ends, returncode, poll(), wait(), send_signal(), terminate(), kill().

    poll() and wait() reap the child themselves when asked (as Popen's do);
    the transport then learns the exit status from them instead of libuv.
    """

    def __init__(self, pid: int, stdin: Any, stdout: Any, stderr: Any,
                 signal_fn: Callable[[int], None], on_reaped: Callable[[int], None]) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._signal = signal_fn
        self._on_reaped = on_reaped

    def _waitpid(self, flags: int) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:   # libuv reaped it: its exit callback follows
            return self.returncode
        if pid == 0:
            return None
        self.returncode = os.waitstatus_to_exitcode(status)
        self._on_reaped(self.returncode)
        return self.returncode

    def poll(self) -> int | None:
        return self._waitpid(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int | None:
        if timeout is None:
            return self._waitpid(0)
        import time
        deadline = time.monotonic() + timeout
        while True:
            rc = self._waitpid(os.WNOHANG)
            if rc is not None:
                return rc
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self._signal(sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class SubprocessTransport(base_subprocess.BaseSubprocessTransport):
    """asyncio.SubprocessTransport for a child process started through libuv."""

    _loop: LoopBase   # a uvloop_lite loop made it (_subprocess.py)

    def _start(self, args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any,
               bufsize: int, **kwargs: Any) -> None:
        self._exit_context = copy_context() if _exit_in_spawn_context() else Context()
        popen_only = {k: v for k, v in kwargs.items()
                      if k not in _SPAWN_OK and (k not in _UNUSED or v != _UNUSED[k])}
        if not popen_only and _keeps_ignored(kwargs.get("restore_signals", True)):
            popen_only = {"ignored signals": True}
        if popen_only:
            self._start_popen(args, shell, stdin, stdout, stderr, popen_only, kwargs)
        else:
            self._start_spawn(args, shell, stdin, stdout, stderr, kwargs)

    # -- uv_spawn -------------------------------------------------------------------

    def _start_spawn(self, args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any,
                     kwargs: dict[str, Any]) -> None:
        if shell:
            argv = [b"/bin/sh", b"-c", _no_nul(os.fsencode(args))]
        else:
            argv = [_no_nul(os.fsencode(a)) for a in args]
        pipesize = kwargs.get("pipesize")
        if pipesize is not None and not isinstance(pipesize, int):
            raise TypeError("pipesize must be an integer")   # Popen's check
        executable = kwargs.get("executable")
        executable = _no_nul(os.fsencode(executable)) if executable is not None else None
        cwd = kwargs.get("cwd")
        cwd = _no_nul(os.fsencode(cwd)) if cwd is not None else None
        env = kwargs.get("env")
        envlist = None
        if env is not None:
            envlist = []
            for k, v in env.items():
                k = os.fsencode(k)
                if b"=" in k:
                    raise ValueError("illegal environment variable name")
                envlist.append(_no_nul(k + b"=" + os.fsencode(v)))
        to_close: list[int] = []
        parent: list[Any] = [None, None, None]
        try:
            child = [0, 1, 2]
            for i, spec in enumerate((stdin, stdout, stderr)):
                if spec is None:
                    continue
                if spec == subprocess.PIPE:
                    r, w = os.pipe()
                    _set_pipe_size(w, kwargs.get("pipesize", -1))
                    if i == 0:
                        child[0] = r
                        parent[0] = open(w, "wb", buffering=0)
                        to_close.append(r)
                    else:
                        child[i] = w
                        parent[i] = open(r, "rb", buffering=0)
                        to_close.append(w)
                elif spec == subprocess.DEVNULL:
                    fd = os.open(os.devnull, os.O_RDWR)
                    to_close.append(fd)
                    child[i] = fd
                elif spec == subprocess.STDOUT and i == 2:
                    child[2] = child[1]
                elif spec is subprocess.STDOUT and i == 1 and _POPEN_CHECKS_STDOUT:
                    raise ValueError("STDOUT can only be used for stderr")
                elif isinstance(spec, int):
                    if spec < 0:
                        # Popen's child fails to dup2() it; uv_spawn would
                        # take a negative fd for "ignore".
                        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
                    child[i] = spec
                else:
                    child[i] = spec.fileno()
            stdio = list(child)
            pass_fds = _check_pass_fds(kwargs.get("pass_fds") or ())
            for fd in pass_fds:
                while len(stdio) <= fd:
                    stdio.append(-1)
                stdio[fd] = fd
            hidden = []
            if kwargs.get("close_fds", True):
                hidden = _hide_inherited_fds(pass_fds)
            try:
                self._uvproc = UVProcess(self._loop, argv, executable, cwd, envlist, stdio,
                                         bool(kwargs.get("start_new_session")),
                                         self._child_exited)
            finally:
                for fd in hidden:
                    os.set_inheritable(fd, True)
        except BaseException:
            for f in parent:
                if f is not None:
                    f.close()
            raise
        finally:
            for fd in to_close:
                os.close(fd)
        # A Popen look-alike, of the Popen interface asyncio's transport uses.
        self._proc = _ChildProc(  # type: ignore[assignment]
            self._uvproc.pid, parent[0], parent[1], parent[2],
            self._uvproc.send_signal, self._uvproc.reaped_elsewhere)

    def _child_exited(self, returncode: int) -> None:
        if self._returncode is None:
            self._exit_context.run(self._process_exited, returncode)

    # -- Popen + pidfd (or a waiting thread), for what uv_spawn cannot do ------------

    _popen_waiter: threading.Thread | None = None

    def _start_popen(self, args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any,
                     popen_only: dict[str, Any], kwargs: dict[str, Any]) -> None:
        proc = subprocess.Popen(args, shell=shell, stdin=stdin, stdout=stdout,
                                stderr=stderr, bufsize=0, **kwargs)
        pidfd_open = getattr(os, "pidfd_open", None)
        pidfd = None
        if pidfd_open is not None:
            try:
                pidfd = pidfd_open(proc.pid)
            except OSError as exc:
                if exc.errno != errno.ENOSYS:
                    proc.kill()
                    proc.wait()
                    raise
        self._popen = proc
        self._proc = proc
        if pidfd is not None:
            self._pidfd = pidfd
            self._pidfd_poll = UVPoll(self._loop, pidfd, self._pidfd_ready)
            self._pidfd_poll.start(READABLE)
        else:
            self._popen_waiter = threading.Thread(
                target=self._wait_popen, args=(proc,), daemon=True,
                name=f"uvloop_lite-reap-{proc.pid}")
            self._popen_waiter.start()

    def _wait_popen(self, proc: subprocess.Popen[Any]) -> None:
        """In the waiting thread: report the exit to the loop, if still open."""
        returncode = proc.wait()
        try:
            self._loop.call_soon_threadsafe(self._popen_exited, returncode)
        except RuntimeError:   # the loop is closed
            pass

    def _popen_exited(self, returncode: int) -> None:
        if self._returncode is None:
            self._exit_context.run(self._process_exited, returncode)

    def _pidfd_ready(self, poll: UVPoll, events: int, status: int) -> None:
        returncode = self._popen.wait()   # exited: reaps it without blocking
        poll.close()
        os.close(self._pidfd)
        if self._returncode is None:
            self._exit_context.run(self._process_exited, returncode)

    def _orphan(self) -> None:
        uvproc = getattr(self, "_uvproc", None)
        if uvproc is not None:
            uvproc.orphan()
        elif getattr(self, "_popen", None) is not None and self._returncode is None \
                and self._popen_waiter is None:
            threading.Thread(target=self._popen.wait, daemon=True,
                             name=f"uvloop_lite-reap-{self._popen.pid}").start()
