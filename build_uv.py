"""cffi build of ``uvloop_lite._uv``: the vendored libuv and our small C shim,
compiled together into one out-of-line API-mode extension.

``python build_uv.py`` builds the extension in place (next to the sources);
``pip install .`` builds it through setuptools' ``cffi_modules``.  Only a C
compiler and cffi are needed: libuv's own ``.c`` files are listed below per OS
(taken from libuv's CMakeLists.txt), so there is no autotools or cmake step.

``UVLOOP_LITE_USE_SYSTEM_LIBUV=1`` links the system libuv (found with
pkg-config) instead of compiling the vendored copy.

``UVLOOP_LITE_SANITIZE=address,undefined`` (or one of the two) compiles libuv
and the shim with ASan/UBSan, libuv's asserts on (``-UNDEBUG``) and debug
information (``-O1 -g -fno-omit-frame-pointer``); ``UVLOOP_LITE_SANITIZE=assert``
only the asserts and debug information (for valgrind).  UBSan reports are
fatal (``-fno-sanitize-recover``).  The extension says which build it is:
``lib.UVL_SANITIZE`` is 0 for a normal build, else a mask of ``SANITIZE_BITS``.
With the switch set, ``python build_uv.py`` never builds in place: it copies
the source tree into ``.sanitize/<flavor>/`` (kept between runs, with its own
``build/``) and builds there, so the checkout's own extension stays the normal
one.  An ASan build loads only into an interpreter that preloads the ASan
runtime: ``python -m tests.sanitize.run`` (``./dev sanitize``) sets that up.

Every build (in place, pip's, a sanitize copy's) compiles through setup.py's
``build_ext`` (``make_build_ext`` below): libuv's files and the cffi module in
parallel, ``UVLOOP_LITE_BUILD_JOBS`` compilers at once (default: the CPUs this
process may run on; ``setup.py build_ext -j N`` also sets it), one progress
line per file on stderr, and an object file is reused while its command line
is the same and neither its source nor a header it included (the compiler's
``-MMD`` list) is newer than it (``--force`` compiles everything).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import IO, Callable, Sequence

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
LIBUV_DIR = os.path.join(HERE, "vendor", "libuv")
C_DIR = os.path.join(HERE, "uvloop_lite", "_c")
LIBUV_VERSION = (1, 50, 0)   # the vendored release; checked at import by _ffi.py

_COMMON = [
    "src/fs-poll.c", "src/idna.c", "src/inet.c", "src/random.c", "src/strscpy.c",
    "src/strtok.c", "src/thread-common.c", "src/threadpool.c", "src/timer.c",
    "src/uv-common.c", "src/uv-data-getter-setters.c", "src/version.c",
]
_UNIX = [
    "src/unix/async.c", "src/unix/core.c", "src/unix/dl.c", "src/unix/fs.c",
    "src/unix/getaddrinfo.c", "src/unix/getnameinfo.c", "src/unix/loop-watcher.c",
    "src/unix/loop.c", "src/unix/pipe.c", "src/unix/poll.c", "src/unix/process.c",
    "src/unix/random-devurandom.c", "src/unix/signal.c", "src/unix/stream.c",
    "src/unix/tcp.c", "src/unix/thread.c", "src/unix/tty.c", "src/unix/udp.c",
]
_PER_OS = {
    "linux": dict(
        sources=["src/unix/linux.c", "src/unix/procfs-exepath.c",
                 "src/unix/random-getrandom.c", "src/unix/random-sysctl-linux.c",
                 "src/unix/proctitle.c"],
        # libuv also asks for _POSIX_C_SOURCE=200112; pyconfig.h (included by the
        # generated module) already defines a newer one.
        macros=[("_GNU_SOURCE", None)],
        libraries=["pthread", "dl", "rt"],
    ),
    "darwin": dict(
        sources=["src/unix/proctitle.c", "src/unix/bsd-ifaddrs.c", "src/unix/kqueue.c",
                 "src/unix/random-getentropy.c", "src/unix/darwin-proctitle.c",
                 "src/unix/darwin.c", "src/unix/fsevents.c"],
        macros=[("_DARWIN_UNLIMITED_SELECT", "1"), ("_DARWIN_USE_64_BIT_INODE", "1")],
        libraries=["pthread"],
    ),
}


SANITIZE_ENV = "UVLOOP_LITE_SANITIZE"
#: ``lib.UVL_SANITIZE`` bits; every sanitized flavor has the asserts on.
SANITIZE_BITS = {"address": 1, "undefined": 2, "assert": 4}
#: In a sanitize copy: the flavor it was made for (see ``sanitize_copy``); under
#: build/, which is no source file to any tool.
_COPY_MARKER = os.path.join("build", "sanitize-flavor")
# Not copied into a sanitize copy (the same list as noxfile.py's).
_COPY_IGNORE = (".git", ".venv*", ".nox", ".sanitize", "build", "dist", "*.egg-info",
                "__pycache__", "*.py[cod]", "*.so", "*.o", ".pytest_cache",
                ".benchmarks", ".conformance")


def sanitize_flavor(value: str | None = None) -> tuple[str, ...]:
    """The sanitizers asked for by ``UVLOOP_LITE_SANITIZE`` (or ``value``):
    a sorted tuple of ``address``/``undefined``, ``("assert",)`` for asserts
    only, ``()`` for a normal build.  Anything else is an error, not ignored."""
    if value is None:
        value = os.environ.get(SANITIZE_ENV, "")
    names = {n.strip() for n in value.split(",") if n.strip()}
    if not names:
        return ()
    unknown = names - set(SANITIZE_BITS)
    if unknown:
        raise SystemExit(f"{SANITIZE_ENV}={value!r}: unknown {sorted(unknown)}; "
                         "use address, undefined, both (comma-separated) or assert")
    names.discard("assert")
    return tuple(sorted(names)) or ("assert",)


def _sanitize_args(flavor: tuple[str, ...]) -> tuple[list[str], list[str], int]:
    """Compile flags, link flags and the ``UVL_SANITIZE`` mask for ``flavor``."""
    if not flavor:
        return ["-O2"], [], 0
    # After Python's own CFLAGS (-DNDEBUG -O3 ...), so these win.
    cflags = ["-O1", "-g", "-fno-omit-frame-pointer", "-UNDEBUG"]
    ldflags: list[str] = []
    sanitizers = [n for n in flavor if n != "assert"]
    if sanitizers:
        cflags.append("-fsanitize=" + ",".join(sanitizers))
        # The runtimes are linked dynamically (DT_NEEDED); ASan's must also be
        # preloaded into a non-ASan interpreter.
        ldflags.append("-fsanitize=" + ",".join(sanitizers))
    if "undefined" in sanitizers:
        # A report aborts; and Python's CFLAGS have -fwrapv, which would make
        # signed overflow defined and hide it from UBSan.
        cflags += ["-fno-sanitize-recover=undefined", "-fno-wrapv"]
    mask = SANITIZE_BITS["assert"]
    for name in sanitizers:
        mask |= SANITIZE_BITS[name]
    return cflags, ldflags, mask


def sanitize_copy(flavor: tuple[str, ...]) -> str:
    """Make ``.sanitize/<flavor>/`` a copy of this tree's sources (mtimes kept,
    its ``build/`` left alone so setuptools skips up-to-date work) and return
    its path."""
    dest = os.path.join(HERE, ".sanitize", "-".join(flavor))
    os.makedirs(os.path.join(dest, "build"), exist_ok=True)
    for entry in os.scandir(dest):
        if entry.name == "build":
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    shutil.copytree(HERE, dest, ignore=shutil.ignore_patterns(*_COPY_IGNORE),
                    dirs_exist_ok=True)
    with open(os.path.join(dest, _COPY_MARKER), "w", encoding="ascii") as fp:
        fp.write(",".join(flavor) + "\n")
    return dest


def _copy_flavor() -> tuple[str, ...] | None:
    """The flavor this tree is a sanitize copy for, or None for a checkout."""
    try:
        with open(os.path.join(HERE, _COPY_MARKER), encoding="ascii") as fp:
            return sanitize_flavor(fp.read())
    except FileNotFoundError:
        return None


# --- the compile step: parallel, with progress and per-object reuse ---------

BUILD_JOBS_ENV = "UVLOOP_LITE_BUILD_JOBS"


def build_jobs(value: str | None = None) -> int:
    """How many compilers run at once: ``UVLOOP_LITE_BUILD_JOBS`` (or
    ``value``) if set, else the CPUs this process may run on."""
    if value is None:
        value = os.environ.get(BUILD_JOBS_ENV, "")
    if value.strip():
        try:
            jobs = int(value)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise SystemExit(f"{BUILD_JOBS_ENV}={value!r}: want a whole number >= 1")
        return jobs
    getaffinity = getattr(os, "sched_getaffinity", None)   # not on macOS nor PyPy 3.9
    if getaffinity is not None:
        try:
            return max(1, len(getaffinity(0)))
        except OSError:
            pass
    return os.cpu_count() or 1


class Progress:
    """Writes ``[build_uv] <verb> <done>/<total> <name>`` lines, one per
    finished file, to ``stream`` (stderr by default); thread-safe."""

    def __init__(self, total: int, stream: IO[str] | None = None,
                 verb: str = "compiled") -> None:
        self.total = total
        self.count = 0
        self.verb = verb
        self._stream = stream
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        with self._lock:
            stream.write(f"[build_uv] {text}\n")
            stream.flush()

    def done(self, name: str) -> None:
        with self._lock:
            self.count += 1
            count = self.count
        self.say(f"{self.verb} {count}/{self.total} {name}")


def run_parallel(tasks: Sequence[tuple[str, Callable[[], object]]], jobs: int,
                 progress: Progress) -> None:
    """Run each ``(name, call)`` of ``tasks`` in up to ``jobs`` threads, in
    order, reporting each finished one to ``progress``.  After a failure no
    more are started; the running ones finish and the first error is raised
    (its name reported as failed)."""
    failed = threading.Event()

    def one(name: str, call: Callable[[], object]) -> None:
        if failed.is_set():
            return
        try:
            call()
        except BaseException:
            failed.set()
            progress.say(f"failed: {name}")
            raise
        progress.done(name)

    if jobs <= 1 or len(tasks) <= 1:
        for name, call in tasks:
            one(name, call)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, name, call) for name, call in tasks]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            future.cancel()
        wait(futures)
    for future in futures:
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]


def _depfile_paths(text: str) -> list[str]:
    """The prerequisites in a make rule as written by ``cc -MMD -MF``."""
    text = text.replace("\\\n", " ")
    _, sep, rest = text.partition(": ")
    if not sep:
        return []
    paths, current, i = [], "", 0
    rest = rest.split("\n", 1)[0]
    while i < len(rest):
        ch = rest[i]
        if ch == "\\" and i + 1 < len(rest) and rest[i + 1] in " #\\":
            current += rest[i + 1]
            i += 2
            continue
        if ch in " \t":
            if current:
                paths.append(current)
            current = ""
        else:
            current += ch
        i += 1
    if current:
        paths.append(current)
    return paths


def object_up_to_date(obj: str, signature: str) -> bool:
    """Was ``obj`` compiled with the command ``signature`` and is it newer
    than every file its ``.d`` list names (the source and its headers)?"""
    try:
        with open(obj + ".cmd", encoding="utf-8") as fp:
            if fp.read() != signature:
                return False
        with open(obj + ".d", encoding="utf-8") as fp:
            deps = _depfile_paths(fp.read())
        built = os.stat(obj).st_mtime_ns
        return bool(deps) and all(os.stat(d).st_mtime_ns <= built for d in deps)
    except OSError:
        return False


def compile_objects(compiler, sources, output_dir=None, macros=None, include_dirs=None,
                    debug=False, extra_preargs=None, extra_postargs=None, depends=None, *,
                    jobs: int, force: bool = False, stream: IO[str] | None = None
                    ) -> list[str]:
    """``compiler.compile(...)`` for a Unix compiler: the files compiled in
    ``jobs`` threads (biggest first), one progress line each, and an object
    whose command, source and headers are unchanged reused (not with ``force``).
    """
    macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)
    todo = []
    for obj in objects:
        if obj not in build:
            continue
        src, ext = build[obj]
        signature = repr((list(compiler.compiler_so), cc_args, extra_postargs, src)) + "\n"
        if force or not object_up_to_date(obj, signature):
            todo.append((obj, src, ext, signature))
    progress = Progress(len(todo), stream)
    reused = len(objects) - len(todo)
    if not todo:
        progress.say(f"all {len(objects)} object files up to date")
        return objects

    def compile_one(obj: str, src: str, ext: str, signature: str) -> None:
        for stale in (obj + ".cmd", obj + ".d"):
            if os.path.exists(stale):
                os.unlink(stale)
        # -MMD: the headers it includes, for the next build's check.
        compiler._compile(obj, src, ext, cc_args,
                          list(extra_postargs) + ["-MMD", "-MF", obj + ".d"], pp_opts)
        with open(obj + ".cmd", "w", encoding="utf-8") as fp:
            fp.write(signature)

    def size(item: tuple[str, str, str, str]) -> int:
        try:
            return os.path.getsize(item[1])
        except OSError:
            return 0

    # Longest first (size for time), so that no big file starts last.
    todo.sort(key=size, reverse=True)
    jobs = max(1, min(jobs, len(todo)))
    files = f"{len(todo)} file" + ("s" if len(todo) > 1 else "")
    progress.say(f"compiling {files}, {jobs} at a time"
                 + (f" ({reused} up to date)" if reused else ""))
    started = time.monotonic()
    run_parallel([(os.path.relpath(item[1]), functools.partial(compile_one, *item))
                  for item in todo], jobs, progress)
    progress.say(f"compiled {files} in {time.monotonic() - started:.1f} s")
    return objects


def make_build_ext(base: type) -> type:
    """setuptools' ``build_ext`` ``base`` compiling through ``compile_objects``
    (a Unix compiler; any other compiles as ``base`` does).  When it builds
    the extension at all it also links it, even with every object reused,
    so the extension ends up newer than its inputs."""

    class build_ext(base):  # type: ignore[misc, valid-type]
        def build_extension(self, ext):  # noqa: ANN001
            compiler = self.compiler
            if getattr(compiler, "compiler_type", None) != "unix":
                return super().build_extension(ext)
            parallel = getattr(self, "parallel", None)
            jobs = parallel if isinstance(parallel, int) and parallel > 1 else build_jobs()

            def compile(sources, *args, **kwargs):  # noqa: ANN001, ANN202
                return compile_objects(compiler, sources, *args, jobs=jobs,
                                       force=bool(self.force), **kwargs)

            saved_force = compiler.force
            compiler.compile = compile
            compiler.force = True      # the link step: see the docstring
            try:
                return super().build_extension(ext)
            finally:
                del compiler.compile
                compiler.force = saved_force

    return build_ext


def _read(name: str) -> str:
    with open(os.path.join(C_DIR, name), encoding="utf-8") as fp:
        return fp.read()


def _platform() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    raise RuntimeError(f"uvloop_lite does not build on {sys.platform!r} yet "
                       "(source lists exist for Linux and macOS)")


def _pkg_config(*args: str) -> list[str]:
    out = subprocess.check_output(["pkg-config", *args, "libuv"], text=True)
    return shlex.split(out)


def build_ffi() -> FFI:
    cflags, ldflags, mask = _sanitize_args(sanitize_flavor())
    ffi = FFI()
    ffi.cdef(_read("uv_cdef.h") + _read("shim.h") + "#define UVL_SANITIZE ...\n")
    source = (f"#define UVL_SANITIZE {mask}\n"
              "#include <uv.h>\n#include <sys/socket.h>\n#include <netdb.h>\n"
              + _read("shim.c"))

    if os.environ.get("UVLOOP_LITE_USE_SYSTEM_LIBUV") == "1":
        uv_cflags = _pkg_config("--cflags")
        libs = _pkg_config("--libs")
        ffi.set_source(
            "uvloop_lite._uv", source,
            include_dirs=[f[2:] for f in uv_cflags if f.startswith("-I")],
            library_dirs=[f[2:] for f in libs if f.startswith("-L")],
            libraries=[f[2:] for f in libs if f.startswith("-l")] or ["uv"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
        return ffi

    plat = _PER_OS[_platform()]
    rel = _COMMON + _UNIX + plat["sources"]
    sources = [os.path.relpath(os.path.join(LIBUV_DIR, p), HERE) for p in rel]
    # The build scripts too: their flags (a sanitized build's copy reuses build/).
    depends = [os.path.relpath(os.path.join(C_DIR, n), HERE)
               for n in ("uv_cdef.h", "shim.h", "shim.c")] + ["build_uv.py", "setup.py"]
    # And libuv's headers: an edited one rebuilds the extension (the objects
    # that include it, see compile_objects) instead of being overlooked.
    for sub in ("include", "src"):
        for dirpath, _, names in sorted(os.walk(os.path.join(LIBUV_DIR, sub))):
            depends += [os.path.relpath(os.path.join(dirpath, n), HERE)
                        for n in sorted(names) if n.endswith(".h")]
    ffi.set_source(
        "uvloop_lite._uv", source,
        sources=sources,
        depends=depends,
        include_dirs=[os.path.join(LIBUV_DIR, "include"), os.path.join(LIBUV_DIR, "src")],
        define_macros=[("_FILE_OFFSET_BITS", "64"), ("_LARGEFILE_SOURCE", None)]
        + plat["macros"],
        libraries=plat["libraries"],
        # libuv is written for -fno-strict-aliasing (its CMakeLists adds it).
        extra_compile_args=cflags + ["-fno-strict-aliasing", "-Wno-unused-parameter",
                                     "-Wno-sign-compare", "-Wno-unused-function"],
        extra_link_args=ldflags,
    )
    return ffi


ffibuilder = build_ffi()

if __name__ == "__main__":
    # In-place build for development: uvloop_lite/_uv.*.so next to the sources,
    # object files under build/ (never inside vendor/).  A sanitized build goes
    # into its own copy of the tree instead (see the docstring).
    where, flavor, copy_of = HERE, sanitize_flavor(), _copy_flavor()
    if copy_of is not None and copy_of != flavor:
        sys.exit(f"{HERE} is the sanitize copy for {SANITIZE_ENV}={','.join(copy_of)}; "
                 "build it with that setting, or build in the checkout")
    if flavor and copy_of is None:
        where = sanitize_copy(flavor)
        print(f"build_uv.py: {SANITIZE_ENV}={','.join(flavor)}: building in {where} "
              "(the checkout's own extension is left alone)", file=sys.stderr)
    sys.exit(subprocess.call(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=where))
