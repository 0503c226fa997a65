"""The third-party suite runner (tests/thirdparty/run.py): the probe sees which
loop each run built and each test's outcome; the comparison and exclusions.
No download: a tiny project of our own stands in for the pinned ones."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loaded by path: the repository root need not be on sys.path under pytest.
_spec = importlib.util.spec_from_file_location(
    "thirdparty_run", os.path.join(ROOT, "tests", "thirdparty", "run.py"))
run = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("thirdparty_run", run)  # dataclasses look their module up
_spec.loader.exec_module(run)

SAMPLE = '''
import asyncio

def test_runs_a_loop():
    async def main():
        return type(asyncio.get_running_loop()).__module__
    assert asyncio.run(main())

def test_fails():
    assert False, "on purpose"

def test_skips():
    import pytest
    pytest.skip("on purpose")
'''


@pytest.fixture
def sample(tmp_path, monkeypatch):
    src = tmp_path / "sample"
    (src / "tests").mkdir(parents=True)
    (src / "tests" / "test_sample.py").write_text(SAMPLE)
    # Its own rootdir, as a project's sdist has (else pytest may pick an
    # ini file above tmp_path, under nox say, and name the tests from there).
    (src / "pytest.ini").write_text("[pytest]\n")
    # What the runner's .pth file does in a project's venv.
    monkeypatch.setenv("PYTHONPATH", run._site_dir(str(tmp_path / "cache")))
    project = run.Project("sample", "1.0", [], pytest_args=["-p", "no:randomly"])
    return project, str(src), str(tmp_path / "out")


@pytest.mark.parametrize("loop", run.LOOPS)
def test_probe_counts_the_loop_of_each_run(sample, loop):
    project, src, out = sample
    res = run.run_suite(project, sys.executable, src, loop, out, ["tests"])
    tests = res["tests"]
    assert {k: v["status"] for k, v in tests.items()} == {
        "tests/test_sample.py::test_runs_a_loop": "passed",
        "tests/test_sample.py::test_fails": "failed",
        "tests/test_sample.py::test_skips": "skipped",
    }, open(res["log"]).read()
    other = "asyncio" if loop == "uvloop_lite" else "uvloop_lite"
    built = tests["tests/test_sample.py::test_runs_a_loop"]["loops"]
    assert built[loop] == 1 and built[other] == 0
    assert res["loops"][loop] == 1 and res["loops"][other] == 0
    assert "on purpose" in tests["tests/test_sample.py::test_fails"]["detail"]


def _runs(asyncio_status, uvl_status):
    def side(statuses):
        return {"tests": {k: {"status": s, "detail": f"E   {k} {s}"}
                          for k, s in statuses.items()}}
    return {"asyncio": side(asyncio_status), "uvloop_lite": side(uvl_status)}


def test_compare_lists_only_what_passes_on_asyncio_alone():
    project = run.Project("p", "1", [], excluded={"t::internals*": "inspects asyncio"})
    runs = _runs(
        {"t::a": "passed", "t::b": "passed", "t::c": "failed", "t::d": "passed",
         "t::internals_x": "passed", "t::e": "xfailed", "t::f": "passed"},
        {"t::a": "passed", "t::b": "failed", "t::c": "passed", "t::d": "skipped",
         "t::internals_x": "failed", "t::e": "error"})
    cmp = run.compare(project, runs)
    assert [(n, s) for n, s, _ in cmp["only_asyncio"]] == [
        ("t::b", "failed"), ("t::e", "error"), ("t::f", "notrun")]
    assert cmp["excluded"] == [("t::internals_x", "inspects asyncio")]


def test_every_exclusion_and_omission_has_a_reason():
    for project in run.PROJECTS.values():
        for why in (*project.excluded.values(), *project.omitted.values()):
            assert isinstance(why, str) and len(why) > 20
