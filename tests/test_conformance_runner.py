"""The conformance runner (tests/conformance/run.py): its plan, and one small
module run end to end on both loops."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loaded by path: the repository root need not be on sys.path under pytest.
_spec = importlib.util.spec_from_file_location(
    "conformance_run", os.path.join(ROOT, "tests", "conformance", "run.py"))
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("test.test_asyncio") is None,
                                reason="this interpreter ships no test.test_asyncio")


def test_core_suite_modules_and_events_filter():
    available = run._available()
    core = run.suite_selection("core", available)
    names = [m for m, _, _ in core]
    assert "test_tasks" in names and "test_events" in names
    assert set(names) <= set(run.CORE_MODULES) | {"test_events"}
    (_, include, exclude), = [e for e in core if e[0] == "test_events"]
    assert include == run.EVENTS_CORE_PATTERNS and exclude == ()
    # The network suite takes the complement of test_events.
    network = dict((m, (inc, exc)) for m, inc, exc in run.suite_selection("network", available))
    assert network["test_events"] == ((), run.EVENTS_CORE_PATTERNS)
    assert set(run.NETWORK_MODULES) & set(network) == set(run.NETWORK_MODULES) & set(available)


def test_every_module_is_in_exactly_one_suite():
    available = run._available()
    seen: dict[str, int] = {}
    for name in ("core", "network", "rest"):
        for module, _, _ in run.suite_selection(name, available):
            seen[module] = seen.get(module, 0) + 1
    assert set(seen) == set(available)
    assert {m for m, n in seen.items() if n > 1} == {"test_events"}


def test_is_core():
    prefix = "test.test_asyncio."
    assert run.is_core("test_locks", prefix + "test_locks.LockTests.test_repr")
    assert run.is_core("test_events",
                       prefix + "test_events.LoopUnderTestEventLoopTests.test_call_soon")
    assert not run.is_core("test_events",
                           prefix + "test_events.LoopUnderTestEventLoopTests.test_read_pipe")
    assert not run.is_core("test_streams", prefix + "test_streams.StreamTests.test_x")


def test_every_exclusion_has_a_reason():
    for key, why in {**run.EXCLUDED, **run.RETARGETED}.items():
        assert key.startswith("test_") and len(why) > 10


def test_run_one_module_on_both_loops(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.conformance.run", "--modules", "test_context",
         "--compare", "--json", str(out), "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    for loop, loop_type in (("uvloop_lite", "uvloop_lite._loop.Loop"),
                            ("asyncio", "asyncio.unix_events._UnixSelectorEventLoop")):
        info = doc["results"][loop]["test_context"]
        assert info["loop_types"] == [loop_type]
        statuses = [t["status"] for t in info["tests"].values()]
        assert statuses and set(statuses) == {"pass"}
    assert doc["regressions"] == []
    assert "pass on asyncio but not on uvloop_lite" in proc.stdout


# --- matrix.py: the interpreters it picks
_mspec = importlib.util.spec_from_file_location(
    "conformance_matrix", os.path.join(ROOT, "tests", "conformance", "matrix.py"))
matrix = importlib.util.module_from_spec(_mspec)
_mspec.loader.exec_module(matrix)


def _fake_python(path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def test_matrix_picks_the_newest_pyenv_patch_release(tmp_path, monkeypatch):
    versions = tmp_path / "versions"
    for name in ("3.12.1", "3.12.10", "3.12.9", "3.13.0"):
        _fake_python(versions / name / "bin" / f"python{name.rsplit('.', 1)[0]}")
    (versions / "3.12.11").mkdir()   # no interpreter inside
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    assert matrix.find_cpython("3.12") == str(versions / "3.12.10" / "bin" / "python3.12")
    assert matrix.find_cpython("3.13") == str(versions / "3.13.0" / "bin" / "python3.13")


def test_matrix_falls_back_to_path_and_reports_none_found(tmp_path, monkeypatch, capsys):
    _fake_python(tmp_path / "bin" / "python3.42")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert matrix.find_cpython("3.42") == str(tmp_path / "bin" / "python3.42")
    assert matrix.find_cpython("3.41") is None
    monkeypatch.setattr(matrix, "WORK", str(tmp_path / "work"))
    assert matrix.main(["--versions", "3.41"]) == 2
    assert "not run" in capsys.readouterr().out
