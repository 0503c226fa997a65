"""pytest plugin: run a test suite on uvloop_lite, as one axis of a CI matrix.

Registered as the ``pytest11`` entry point ``uvloop_lite``, so it is loaded
whenever uvloop_lite is installed, but it changes nothing unless asked to.
Any of these turns it on for the session:

* ``pytest --uvloop-lite``
* ``uvloop_lite = true`` in the ``[pytest]`` ini section (or
  ``[tool.pytest.ini_options]``)
* the environment variable ``UVLOOP_LITE=1``

(``UVLOOP_LITE=0`` and ``--no-uvloop-lite`` turn it off again; the command line
wins over the environment, which wins over the ini file.)

When on, :class:`uvloop_lite.EventLoopPolicy` is asyncio's event loop policy
from ``pytest_configure`` to ``pytest_unconfigure`` (the previous policy is
restored then), so ``asyncio.run()``, ``asyncio.new_event_loop()`` and the
plugins built on them (pytest-asyncio, anyio's asyncio backend) create
uvloop_lite loops.  The report header says which loop is in use.

The ``uvloop_lite_loop`` fixture is always available: a fresh uvloop_lite loop,
set as the current loop for the test and closed afterwards.

uvloop_lite itself (and its C extension) is imported only when needed, so an
installed but unused plugin costs nothing.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from typing import TYPE_CHECKING, Any, Iterator

import pytest

if TYPE_CHECKING:
    from ._loop import Loop

__all__ = ["uvloop_lite_loop"]

_ENV = "UVLOOP_LITE"
_INI = "uvloop_lite"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Stash keys: the policy that was in place before ours, and whether we are on.
_saved_policy = pytest.StashKey[Any]()
_enabled = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("uvloop_lite", "uvloop_lite event loop")
    group.addoption(
        "--uvloop-lite", dest="uvloop_lite", action="store_true", default=None,
        help="run the session with uvloop_lite.EventLoopPolicy installed "
             f"(also: ini '{_INI} = true' or {_ENV}=1).")
    group.addoption(
        "--no-uvloop-lite", dest="uvloop_lite", action="store_false",
        help="do not install uvloop_lite's policy, whatever the ini file or "
             f"{_ENV} say.")
    parser.addini(_INI, type="bool", default=False,
                  help="install uvloop_lite.EventLoopPolicy for the session.")


def _wanted(config: pytest.Config) -> bool:
    flag = config.getoption("uvloop_lite")
    if flag is not None:
        return bool(flag)
    env = os.environ.get(_ENV)
    if env is not None:
        value = env.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise pytest.UsageError(f"{_ENV}={env!r}: expected 1 or 0")
    return bool(config.getini(_INI))


def _set_policy(policy: Any) -> None:
    # Python 3.14 deprecates the policy API; the plugin still means to use it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(policy)


def _get_policy() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.get_event_loop_policy()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[_enabled] = False
    if not _wanted(config):
        return
    import uvloop_lite

    config.stash[_saved_policy] = _get_policy()
    _set_policy(uvloop_lite.EventLoopPolicy())
    config.stash[_enabled] = True


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if not config.stash.get(_enabled, False):
        return
    config.stash[_enabled] = False
    _set_policy(config.stash[_saved_policy])


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.stash.get(_enabled, False):
        return None
    import uvloop_lite

    return (f"uvloop_lite: EventLoopPolicy installed (uvloop_lite "
            f"{uvloop_lite.__version__}, libuv {uvloop_lite.libuv_version()})")


@pytest.fixture
def uvloop_lite_loop() -> Iterator[Loop]:
    """A new uvloop_lite loop, current for the test; closed at teardown after
    its async generators and default executor are shut down."""
    import uvloop_lite

    loop = uvloop_lite.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        try:
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            if not loop.is_running():
                loop.close()
