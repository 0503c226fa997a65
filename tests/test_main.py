"""``python -m uvloop_lite`` (uvloop_lite/__main__.py), run as a subprocess;
and a smoke run of the micro-benchmarks (bench/micro.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import uvloop_lite

ROOT = Path(uvloop_lite.__file__).resolve().parents[1]
MICRO = Path(__file__).resolve().parents[1] / "bench" / "micro.py"

# Prints, as JSON, what a program run by `python -m uvloop_lite` sees.
PROBE = """
import asyncio, json, sys

async def main():
    cls = type(asyncio.get_running_loop())
    return cls.__module__ + "." + cls.__qualname__

print(json.dumps({"argv": sys.argv, "name": __name__, "path0": sys.path[0],
                  "loop": asyncio.run(main())}))
"""


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_version() -> None:
    proc = run("-m", "uvloop_lite", "--version")
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(
        rf"uvloop_lite {re.escape(uvloop_lite.__version__)} "
        rf"\(libuv {re.escape(uvloop_lite.libuv_version())}, \w+ [\d.]+\S*\)\n",
        proc.stdout), proc.stdout


def test_script(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = run("-m", "uvloop_lite", str(script), "a", "--flag", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"argv": [str(script), "a", "--flag"], "name": "__main__",
                    "path0": str(tmp_path), "loop": "uvloop_lite._loop.Loop"}


def test_module(tmp_path: Path) -> None:
    (tmp_path / "probe_mod.py").write_text(PROBE)
    proc = run("-m", "uvloop_lite", "-m", "probe_mod", "x", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["argv"] == [str(tmp_path / "probe_mod.py"), "x"]
    assert seen["name"] == "__main__"
    assert seen["loop"] == "uvloop_lite._loop.Loop"
    assert Path(seen["path0"]) == tmp_path


def test_exit_status_and_exceptions(tmp_path: Path) -> None:
    (tmp_path / "exits.py").write_text("raise SystemExit(3)\n")
    assert run("-m", "uvloop_lite", str(tmp_path / "exits.py")).returncode == 3
    (tmp_path / "fails.py").write_text("raise ValueError('boom')\n")
    proc = run("-m", "uvloop_lite", str(tmp_path / "fails.py"))
    assert proc.returncode == 1
    assert "ValueError: boom" in proc.stderr


@pytest.mark.parametrize("args, message", [
    ((), "nothing to run"),
    (("-m",), "-m needs a module name"),
    (("--bogus",), "unknown option '--bogus'"),
    (("no_such_script.py",), "no such file"),
])
def test_usage_errors(args: tuple[str, ...], message: str) -> None:
    proc = run("-m", "uvloop_lite", *args)
    assert proc.returncode == 2
    assert "usage: python -m uvloop_lite" in proc.stderr
    assert message in proc.stderr


def test_help() -> None:
    proc = run("-m", "uvloop_lite", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m uvloop_lite")


@pytest.mark.skipif(not MICRO.exists(), reason="bench/micro.py is not here (sdist)")
def test_micro_benchmarks_smoke() -> None:
    proc = run(str(MICRO), "--scale", "0.005", "--repeat", "1", "--no-uvloop")
    assert proc.returncode == 0, proc.stderr
    for name in ("call_soon", "call_soon_chain", "timers", "threadsafe", "tasks", "queue"):
        assert re.search(rf"^{name} +[\d,]+/s +[\d,]+/s \(\d+\.\d\dx\)$",
                         proc.stdout, re.M), proc.stdout
