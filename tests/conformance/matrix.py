"""Run the test_asyncio conformance suites on every CPython of the matrix found here.

    python -m tests.conformance.matrix                   # core + network, 3.9 ... 3.13
    python -m tests.conformance.matrix --versions 3.12 --suites core -j 2
    python -m tests.conformance.matrix --modules test_waitfor    # on each interpreter

For each CPython 3.9 ... 3.13 (pyenv's newest ``$PYENV_ROOT/versions/3.X.*``,
else ``python3.X`` on PATH, as noxfile.py picks them; missing ones are listed
and left out): a venv ``.conformance/venv-3.X`` with cffi and setuptools (made
once), then ``python -m tests.conformance.run --suite S --compare`` per suite,
which fails on any test that passes on asyncio's loop but not on uvloop_lite.

The extension: the checkout's in-place build (``./dev build``) when it imports
in that interpreter and no build input is newer -- on CPython it is the stable
ABI build, ``_uv.abi3.so``, which serves 3.9 and later whichever CPython built
it.  Otherwise (a stale, version-specific or sanitized build, or none) the
interpreter builds its own copy of the tree in ``.conformance/src-3.X`` (kept,
with its ``build/``, between runs) and the suites run there.

Prints one line per interpreter and suite (tests passed on asyncio / on
uvloop_lite, regressions, wall-clock and CPU seconds) and keeps each run's JSON in
``.conformance/``.  Exit status 1 if any run failed, 2 if no interpreter was
found, else 0.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(ROOT, ".conformance")
VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
DEPS = ("cffi>=1.15", "setuptools>=62")
BUILD_INPUTS = ("build_uv.py", "setup.py", "uvloop_lite/_c", "vendor/libuv/include",
                "vendor/libuv/src")
# Not copied into an interpreter's own tree (as noxfile.py's sessions).
IGNORE = shutil.ignore_patterns(".git", ".venv*", ".nox", ".sanitize", "build", "dist",
                                "*.egg-info", "__pycache__", "*.py[cod]", "*.so", "*.o",
                                ".pytest_cache", ".benchmarks", ".conformance",
                                ".thirdparty-cache")


def log(msg: str) -> None:
    print(f"[matrix] {msg}", flush=True)


def find_cpython(version: str) -> str | None:
    """Newest pyenv CPython ``version``.x, else ``python<version>`` on PATH."""
    root = os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")),
                        "versions")
    found = []
    for path in glob.glob(os.path.join(root, f"{version}.*", "bin", f"python{version}")):
        m = re.search(rf"/{re.escape(version)}\.(\d+)/bin/", path)
        if m and os.access(path, os.X_OK):
            found.append((int(m.group(1)), path))
    if found:
        return max(found)[1]
    path = shutil.which(f"python{version}")
    if path and subprocess.run([path, "-c", "import sys"], capture_output=True).returncode == 0:
        return path   # (a pyenv shim without that version fails here)
    return None


def _check(python: str, code: str, cwd: str = ROOT) -> bool:
    return subprocess.run([python, "-c", code], cwd=cwd, capture_output=True,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1")).returncode == 0


def ensure_venv(version: str, base: str) -> str | None:
    """``.conformance/venv-<version>`` with DEPS installed; its python (None
    if ``base`` cannot make a venv)."""
    venv = os.path.join(WORK, f"venv-{version}")
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, ".uvloop_lite-conformance-deps")
    if not (os.access(python, os.X_OK) and _check(python, "import sys")):
        log(f"{version}: creating {os.path.relpath(venv, ROOT)} with {base}")
        shutil.rmtree(venv, ignore_errors=True)
        if subprocess.run([base, "-m", "venv", venv]).returncode:
            shutil.rmtree(venv, ignore_errors=True)
            return None   # Debian/Ubuntu: python3.X-venv missing
    want = " ".join(DEPS)
    if not os.path.exists(stamp) or open(stamp).read() != want:
        log(f"{version}: installing {want}")
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-input",
                        "--disable-pip-version-check", *DEPS], check=True)
        with open(stamp, "w") as fp:
            fp.write(want)
    return python


def _newest_input() -> float:
    newest = 0.0
    for entry in BUILD_INPUTS:
        path = os.path.join(ROOT, entry)
        if os.path.isfile(path):
            newest = max(newest, os.path.getmtime(path))
        for dirpath, _, files in os.walk(path):
            for f in files:
                newest = max(newest, os.path.getmtime(os.path.join(dirpath, f)))
    return newest


def in_place_usable(python: str) -> str | None:
    """None if the checkout's extension serves ``python``, else why not."""
    code = ("import sys, uvloop_lite._uv as u; print(u.__file__); "
            "sys.exit(getattr(u.lib, 'UVL_SANITIZE', 0) != 0)")
    proc = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    if proc.returncode:
        return "the in-place extension does not import (or is a sanitized build)"
    so = proc.stdout.strip().splitlines()[-1]
    if os.path.getmtime(so) < _newest_input():
        return f"a build input is newer than {os.path.relpath(so, ROOT)}"
    return None


def own_tree(version: str, python: str) -> str:
    """Copy the sources into ``.conformance/src-<version>`` (keeping its
    ``build/``) and build the extension there with ``python``."""
    dest = os.path.join(WORK, f"src-{version}")
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(dest):
        path = os.path.join(dest, name)
        if name == "build":
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    shutil.copytree(ROOT, dest, ignore=IGNORE, dirs_exist_ok=True)
    subprocess.run([python, "build_uv.py"], cwd=dest, check=True)
    return dest


def _children_cpu() -> float:
    """CPU seconds of the finished descendants (run.py and its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_suite(python: str, tree: str, version: str, suite: str, opts) -> dict:
    out = os.path.join(WORK, f"{version}-{suite}.json")
    if os.path.exists(out):
        os.unlink(out)
    pick = ["--modules", *opts.modules] if opts.modules else ["--suite", suite]
    cmd = [python, "-m", "tests.conformance.run", *pick, "--compare",
           "-j", str(opts.jobs), "--json", out, *opts.run_args]
    log(f"{version}: {' '.join(cmd[1:])}")
    t0, cpu0 = time.monotonic(), _children_cpu()
    rc = subprocess.run(cmd, cwd=tree).returncode
    row = {"version": version, "suite": suite, "rc": rc,
           "secs": round(time.monotonic() - t0), "cpu": round(_children_cpu() - cpu0),
           "python": None,
           "asyncio": None, "ours": None, "run": None, "regressions": None}
    try:
        with open(out) as fp:
            data = json.load(fp)
        totals = data["totals"]
        row.update(python=data["python"], asyncio=totals["asyncio"]["passed"],
                   ours=totals["uvloop_lite"]["passed"], run=totals["uvloop_lite"]["run"],
                   regressions=len(data["regressions"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.conformance.matrix",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--versions", nargs="+", default=list(VERSIONS), metavar="3.X")
    pick = ap.add_mutually_exclusive_group()
    pick.add_argument("--suites", nargs="+", default=["core", "network"],
                      choices=("core", "network", "rest", "all"))
    pick.add_argument("--modules", nargs="+", metavar="MODULE",
                      help="these test_asyncio modules instead of suites")
    ap.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                    help="modules run at once (run.py's -j)")
    ap.add_argument("run_args", nargs="*", metavar="-- RUN_ARGS",
                    help="more arguments for run.py (after --)")
    opts = ap.parse_args(argv)

    os.makedirs(WORK, exist_ok=True)
    rows, missing, t_all = [], [], time.monotonic()
    for version in opts.versions:
        base = find_cpython(version)
        if base is None:
            missing.append(version)
            log(f"{version}: no CPython {version} here (pyenv or python{version} on PATH)")
            continue
        t0 = time.monotonic()
        python = ensure_venv(version, base)
        if python is None:
            log(f"{version}: {base} -m venv failed: left out")
            missing.append(version)
            continue
        if not _check(python, "import test.test_asyncio"):
            # Debian and Ubuntu ship it apart: libpython3.X-testsuite.
            log(f"{version}: {base} has no test.test_asyncio: left out")
            missing.append(version)
            continue
        why = in_place_usable(python)
        tree = ROOT
        if why:
            log(f"{version}: {why}: building in .conformance/src-{version}")
            tree = own_tree(version, python)
        setup = round(time.monotonic() - t0)
        for suite in ["modules"] if opts.modules else opts.suites:
            row = run_suite(python, tree, version, suite, opts)
            row["setup"] = setup
            rows.append(row)
            setup = 0

    print()
    print(f"{'python':<10}{'suite':<9}{'tests':>6}{'asyncio':>9}{'ours':>6}"
          f"{'only-asyncio':>14}{'secs':>6}{'cpu':>6}  status")
    for r in rows:
        status = "ok" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
        print(f"{r['python'] or r['version']:<10}{r['suite']:<9}{r['run'] or '?':>6}"
              f"{r['asyncio'] if r['asyncio'] is not None else '?':>9}"
              f"{r['ours'] if r['ours'] is not None else '?':>6}"
              f"{r['regressions'] if r['regressions'] is not None else '?':>14}"
              f"{r['secs']:>6}{r['cpu']:>6}  {status}")
    if missing:
        print(f"not run (not found, no venv or no test.test_asyncio): {' '.join(missing)}")
    print(f"asyncio/ours = tests passed on each loop; only-asyncio = passed on asyncio's "
          f"loop but not on uvloop_lite; secs = wall clock, cpu = CPU seconds of the "
          f"run and its workers; total {time.monotonic() - t_all:.0f}s, "
          f"{sum(r['cpu'] for r in rows)}s CPU")
    if not rows:
        return 2
    return 1 if any(r["rc"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
