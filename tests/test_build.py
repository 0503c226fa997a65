"""build_uv.py's compile step: progress lines, parallel compilers, object
files reused while their source, headers and command are unchanged, and a
compiler's error shown with its own output.

The helpers run on small jobs and on a two-file C project compiled with the
compiler setuptools configures (fast); the whole libuv build in a copy of the
tree only with ``UVLOOP_LITE_PACKAGING_TESTS=1``, as test_packaging.py's.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:
    import build_uv  # noqa: E402  (stdlib and cffi only; builds nothing on import)
finally:
    sys.path.remove(str(ROOT))

SLOW = os.environ.get("UVLOOP_LITE_PACKAGING_TESTS") == "1"
LINE = re.compile(r"^\[build_uv\] compiled (\d+)/(\d+) (.+)$")


def _progress_lines(text: str) -> list[tuple[int, int, str]]:
    return [(int(m[1]), int(m[2]), m[3]) for m in map(LINE.match, text.splitlines()) if m]


def test_progress_line_per_finished_task() -> None:
    out = io.StringIO()
    done = []
    tasks = [(f"src/{i}.c", lambda i=i: done.append(i)) for i in range(5)]
    build_uv.run_parallel(tasks, 1, build_uv.Progress(5, out))
    assert done == [0, 1, 2, 3, 4]
    assert _progress_lines(out.getvalue()) == [(i + 1, 5, f"src/{i}.c") for i in range(5)]


def test_tasks_run_in_parallel() -> None:
    # Each task waits for the other at a barrier: only passes with two at once.
    barrier = threading.Barrier(2, timeout=20)
    out = io.StringIO()
    build_uv.run_parallel([("a.c", barrier.wait), ("b.c", barrier.wait)], 2,
                          build_uv.Progress(2, out))
    assert sorted(n for _, _, n in _progress_lines(out.getvalue())) == ["a.c", "b.c"]
    assert [c for c, _, _ in _progress_lines(out.getvalue())] == [1, 2]


@pytest.mark.parametrize("jobs", [1, 2])
def test_failure_stops_the_build_and_is_raised(jobs: int) -> None:
    out = io.StringIO()
    started = []

    def fail() -> None:
        raise RuntimeError("cc said no")

    def work(i: int) -> None:
        started.append(i)
        time.sleep(0.05)   # a compiler's time

    tasks = [("bad.c", fail)] + [(f"{i}.c", lambda i=i: work(i)) for i in range(50)]
    with pytest.raises(RuntimeError, match="cc said no"):
        build_uv.run_parallel(tasks, jobs, build_uv.Progress(len(tasks), out))
    assert "[build_uv] failed: bad.c" in out.getvalue()
    # The pool's other thread may have started one or two meanwhile.
    assert len(started) <= 2


def test_build_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_uv.build_jobs("3") == 3
    with pytest.raises(SystemExit, match="UVLOOP_LITE_BUILD_JOBS"):
        build_uv.build_jobs("0")
    with pytest.raises(SystemExit):
        build_uv.build_jobs("many")
    monkeypatch.delenv(build_uv.BUILD_JOBS_ENV, raising=False)
    want = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count())
    assert build_uv.build_jobs() == want
    monkeypatch.setenv(build_uv.BUILD_JOBS_ENV, "5")
    assert build_uv.build_jobs() == 5


def test_depfile_paths() -> None:
    text = ("build/x.o: src/x.c include/uv.h \\\n include/uv/unix.h \\\n"
            " src/with\\ space.h\n\ninclude/uv.h:\n")
    assert build_uv._depfile_paths(text) == [
        "src/x.c", "include/uv.h", "include/uv/unix.h", "src/with space.h"]
    assert build_uv._depfile_paths("") == []


# --- compile_objects with the real compiler, on a tiny project ---------------

def _compiler():
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 62:
        pytest.skip("the build needs setuptools>=62")
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    cc = new_compiler()
    customize_compiler(cc)
    if cc.compiler_type != "unix":
        pytest.skip("compile_objects is for Unix compilers")
    return cc


def _project(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "one.h").write_text("#define ONE 1\n")
    (src / "one.c").write_text('#include "one.h"\nint one(void) { return ONE; }\n')
    (src / "two.c").write_text("int two(void) { return 2; }\n")
    return src


def _compile(cc, src: Path, tmp_path: Path, **kwargs) -> list[tuple[int, int, str]]:
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        objects = build_uv.compile_objects(
            cc, ["src/one.c", "src/two.c"], output_dir="build", include_dirs=["src"],
            jobs=2, stream=out, **kwargs)
    finally:
        os.chdir(cwd)
    assert [Path(o).name for o in objects] == ["one.o", "two.o"]
    assert all((tmp_path / o).exists() for o in objects)
    return _progress_lines(out.getvalue())


_PAST = 1_000_000_000 * 10**9   # 2001: the inputs, then the objects a second later


def _settle_times(tmp_path: Path) -> None:
    for path in (tmp_path / "src").iterdir():
        os.utime(path, ns=(_PAST, _PAST))
    for path in (tmp_path / "build" / "src").glob("*.o"):
        os.utime(path, ns=(_PAST + 10**9, _PAST + 10**9))


def _edit(path: Path) -> None:
    """Newer than the objects, as a file edited after the build."""
    os.utime(path, ns=(_PAST + 2 * 10**9, _PAST + 2 * 10**9))


def test_objects_reused_until_an_input_changes(tmp_path: Path) -> None:
    cc = _compiler()
    src = _project(tmp_path)
    first = _compile(cc, src, tmp_path)
    assert [(c, t) for c, t, _ in first] == [(1, 2), (2, 2)]
    assert sorted(n for _, _, n in first) == ["src/one.c", "src/two.c"]
    _settle_times(tmp_path)
    assert _compile(cc, src, tmp_path) == []             # all up to date
    _edit(src / "one.h")                                 # a header: its includer only
    assert _compile(cc, src, tmp_path) == [(1, 1, "src/one.c")]
    _settle_times(tmp_path)
    _edit(src / "two.c")
    assert _compile(cc, src, tmp_path) == [(1, 1, "src/two.c")]
    _settle_times(tmp_path)
    # Another command line (a macro): everything again; and with force.
    again = _compile(cc, src, tmp_path, macros=[("EXTRA", "1")])
    assert sorted(n for _, _, n in again) == ["src/one.c", "src/two.c"]
    assert _compile(cc, src, tmp_path, macros=[("EXTRA", "1")]) == []
    forced = _compile(cc, src, tmp_path, macros=[("EXTRA", "1")], force=True)
    assert len(forced) == 2


def test_compiler_error_is_shown_and_raised(tmp_path: Path, capfd) -> None:
    cc = _compiler()
    src = _project(tmp_path)
    (src / "two.c").write_text("int two(void) { return undeclared_name; }\n")
    from distutils.errors import CompileError

    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(CompileError):
            build_uv.compile_objects(cc, ["src/one.c", "src/two.c"], output_dir="build",
                                     jobs=2, stream=out)
    finally:
        os.chdir(cwd)
    assert "[build_uv] failed: src/two.c" in out.getvalue()
    assert "undeclared_name" in capfd.readouterr().err     # the compiler's own message
    # A failed object is never taken as up to date.
    assert not (tmp_path / "build" / "src" / "two.o.cmd").exists()


# --- the whole build --------------------------------------------------------

@pytest.mark.skipif(not SLOW, reason="set UVLOOP_LITE_PACKAGING_TESTS=1 (compiles libuv)")
def test_build_uv_prints_progress_and_reuses_objects(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*build_uv._COPY_IGNORE))
    env = {k: v for k, v in os.environ.items()
           if k not in (build_uv.SANITIZE_ENV, "UVLOOP_LITE_USE_SYSTEM_LIBUV")}

    def build() -> list[tuple[int, int, str]]:
        proc = subprocess.run([sys.executable, "build_uv.py"], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return _progress_lines(proc.stderr)

    first = build()
    total = len(build_uv._COMMON) + len(build_uv._UNIX) + \
        len(build_uv._PER_OS[build_uv._platform()]["sources"]) + 1   # + the cffi module
    assert [c for c, _, _ in first] == list(range(1, total + 1))
    assert {t for _, t, _ in first} == {total}
    assert "vendor/libuv/src/unix/tcp.c" in {n for _, _, n in first}
    # One changed libuv file: only it is compiled again (and the module relinked).
    so = [p for p in (tree / "uvloop_lite").iterdir() if p.name.startswith("_uv.")
          and p.suffix == ".so"]
    assert len(so) == 1
    linked = so[0].stat().st_mtime_ns
    tcp = tree / "vendor" / "libuv" / "src" / "unix" / "tcp.c"
    t = max(os.stat(tcp).st_mtime_ns, linked) + 1_000_000_000
    os.utime(tcp, ns=(t, t))
    assert build() == [(1, 1, "vendor/libuv/src/unix/tcp.c")]
    assert so[0].stat().st_mtime_ns > linked
