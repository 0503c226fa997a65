"""The only importer of the built extension ``uvloop_lite._uv``: exposes ``ffi``
and ``lib`` and checks that the extension matches this package and libuv."""

from __future__ import annotations

try:
    from uvloop_lite._uv import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "uvloop_lite's C extension (uvloop_lite._uv) is not built: run "
        "'python build_uv.py' in a source checkout, or 'pip install .'") from exc

__all__ = ["ffi", "lib", "libuv_version", "LIBUV_VERSION_HEX"]

LIBUV_VERSION_HEX: int = lib.uvl_build_version()

if lib.uv_version() != LIBUV_VERSION_HEX:  # pragma: no cover - system libuv only
    raise ImportError(
        f"uvloop_lite._uv was compiled against libuv headers "
        f"{LIBUV_VERSION_HEX:#x} but runs with libuv {lib.uv_version():#x}; rebuild it")


def libuv_version() -> str:
    """Version of the libuv the loop runs on, e.g. ``'1.50.0'``."""
    return ffi.string(lib.uv_version_string()).decode("ascii")
