"""cffi build of ``uvloop_lite._uv``: the vendored libuv and our small C shim,
compiled together into one out-of-line API-mode extension.

``python build_uv.py`` builds the extension in place (next to the sources);
``pip install .`` builds it through setuptools' ``cffi_modules``.  Only a C
compiler and cffi are needed: libuv's own ``.c`` files are listed below per OS
(taken from libuv's CMakeLists.txt), so there is no autotools or cmake step.

``UVLOOP_LITE_USE_SYSTEM_LIBUV=1`` links the system libuv (found with
pkg-config) instead of compiling the vendored copy.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

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
    ffi = FFI()
    ffi.cdef(_read("uv_cdef.h") + _read("shim.h"))
    source = "#include <uv.h>\n#include <sys/socket.h>\n#include <netdb.h>\n" + _read("shim.c")

    if os.environ.get("UVLOOP_LITE_USE_SYSTEM_LIBUV") == "1":
        cflags = _pkg_config("--cflags")
        libs = _pkg_config("--libs")
        ffi.set_source(
            "uvloop_lite._uv", source,
            include_dirs=[f[2:] for f in cflags if f.startswith("-I")],
            library_dirs=[f[2:] for f in libs if f.startswith("-L")],
            libraries=[f[2:] for f in libs if f.startswith("-l")] or ["uv"],
            extra_compile_args=["-O2"],
        )
        return ffi

    plat = _PER_OS[_platform()]
    rel = _COMMON + _UNIX + plat["sources"]
    sources = [os.path.relpath(os.path.join(LIBUV_DIR, p), HERE) for p in rel]
    depends = [os.path.relpath(os.path.join(C_DIR, n), HERE)
               for n in ("uv_cdef.h", "shim.h", "shim.c")]
    ffi.set_source(
        "uvloop_lite._uv", source,
        sources=sources,
        depends=depends,
        include_dirs=[os.path.join(LIBUV_DIR, "include"), os.path.join(LIBUV_DIR, "src")],
        define_macros=[("_FILE_OFFSET_BITS", "64"), ("_LARGEFILE_SOURCE", None)]
        + plat["macros"],
        libraries=plat["libraries"],
        # libuv is written for -fno-strict-aliasing (its CMakeLists adds it).
        extra_compile_args=["-O2", "-fno-strict-aliasing", "-Wno-unused-parameter",
                            "-Wno-sign-compare", "-Wno-unused-function"],
    )
    return ffi


ffibuilder = build_ffi()

if __name__ == "__main__":
    # In-place build for development: uvloop_lite/_uv.*.so next to the sources,
    # object files under build/ (never inside vendor/).
    sys.exit(subprocess.call(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--parallel",
         str(os.cpu_count() or 1)], cwd=HERE))
