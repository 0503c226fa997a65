"""Run the test suite on a sanitized build of uvloop_lite; fail on any report.

    python -m tests.sanitize.run                 # ASan + UBSan + libuv asserts, whole suite
    python -m tests.sanitize.run --sanitize undefined tests/test_tcp.py -x
    python -m tests.sanitize.run --valgrind      # memcheck on VALGRIND_TESTS
    python -m tests.sanitize.run --valgrind tests/test_udp.py -k send
    python -m tests.sanitize.run --conformance   # CPython's test_asyncio on the ASan build

Other arguments go to pytest (test paths among them replace the default set).

The build is ``UVLOOP_LITE_SANITIZE=<flavor> python build_uv.py``, which
compiles into its own copy of the tree, ``.sanitize/<flavor>/`` (see
build_uv.py), and the tests run in that copy: the checkout's extension is never
replaced nor imported, and a check before the tests makes sure the interpreter
imports the copy's extension and that it is the sanitized one.

ASan/UBSan: the interpreter itself is not instrumented, so it preloads the ASan
runtime (``LD_PRELOAD``, and ``PYTHONMALLOC=malloc`` so that Python's and cffi's
memory goes through ASan's allocator too).  Every report goes to a log file per
process in ``.sanitize/logs-<flavor>/`` (``log_path`` in ASAN_OPTIONS and
UBSAN_OPTIONS); the environment is inherited by the tests' subprocesses, so a
report in a child counts as one in pytest itself.  ASan also turns an abort --
a failed libuv assert, libuv's ``abort()`` on an errno it does not expect --
into a report with its stack (``handle_abort=1``), and UBSan reports are fatal.
Leak detection is off: CPython itself does not free everything at exit.

Valgrind: memcheck on a build with libuv's asserts and debug information but
no sanitizer (``UVLOOP_LITE_SANITIZE=assert``), ``PYTHONMALLOC=malloc``, the
tests' Python child processes traced too, logs per process in
``.sanitize/logs-assert/``, only the uvloop_lite half of the tests that run on
both loops (``uv_only.py``).  Any error with a frame in the extension (libuv,
the shim) or in cffi's backend fails the run, as does a process killed by a
signal (an assert, an abort, a segfault); errors wholly inside the interpreter
are counted but not held against us (CPython 3.11.7 has some of its own).

The run fails when pytest fails, when any report is logged, or when the output
shows a report, a failed assertion or an interpreter that could not load the
sanitized extension.  Before the tests a self-check proves the wiring: child
processes that each make one error (a heap overflow and a double ``uv_close``,
both in libuv) must each leave a report, since a run that
cannot see reports proves nothing.  Exit status: 0 clean, 1 on any failure or
report, 2 on a usage or set-up error.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from xml.etree import ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
import build_uv  # noqa: E402  (stdlib and cffi only; builds nothing on import)

#: The valgrind run's default tests: fast files that drive handles, timers,
#: TCP clients and servers, UDP and the close paths (the whole suite takes too
#: long under memcheck).
VALGRIND_TESTS = ["tests/test_handles.py", "tests/test_callbacks.py", "tests/test_tcp.py",
                  "tests/test_server.py", "tests/test_udp.py", "tests/test_udp_uv.py"]

#: What a report, an assert or a failed preload looks like in the output.
_REPORT_RE = re.compile(
    r"ERROR: AddressSanitizer|AddressSanitizer:DEADLYSIGNAL|ERROR: LeakSanitizer"
    r"|\S+:\d+:\d+: runtime error: |Assertion [`'].*' failed"
    r"|ASan runtime does not come first|==\d+== (Invalid (read|write|free)"
    r"|Conditional jump|Use of uninitialised|Syscall param)")

# A heap overflow in libuv: a timer initialised in a block too small for it.
_OVERFLOW = """\
from uvloop_lite._uv import ffi, lib
loop = ffi.new("uv_loop_t *")
assert lib.uv_loop_init(loop) == 0
lib.uv_timer_init(loop, ffi.cast("uv_timer_t *", ffi.new("char[8]")))
"""
# Closing a handle twice: libuv asserts (!uv__is_closing(handle)).
_DOUBLE_CLOSE = """\
from uvloop_lite._uv import ffi, lib
loop = ffi.new("uv_loop_t *")
assert lib.uv_loop_init(loop) == 0
timer = ffi.new("uv_timer_t *")
assert lib.uv_timer_init(loop, timer) == 0
handle = ffi.cast("uv_handle_t *", timer)
lib.uv_close(handle, ffi.NULL)
lib.uv_close(handle, ffi.NULL)
"""


def log(msg: str) -> None:
    print(f"[sanitize] {msg}", file=sys.stderr, flush=True)


def asan_runtime() -> str:
    """The ASan runtime of the C compiler that built the extension (setuptools
    takes $CC, else the interpreter's own)."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    out = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True,
                         text=True, check=False).stdout.strip()
    if not os.path.isabs(out) or not os.path.exists(out):
        raise SystemExit(f"[sanitize] {cc} has no ASan runtime (libasan.so: {out!r}); "
                         "on Debian/Ubuntu the compiler's libasan comes with gcc")
    return os.path.realpath(out)


def build(flavor: tuple[str, ...]) -> str:
    """Build the flavor's copy of the tree; its path."""
    env = dict(os.environ, **{build_uv.SANITIZE_ENV: ",".join(flavor)})
    started = time.monotonic()
    if subprocess.call([sys.executable, "build_uv.py"], cwd=ROOT, env=env) != 0:
        raise SystemExit("[sanitize] the sanitized build failed")
    log(f"build: {time.monotonic() - started:.1f} s")
    return os.path.join(ROOT, ".sanitize", "-".join(flavor))


def child_env(flavor: tuple[str, ...], tree: str, logs: str) -> dict[str, str]:
    """The environment of the tests and, through them, of their children."""
    env = dict(os.environ)
    # A test that builds (test_packaging's slow checks) builds a normal one.
    env.pop(build_uv.SANITIZE_ENV, None)
    env.update(PYTHONPATH=os.pathsep.join(p for p in (tree, env.get("PYTHONPATH")) if p),
               PYTHONMALLOC="malloc", PYTHONDONTWRITEBYTECODE="1")
    if "address" in flavor:
        preload = [asan_runtime()] + [p for p in env.get("LD_PRELOAD", "").split() if p]
        env["LD_PRELOAD"] = " ".join(preload)
        env["ASAN_OPTIONS"] = ":".join([
            "detect_leaks=0",                # CPython "leaks" at exit by design
            "handle_abort=1",                # an assert or abort() leaves a report
            "allocator_may_return_null=1",   # malloc(huge) fails as in libc (MemoryError)
            "log_path=" + os.path.join(logs, "asan"),
        ])
    if "undefined" in flavor:
        env["UBSAN_OPTIONS"] = ":".join([
            # Next to ASan, UBSan writes its report to stderr whatever log_path
            # says; its abort then leaves ASan's report (handle_abort) in a log.
            "halt_on_error=1", "abort_on_error=1", "print_stacktrace=1",
            "log_path=" + os.path.join(logs, "ubsan"),
        ])
    return env


def reset_logs(logs: str) -> None:
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)


def logged_reports(logs: str) -> dict[str, str]:
    """Log file -> its report, for every ASan/UBSan log that holds one and
    every valgrind log of a process that made an error in our code or died
    of a signal."""
    found = {}
    for path in sorted(glob.glob(os.path.join(logs, "*"))):
        if path.endswith(".xml"):
            continue
        with open(path, encoding="utf-8", errors="replace") as fp:
            text = fp.read()
        if os.path.basename(path).startswith("vg."):
            text = _valgrind_report(path, text)
        if text.strip():
            found[path] = text
    return found


#: A process that dies of one of these crashed (an assert, an abort(), ...).
_CRASH_SIGNALS = {"SIGABRT", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGSYS", "SIGTRAP"}
#: Code of ours: the extension (libuv and the shim) and cffi's backend, which
#: touches the memory we hand to libuv.
_OURS_RE = re.compile(r"/uvloop_lite/_uv[.][^/]*so$|/_cffi_backend[.][^/]*so$")


def _valgrind_report(path: str, text: str) -> str:
    """What counts in one process's valgrind log (empty if nothing does):
    every error with a frame in code of ours (in any of its stacks: where,
    allocated, freed), and death by a signal (an assert or abort() included).
    Errors wholly inside the interpreter are left out: some CPython builds
    have their own (3.11.7's int.from_bytes reads an uninitialised digit and
    the taint spreads through the eval loop); they are counted, not shown."""
    try:
        with open(path + ".xml", encoding="utf-8", errors="replace") as fp:
            xml = fp.read()
    except FileNotFoundError:
        xml = ""
    ours, theirs = [], 0
    for block in re.findall(r"<error>.*?</error>", xml, re.S):
        try:
            err = ElementTree.fromstring(block)
        except ElementTree.ParseError:
            continue
        if err.findtext("kind", "").startswith("Leak_"):
            continue   # leak records, which the XML has even with --leak-check=no
        if any(_OURS_RE.search(obj.text or "") for obj in err.iter("obj")):
            ours.append(_format_error(err))
        else:
            theirs += 1
    died = ""
    for block in re.findall(r"<fatal_signal>.*?</fatal_signal>", xml, re.S):
        try:
            sig = ElementTree.fromstring(block)
        except ElementTree.ParseError:
            continue
        name = sig.findtext("signame", "")
        if name in _CRASH_SIGNALS:   # not a test's kill() or terminate()
            died = "\n".join([f"killed by {name}", *_frames(sig.find("stack"))])
    if not ours and not died:
        return ""
    head = f"{len(ours)} error(s) in our code"
    if theirs:
        head += f" ({theirs} inside the interpreter left out)"
    return "\n".join([head, *ours, died, text.strip()])


def _format_error(err: ElementTree.Element) -> str:
    """One memcheck error from the XML log: what, then each stack's frames."""
    lines = [err.findtext("what") or err.findtext("xwhat/text") or err.findtext("kind", "")]
    for child in err:
        if child.tag in ("auxwhat", "xauxwhat"):
            lines.append("  " + (child.text or child.findtext("text", "")))
        elif child.tag == "stack":
            lines += _frames(child)
    return "\n".join(lines)


def _frames(stack: ElementTree.Element | None, limit: int = 16) -> list[str]:
    lines = []
    for frame in [] if stack is None else list(stack.iter("frame"))[:limit]:
        where = frame.findtext("file")
        where = f"{where}:{frame.findtext('line')}" if where else frame.findtext("obj", "?")
        lines.append(f"    {frame.findtext('fn', '???')} ({where})")
    return lines


def valgrind_command(logs: str) -> list[str]:
    if shutil.which("valgrind") is None:
        raise SystemExit("[sanitize] valgrind is not installed (apt-get install valgrind)")
    return ["valgrind", "--tool=memcheck", "--leak-check=no", "--error-limit=no",
            "--num-callers=40", "--show-leak-kinds=none", "--child-silent-after-fork=yes",
            # The tests' Python children too; not the system's programs they run.
            "--trace-children=yes", "--trace-children-skip=/bin/*,/usr/bin/*,/sbin/*",
            "--log-file=" + os.path.join(logs, "vg.%p"),
            "--xml=yes", "--xml-file=" + os.path.join(logs, "vg.%p.xml")]


def self_check(flavor: tuple[str, ...], tree: str, env: dict[str, str], logs: str,
               wrap: list[str]) -> bool:
    """Each planted error in a child process must leave a report.  (Not for
    UBSan alone: without ASan or valgrind an abort leaves no log.)"""
    checks = []
    if "address" in flavor or wrap:
        checks = [("heap overflow", _OVERFLOW), ("double uv_close", _DOUBLE_CLOSE)]
    ok = True
    for name, code in checks:
        reset_logs(logs)
        proc = subprocess.run([*wrap, sys.executable, "-c", code], cwd=tree, env=env,
                              capture_output=True, text=True, check=False)
        if not logged_reports(logs):
            log(f"self-check FAILED: a {name} in a child process left no report "
                f"(exit status {proc.returncode}); output:\n{proc.stdout}{proc.stderr}")
            ok = False
        else:
            log(f"self-check: a {name} in a child process is reported")
    reset_logs(logs)
    return ok


def check_import(flavor: tuple[str, ...], tree: str, env: dict[str, str]) -> bool:
    """The tests will import the copy's extension, and it is this flavor's."""
    want = build_uv._sanitize_args(flavor)[2]
    code = ("import uvloop_lite, uvloop_lite._uv as u; "
            "print(uvloop_lite.__file__); print(u.lib.UVL_SANITIZE)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env,
                          capture_output=True, text=True, check=False)
    lines = proc.stdout.split()
    if (proc.returncode != 0 or len(lines) != 2
            or not os.path.realpath(lines[0]).startswith(os.path.realpath(tree) + os.sep)
            or lines[1] != str(want)):
        log(f"the interpreter does not import the {','.join(flavor)} build from {tree} "
            f"(UVL_SANITIZE={want} expected):\n{proc.stdout}{proc.stderr}")
        return False
    return True


def run_pytest(cmd: list[str], tree: str, env: dict[str, str]) -> tuple[int, list[str]]:
    """pytest's (or ``cmd``'s) exit status and the output lines that look
    like reports (the output is passed through as it comes)."""
    seen = []
    with subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if _REPORT_RE.search(line):
                seen.append(line.rstrip())
    return proc.returncode, seen


def commands(args: argparse.Namespace, pytest_args: list[str], tree: str,
             wrap: list[str]) -> list[list[str]]:
    """The test runs, each wrapped in ``wrap`` (valgrind's command or none)."""
    if args.conformance:
        # Its exit status is about asyncio parity, which CI's normal run checks.
        return [[*wrap, sys.executable, "-m", "tests.conformance.run", "--suite", suite,
                 "--no-compare", "-j", str(os.cpu_count() or 1), *pytest_args]
                for suite in ("core", "network")]
    # `tests` (or the valgrind set) unless the arguments name test paths themselves.
    names_paths = any(not a.startswith("-") and os.path.exists(os.path.join(tree, a.split("::")[0]))
                      for a in pytest_args)
    default = VALGRIND_TESTS if args.valgrind else ["tests"]
    timeout = args.timeout or (900 if args.valgrind else 120)
    uv_only = ["-p", "tests.sanitize.uv_only"] if args.valgrind else []
    return [[*wrap, sys.executable, "-m", "pytest", "-q", "-o", f"timeout={timeout:g}", *uv_only,
             *([] if names_paths else default), *pytest_args]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.sanitize.run", description=__doc__.split("\n")[0],
        epilog="Other arguments go to pytest (to tests.conformance.run with --conformance); "
               "test paths among them replace the default set.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--sanitize", default="address,undefined", metavar="LIST",
                      help="address, undefined or both, comma-separated (default: both)")
    mode.add_argument("--valgrind", action="store_true",
                      help="valgrind memcheck on an asserts-only build instead")
    ap.add_argument("--timeout", type=float, default=None,
                    help="pytest-timeout's seconds per test (default 120, 900 under valgrind)")
    ap.add_argument("--conformance", action="store_true",
                    help="CPython's test_asyncio (tests/conformance, core and network "
                         "suites, uvloop_lite only) instead of pytest: only reports count")
    ap.add_argument("--no-self-check", action="store_true",
                    help="skip the check that a planted overflow and double uv_close "
                         "in a child process are reported")
    args, pytest_args = ap.parse_known_args(argv)
    if args.conformance and args.valgrind:
        ap.error("--conformance runs on the ASan/UBSan build only")

    flavor = ("assert",) if args.valgrind else build_uv.sanitize_flavor(args.sanitize)
    if not flavor or flavor == ("assert",) and not args.valgrind:
        ap.error("--sanitize takes address, undefined or both")
    name = ",".join(flavor)
    started = time.monotonic()
    tree = build(flavor)
    logs = os.path.join(ROOT, ".sanitize", "logs-" + "-".join(flavor))
    reset_logs(logs)
    env = child_env(flavor, tree, logs)
    wrap = valgrind_command(logs) if args.valgrind else []
    if not check_import(flavor, tree, env):
        return 2
    if not args.no_self_check and not self_check(flavor, tree, env, logs, wrap):
        return 2

    rc, seen = 0, []
    for cmd in commands(args, pytest_args, tree, wrap):
        log(f"{name}: {' '.join(cmd[len(wrap):])} (in {tree})")
        one_rc, one_seen = run_pytest(cmd, tree, env)
        rc, seen = rc or one_rc, seen + one_seen
    reports = logged_reports(logs)
    for path, text in reports.items():
        print(f"\n===== {path}\n{text.rstrip()}", file=sys.stderr)
    for line in seen:
        log(f"in the output: {line}")
    took = time.monotonic() - started
    verdict = "clean" if rc == 0 and not reports and not seen else "FAILED"
    what = "tests.conformance.run" if args.conformance else "pytest"
    log(f"{name}: {verdict}: {what} exit status {rc}, {len(reports)} process(es) with "
        f"reports in {logs}, {len(seen)} report line(s) in the output, {took:.0f} s")
    if rc == 5:
        log("pytest collected no tests (exit status 5): counted as a failure")
    return 0 if verdict == "clean" else 1


if __name__ == "__main__":
    sys.exit(main())
