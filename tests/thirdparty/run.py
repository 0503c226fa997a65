"""Run third-party projects' own test suites on asyncio's loop and on uvloop_lite.

    python -m tests.thirdparty.run                      # anyio, uvicorn, pytest-asyncio
    python -m tests.thirdparty.run --project anyio --json anyio.json
    python -m tests.thirdparty.run --list               # pins, dependencies, exclusions

For each pinned release the sdist is downloaded from the package index and
unpacked into ``.thirdparty-cache/`` (each sdist ships its tests), a venv is
made there with the project and its declared test dependencies, and the
project's suite runs unmodified, from the unpacked sdist, twice: once with
``UVLOOP_LITE=0`` (asyncio's loop) and once with ``UVLOOP_LITE=1``, which turns
on uvloop_lite's pytest plugin (``uvloop_lite.pytest_plugin``) so that every
loop asyncio builds (``asyncio.Runner``, ``new_event_loop()``, pytester's inner
sessions too) is uvloop_lite's.  uvloop_lite is this checkout, in place (build
it first: ``python build_uv.py``), put on the venv's path by a ``.pth`` file
with a hand-written dist-info that registers the plugin's entry point.

A probe plugin (``uvl_thirdparty_probe``) records each test's outcome and the
loops built during it; a run is only trusted if the uvloop_lite run built
uvloop_lite loops and the asyncio run built none.

Exit status: 1 when a test passes on asyncio but fails on uvloop_lite, also
on a re-run (or a run did not use the loop it should), 2 on a usage or set-up
error, 130 when interrupted, else 0.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CACHE = os.path.join(REPO_ROOT, ".thirdparty-cache")
LOOPS = ("asyncio", "uvloop_lite")
#: uvloop_lite's own run-time dependencies (pyproject's [project] dependencies).
UVLOOP_LITE_DEPS = ["cffi>=1.15"]
PASSED = ("passed", "xfailed")
SKIPPED = ("skipped",)


@dataclass
class Project:
    name: str            # distribution name on the index
    version: str
    #: pip requirements besides the project itself: its declared test
    #: dependencies (pyproject's test group / extra), minus what is noted.
    test_deps: List[str]
    extras: str = ""     # extras of the project itself to install
    #: pytest arguments after the project's own ini options.
    pytest_args: List[str] = field(default_factory=list)
    #: left out of the test dependencies -> why
    omitted: Dict[str, str] = field(default_factory=dict)
    #: node id pattern (fnmatch) -> why it is not compared.  Never a test that
    #: merely fails on uvloop_lite.
    excluded: Dict[str, str] = field(default_factory=dict)
    #: seconds for one run of the suite (on one loop)
    budget: float = 1800.0
    #: the project's own options run pytest-xdist (we set the worker count)
    xdist: bool = False

    @property
    def dirname(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}"


_OTHER_LOOP = ("runs the tests on another loop (the same on both runs, so it would compare "
               "nothing about uvloop_lite)")

PROJECTS: Dict[str, Project] = {
    "anyio": Project(
        "anyio", "4.16.0",
        # pyproject [dependency-groups] test
        ["blockbuster>=1.5.29", "coverage[toml]>=7", "hypothesis>=4.18.2", "psutil>=5.9",
         "pytest>=9.0", "pytest-mock>=3.14", "pytest-timeout>=2.4.0", "trustme>=1.0.0",
         "truststore>=0.9.1"],
        # as anyio's own tox env "only_asyncio": no trio extra
        omitted={"uvloop": "asyncio+uvloop parameter: " + _OTHER_LOOP,
                 "anyio[trio]": "trio backend parameter: " + _OTHER_LOOP +
                 "; anyio's own tox env only_asyncio leaves it out too"},
        excluded={},
    ),
    "uvicorn": Project(
        "uvicorn", "0.54.0",
        # pyproject [dependency-groups] dev, the test part of it
        ["pytest>=9.1.1", "pytest-mock==3.15.1", "pytest-xdist[psutil]==3.8.0",
         "trustme==1.2.1", "cryptography>=44.0.3", "httpx2", "a2wsgi==1.10.10",
         "wsproto==1.3.2", "zttp>=0.0.34", "pytest-timeout"],
        extras="standard",
        pytest_args=["--timeout=60"],
        xdist=True,   # its addopts say -n 8
        omitted={"ruff, mypy, types-*, twine, coverage*, pytest-codspeed":
                 "lint, typing, packaging, coverage and benchmark tools; no test needs them",
                 "pytest-timeout (added)": "not theirs: bounds each test here"},
        excluded={
            "tests/test_compat.py::test_asyncio_run__default_loop_factory":
                "asserts that asyncio.Runner() without a loop_factory builds asyncio's "
                "own _UnixSelectorEventLoop class; the policy that the uvloop_lite run "
                "installs makes it build uvloop_lite's loop, which is the point",
        },
    ),
    "pytest-asyncio": Project(
        "pytest-asyncio", "1.5.0",
        # pyproject [dependency-groups] test (= optional-dependencies.testing)
        ["coverage>=6.2", "hypothesis>=5.7.1", "pytest-timeout"],
        pytest_args=["--timeout=60"],
        omitted={"pytest-timeout (added)": "not theirs: bounds each test here"},
        excluded={},
    ),
}


# ------------------------------------------------------------------- set-up

def _run(cmd: List[str], **kw) -> None:
    print("  $ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def fetch_source(project: Project, cache: str, python: str) -> str:
    """The unpacked sdist's directory (downloaded and unpacked once)."""
    src = os.path.join(cache, "src", project.dirname)
    if os.path.isdir(os.path.join(src, "tests")):
        return src
    sdists = os.path.join(cache, "sdist")
    os.makedirs(sdists, exist_ok=True)
    name = f"{project.dirname}.tar.gz"
    path = os.path.join(sdists, name)
    if not os.path.exists(path):
        _run([python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              f"{project.name}=={project.version}", "-d", sdists])
        found = [f for f in os.listdir(sdists)
                 if f.lower() == name.lower() and f.endswith(".tar.gz")]
        if not found:
            raise SystemExit(f"no sdist {name} in {sdists}")
        path = os.path.join(sdists, found[0])
    with tarfile.open(path) as tar:
        if hasattr(tarfile, "data_filter"):   # 3.12+, and security releases before
            tar.extractall(os.path.join(cache, "src"), filter="data")
        else:
            tar.extractall(os.path.join(cache, "src"), members=[
                m for m in tar.getmembers()
                if not (m.name.startswith("/") or ".." in m.name.split("/"))])
    if not os.path.isdir(os.path.join(src, "tests")):
        raise SystemExit(f"{path} ships no tests/ directory")
    return src


def _site_dir(cache: str) -> str:
    """A directory put on each venv's path: this checkout's uvloop_lite (a
    symlink, so the in-place build is what runs), the probe plugin, and a
    dist-info registering the pytest plugin's entry point."""
    site = os.path.join(cache, "site")
    os.makedirs(site, exist_ok=True)
    for name, target in (("uvloop_lite", os.path.join(REPO_ROOT, "uvloop_lite")),
                         ("uvl_thirdparty_probe.py",
                          os.path.join(HERE, "uvl_thirdparty_probe.py"))):
        link = os.path.join(site, name)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)
    with open(os.path.join(REPO_ROOT, "uvloop_lite", "_version.py")) as fp:
        version = re.search(r'__version__\s*=\s*"([^"]+)"', fp.read()).group(1)
    for old in os.listdir(site):
        if old.endswith(".dist-info"):
            shutil.rmtree(os.path.join(site, old))
    info = os.path.join(site, f"uvloop_lite-{version}.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as fp:
        fp.write(f"Metadata-Version: 2.1\nName: uvloop_lite\nVersion: {version}\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as fp:
        fp.write("[pytest11]\nuvloop_lite = uvloop_lite.pytest_plugin\n")
    return site


def make_venv(project: Project, cache: str, python: str, src: str, site: str) -> str:
    """The project's venv (re-made when its requirements change); returns its python."""
    out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    venv = os.path.join(cache, f"venv-{project.name}-py{out}")
    vpython = os.path.join(venv, "bin", "python")
    reqs = ([src + (f"[{project.extras}]" if project.extras else "")] + project.test_deps
            + UVLOOP_LITE_DEPS)
    stamp = hashlib.sha256(json.dumps(reqs).encode()).hexdigest()
    marker = os.path.join(venv, ".uvl-requirements")
    if not (os.path.exists(marker) and open(marker).read() == stamp):
        if os.path.exists(venv):
            shutil.rmtree(venv)
        _run([python, "-m", "venv", venv])
        _run([vpython, "-m", "pip", "install", "-q", *reqs])
        with open(marker, "w") as fp:
            fp.write(stamp)
    purelib = subprocess.run([vpython, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True,
                             text=True).stdout.strip()
    with open(os.path.join(purelib, "uvloop_lite_checkout.pth"), "w") as fp:
        fp.write(site + "\n")
    return vpython


# --------------------------------------------------------------------- runs

def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_probe(probe: str) -> Tuple[Dict[str, dict], Dict[str, int]]:
    """Per-test records ({nodeid: status, loops, detail}) and the loops built,
    from the probe's JSON lines."""
    tests: Dict[str, dict] = {}
    loops = {"uvloop_lite": 0, "asyncio": 0}
    if os.path.exists(probe):
        with open(probe) as fp:
            for line in fp:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                phases = rec["phases"]
                values = set(phases.values())
                if "failed" in values:
                    status = "failed" if phases.get("call") == "failed" else "error"
                elif "xfailed" in values:
                    status = "xfailed"
                elif "skipped" in values:
                    status = "skipped"
                elif values <= {"passed", "xpassed"} and values:
                    status = "passed"
                else:
                    status = "error"
                for k, n in rec.get("loops", {}).items():
                    loops[k] = loops.get(k, 0) + n
                tests[rec["nodeid"]] = {"status": status, "loops": rec.get("loops", {}),
                                        "detail": "\n".join(rec.get("details", []))}
    return tests, loops


def run_suite(project: Project, vpython: str, src: str, loop: str, out_dir: str,
              extra: List[str], node_ids: Optional[List[str]] = None,
              tag: str = "") -> dict:
    """One pytest run of the project's suite on ``loop``: per-test records."""
    os.makedirs(out_dir, exist_ok=True)
    stem = f"{project.name}-{loop}{tag}"
    probe = os.path.join(out_dir, stem + ".jsonl")
    log = os.path.join(out_dir, stem + ".log")
    if os.path.exists(probe):
        os.unlink(probe)
    env = dict(os.environ, UVLOOP_LITE="1" if loop == "uvloop_lite" else "0",
               UVL_PROBE_OUT=probe, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    cmd = [vpython, "-m", "pytest", "-p", "uvl_thirdparty_probe", "-q", "-rN",
           "-p", "no:cacheprovider", *project.pytest_args, *extra, *(node_ids or [])]
    t0 = time.monotonic()
    with open(log, "w") as fp:
        fp.write(" ".join(cmd) + "\n")
        fp.flush()
        proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=fp, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=project.budget)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = proc.wait()
            fp.write(f"\n*** budget of {project.budget:.0f}s exhausted: killed\n")
        except BaseException:
            _kill_group(proc)
            raise
        # Whatever the tests started and left running goes too.
        _kill_group(proc)
    tests, loops = read_probe(probe)
    return {"rc": rc, "elapsed": time.monotonic() - t0, "tests": tests, "loops": loops,
            "log": log}


def excluded_reason(project: Project, nodeid: str) -> Optional[str]:
    for pattern, why in project.excluded.items():
        if fnmatch.fnmatchcase(nodeid, pattern):
            return why
    return None


def compare(project: Project, runs: Dict[str, dict]) -> dict:
    base, uvl = runs["asyncio"]["tests"], runs["uvloop_lite"]["tests"]
    only_asyncio, excluded = [], []
    for nodeid, rec in base.items():
        if rec["status"] not in PASSED:
            continue
        other = uvl.get(nodeid, {"status": "notrun", "detail": "not run (crash or budget)"})
        if other["status"] in PASSED + SKIPPED:
            continue
        why = excluded_reason(project, nodeid)
        if why:
            excluded.append((nodeid, why))
        else:
            only_asyncio.append((nodeid, other["status"], other["detail"]))
    return {"only_asyncio": only_asyncio, "excluded": excluded}


def _passed(tests: Dict[str, dict]) -> int:
    return sum(1 for r in tests.values() if r["status"] in PASSED)


def _first_line(detail: str) -> str:
    """The exception line of a traceback, for grouping failures by cause."""
    lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^(E\s+)?[\w.]+(Error|Exception|Warning|Exit|Interrupt|Timeout)\b", ln) \
                or ln.startswith("E ") or "Timeout" in ln:
            return ln[:160]
    return lines[-1][:160] if lines else ""


# --------------------------------------------------------------------- main

def print_list() -> None:
    for p in PROJECTS.values():
        print(f"{p.name}=={p.version}" + (f" [{p.extras}]" if p.extras else ""))
        print(f"    test deps: {' '.join(p.test_deps)}")
        if p.pytest_args:
            print(f"    pytest args: {' '.join(p.pytest_args)}")
        for what, why in p.omitted.items():
            print(f"    omitted {what}: {why}")
        for pattern, why in p.excluded.items():
            print(f"    excluded {pattern}: {why}")
        if not p.excluded:
            print("    excluded: none")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.thirdparty.run",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--project", action="append", choices=sorted(PROJECTS),
                    help="only this project (repeatable); default: all")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for the venvs (default: this one)")
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="sdists, sources, venvs, logs")
    ap.add_argument("--jobs", "-n", type=int, default=2,
                    help="pytest-xdist workers, for projects that use xdist (uvicorn)")
    ap.add_argument("--no-rerun", action="store_true",
                    help="do not re-run the tests that failed only on uvloop_lite")
    ap.add_argument("--json", metavar="FILE", help="write every result to FILE")
    ap.add_argument("--show-failures", type=int, default=20, metavar="N",
                    help="print the traceback tail of the first N only-on-asyncio tests")
    ap.add_argument("--setup-only", action="store_true", help="fetch and install, run nothing")
    ap.add_argument("--reuse", action="store_true",
                    help="run nothing: compare the last runs' results kept in the cache")
    ap.add_argument("--list", action="store_true", help="print pins, dependencies, exclusions")
    ap.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    opts = ap.parse_args(argv)
    if opts.list:
        print_list()
        return 0
    names = opts.project or list(PROJECTS)
    cache = os.path.abspath(opts.cache)
    if not any(f.startswith("_uv") and f.endswith(".so")
               for f in os.listdir(os.path.join(REPO_ROOT, "uvloop_lite"))):
        print("uvloop_lite is not built in place: run `python build_uv.py` first",
              file=sys.stderr)
        return 2
    t_start = time.monotonic()
    results: Dict[str, dict] = {}
    failed_setup = False
    try:
        site = _site_dir(cache)
        prepared: List[Tuple[Project, str, str]] = []
        for name in names:
            project = PROJECTS[name]
            print(f"== {project.name} {project.version}: set-up", flush=True)
            try:
                src = fetch_source(project, cache, opts.python)
                vpython = make_venv(project, cache, opts.python, src, site)
            except (subprocess.CalledProcessError, SystemExit) as exc:
                print(f"   set-up failed: {exc}", file=sys.stderr)
                failed_setup = True
                continue
            prepared.append((project, src, vpython))
        if opts.setup_only:
            return 2 if failed_setup else 0
        for project, src, vpython in prepared:
            extra = list(opts.pytest_args)
            if project.xdist:
                extra = [f"-n{opts.jobs}"] + extra
            runs = {}
            for loop in LOOPS:
                if opts.reuse:
                    tests, loops = read_probe(os.path.join(
                        cache, "results", f"{project.name}-{loop}.jsonl"))
                    runs[loop] = {"rc": None, "elapsed": 0.0, "tests": tests, "loops": loops,
                                  "log": None}
                else:
                    print(f"== {project.name}: running on {loop}", flush=True)
                    runs[loop] = run_suite(project, vpython, src, loop,
                                           os.path.join(cache, "results"), extra)
                r = runs[loop]
                print(f"   {len(r['tests'])} tests, {_passed(r['tests'])} passed, "
                      f"exit {r['rc']}, {r['elapsed']:.0f}s; loops built: "
                      f"{r['loops']['uvloop_lite']} uvloop_lite, {r['loops']['asyncio']} "
                      f"asyncio", flush=True)
            cmp = compare(project, runs)
            flaky = []
            if cmp["only_asyncio"] and not (opts.no_rerun or opts.reuse):
                ids = [n for n, _, _ in cmp["only_asyncio"]]
                print(f"== {project.name}: re-running {len(ids)} on uvloop_lite", flush=True)
                again = run_suite(project, vpython, src, "uvloop_lite",
                                  os.path.join(cache, "results"),
                                  (["-n0"] if project.xdist else []) + list(opts.pytest_args),
                                  ids,
                                  tag="-rerun")
                keep = []
                for item in cmp["only_asyncio"]:
                    if again["tests"].get(item[0], {}).get("status") in PASSED:
                        flaky.append(item)
                    else:
                        keep.append(item)
                cmp["only_asyncio"] = keep
            cmp["flaky"] = flaky
            results[project.name] = {"version": project.version, "runs": runs, **cmp}
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

    # ------------------------------------------------------------- report
    print()
    head = (f"{'project':<22}{'tests':>7}{'pass asyncio':>14}{'pass uvl':>10}"
            f"{'only asyncio':>14}{'flaky':>7}{'excluded':>10}{'uvl loops':>11}{'time':>7}")
    print(head)
    print("-" * len(head))
    bad_loop = []
    for name, res in results.items():
        a, u = res["runs"]["asyncio"], res["runs"]["uvloop_lite"]
        print(f"{name + ' ' + res['version']:<22}{len(a['tests']):>7}{_passed(a['tests']):>14}"
              f"{_passed(u['tests']):>10}{len(res['only_asyncio']):>14}{len(res['flaky']):>7}"
              f"{len(res['excluded']):>10}{u['loops']['uvloop_lite']:>11}"
              f"{a['elapsed'] + u['elapsed']:>7.0f}")
        if u["loops"]["uvloop_lite"] == 0 or a["loops"]["uvloop_lite"] != 0:
            bad_loop.append(name)
    print("uvl loops: uvloop_lite loops built during the uvloop_lite run's tests "
          "(the asyncio run must build none)")
    for name in bad_loop:
        print(f"!! {name}: the runs did not use the loop they should", file=sys.stderr)
    total_fail = 0
    for name, res in results.items():
        for title, key in (("pass on asyncio but not on uvloop_lite", "only_asyncio"),
                           ("failed on uvloop_lite, then passed on a re-run", "flaky")):
            items = res[key]
            if not items:
                continue
            print(f"\n{name}: {len(items)} test(s) {title}:")
            for nodeid, status, detail in items:
                print(f"  {status:<7} {nodeid}\n          {_first_line(detail)}")
        total_fail += len(res["only_asyncio"])
        for nodeid, why in res["excluded"]:
            print(f"  excluded {nodeid}: {why}")
    shown = 0
    for name, res in results.items():
        for nodeid, status, detail in res["only_asyncio"]:
            if shown >= opts.show_failures:
                break
            shown += 1
            print(f"\n=== {name} {status}: {nodeid}\n{detail[-2500:]}")
    print(f"\nelapsed {time.monotonic() - t_start:.0f}s")
    if opts.json:
        with open(opts.json, "w") as fp:
            json.dump({"python": opts.python, "results": results}, fp, indent=1)
    if failed_setup:
        return 2
    return 1 if total_fail or bad_loop else 0


if __name__ == "__main__":
    sys.exit(main())
