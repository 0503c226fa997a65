"""Fault injection for tests: make chosen libc calls fail or stall in a child
interpreter, to drive the error paths that loopback never takes.

``tests/faultinject.c`` is an ``LD_PRELOAD`` library (built here with the C
compiler, cached by source hash); ``run()`` starts ``python -c code`` with it
preloaded.  In the child, ``arm()`` (re)sets the rules at the exact moment a
test wants a fault and ``fired()`` tells whether a rule acted.

Rules (the ``FAULTINJECT`` variable at load, or ``arm()``/``faultinject_set()``
at run time; a new set replaces the old one and zeroes the counters)::

    rules := rule (";" rule)*            ("," also separates rules)
    rule  := names ":" field (":" field)*
    names := name ("|" name)*
    name  := write writev send sendto sendmsg sendmmsg
             read readv recv recvfrom recvmsg recvmmsg
             accept accept4 connect getaddrinfo
             out (= every write/send call)  in (= every read/recv call)
    field := ERRNO        fail with this errno (EAGAIN ECONNRESET ENOBUFS EPIPE
                          EMFILE ENFILE ECONNABORTED ECONNREFUSED ETIMEDOUT EINTR
                          EIO ENOMEM EINVAL EBADF ENOTCONN ... see the C table)
           | EAI_CODE     getaddrinfo returns it (EAI_AGAIN EAI_NONAME EAI_FAIL
                          EAI_MEMORY EAI_SYSTEM ...); an ERRNO on getaddrinfo
                          means EAI_SYSTEM with that errno
           | K            first bare number: act on the next K calls (default 1;
                          -1 or "*": every call)          also count=K
           | N            second bare number: let N calls through first
                          (default 0)                      also skip=N
           | delay=MS     sleep MS ms first (then fail, or make the real call)
           | short=N      pass at most N bytes to the real call (a short write
                          or read; writev/sendmsg get a trimmed iovec copy)
           | fd=F         only calls on fd F
           | host=H       getaddrinfo only for node H
           | any          also on fds that are not sockets (by default a rule
                          only sees sockets, checked with fstat S_ISSOCK, so
                          stdout, pipes and files are never hit)

Examples: ``write|writev|send:EAGAIN:1`` (the next write to any socket returns
EAGAIN once), ``accept4:EMFILE:5:2`` (two accepts pass, five fail),
``getaddrinfo:delay=2000`` (a resolver that answers in 2 s),
``getaddrinfo:EAI_NONAME:*``, ``connect:ECONNREFUSED``, ``send:short=1``.

Only one rule acts on a call (the first matching one that is not used up);
"calls" counted by skip/count are those that match the rule's names and
filters.  Thread-safe (libuv's thread pool runs getaddrinfo).  Linux/glibc;
works for CPython and PyPy (both call libc through the dynamic linker).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

__all__ = ["library", "run", "arm", "fired", "ROOT"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCE = HERE / "faultinject.c"


def _compiler() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)[:1] if cc else ["cc"]


def library() -> str:
    """Path of the built preload library (compiled once per source version)."""
    src = SOURCE.read_bytes()
    digest = hashlib.sha256(src).hexdigest()[:16]
    cache = Path(os.environ.get("FAULTINJECT_CACHE")
                 or Path(tempfile.gettempdir()) / f"uvloop_lite-faultinject-{os.getuid()}")
    cache.mkdir(parents=True, exist_ok=True)
    lib = cache / f"faultinject-{digest}.so"
    if not lib.exists():
        tmp = cache / f".faultinject-{digest}-{os.getpid()}.so"
        cmd = [*_compiler(), "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp),
               str(SOURCE), "-ldl", "-lpthread"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building {SOURCE.name} failed:\n{proc.stderr}")
        os.replace(tmp, lib)   # atomic: parallel builders never see half a file
    return str(lib)


def run(code: str, rules: str = "", *args: str, python: str | None = None,
        timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -c code *args`` with the library preloaded and ``rules``
    armed from the start ("" = none; arm later with ``arm()``).

    The child runs in the repository root with it and tests/ on sys.path, so
    it can ``import uvloop_lite`` and ``from faults import arm, fired``.
    Output is captured as text; the caller checks ``returncode``.
    """
    child_env = dict(os.environ if env is None else env)
    # Ours goes last: an ASan runtime, if preloaded, must stay first.
    preload = child_env.get("LD_PRELOAD", "")
    child_env["LD_PRELOAD"] = f"{preload} {library()}".strip()
    child_env["FAULTINJECT"] = rules
    paths = [str(ROOT), str(HERE)]
    if child_env.get("PYTHONPATH"):
        paths.append(child_env["PYTHONPATH"])
    child_env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([python or sys.executable, "-c", textwrap.dedent(code), *args],
                          cwd=ROOT, env=child_env, capture_output=True, text=True,
                          timeout=timeout)


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(None)
    try:
        lib.faultinject_set.argtypes = [ctypes.c_char_p]
        lib.faultinject_set.restype = ctypes.c_int
        lib.faultinject_fired.argtypes = [ctypes.c_char_p]
        lib.faultinject_fired.restype = ctypes.c_long
    except AttributeError:
        raise RuntimeError("faultinject is not preloaded (use faults.run())") from None
    return lib


def arm(rules: str) -> None:
    """In the child: replace the rules ("" disarms) and zero the counters."""
    if _lib().faultinject_set(rules.encode()) != 0:
        raise ValueError(f"bad fault rules: {rules!r}")


def fired(name: str) -> int:
    """In the child: how many ``name`` calls (e.g. "write") a rule acted on
    since the rules were last set."""
    n = _lib().faultinject_fired(name.encode())
    if n < 0:
        raise ValueError(f"unknown call name: {name!r}")
    return n
