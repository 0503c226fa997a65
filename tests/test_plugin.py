"""The pytest plugin (uvloop_lite.pytest_plugin): a suite reports which loop it
got, run with and without the plugin switched on."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

import uvloop_lite

pytest_plugins = ["pytester"]

# Load the plugin by module name whether or not uvloop_lite is installed: the
# installed entry point (named "uvloop_lite") is blocked so that the module is
# not registered twice.
PLUGIN = ("-p", "no:uvloop_lite", "-p", "uvloop_lite.pytest_plugin")
ASYNCIO_LOOP = "asyncio.unix_events._UnixSelectorEventLoop"
LITE_LOOP = "uvloop_lite._loop.Loop"

REPORTING_TEST = """
import asyncio

def _name(loop):
    cls = type(loop)
    return cls.__module__ + "." + cls.__qualname__

def test_report_loop():
    async def main():
        return _name(asyncio.get_running_loop())
    print("RUN-LOOP", asyncio.run(main()))
    loop = asyncio.new_event_loop()
    print("NEW-LOOP", _name(loop))
    loop.close()
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory holding REPORTING_TEST, with uvloop_lite importable
    from subprocesses and no UVLOOP_LITE inherited from the outer run."""
    root = str(Path(uvloop_lite.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.delenv("UVLOOP_LITE", raising=False)
    pytester.makepyfile(test_report=REPORTING_TEST)
    return pytester


def loops_reported(result: pytest.RunResult) -> set[str]:
    """The loop classes the reporting test printed."""
    result.assert_outcomes(passed=1)
    text = "\n".join(result.outlines)
    run = re.findall(r"\bRUN-LOOP (\S+)", text)
    new = re.findall(r"\bNEW-LOOP (\S+)", text)
    assert run and new, text
    return set(run) | set(new)


def run_sub(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*PLUGIN, "-s", *args)


def test_off_by_default(suite: pytest.Pytester) -> None:
    result = run_sub(suite)
    assert loops_reported(result) == {ASYNCIO_LOOP}
    assert not any(line.startswith("uvloop_lite:") for line in result.outlines)


def test_command_line_flag(suite: pytest.Pytester) -> None:
    result = run_sub(suite, "--uvloop-lite")
    assert loops_reported(result) == {LITE_LOOP}
    result.stdout.fnmatch_lines(
        [f"uvloop_lite: EventLoopPolicy installed (uvloop_lite {uvloop_lite.__version__}, "
         f"libuv {uvloop_lite.libuv_version()})"])


def test_ini_option(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nuvloop_lite = true\n")
    assert loops_reported(run_sub(suite)) == {LITE_LOOP}


def test_environment_variable(suite: pytest.Pytester,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UVLOOP_LITE", "1")
    assert loops_reported(run_sub(suite)) == {LITE_LOOP}


def test_precedence(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    suite.makeini("[pytest]\nuvloop_lite = true\n")
    monkeypatch.setenv("UVLOOP_LITE", "0")        # environment beats ini
    assert loops_reported(run_sub(suite)) == {ASYNCIO_LOOP}
    monkeypatch.setenv("UVLOOP_LITE", "1")        # command line beats environment
    assert loops_reported(run_sub(suite, "--no-uvloop-lite")) == {ASYNCIO_LOOP}


def test_bad_environment_value(suite: pytest.Pytester,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UVLOOP_LITE", "maybe")
    result = run_sub(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*UVLOOP_LITE='maybe'*"])


def test_policy_restored_after_session(suite: pytest.Pytester) -> None:
    before = asyncio.get_event_loop_policy()
    result = suite.runpytest_inprocess(*PLUGIN, "-s", "--uvloop-lite")
    assert loops_reported(result) == {LITE_LOOP}
    assert asyncio.get_event_loop_policy() is before


def test_uvloop_lite_loop_fixture(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_fixture="""
        import asyncio
        import uvloop_lite

        def test_fixture(uvloop_lite_loop):
            assert isinstance(uvloop_lite_loop, uvloop_lite.Loop)
            assert asyncio.get_event_loop() is uvloop_lite_loop

            async def main():
                await asyncio.sleep(0.001)
                return asyncio.get_running_loop()

            assert uvloop_lite_loop.run_until_complete(main()) is uvloop_lite_loop
    """)
    result = suite.runpytest_inprocess(*PLUGIN, "test_fixture.py")
    result.assert_outcomes(passed=1)


def test_pytest_asyncio(suite: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    suite.makepyfile(test_aio="""
        import asyncio
        import pytest

        @pytest.mark.asyncio
        async def test_aio():
            cls = type(asyncio.get_running_loop())
            print("RUN-LOOP", cls.__module__ + "." + cls.__qualname__)
            print("NEW-LOOP", cls.__module__ + "." + cls.__qualname__)
    """)
    result = run_sub(suite, "--uvloop-lite", "test_aio.py")
    assert loops_reported(result) == {LITE_LOOP}


def test_anyio_asyncio_backend(suite: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    suite.makepyfile(test_anyio="""
        import asyncio
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_anyio():
            cls = type(asyncio.get_running_loop())
            print("RUN-LOOP", cls.__module__ + "." + cls.__qualname__)
            print("NEW-LOOP", cls.__module__ + "." + cls.__qualname__)
    """)
    result = run_sub(suite, "--uvloop-lite", "test_anyio.py")
    assert loops_reported(result) == {LITE_LOOP}
