"""pytest plugin: run a test suite on uvloop_lite, as one axis of a CI matrix,
or run each async test on asyncio's loop and on uvloop_lite in one session.

Registered as the ``pytest11`` entry point ``uvloop_lite``, so it is loaded
whenever uvloop_lite is installed, but it changes nothing unless asked to.
One setting, three values:

=========================  =====================  ====================
command line               ini (``[pytest]``)     environment
=========================  =====================  ====================
``--uvloop-lite``          ``uvloop_lite = true``   ``UVLOOP_LITE=1``
``--uvloop-lite=both``     ``uvloop_lite = both``   ``UVLOOP_LITE=both``
``--no-uvloop-lite``       ``uvloop_lite = false``  ``UVLOOP_LITE=0``
=========================  =====================  ====================

(the command line wins over the environment, which wins over the ini file;
the ini file may be ``[tool.pytest.ini_options]`` in pyproject.toml).

*on* (``--uvloop-lite``): :class:`uvloop_lite.EventLoopPolicy` is asyncio's
event loop policy from ``pytest_configure`` to ``pytest_unconfigure`` (the
previous policy is restored then), so ``asyncio.run()``,
``asyncio.new_event_loop()`` and the plugins built on them (pytest-asyncio,
anyio's asyncio backend) create uvloop_lite loops.

*both* (``--uvloop-lite=both``): the policy is left alone; instead each async
test runs twice, once on asyncio's own loop and once on uvloop_lite, with the
loop in its ID (``test_x[asyncio]``, ``test_x[uvloop_lite]``):

* pytest-asyncio (1.4+) tests, through its ``pytest_asyncio_loop_factories``
  hook (a conftest's own implementation of that hook takes precedence);
* anyio tests that use anyio's own ``anyio_backend`` fixture: its ``asyncio``
  parameter becomes ``asyncio`` and ``uvloop_lite`` (other backends stay).

A project with its own ``anyio_backend`` fixture makes it follow the switch
by returning :func:`uvloop_lite_anyio_backend`, whose parameters name the
loop (``asyncio`` when off, ``uvloop_lite`` when on, both for *both*); or
it uses :data:`ANYIO_BACKEND`, a ready ``anyio_backend`` value.

The report header says which loop is in use.  The ``uvloop_lite_loop``
fixture is always available: a fresh uvloop_lite loop, set as the current loop
for the test and closed afterwards.

uvloop_lite itself (and its C extension) is imported only when needed, so an
installed but unused plugin costs nothing.
"""

from __future__ import annotations

import asyncio
import os
import types
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import pytest

if TYPE_CHECKING:
    from ._loop import Loop

__all__ = ["ANYIO_BACKEND", "LOOP_FACTORIES", "new_uvloop_lite_loop",
           "uvloop_lite_anyio_backend", "uvloop_lite_loop"]

_ENV = "UVLOOP_LITE"
_INI = "uvloop_lite"
OFF, ON, BOTH = "off", "on", "both"
_VALUES = {
    **dict.fromkeys(("1", "true", "yes", "y", "t", "on"), ON),
    **dict.fromkeys(("0", "false", "no", "n", "f", "off", ""), OFF),
    "both": BOTH,
}

# Stash keys: the policy that was in place before ours, and the mode in force.
_saved_policy = pytest.StashKey[Any]()
_mode_key = pytest.StashKey[str]()
# Whether a pytest-asyncio without the loop-factory hook is loaded.
_old_pytest_asyncio = pytest.StashKey[bool]()


def new_uvloop_lite_loop() -> Loop:
    """``uvloop_lite.new_event_loop()``, importing uvloop_lite on first use."""
    import uvloop_lite

    return uvloop_lite.new_event_loop()


def _new_asyncio_loop() -> asyncio.AbstractEventLoop:
    # asyncio's own loop whatever policy is installed (the default policy's
    # class; uvloop_lite runs on POSIX only, where that is SelectorEventLoop).
    return asyncio.SelectorEventLoop()


#: A ready ``anyio_backend`` value: anyio's asyncio backend on uvloop_lite.
ANYIO_BACKEND: tuple[str, dict[str, Any]] = (
    "asyncio", {"loop_factory": new_uvloop_lite_loop})

#: The loop factories of *both*, by test ID.
LOOP_FACTORIES: Mapping[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": _new_asyncio_loop, "uvloop_lite": new_uvloop_lite_loop}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("uvloop_lite", "uvloop_lite event loop")
    group.addoption(
        "--uvloop-lite", dest="uvloop_lite", action="store_const", const=ON,
        default=None,
        help="run the session with uvloop_lite.EventLoopPolicy installed "
             f"(also: ini '{_INI} = true' or {_ENV}=1).")
    # argparse matches a whole argument against option names first, so this
    # spelling is an option of its own (and `--uvloop-lite tests/` still means
    # "on", with tests/ a path).
    group.addoption(
        "--uvloop-lite=both", dest="uvloop_lite", action="store_const", const=BOTH,
        help="run each async test (pytest-asyncio, anyio) on asyncio's loop and "
             f"on uvloop_lite, the loop in its ID (also: ini '{_INI} = both' or "
             f"{_ENV}=both).")
    group.addoption(
        "--no-uvloop-lite", dest="uvloop_lite", action="store_const", const=OFF,
        help=f"leave asyncio's loop alone, whatever the ini file or {_ENV} say.")
    parser.addini(_INI, type="string", default="false",
                  help="true: install uvloop_lite.EventLoopPolicy for the session; "
                       "both: run each async test on asyncio's loop and on uvloop_lite.")


def _parse(value: object, where: str) -> str:
    if isinstance(value, bool):        # a TOML boolean
        return ON if value else OFF
    mode = _VALUES.get(str(value).strip().lower())
    if mode is None:
        raise pytest.UsageError(f"{where}={value!r}: expected 1, 0 or both")
    return mode


def _mode(config: pytest.Config) -> str:
    flag = config.getoption("uvloop_lite")
    if flag is not None:
        return str(flag)
    env = os.environ.get(_ENV)
    if env is not None:
        return _parse(env, _ENV)
    return _parse(config.getini(_INI), f"ini {_INI}")


def _set_policy(policy: Any) -> None:
    # Python 3.14 deprecates the policy API; the plugin still means to use it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(policy)


def _get_policy() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return asyncio.get_event_loop_policy()


class _BothLoops:
    """The plugin object registered for *both*."""

    # trylast: a project's own implementation (a conftest's, loaded before
    # this object is registered) answers first and wins (the hook is firstresult).
    @pytest.hookimpl(optionalhook=True, trylast=True)
    def pytest_asyncio_loop_factories(
            self, config: pytest.Config, item: pytest.Item,
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        return LOOP_FACTORIES


def _anyio_override() -> types.ModuleType | None:
    """A plugin whose ``anyio_backend`` fixture replaces anyio's own (it is
    registered later, so it wins; a conftest's fixture still wins over it),
    with ``asyncio`` run on both loops; None without anyio."""
    try:
        from anyio import get_available_backends
    except ImportError:
        return None
    params: list[Any] = []
    for backend in get_available_backends():
        if backend == "asyncio":
            params += [pytest.param("asyncio", id="asyncio"),
                       pytest.param(ANYIO_BACKEND, id="uvloop_lite")]
        else:
            params.append(pytest.param(backend, id=backend))

    # Module scope, as anyio's own fixture.
    @pytest.fixture(scope="module", params=params)
    def anyio_backend(request: pytest.FixtureRequest) -> Any:
        return request.param

    plugin = types.ModuleType("uvloop_lite.pytest_plugin.anyio_both")
    plugin.anyio_backend = anyio_backend  # type: ignore[attr-defined]
    return plugin


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[_mode_key] = OFF
    mode = _mode(config)
    if mode == ON:
        import uvloop_lite

        config.stash[_saved_policy] = _get_policy()
        _set_policy(uvloop_lite.EventLoopPolicy())
    elif mode == BOTH:
        # Asked before registering: registering an implementation makes the
        # hook exist whether or not pytest-asyncio declared it.
        config.stash[_old_pytest_asyncio] = (
            config.pluginmanager.has_plugin("asyncio")
            and not hasattr(config.hook, "pytest_asyncio_loop_factories"))
        config.pluginmanager.register(_BothLoops(), "uvloop_lite-both")
        anyio = _anyio_override()
        if anyio is not None:
            config.pluginmanager.register(anyio, "uvloop_lite-both-anyio")
    config.stash[_mode_key] = mode


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_mode_key, OFF) != ON:
        return
    config.stash[_mode_key] = OFF
    _set_policy(config.stash[_saved_policy])


def pytest_report_header(config: pytest.Config) -> str | None:
    mode = config.stash.get(_mode_key, OFF)
    if mode == OFF:
        return None
    import uvloop_lite

    versions = (f"uvloop_lite {uvloop_lite.__version__}, "
                f"libuv {uvloop_lite.libuv_version()}")
    if mode == ON:
        return f"uvloop_lite: EventLoopPolicy installed ({versions})"
    header = f"uvloop_lite: async tests run on asyncio and on uvloop_lite ({versions})"
    if config.stash.get(_old_pytest_asyncio, False):
        header += ("\nuvloop_lite: this pytest-asyncio has no loop-factory hook "
                   "(1.4+): its tests run on asyncio's loop only")
    return header


def _anyio_params(mode: str) -> list[Any]:
    asyncio_only = pytest.param("asyncio", id="asyncio")
    lite = pytest.param(ANYIO_BACKEND, id="uvloop_lite")
    return {OFF: [asyncio_only], ON: [lite], BOTH: [asyncio_only, lite]}[mode]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "uvloop_lite_anyio_backend" in metafunc.fixturenames:
        mode = metafunc.config.stash.get(_mode_key, OFF)
        metafunc.parametrize("uvloop_lite_anyio_backend", _anyio_params(mode),
                             indirect=True, scope="module")


@pytest.fixture(scope="module")
def uvloop_lite_anyio_backend(request: pytest.FixtureRequest) -> Any:
    """An ``anyio_backend`` value that follows the switch: ``"asyncio"``
    (off), :data:`ANYIO_BACKEND` (on), each in turn (both).  Use it as::

        @pytest.fixture
        def anyio_backend(uvloop_lite_anyio_backend):
            return uvloop_lite_anyio_backend
    """
    return getattr(request, "param", "asyncio")


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
