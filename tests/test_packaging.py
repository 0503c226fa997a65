"""Packaging: the sdist carries everything an offline build needs and nothing
built; the metadata registers the pytest plugin.

The sdist is built (no compiling) from a copy of the checkout's files, so the
working tree is left alone; build products in the checkout (in-place
extensions, build/) are not copied.  Two slower checks compile libuv and only run with
``UVLOOP_LITE_PACKAGING_TESTS=1``: the wheel's contents, and installing the
sdist with ``pip --no-index --no-build-isolation`` into a fresh venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLOW = os.environ.get("UVLOOP_LITE_PACKAGING_TESTS") == "1"
slow = pytest.mark.skipif(not SLOW, reason="set UVLOOP_LITE_PACKAGING_TESTS=1 "
                                           "(compiles libuv, needs the network for pip)")


# Never part of a source tree's files when there is no git to ask.
_JUNK_DIRS = {".git", ".nox", ".pytest_cache", "__pycache__", "build", "dist", ".benchmarks",
              ".conformance"}
_JUNK_SUFFIXES = (".pyc", ".pyo", ".so", ".o", ".egg-info")


def _source_files() -> list[str]:
    """The checkout's files: tracked and untracked-but-not-ignored ones when
    git knows the tree, else every file minus build products and caches (a
    copy made by noxfile.py, an unpacked sdist)."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, check=True, capture_output=True).stdout
        return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames
                       if d not in _JUNK_DIRS and not d.startswith(".venv")
                       and not d.endswith(".egg-info")]
        for name in filenames:
            if not name.endswith(_JUNK_SUFFIXES):
                files.append(os.path.relpath(os.path.join(dirpath, name), ROOT))
    return files


def _setuptools_version() -> tuple[int, ...]:
    try:
        import setuptools
    except ImportError:
        return (0,)
    return tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if _setuptools_version() < (62,):
        pytest.skip("building needs setuptools>=62 (pyproject.toml's build-system)")
    dest = tmp_path_factory.mktemp("src")
    for rel in _source_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return dest


def _backend(source: Path, hook: str, outdir: Path) -> Path:
    """Call setuptools' PEP 517 hook in a subprocess; return the built file."""
    outdir.mkdir(exist_ok=True)
    code = ("import sys; from setuptools import build_meta as b; "
            f"print(b.{hook}(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(outdir)], cwd=source,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return outdir / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def sdist(source_copy: Path) -> Path:
    return _backend(source_copy, "build_sdist", source_copy / "dist")


def _members(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        names = tar.getnames()
    prefix = names[0].split("/")[0] + "/"
    return {n[len(prefix):] for n in names if n.startswith(prefix)}


def test_sdist_has_the_build_inputs(sdist: Path, source_copy: Path) -> None:
    members = _members(sdist)
    required = {"pyproject.toml", "setup.py", "build_uv.py", "README.md", "MANIFEST.in",
                "vendor/README.md", "vendor/libuv/LICENSE", "vendor/libuv/include/uv.h",
                "uvloop_lite/_c/uv_cdef.h", "uvloop_lite/_c/shim.h",
                "uvloop_lite/_c/shim.c", "uvloop_lite/py.typed", "uvloop_lite/_uv.pyi",
                "uvloop_lite/pytest_plugin.py", "uvloop_lite/__main__.py"}
    missing = required - members
    assert not missing, sorted(missing)
    # Every libuv file build_uv.py compiles, on every OS it knows.
    sys.path.insert(0, str(source_copy))
    try:
        import build_uv
    finally:
        sys.path.remove(str(source_copy))
        sys.modules.pop("build_uv", None)
    listed = build_uv._COMMON + build_uv._UNIX + [
        src for plat in build_uv._PER_OS.values() for src in plat["sources"]]
    missing = {f"vendor/libuv/{src}" for src in listed} - members
    assert not missing, sorted(missing)
    # Everything tracked under these directories travels.
    tracked = {f for f in _source_files()
               if f.startswith(("vendor/", "uvloop_lite/", "tests/"))}
    missing = tracked - members
    assert not missing, sorted(missing)


def test_sdist_has_nothing_built(sdist: Path) -> None:
    for name in _members(sdist):
        assert not name.endswith((".so", ".o", ".pyc", ".pyd")), name
        assert "__pycache__" not in name and not name.startswith((".venv", "build/")), name


def test_sdist_metadata(sdist: Path) -> None:
    members = _members(sdist)
    with tarfile.open(sdist) as tar:
        prefix = tar.getnames()[0].split("/")[0]
        pkg_info = tar.extractfile(f"{prefix}/PKG-INFO").read().decode()
        entry_points = tar.extractfile(
            f"{prefix}/uvloop_lite.egg-info/entry_points.txt").read().decode()
        requires = tar.extractfile(
            f"{prefix}/uvloop_lite.egg-info/requires.txt").read().decode()
    assert "uvloop_lite.egg-info/entry_points.txt" in members
    assert "[pytest11]\nuvloop_lite = uvloop_lite.pytest_plugin" in entry_points
    # setup.py: an SPDX expression with setuptools>=77, else the older field.
    assert "License-Expression: MIT" in pkg_info or "License: MIT" in pkg_info
    assert "Requires-Python: >=3.9" in pkg_info
    # (setuptools before 68 leaves Requires-Dist out of an sdist's PKG-INFO.)
    assert requires.splitlines()[0] == "cffi>=1.15"


@slow
def test_wheel_contents(source_copy: Path) -> None:
    wheel = _backend(source_copy, "build_wheel", source_copy / "wheels")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert any(n.startswith("uvloop_lite/_uv.") and n.endswith(".so") for n in names)
    assert "uvloop_lite/pytest_plugin.py" in names
    assert {"uvloop_lite/py.typed", "uvloop_lite/_uv.pyi"} <= names
    assert not any(n.startswith("uvloop_lite/_c/") for n in names)
    assert any(n.endswith(".dist-info/licenses/vendor/libuv/LICENSE") for n in names)
    if sys.implementation.name == "cpython":
        assert "-cp39-abi3-" in wheel.name


@slow
def test_sdist_installs_offline(sdist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    # The build requirements come first (from the index); the sdist then
    # builds with no index at all.
    subprocess.run([py, "-m", "pip", "install", "-q", "cffi", "setuptools>=70.1"],
                   check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-index",
                    "--no-build-isolation", str(sdist)], check=True)
    code = ("import asyncio, uvloop_lite\n"
            "async def main():\n"
            "    await asyncio.sleep(0.001)\n"
            "    return type(asyncio.get_running_loop()).__name__\n"
            "print(uvloop_lite.__file__, uvloop_lite.run(main()))\n")
    out = subprocess.run([py, "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    assert str(venv) in out and out.split()[-1] == "Loop"
