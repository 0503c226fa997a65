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
TEST_DEPS = ["setuptools>=62", "pytest>=7", "pytest-timeout>=2"]
# Not copied into a session's source tree.
IGNORE = shutil.ignore_patterns(".git", ".venv*", ".nox", "build", "dist", "*.egg-info",
                                "__pycache__", "*.py[cod]", "*.so", "*.o", ".pytest_cache",
                                ".benchmarks", ".conformance", ".thirdparty-cache")

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
    its ``build/`` directory so that setuptools can skip up-to-date work."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in dest.iterdir():
        if entry.name == "build":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    shutil.copytree(ROOT, dest, ignore=IGNORE, dirs_exist_ok=True)


def _run_tests(session: nox.Session, *, pypy: bool) -> None:
    # PyPy ships cffi built in; on CPython it is both build and run dependency.
    session.install(*TEST_DEPS, *([] if pypy else ["cffi>=1.15"]))
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
