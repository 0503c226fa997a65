"""mypy --strict: uvloop_lite itself is clean, and user code calling its
public API type-checks (and wrong calls do not), for the running Python's
version (skipped where mypy is not installed, as on PyPy)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import uvloop_lite

ROOT = Path(uvloop_lite.__file__).resolve().parents[1]
# A cold mypy run analyses asyncio's stubs and the package: seconds, more on a
# loaded machine.
pytestmark = pytest.mark.timeout(600)

USER_CODE = textwrap.dedent("""
    import asyncio
    import signal
    import sys

    import uvloop_lite


    async def main() -> int:
        return 1


    def callback(number: int, text: str) -> None:
        pass


    policy = uvloop_lite.EventLoopPolicy()
    asyncio.set_event_loop_policy(policy)
    uvloop_lite.install()
    n: int = uvloop_lite.run(main())
    n = uvloop_lite.run(main(), loop_factory=uvloop_lite.new_event_loop, debug=True)
    n = uvloop_lite.run(main(), loop_factory=uvloop_lite.Loop, debug=None)
    loop: uvloop_lite.Loop = uvloop_lite.new_event_loop()
    base: asyncio.AbstractEventLoop = loop
    handle: asyncio.Handle = loop.call_soon(callback, 1, "a")
    timer: asyncio.TimerHandle = loop.call_later(0.1, callback, 1, "a")
    loop.add_reader(0, callback, 1, "a")
    loop.add_writer(1, callback, 1, "a")
    removed: bool = loop.remove_reader(0) or loop.remove_writer(1)
    loop.add_signal_handler(signal.SIGUSR1, callback, 1, "a")
    removed = loop.remove_signal_handler(signal.SIGUSR1)
    n = loop.run_until_complete(main())
    loop.close()
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop_lite.new_event_loop) as runner:
            n = runner.run(main())
    version: str = uvloop_lite.__version__ + uvloop_lite.libuv_version()
""")

# mypy must report every line marked "# wrong", and nothing else.
WRONG_CODE = textwrap.dedent("""
    import asyncio

    import uvloop_lite


    async def main() -> int:
        return 1


    def callback(number: int) -> None:
        pass


    loop = uvloop_lite.new_event_loop()
    text: str = uvloop_lite.run(main())   # wrong
    uvloop_lite.run(main(), loop_factory=asyncio.new_event_loop)   # wrong
    uvloop_lite.run(main(), debug="yes")   # wrong
    loop.call_soon(callback, "not a number")   # wrong
    loop.add_reader(0, callback)   # wrong
    loop.add_signal_handler(2, callback, 1, 2)   # wrong
    uvloop_lite.install(loop)   # wrong
""")
WRONG_LINES = {n for n, line in enumerate(WRONG_CODE.splitlines(), 1) if line.endswith("# wrong")}


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by this module's mypy runs: uvloop_lite is analysed once."""
    pytest.importorskip("mypy")
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MYPYPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_package_is_strict_clean(mypy_cache: Path) -> None:
    """``mypy`` with the checkout's configuration ([tool.mypy] in
    pyproject.toml: strict, the whole package) reports nothing."""
    config = ROOT / "pyproject.toml"
    if not config.is_file() or "[tool.mypy]" not in config.read_text():
        pytest.skip("not a source checkout: no [tool.mypy] in pyproject.toml")
    proc = _mypy(ROOT, mypy_cache, "--config-file", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout, proc.stdout + proc.stderr


def _check_script(tmp_path: Path, cache: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user.py"
    script.write_text(code)
    # follow-imports=silent: uvloop_lite's own modules are checked for what
    # the script uses; test_package_is_strict_clean reports their own errors.
    return _mypy(tmp_path, cache, "--follow-imports=silent", str(script))


def test_user_code_is_strict_clean(tmp_path: Path, mypy_cache: Path) -> None:
    proc = _check_script(tmp_path, mypy_cache, USER_CODE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_wrong_user_code_is_reported(tmp_path: Path, mypy_cache: Path) -> None:
    """The public API's annotations are precise enough to catch misuse."""
    proc = _check_script(tmp_path, mypy_cache, WRONG_CODE)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    reported = {int(m.group(1)) for m in re.finditer(r"user\.py:(\d+): error:", proc.stdout)}
    assert reported == WRONG_LINES, proc.stdout
