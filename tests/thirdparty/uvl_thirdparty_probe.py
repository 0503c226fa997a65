"""pytest plugin loaded (``-p uvl_thirdparty_probe``) into a third-party suite's run.

It changes nothing in the tests.  It records, for each test, the outcome of
each phase and how many event loops of each kind were built while the test
ran, and writes one JSON line per test to the file named by
``$UVL_PROBE_OUT``.  The runner uses the loop counts to check that the
"uvloop_lite" run really ran on uvloop_lite (and the "asyncio" run did not).

Loops are counted by wrapping ``asyncio.BaseEventLoop.__init__`` (uvloop_lite's
``Loop`` derives from it), so loops built by ``asyncio.Runner``,
``new_event_loop()``, policies or by hand are all seen, each classed by whether
a uvloop_lite class is in its MRO; loops of child processes are not seen.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Dict, Iterator, List

import pytest

_counts = {"uvloop_lite": 0, "asyncio": 0}
_records: Dict[str, Dict[str, Any]] = {}
_out = None


def _kind(loop: Any) -> str:
    for cls in type(loop).__mro__:
        if cls.__module__.split(".")[0] == "uvloop_lite":
            return "uvloop_lite"
    return "asyncio"


def _wrap_init() -> None:
    original = asyncio.BaseEventLoop.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        _counts[_kind(self)] += 1
        original(self, *args, **kwargs)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    asyncio.BaseEventLoop.__init__ = __init__  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    global _out
    path = os.environ.get("UVL_PROBE_OUT")
    if not path or _out is not None:
        return
    _out = open(path, "a", buffering=1)
    _wrap_init()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Iterator[None]:
    before = dict(_counts)
    yield
    rec = _records.pop(item.nodeid, None) or {"phases": {}}
    rec["loops"] = {k: _counts[k] - before[k] for k in _counts}
    if _out is not None:
        _out.write(json.dumps({"nodeid": item.nodeid, **rec}) + "\n")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    rec = _records.setdefault(report.nodeid, {"phases": {}})
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    rec["phases"][report.when] = outcome
    if report.failed:
        text = report.longreprtext or ""
        details: List[str] = rec.setdefault("details", [])
        details.append(f"[{report.when}] " + text[-4000:])


def pytest_unconfigure(config: pytest.Config) -> None:
    global _out
    if _out is not None:
        _out.close()
        _out = None
