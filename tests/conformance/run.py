"""Run CPython's Lib/test/test_asyncio against uvloop_lite (or asyncio's own loop).

    python -m tests.conformance.run --suite core            # uvloop_lite vs asyncio
    python -m tests.conformance.run --loop asyncio --modules test_locks
    python -m tests.conformance.run --list                  # suites and the plan

The tests are the interpreter's own copy (``test.test_asyncio``), unmodified.
Every module runs in a worker subprocess that first points asyncio's default
policy at the loop under test, so ``asyncio.new_event_loop()``, ``asyncio.run``,
``asyncio.Runner`` and ``IsolatedAsyncioTestCase`` all build it.  Test classes
bound to asyncio's SelectorEventLoop are replaced by an injected
``LoopUnderTest*`` class and tests of asyncio internals are left out, both
listed with their reasons in ``EXCLUDED`` and ``INJECTED`` below.  The plan is
the same for both loops, so their results compare test by test.

Exit status: 1 when a selected core test fails on uvloop_lite but passes on
asyncio (the asyncio run is done alongside unless ``--no-compare``), 2 on a
usage error, 130 when interrupted, else 0.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOOPS = ("uvloop_lite", "asyncio")

# ------------------------------------------------------------------- the plan

_BOUND = ("binds the loop-generic mixin to asyncio's SelectorEventLoop with one "
          "selector; the mixin runs in the injected LoopUnderTest class instead")
_WINDOWS = "Windows only (ProactorEventLoop / IOCP)"
_WATCHERS = ("asyncio's child watchers (unix_events.*ChildWatcher); uvloop_lite "
             "reaps its children through libuv")

#: Left out, "module" or "module.Class" -> why.  Never a test that merely fails.
EXCLUDED: dict[str, str] = {
    "test_selector_events": "unit tests of asyncio.selector_events internals with mocked selectors",
    "test_proactor_events": "unit tests of asyncio.proactor_events (IOCP) with mocks",
    "test_windows_events": _WINDOWS,
    "test_windows_utils": _WINDOWS,
    "test_base_events.BaseEventTests": "base_events helper functions (_ipaddr_info, ...)",
    "test_base_events.BaseEventLoopTests": "instantiates BaseEventLoop itself, mocks its privates",
    "test_base_events.BaseEventLoopWithSelectorTests":
        "SelectorEventLoop with private methods mocked (_make_socket_transport, _selector, ...)",
    "test_base_events.BaseLoopSockSendfileTests": "BaseSelectorEventLoop sendfile fallback internals",
    "test_base_events.TestSelectorUtils": "selector_events._set_nodelay internals",
    "test_events.SelectEventLoopTests": _BOUND,
    "test_events.EPollEventLoopTests": _BOUND,
    "test_events.PollEventLoopTests": _BOUND,
    "test_events.KqueueEventLoopTests": _BOUND,
    "test_events.ProactorEventLoopTests": _WINDOWS,
    "test_sendfile.SelectEventLoopTests": _BOUND,
    "test_sendfile.EPollEventLoopTests": _BOUND,
    "test_sendfile.PollEventLoopTests": _BOUND,
    "test_sendfile.KqueueEventLoopTests": _BOUND,
    "test_sendfile.ProactorEventLoopTests": _WINDOWS,
    "test_sock_lowlevel.SelectEventLoopTests": _BOUND,
    "test_sock_lowlevel.EPollEventLoopTests": _BOUND,
    "test_sock_lowlevel.PollEventLoopTests": _BOUND,
    "test_sock_lowlevel.KqueueEventLoopTests": _BOUND,
    "test_sock_lowlevel.ProactorEventLoopTests": _WINDOWS,
    "test_server.SelectorStartServerTests": _BOUND,
    "test_server.ProactorStartServerTests": _WINDOWS,
    "test_buffered_proto.BufferedProtocolSelectorTests": _BOUND,
    "test_buffered_proto.BufferedProtocolProactorTests": _WINDOWS,
    "test_sslproto.SelectorStartTLSTests": _BOUND,
    "test_sslproto.ProactorStartTLSTests": _WINDOWS,
    "test_sslproto.SslProtoHandshakeTests":
        "sslproto.SSLProtocol driven through a mocked transport and loop",
    "test_subprocess.SubprocessTransportTests":
        "base_subprocess.BaseSubprocessTransport internals on a test loop",
    "test_subprocess.SubprocessWatcherMixin": _WATCHERS,
    "test_subprocess.SubprocessThreadedWatcherTests": _WATCHERS,
    "test_subprocess.SubprocessMultiLoopWatcherTests": _WATCHERS,
    "test_subprocess.SubprocessSafeWatcherTests": _WATCHERS,
    "test_subprocess.SubprocessFastWatcherTests": _WATCHERS,
    "test_subprocess.SubprocessPidfdWatcherTests": _WATCHERS,
    "test_subprocess.MultiLoopChildWatcherTests": _WATCHERS,
    "test_subprocess.GenericWatcherTests": _WATCHERS,
    "test_subprocess.SubprocessProactorTests": _WINDOWS,
    "test_unix_events.SelectorEventLoopSignalTests":
        "_UnixSelectorEventLoop signal internals with the signal module mocked",
    "test_unix_events.SelectorEventLoopUnixSocketTests": _BOUND,
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests":
        "_UnixSelectorEventLoop._sock_sendfile_native internals",
    "test_unix_events.UnixReadPipeTransportTests": "unix_events._UnixReadPipeTransport with mocks",
    "test_unix_events.UnixWritePipeTransportTests": "unix_events._UnixWritePipeTransport with mocks",
    "test_unix_events.AbstractChildWatcherTests": _WATCHERS,
    "test_unix_events.BaseChildWatcherTests": _WATCHERS,
    "test_unix_events.SafeChildWatcherTests": _WATCHERS,
    "test_unix_events.FastChildWatcherTests": _WATCHERS,
    # Single tests that patch a private name of asyncio's own implementation:
    "test_subprocess.LoopUnderTestSubprocessTests.test_popen_error":
        "mocks subprocess.Popen to fail; uvloop_lite starts children with uv_spawn",
    "test_subprocess.LoopUnderTestSubprocessTests.test_popen_error_with_stdin_pipe":
        "mocks subprocess.Popen to fail; uvloop_lite starts children with uv_spawn",
    "test_unix_events.LoopUnderTestUnixSocketTests.test_create_unix_server_bind_error":
        "mocks the socket module as imported by asyncio.unix_events",
    # A race in the test itself, lost now and then by uvloop_lite:
    "test_events.LoopUnderTestEventLoopTests.test_create_ssl_unix_connection":
        "reads 'sockname' through the TLS transport after create_connection returns, "
        "while the test server answers the request sent in connection_made() and "
        "closes; once the EOF has been handled (uvloop_lite polls at the end of an "
        "iteration, asyncio at the start) the TLS protocol has dropped its transport "
        "and returns None (about 1 run in 3 here)",
}

#: module -> (class name, bases as names in the module, how the loop gets in).
#: Hooks: "create_event_loop" / "new_loop" are the mixins' own factory methods;
#: "setUp" runs the setUp of whatever follows the first base in the MRO, then
#: sets ``self.loop`` (for classes that build their loop inside setUp).
INJECTED: dict[str, tuple[str, tuple[str, ...], str]] = {
    "test_events": ("LoopUnderTestEventLoopTests",
                    ("EventLoopTestsMixin", "SubprocessTestsMixin", "test_utils.TestCase"),
                    "create_event_loop"),
    "test_sendfile": ("LoopUnderTestSendfileTests",
                      ("SendfileTestsBase", "test_utils.TestCase"), "create_event_loop"),
    "test_sock_lowlevel": ("LoopUnderTestSockTests",
                           ("BaseSockTestsMixin", "test_utils.TestCase"), "create_event_loop"),
    # SelectorStartServerTests also holds loop-generic tests of its own.
    "test_server": ("LoopUnderTestStartServerTests", ("SelectorStartServerTests",), "new_loop"),
    "test_buffered_proto": ("LoopUnderTestBufferedProtocolTests",
                            ("BaseTestBufferedProtocol", "unittest.TestCase"), "new_loop"),
    "test_sslproto": ("LoopUnderTestStartTLSTests",
                      ("BaseStartTLS", "unittest.TestCase"), "new_loop"),
    "test_subprocess": ("LoopUnderTestSubprocessTests",
                        ("SubprocessMixin", "test_utils.TestCase"), "setUp"),
    "test_unix_events": ("LoopUnderTestUnixSocketTests",
                         ("SelectorEventLoopUnixSocketTests",), "setUp"),
}

#: Scaffolding that builds ``asyncio.BaseEventLoop`` with a mocked selector
#: (so its tests run on no real loop at all), "module.Class.method" -> why.
#: Replaced, for both loops alike, by the loop under test; test_runners keeps
#: its probe (``loop.shutdown_ag_run`` records that shutdown_asyncgens ran).
RETARGETED: dict[str, str] = {
    "test_runners.BaseTest.new_loop": "asyncio.run/Runner tests on a mocked BaseEventLoop",
    "test_pep492.BaseTest.setUp": "async with/for on a mocked BaseEventLoop",
}

# ------------------------------------------------------------------- suites

CORE_MODULES = ("test_tasks", "test_futures2", "test_locks", "test_queues",
                "test_taskgroups", "test_timeouts", "test_waitfor", "test_runners",
                "test_context", "test_pep492")

#: The test_events cases of the loop core (fnmatch on "Class.test"): running,
#: stopping and closing, call_soon/call_later/call_soon_threadsafe and timer
#: rounding, run_in_executor, handles and timers, policies and get_event_loop.
#: The rest of test_events (I/O, pipes, signals, subprocesses) is "network".
EVENTS_CORE_PATTERNS = (
    "LoopUnderTestEventLoopTests.test_run_until_complete*",
    "LoopUnderTestEventLoopTests.test_call_later",
    "LoopUnderTestEventLoopTests.test_call_soon*",
    "LoopUnderTestEventLoopTests.test_run_in_executor*",
    "LoopUnderTestEventLoopTests.test_timeout_rounding",
    "LoopUnderTestEventLoopTests.test_close*",
    "HandleTests.*", "TimerTests.*", "AbstractEventLoopTests.*",
    "PolicyTests.*", "TestPyGetEventLoop.*", "TestCGetEventLoop.*",
)

NETWORK_MODULES = ("test_streams", "test_server", "test_sock_lowlevel", "test_sendfile",
                   "test_buffered_proto", "test_unix_events", "test_ssl", "test_sslproto",
                   "test_subprocess")


def is_core(module: str, test_id: str) -> bool:
    """Whether a test belongs to the core suite."""
    if module in CORE_MODULES:
        return True
    key = ".".join(test_id.split(".")[-2:])
    return module == "test_events" and any(fnmatch.fnmatchcase(key, p)
                                           for p in EVENTS_CORE_PATTERNS)


def suite_selection(name: str, available: list[str]) -> list[tuple[str, tuple, tuple]]:
    """[(module, include patterns, exclude patterns)] of a named suite."""
    core = [(m, (), ()) for m in CORE_MODULES]
    core.append(("test_events", EVENTS_CORE_PATTERNS, ()))
    network = [("test_events", (), EVENTS_CORE_PATTERNS)]
    network += [(m, (), ()) for m in NETWORK_MODULES]
    taken = set(CORE_MODULES) | set(NETWORK_MODULES) | {"test_events"}
    rest = [(m, (), ()) for m in available if m not in taken]
    chosen = {"core": core, "network": network, "rest": rest,
              "all": [(m, (), ()) for m in available]}[name]
    return [entry for entry in chosen if entry[0] in available]


# ------------------------------------------------------------------- worker

_loops_built = [0]
_loop_types: set[str] = set()
_emit = [lambda **event: None]


def _install_loop(loop_name: str):
    """Point asyncio's default policy class at the loop under test; return a
    counting factory.  Patching the class (not setting a policy instance)
    survives the suite's many set_event_loop_policy(None) calls."""
    import asyncio
    policy_cls = asyncio.DefaultEventLoopPolicy
    if loop_name == "uvloop_lite":
        import uvloop_lite
        make = uvloop_lite.new_event_loop
    else:
        make = policy_cls._loop_factory

    def factory():
        _loops_built[0] += 1
        loop = make()
        name = f"{type(loop).__module__}.{type(loop).__qualname__}"
        if name not in _loop_types:
            _loop_types.add(name)
            _emit[0](ev="loop_type", name=name)
        return loop

    policy_cls._loop_factory = staticmethod(factory)
    asyncio.set_event_loop_policy(None)
    return factory


def _lookup(module, dotted: str):
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _setup_with_loop(owner, factory):
    """setUp that skips owner's own, then makes ``self.loop`` the loop under test."""
    def setUp(self):
        super(owner, self).setUp()
        self.loop = factory()
        self.set_event_loop(self.loop)
    return setUp


def _probed_loop(factory):
    loop = factory()
    loop.shutdown_ag_run = False
    real = loop.shutdown_asyncgens

    async def shutdown_asyncgens():
        loop.shutdown_ag_run = True
        await real()
    loop.shutdown_asyncgens = shutdown_asyncgens
    return loop


def _inject(module, short: str, factory) -> list[str]:
    """Apply INJECTED and RETARGETED to the imported module; return notes."""
    notes = []
    for key in RETARGETED:
        mod, cls_name, meth = key.split(".")
        cls = getattr(module, cls_name, None) if mod == short else None
        if cls is None or meth not in vars(cls):
            continue
        if meth == "setUp":
            setattr(cls, meth, _setup_with_loop(cls, factory))
        else:
            setattr(cls, meth, lambda self: _probed_loop(factory))
        notes.append(f"retargeted {cls_name}.{meth}")
    if short not in INJECTED:
        return notes
    name, base_names, hook = INJECTED[short]
    try:
        bases = tuple(_lookup(module, b) for b in base_names)
    except AttributeError as exc:
        return notes + [f"not injected ({exc})"]
    ns = {"__module__": module.__name__, "__qualname__": name}
    if hook in ("create_event_loop", "new_loop"):
        ns[hook] = lambda self: factory()
    else:
        ns["setUp"] = _setup_with_loop(bases[0], factory)
    setattr(module, name, type(name, bases, ns))
    return notes + [f"injected {name}({', '.join(base_names)}) via {hook}"]


def _iter_tests(suite):
    import unittest
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def _status_of(outcomes: list[str]) -> str:
    for status in ("error", "fail", "xpass", "skip", "xfail"):
        if status in outcomes:
            return status
    return "pass"


def _result_class(emit, test_timeout: float, fault_fp):
    import faulthandler
    import unittest

    class Result(unittest.TestResult):
        """Streams one JSON line per test; arms a faulthandler watchdog per test."""

        current = None

        def startTest(self, test):
            super().startTest(test)
            self.current = {"id": test.id(), "outcomes": [], "detail": None,
                            "loops": _loops_built[0], "t0": time.monotonic()}
            emit(ev="begin", id=test.id())
            faulthandler.dump_traceback_later(test_timeout, exit=True, file=fault_fp)

        def stopTest(self, test):
            faulthandler.cancel_dump_traceback_later()
            super().stopTest(test)
            cur, self.current = self.current, None
            if cur is not None:
                emit(ev="result", id=cur["id"], status=_status_of(cur["outcomes"]),
                     detail=cur["detail"], loops=_loops_built[0] - cur["loops"],
                     secs=round(time.monotonic() - cur["t0"], 3))

        def _add(self, test, outcome, err=None, text=None):
            if err is not None:
                text = "".join(traceback.format_exception(*err))[-3000:]
            cur = self.current
            if cur is None or cur["id"] != test.id():   # module/class fixture
                emit(ev="incident", id=str(test), outcome=outcome, detail=text)
                return
            cur["outcomes"].append(outcome)
            if text and cur["detail"] is None:
                cur["detail"] = text

        def addSuccess(self, test):
            super().addSuccess(test)

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._add(test, "fail", err)

        def addError(self, test, err):
            super().addError(test, err)
            self._add(test, "error", err)

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._add(test, "skip", text=str(reason))

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._add(test, "xfail")

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._add(test, "xpass", text="unexpected success")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                kind = "fail" if issubclass(err[0], test.failureException) else "error"
                self._add(test, kind, err)

    return Result


def worker(args) -> None:
    import faulthandler
    import unittest

    events = open(args.events, "a", encoding="utf-8", buffering=1)

    def emit(**event):
        events.write(json.dumps(event) + "\n")
    _emit[0] = emit

    fault_fp = open(args.fault_log, "w")
    faulthandler.enable(file=fault_fp, all_threads=True)
    # Started from a background job (``cmd &`` in a script, nohup), the
    # worker inherits SIGINT ignored, and Python then installs no handler:
    # test_runners' Ctrl-C tests would wait out their timeout on both loops.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    factory = _install_loop(args.loop)
    import test.test_asyncio  # noqa: F401  (the stdlib copy)
    skip_ids = set(json.load(open(args.skip_ids))) if args.skip_ids else set()
    include, exclude = json.loads(args.include), json.loads(args.exclude)

    short = args.worker
    try:
        module = __import__(f"test.test_asyncio.{short}", fromlist=["_"])
    except unittest.SkipTest as exc:
        emit(ev="module_skipped", reason=str(exc))
        emit(ev="finished")
        os._exit(0)
    notes = _inject(module, short, factory)
    selected, planned, excluded, filtered = [], [], {}, 0
    for test in _iter_tests(unittest.defaultTestLoader.loadTestsFromModule(module)):
        cls = type(test).__name__
        method = getattr(test, "_testMethodName", "")
        if f"{short}.{cls}" in EXCLUDED or f"{short}.{cls}.{method}" in EXCLUDED:
            excluded[cls] = excluded.get(cls, 0) + 1
            continue
        key = f"{cls}.{getattr(test, '_testMethodName', '')}"
        if include and not any(fnmatch.fnmatchcase(key, p) for p in include):
            filtered += 1
            continue
        if any(fnmatch.fnmatchcase(key, p) for p in exclude):
            filtered += 1
            continue
        planned.append(test.id())
        if test.id() not in skip_ids:
            selected.append(test)
    emit(ev="plan", ids=planned, excluded=excluded, filtered=filtered, notes=notes)
    _loops_built[0] = 0
    # The suite drops each test once run; nothing else may keep them (``test``
    # and ``selected``), or every gc.collect() of a later test walks all the
    # finished ones (test_tasks' test_task_del_collect makes 100 per class).
    suite, selected, test = unittest.TestSuite(selected), None, None
    suite.run(_result_class(emit, args.test_timeout, fault_fp)())
    emit(ev="finished")
    events.flush()
    fault_fp.flush()
    # Lingering threads of a misbehaving test must not hang the worker's exit.
    os._exit(0)


# ------------------------------------------------------------------- parent

PASSED, FAILED, SKIPPED = ("pass", "xfail"), ("fail", "xpass"), ("skip",)
# Anything else (error, timeout, crash, notrun) counts as an error.

_interrupted = threading.Event()
_workers: set = set()   # live worker Popen objects, for Ctrl-C


def _kill_session(proc) -> None:
    try:   # the worker's whole session: it and anything it spawned
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: str, size: int = 3000) -> str:
    try:
        with open(path, "rb") as fp:
            fp.seek(0, os.SEEK_END)
            fp.seek(max(0, fp.tell() - size))
            return fp.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _read_events(path: str) -> list[dict]:
    out = []
    try:
        with open(path, encoding="utf-8") as fp:
            for line in fp:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass   # a line cut short by a kill
    except OSError:
        pass
    return out


def run_module(loop: str, module: str, include, exclude, opts) -> dict:
    """Run one module in worker subprocesses, restarting after a hang or crash
    on the tests not run yet; returns its record."""
    info = {"module": module, "loop": loop, "tests": {}, "excluded": {}, "filtered": 0,
            "notes": [], "incidents": [], "module_skipped": None, "workers": 0,
            "loop_types": []}
    wdir = tempfile.mkdtemp(prefix=f"conf-{loop}-{module}-")
    started = time.monotonic()
    planned = None
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONASYNCIODEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    while True:
        budget = opts.module_timeout - (time.monotonic() - started)
        if _interrupted.is_set():
            info["incidents"].append("interrupted")
            break
        if budget < 1 or info["workers"] > opts.max_restarts:
            info["incidents"].append("module budget or restarts exhausted")
            break
        info["workers"] += 1
        n = info["workers"]
        events, fault, out = (os.path.join(wdir, f"{k}.{n}") for k in ("events", "fault", "out"))
        skip = os.path.join(wdir, f"skip.{n}.json")
        with open(skip, "w") as fp:
            json.dump(sorted(info["tests"]), fp)
        cmd = [sys.executable, "-X", "faulthandler", "-m", "tests.conformance.run",
               "--worker", module, "--loop", loop, "--events", events, "--fault-log", fault,
               "--skip-ids", skip, "--include", json.dumps(list(include)),
               "--exclude", json.dumps(list(exclude)), "--test-timeout", str(opts.test_timeout)]
        with open(out, "wb") as out_fp:
            proc = subprocess.Popen(cmd, cwd=wdir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out_fp, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            _workers.add(proc)
            killed = False
            try:
                rc = proc.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                killed = True
            _kill_session(proc)
            rc = proc.wait()
            _workers.discard(proc)
        finished, running = False, None
        for ev in _read_events(events):
            kind = ev["ev"]
            if kind == "plan":
                planned = planned if planned is not None else ev["ids"]
                info.update(excluded=ev["excluded"], filtered=ev["filtered"], notes=ev["notes"])
            elif kind == "begin":
                running = ev["id"]
            elif kind == "result":
                info["tests"][ev["id"]] = {k: ev[k] for k in ("status", "detail", "loops", "secs")}
                running = None
            elif kind == "incident":
                info["incidents"].append(f"{ev['id']}: {ev['outcome']}: {(ev['detail'] or '')[-500:]}")
            elif kind == "module_skipped":
                info["module_skipped"] = ev["reason"]
            elif kind == "loop_type":
                info["loop_types"] = sorted(set(info["loop_types"]) | {ev["name"]})
            elif kind == "finished":
                finished = True
        if finished and rc == 0:
            break
        if running is None:
            info["incidents"].append(f"worker exit {rc} outside a test: {_tail(out, 1500)}")
            break
        text = _tail(fault)
        if killed:
            status, why = "timeout", f"module budget ({opts.module_timeout:g}s) ran out"
        elif "Timeout (" in text:
            status, why = "timeout", f"no result within {opts.test_timeout:g}s"
        else:
            status, why = "crash", f"worker died (exit status {rc})"
        info["tests"][running] = {"status": status, "detail": why + "\n" + (text or _tail(out)),
                                  "loops": None, "secs": None}
        if killed:
            break
    for tid in planned or ():
        info["tests"].setdefault(tid, {"status": "notrun", "detail": "worker stopped first",
                                       "loops": None, "secs": None})
    info["elapsed"] = round(time.monotonic() - started, 1)
    if not opts.keep:
        shutil.rmtree(wdir, ignore_errors=True)
    return info


def counts(info: dict) -> dict:
    c = dict.fromkeys(("run", "passed", "failed", "errors", "skipped",
                       "loop_run", "loop_passed"), 0)
    for rec in info["tests"].values():
        s = rec["status"]
        c["run"] += 1
        key = ("passed" if s in PASSED else "failed" if s in FAILED
               else "skipped" if s in SKIPPED else "errors")
        c[key] += 1
        if rec.get("loops") and s not in SKIPPED:
            c["loop_run"] += 1
            c["loop_passed"] += s in PASSED
    return c


def _add(total: dict, c: dict) -> None:
    for k, v in c.items():
        total[k] = total.get(k, 0) + v


def print_report(results: dict, loops: list[str]) -> dict:
    head = (f"{'module':<22}{'loop':<13}{'run':>5}{'pass':>6}{'fail':>6}{'error':>6}"
            f"{'skip':>6}{'loop-run':>10}{'loop-pass':>10}{'secs':>7}  notes")
    print(head)
    print("-" * len(head))
    totals = {loop: {} for loop in loops}
    modules = sorted({m for loop in loops for m in results[loop]})
    for module in modules:
        for loop in loops:
            info = results[loop].get(module)
            if info is None:
                continue
            c = counts(info)
            _add(totals[loop], c)
            notes = []
            if info["module_skipped"]:
                notes.append("module skipped: " + info["module_skipped"][:40])
            if info["filtered"]:
                notes.append(f"{info['filtered']} filtered out")
            if info["excluded"]:
                notes.append(f"{sum(info['excluded'].values())} excluded")
            statuses = [r["status"] for r in info["tests"].values()]
            notes += [f"{statuses.count(s)} {s}" for s in ("timeout", "crash", "notrun")
                      if s in statuses]
            if info["incidents"]:
                notes.append(f"{len(info['incidents'])} incident(s)")
            print(f"{module:<22}{loop:<13}{c['run']:>5}{c['passed']:>6}{c['failed']:>6}"
                  f"{c['errors']:>6}{c['skipped']:>6}{c['loop_run']:>10}"
                  f"{c['loop_passed']:>10}{info['elapsed']:>7.0f}  {'; '.join(notes)}")
    print("-" * len(head))
    for loop in loops:
        c = totals[loop]
        if c:
            print(f"{'TOTAL':<22}{loop:<13}{c['run']:>5}{c['passed']:>6}{c['failed']:>6}"
                  f"{c['errors']:>6}{c['skipped']:>6}{c['loop_run']:>10}{c['loop_passed']:>10}")
    for loop in loops:
        built = sorted({t for info in results[loop].values() for t in info["loop_types"]})
        print(f"loops built for {loop}: {', '.join(built) or 'none'}")
    print("error = error/timeout/crash/notrun; loop-run/loop-pass = the tests during which "
          "the loop under test was built (the others use mocks or test_utils.TestLoop)")
    return totals


def regressions(results: dict) -> list[tuple[str, str, str]]:
    """(module, test id, status) passing on asyncio but not on uvloop_lite."""
    out = []
    for module, info in results.get("uvloop_lite", {}).items():
        ref = results.get("asyncio", {}).get(module)
        if ref is None:
            continue
        for tid, rec in info["tests"].items():
            base = ref["tests"].get(tid)
            if base and base["status"] in PASSED and rec["status"] not in PASSED + SKIPPED:
                out.append((module, tid, rec["status"]))
    return out


def print_plan(available: list[str]) -> None:
    for name in ("core", "network", "rest"):
        print(f"--suite {name}:")
        for module, inc, exc in suite_selection(name, available):
            extra = (" (excluded)" if module in EXCLUDED
                     else f" only {len(inc)} patterns" if inc
                     else f" except {len(exc)} patterns" if exc else "")
            print(f"    {module}{extra}")
    print("test_events core patterns (Class.test, fnmatch):")
    for p in EVENTS_CORE_PATTERNS:
        print(f"    {p}")
    by_reason: dict[str, list[str]] = {}
    for key, why in EXCLUDED.items():
        by_reason.setdefault(why, []).append(key)
    print("excluded:")
    for why, keys in by_reason.items():
        print(f"  - {why}:")
        for key in keys:
            print(f"        {key}")
    print("injected:")
    for module, (name, bases, hook) in INJECTED.items():
        print(f"    {module}.{name}({', '.join(bases)}) via {hook}")
    print("retargeted to the loop under test:")
    for key, why in RETARGETED.items():
        print(f"    {key}: {why}")


def _available() -> list[str]:
    import importlib.util
    spec = importlib.util.find_spec("test.test_asyncio")
    if spec is None:
        raise SystemExit("this interpreter has no test.test_asyncio (install its test package)")
    where = list(spec.submodule_search_locations)[0]
    return sorted(f[:-3] for f in os.listdir(where) if f.startswith("test_") and f.endswith(".py"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.conformance.run",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--loop", choices=LOOPS, default="uvloop_lite")
    pick = ap.add_mutually_exclusive_group()
    pick.add_argument("--suite", choices=("core", "network", "rest", "all"))
    pick.add_argument("--modules", nargs="+", metavar="MODULE")
    ap.add_argument("--compare", dest="compare", action="store_true", default=None,
                    help="also run asyncio's loop on the same tests (default with --suite core)")
    ap.add_argument("--no-compare", dest="compare", action="store_false")
    ap.add_argument("--json", metavar="FILE", help="write every result to FILE")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--test-timeout", type=float, default=60.0, help="seconds per test")
    ap.add_argument("--module-timeout", type=float, default=600.0, help="seconds per module")
    ap.add_argument("--max-restarts", type=int, default=10)
    ap.add_argument("--show-failures", type=int, default=0, metavar="N")
    ap.add_argument("--list", action="store_true", help="print suites, exclusions, injections")
    ap.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--worker", "--events", "--fault-log", "--skip-ids"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--include", default="[]", help=argparse.SUPPRESS)
    ap.add_argument("--exclude", default="[]", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)

    if opts.worker:
        worker(opts)
        return 0
    available = _available()
    if opts.list:
        print_plan(available)
        return 0
    if opts.modules:
        unknown = sorted(set(opts.modules) - set(available))
        if unknown:
            ap.error(f"no such module here: {', '.join(unknown)}")
        selection = [(m, (), ()) for m in opts.modules]
    else:
        selection = suite_selection(opts.suite or "core", available)
    selection = [s for s in selection if s[0] not in EXCLUDED]
    compare = opts.compare if opts.compare is not None else (opts.suite or "core") == "core" \
        and not opts.modules
    loops = [opts.loop] + (["asyncio"] if compare and opts.loop != "asyncio" else [])

    print(f"python {sys.version.split()[0]} ({sys.executable}); loops: {', '.join(loops)}")
    print(f"{len(selection)} module(s): {' '.join(m for m, _, _ in selection)}")
    sys.stdout.flush()
    results: dict = {loop: {} for loop in loops}
    jobs = [(loop, *entry) for entry in selection for loop in loops]
    t0 = time.monotonic()
    lock = threading.Lock()

    def one(job):
        loop, module, inc, exc = job
        info = run_module(loop, module, inc, exc, opts)
        c = counts(info)
        with lock:
            results[loop][module] = info
            print(f"  {module} [{loop}]: {c['passed']} passed, {c['failed']} failed, "
                  f"{c['errors']} errors, {c['skipped']} skipped ({info['elapsed']:.0f}s)",
                  flush=True)

    pool = ThreadPoolExecutor(max(1, opts.jobs))
    try:
        list(pool.map(one, jobs))
    except KeyboardInterrupt:
        _interrupted.set()
        for proc in list(_workers):
            _kill_session(proc)
        pool.shutdown(wait=True)
        print("interrupted", file=sys.stderr)
        return 130
    pool.shutdown()
    print()
    totals = print_report(results, loops)
    regs = regressions(results) if len(loops) > 1 else []
    core_regs = [r for r in regs if is_core(r[0], r[1])]
    if len(loops) > 1:
        print(f"\n{len(regs)} test(s) pass on asyncio but not on uvloop_lite:")
        for module, tid, status in regs:
            print(f"  {status:<8} {tid}")
    if opts.show_failures:
        shown = 0
        for loop in loops:
            for info in results[loop].values():
                for tid, rec in info["tests"].items():
                    if rec["status"] not in PASSED + SKIPPED and shown < opts.show_failures:
                        shown += 1
                        print(f"\n=== {loop} {rec['status']}: {tid}\n{rec['detail'] or ''}")
    print(f"\nelapsed {time.monotonic() - t0:.0f}s")
    if opts.json:
        with open(opts.json, "w") as fp:
            json.dump({"python": sys.version.split()[0], "executable": sys.executable,
                       "suite": opts.suite, "modules": [m for m, _, _ in selection],
                       "totals": totals, "regressions": regs, "results": results}, fp, indent=1)
    # --suite core fails on a core regression; a run with --compare on any.
    return 1 if core_regs or (opts.compare and regs) else 0


if __name__ == "__main__":
    sys.exit(main())
