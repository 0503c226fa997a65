"""Shared fixtures: one test body, two loops.

``loop`` runs a test once on asyncio's default loop and once on uvloop_lite,
so every behaviour test checks parity instead of assuming it.  ``uv_loop`` is
for tests of libuv specifics (uvloop_lite only).  At teardown both close the
loop, fail on any call_exception_handler() the test did not expect (a test
that expects one installs its own handler) and, on uvloop_lite, check that
every libuv handle the loop opened was closed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pathlib
import uuid

import pytest

import uvloop_lite

LOOP_KINDS = ("asyncio", "uvloop_lite")


def make_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "asyncio":
        return asyncio.SelectorEventLoop()
    return uvloop_lite.new_event_loop()


def _open_loop(kind: str):
    loop = make_loop(kind)
    errors: list[dict] = []

    def handler(lp, context):
        errors.append(context)

    loop.set_exception_handler(handler)
    asyncio.set_event_loop(loop)
    return loop, errors, handler


def _close_loop(kind: str, loop, errors, handler) -> None:
    try:
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    if loop.get_exception_handler() is handler and errors:
        pytest.fail(f"unexpected call_exception_handler() on {kind}: {errors!r}")
    if kind == "uvloop_lite":
        gc.collect()
        leaks = {name: (opened, closed)
                 for name, (opened, closed) in loop._uv_handle_stats().items()
                 if opened != closed}
        assert not leaks, f"libuv handles left open: {leaks}"


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request) -> str:
    return request.param


@pytest.fixture
def loop(loop_kind):
    """A fresh event loop of each kind (asyncio's, then uvloop_lite's)."""
    lp, errors, handler = _open_loop(loop_kind)
    yield lp
    _close_loop(loop_kind, lp, errors, handler)


@pytest.fixture
def uv_loop():
    """A fresh uvloop_lite loop, for tests of libuv specifics."""
    lp, errors, handler = _open_loop("uvloop_lite")
    yield lp
    _close_loop("uvloop_lite", lp, errors, handler)


# -- churn counts (tests/test_churn.py) ----------------------------------------------

@pytest.fixture
def dgram_paths():
    """Two unused paths for Unix datagram sockets, short enough for
    sun_path wherever the tests run (tmp_path may not be), removed after."""
    paths = [pathlib.Path("/tmp") / f"uvl-{uuid.uuid4().hex[:12]}.dgram" for _ in range(2)]
    yield paths
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def pytest_addoption(parser) -> None:
    parser.addoption("--churn", choices=("default", "full"), default=None,
                     help="tests/test_churn.py at the issue's full counts (20,000 "
                          "connections, ...) instead of the quick default; the same "
                          "as UVLOOP_LITE_CHURN=full")


def pytest_configure(config) -> None:
    # test_churn reads the environment when it is imported (its timeouts depend
    # on the counts), which is after this hook.
    churn = config.getoption("--churn")
    if churn is not None:
        os.environ["UVLOOP_LITE_CHURN"] = churn
