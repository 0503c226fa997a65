"""User code calling uvloop_lite's public API type-checks under mypy --strict
(skipped where mypy is not installed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import uvloop_lite

ROOT = Path(uvloop_lite.__file__).resolve().parents[1]

USER_CODE = textwrap.dedent("""
    import asyncio
    import sys

    import uvloop_lite


    async def main() -> int:
        return 1


    policy = uvloop_lite.EventLoopPolicy()
    asyncio.set_event_loop_policy(policy)
    uvloop_lite.install()
    n: int = uvloop_lite.run(main())
    n = uvloop_lite.run(main(), loop_factory=uvloop_lite.new_event_loop, debug=True)
    loop: uvloop_lite.Loop = uvloop_lite.new_event_loop()
    base: asyncio.AbstractEventLoop = loop
    loop.close()
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop_lite.new_event_loop) as runner:
            n = runner.run(main())
    version: str = uvloop_lite.__version__ + uvloop_lite.libuv_version()
""")


def test_user_code_is_strict_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    script = tmp_path / "user.py"
    script.write_text(USER_CODE)
    env = dict(os.environ, MYPYPATH=str(ROOT))
    # follow-imports=silent: uvloop_lite's own modules are checked for what
    # the script uses, their inner errors are not this test's subject.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--no-incremental", "--cache-dir", os.devnull, str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
