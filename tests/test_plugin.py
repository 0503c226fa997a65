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
# For in-process runs that need no pytest-asyncio: its configure-time warning
# (no asyncio_default_fixture_loop_scope set) would land in the outer run.
NO_ASYNCIO = ("-p", "no:asyncio")
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
    result = suite.runpytest_inprocess(*PLUGIN, *NO_ASYNCIO, "-s", "--uvloop-lite")
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
    result = suite.runpytest_inprocess(*PLUGIN, *NO_ASYNCIO, "test_fixture.py")
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


# --- both loops in one session: --uvloop-lite=both / uvloop_lite = both / UVLOOP_LITE=both ---

SAMPLE = Path(__file__).resolve().parent / "plugin_sample"


def _needs_loop_factory_hook() -> None:
    pytest.importorskip("anyio")
    plugin = pytest.importorskip("pytest_asyncio.plugin")
    specs = getattr(plugin, "PytestAsyncioSpecs", None)
    if not hasattr(specs, "pytest_asyncio_loop_factories"):
        pytest.skip("pytest-asyncio < 1.4 has no loop-factory hook")


def _copy_sample(pytester: pytest.Pytester) -> None:
    for src in SAMPLE.iterdir():
        if src.is_file():
            (pytester.path / src.name).write_text(src.read_text())


def loops_by_test(result: pytest.RunResult) -> dict[str, str]:
    """{test name with its ID: loop class} from the sample's LOOP lines."""
    found = re.findall(r"^LOOP (\S+) (\S+)$", "\n".join(result.outlines), re.M)
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), names
    return dict(found)


ASYNC_TESTS = ("test_echo", "test_sleep[{}-0]", "test_sleep[{}-0.001]", "test_task_group")


@pytest.mark.parametrize("form", ["command-line", "ini", "environment"])
def test_sample_project_on_both_loops(suite: pytest.Pytester, form: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/plugin_sample: each async test (pytest-asyncio's, anyio's) runs once
    on each loop, the loop in its ID; the sync test runs once."""
    _needs_loop_factory_hook()
    _copy_sample(suite)
    args: list[str] = []
    if form == "command-line":
        args.append("--uvloop-lite=both")
    elif form == "ini":
        ini = suite.path / "pytest.ini"
        ini.write_text(ini.read_text() + "uvloop_lite = both\n")
    else:
        monkeypatch.setenv("UVLOOP_LITE", "both")
    result = run_sub(suite, "-v", *args)
    result.assert_outcomes(passed=9)
    expected = {}
    for name in ASYNC_TESTS:
        for loop_id, loop in (("asyncio", ASYNCIO_LOOP), ("uvloop_lite", LITE_LOOP)):
            key = name.format(loop_id) if "{}" in name else f"{name}[{loop_id}]"
            expected[key] = loop
    assert loops_by_test(result) == expected
    result.stdout.fnmatch_lines(["uvloop_lite: async tests run on asyncio and on uvloop_lite*",
                                 "*sample_sync.py::test_sync PASSED*"])


@pytest.mark.parametrize("args, loop", [((), ASYNCIO_LOOP), (("--uvloop-lite",), LITE_LOOP)],
                         ids=["off", "on"])
def test_sample_project_on_one_loop(suite: pytest.Pytester, args: tuple[str, ...],
                                    loop: str) -> None:
    """Off, and today's single-loop switch: each test once, all on one loop
    (anyio's own fixture keeps its [asyncio] ID)."""
    _needs_loop_factory_hook()
    _copy_sample(suite)
    result = run_sub(suite, "-v", *args)
    result.assert_outcomes(passed=5)
    assert loops_by_test(result) == {
        "test_echo": loop, "test_sleep[0]": loop, "test_sleep[0.001]": loop,
        "test_task_group[asyncio]": loop}


ANYIO_OWN_FIXTURE = """
import asyncio
import pytest

@pytest.fixture
def anyio_backend(uvloop_lite_anyio_backend):
    return uvloop_lite_anyio_backend

@pytest.mark.anyio
async def test_own(request):
    cls = type(asyncio.get_running_loop())
    print(f"\\nLOOP {request.node.name} {cls.__module__}.{cls.__qualname__}")
"""


@pytest.mark.parametrize("args, expected", [
    ((), {"test_own[asyncio]": ASYNCIO_LOOP}),
    (("--uvloop-lite",), {"test_own[uvloop_lite]": LITE_LOOP}),
    (("--uvloop-lite=both",), {"test_own[asyncio]": ASYNCIO_LOOP,
                               "test_own[uvloop_lite]": LITE_LOOP}),
], ids=["off", "on", "both"])
def test_project_anyio_backend_follows_switch(suite: pytest.Pytester, args: tuple[str, ...],
                                              expected: dict[str, str]) -> None:
    """A project's own anyio_backend fixture follows the switch by returning
    uvloop_lite_anyio_backend."""
    pytest.importorskip("anyio")
    suite.makepyfile(test_own=ANYIO_OWN_FIXTURE)
    result = run_sub(suite, "-v", "test_own.py", *args)
    result.assert_outcomes(passed=len(expected))
    assert loops_by_test(result) == expected


def test_anyio_backend_constant(suite: pytest.Pytester) -> None:
    """ANYIO_BACKEND is a ready anyio_backend value for uvloop_lite."""
    pytest.importorskip("anyio")
    suite.makepyfile(test_const="""
        import asyncio
        import pytest
        from uvloop_lite.pytest_plugin import ANYIO_BACKEND

        @pytest.fixture(params=["asyncio", pytest.param(ANYIO_BACKEND, id="uvloop_lite")])
        def anyio_backend(request):
            return request.param

        @pytest.mark.anyio
        async def test_const(request):
            cls = type(asyncio.get_running_loop())
            print(f"\\nLOOP {request.node.name} {cls.__module__}.{cls.__qualname__}")
    """)
    result = run_sub(suite, "-v", "test_const.py")
    result.assert_outcomes(passed=2)
    assert loops_by_test(result) == {"test_const[asyncio]": ASYNCIO_LOOP,
                                     "test_const[uvloop_lite]": LITE_LOOP}


def test_pyproject_toml_boolean(suite: pytest.Pytester) -> None:
    suite.makepyprojecttoml("[tool.pytest.ini_options]\nuvloop_lite = true\n")
    assert loops_reported(run_sub(suite)) == {LITE_LOOP}


def test_both_leaves_the_policy_alone(suite: pytest.Pytester) -> None:
    """Sync code under --uvloop-lite=both keeps asyncio's loop."""
    result = run_sub(suite, "--uvloop-lite=both")
    assert loops_reported(result) == {ASYNCIO_LOOP}


def test_space_separated_path_is_not_a_mode(suite: pytest.Pytester) -> None:
    """`--uvloop-lite test_report.py`: the flag is 'on', the path a path."""
    assert loops_reported(run_sub(suite, "--uvloop-lite", "test_report.py")) == {LITE_LOOP}


def test_project_loop_factories_hook_wins(suite: pytest.Pytester) -> None:
    """A conftest's own pytest_asyncio_loop_factories answers before ours."""
    _needs_loop_factory_hook()
    _copy_sample(suite)
    suite.makeconftest("""
        import asyncio

        def pytest_asyncio_loop_factories(config, item):
            return {"mine": asyncio.SelectorEventLoop, "lite": __import__("uvloop_lite").new_event_loop}
    """)
    result = run_sub(suite, "-v", "--uvloop-lite=both", "sample_pytest_asyncio.py")
    result.assert_outcomes(passed=6)
    assert loops_by_test(result) == {
        "test_echo[mine]": ASYNCIO_LOOP, "test_echo[lite]": LITE_LOOP,
        "test_sleep[mine-0]": ASYNCIO_LOOP, "test_sleep[mine-0.001]": ASYNCIO_LOOP,
        "test_sleep[lite-0]": LITE_LOOP, "test_sleep[lite-0.001]": LITE_LOOP}


def test_project_anyio_backend_fixture_wins(suite: pytest.Pytester) -> None:
    """Under both, a conftest's own anyio_backend fixture is left as it is."""
    _needs_loop_factory_hook()
    _copy_sample(suite)
    suite.makeconftest("""
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
    """)
    result = run_sub(suite, "-v", "--uvloop-lite=both", "sample_anyio.py")
    result.assert_outcomes(passed=1)
    assert loops_by_test(result) == {"test_task_group": ASYNCIO_LOOP}
