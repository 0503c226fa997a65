"""nox sessions: build uvloop_lite and run the test suite on each interpreter.

    nox                     # every session whose interpreter is installed
    nox -s tests-3.13       # one of tests-3.9 ... tests-3.13, tests-pypy3.9
    nox -l                  # list them

CPython comes from pyenv (``$PYENV_ROOT/versions/3.X.*``, newest patch release)
when it is there, else ``python3.X`` on PATH; PyPy is ``pypy3.9`` on PATH.
Each session copies the source tree into its own directory (so the working
tree is never written to, and the checkout's extension, which another
interpreter may have built, is never imported), builds the extension there
with ``python build_uv.py`` and runs ``python -m pytest -q tests``, as
``./dev test`` does.  The copy keeps its ``build/`` directory, so a second run
does not recompile.
Arguments after ``--`` go to pytest: ``nox -s tests-3.9 -- -x -k timers``.

    nox -s sanitize         # the suite on an ASan+UBSan build, libuv's asserts on
    nox -s valgrind         # memcheck on a few test files
    nox -s churn            # tests/test_churn.py at full counts (--churn=full)

run ``python -m tests.sanitize.run`` (what ``./dev sanitize`` runs) with
CPython 3.11 in the session's copy, which keeps its ``.sanitize/`` builds too;
arguments after ``--`` go to it (``nox -s sanitize -- --sanitize undefined -x``).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
CPYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
PYPYS = ["3.9"]
TEST_DEPS = ["setuptools>=62", "pytest>=7", "pytest-timeout>=2", "pytest-asyncio", "anyio"]
# The other frameworks of the recipes (tests/test_frameworks.py), and mypy:
# CPython only (aiohttp would compile its C extensions on PyPy).
CPYTHON_TEST_DEPS = ["cffi>=1.15", "uvicorn", "aiohttp", "websockets", "httpx", "mypy"]
# Not copied into a session's source tree.
IGNORE = shutil.ignore_patterns(".git", ".venv*", ".nox", ".sanitize", "build", "dist",
                                "*.egg-info", "__pycache__", "*.py[cod]", "*.so", "*.o",
                                ".pytest_cache", ".benchmarks", ".conformance",
                                ".thirdparty-cache")
# Kept in a session's copy between runs: compiled output.
KEEP = ("build", ".sanitize")

nox.options.reuse_existing_virtualenvs = True
if hasattr(nox.options, "download_python"):
    nox.options.download_python = "never"  # only interpreters already installed


def _cpython(version: str) -> str:
    """Newest pyenv CPython ``version``.x, or ``pythonX.Y`` from PATH."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for path in glob.glob(str(root / f"{version}.*" / "bin" / f"python{version}")):
        m = re.search(rf"/{re.escape(version)}\.(\d+)/bin/", path)
        if m and os.access(path, os.X_OK):
            found.append((int(m.group(1)), path))
    return max(found)[1] if found else f"python{version}"


def _sync_source(dest: Path) -> None:
    """Make ``dest`` a copy of the checkout's sources (mtimes kept), keeping
    its ``build/`` and ``.sanitize/`` directories so that setuptools can skip
    up-to-date work."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in dest.iterdir():
        if entry.name in KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    shutil.copytree(ROOT, dest, ignore=IGNORE, dirs_exist_ok=True)


def _run_tests(session: nox.Session, *, pypy: bool) -> None:
    # PyPy ships cffi built in; on CPython it is both build and run dependency.
    session.install(*TEST_DEPS, *([] if pypy else CPYTHON_TEST_DEPS))
    src = Path(session.create_tmp()).resolve() / "src"
    _sync_source(src)
    session.chdir(src)
    # What ./dev does, in the copy: build in place, then the suite.
    session.run("python", "build_uv.py")
    session.run("python", "-m", "uvloop_lite", "--version")
    # `tests` unless the arguments name test paths themselves (as ./dev does).
    names_paths = any(not a.startswith("-") and (src / a.split("::")[0]).exists()
                      for a in session.posargs)
    session.run("python", "-m", "pytest", "-q", *([] if names_paths else ["tests"]),
                *session.posargs, env={"PYTHONDONTWRITEBYTECODE": "1"})


# `nox` alone runs the interpreter matrix; sanitize, valgrind and churn only
# when named.
nox.options.sessions = [f"tests-{v}" for v in CPYTHONS] + [f"tests-pypy{v}" for v in PYPYS]

for _version in CPYTHONS:
    @nox.session(name=f"tests-{_version}", python=_cpython(_version), venv_backend="venv")
    def _cpython_tests(session: nox.Session) -> None:
        """Build with this CPython and run the test suite."""
        _run_tests(session, pypy=False)

for _version in PYPYS:
    @nox.session(name=f"tests-pypy{_version}", python=f"pypy{_version}",
                 venv_backend="venv")
    def _pypy_tests(session: nox.Session) -> None:
        """Build with this PyPy and run the test suite."""
        _run_tests(session, pypy=True)


def _enter_copy(session: nox.Session) -> None:
    """CPython's test dependencies, then work in the session's source copy."""
    session.install(*TEST_DEPS, *CPYTHON_TEST_DEPS)
    src = Path(session.create_tmp()).resolve() / "src"
    _sync_source(src)
    session.chdir(src)


def _sanitize_run(session: nox.Session, *args: str) -> None:
    _enter_copy(session)
    session.run("python", "-m", "tests.sanitize.run", *args, *session.posargs)


@nox.session(python=_cpython("3.11"), venv_backend="venv")
def sanitize(session: nox.Session) -> None:
    """The test suite on an ASan+UBSan build with libuv's asserts on."""
    _sanitize_run(session)


@nox.session(python=_cpython("3.11"), venv_backend="venv")
def valgrind(session: nox.Session) -> None:
    """valgrind's memcheck on a few test files (an asserts-only build)."""
    _sanitize_run(session, "--valgrind")


@nox.session(python=_cpython("3.11"), venv_backend="venv")
def churn(session: nox.Session) -> None:
    """Churn and load tests at full counts (20,000 TCP connect/echo/close,
    20,000 DNS lookups, 2,000 subprocesses, ...; 10,000 concurrent
    connections), figures printed: a few minutes on 2 cores."""
    _enter_copy(session)
    session.run("python", "build_uv.py")
    session.run("python", "-m", "pytest", "-q", "-rP", "tests/test_churn.py",
                "--churn=full", *session.posargs, env={"PYTHONDONTWRITEBYTECODE": "1"})
# --- thirdparty: anyio's, uvicorn's and pytest-asyncio's own suites on both loops
# (tests/thirdparty/README.md).  Needs the package index; caches in the session's tmp.
@nox.session(name="thirdparty", python=_cpython("3.11"), venv_backend="venv")
def thirdparty(session: nox.Session) -> None:
    """Third-party test suites on asyncio's loop and on uvloop_lite, compared."""
    session.install("setuptools>=62", "cffi>=1.15")
    tmp = Path(session.create_tmp()).resolve()
    src = tmp / "src"
    _sync_source(src)
    session.chdir(src)
    session.run("python", "build_uv.py")
    session.run("python", "-m", "tests.thirdparty.run", "--cache",
                str(tmp / "thirdparty-cache"), *session.posargs)
