"""libuv error codes (negative errno values and UV_EAI_*) turned into the
exceptions Python's own socket and os functions raise for the same failure."""

from __future__ import annotations

import errno
import os
import socket
from asyncio.log import logger
from typing import Any

from ._ffi import ffi, lib

__all__ = ["uv_error", "gai_error", "check", "report_transport_error"]

# libuv's UV_EAI_* values are its own; socket.gaierror carries the libc EAI_*
# value and libc's message, so map them back by name.
_EAI_BY_UV = {}
for _name in ("ADDRFAMILY", "AGAIN", "BADFLAGS", "FAIL", "FAMILY", "MEMORY",
              "NODATA", "NONAME", "OVERFLOW", "SERVICE", "SOCKTYPE", "PROTOCOL"):
    _libc = getattr(socket, "EAI_" + _name, None)
    if _libc is not None:
        _EAI_BY_UV[getattr(lib, "UV_EAI_" + _name)] = _libc


def uv_error(code: int) -> OSError:
    """The OSError subclass Python raises for ``-code`` (a libuv error, < 0)."""
    if code in _EAI_BY_UV:
        return gai_error(code)
    if code == lib.UV_EOF:
        return ConnectionResetError(errno.ECONNRESET, "Connection lost")
    err = -code
    # OSError(errno, msg) picks the subclass (ConnectionResetError, ...).
    return OSError(err, os.strerror(err))


def gai_error(code: int) -> socket.gaierror:
    """socket.gaierror with the errno and message libc's getaddrinfo gives."""
    libc = _EAI_BY_UV.get(code)
    if libc is None:
        return socket.gaierror(code, ffi.string(lib.uv_strerror(code)).decode())
    return socket.gaierror(libc, _gai_strerror(libc))


def _gai_strerror(libc_code: int) -> str:
    return ffi.string(lib.gai_strerror(libc_code)).decode("utf-8", "replace")


def check(code: int) -> int:
    """Raise the matching OSError for a negative libuv return code."""
    if code < 0:
        raise uv_error(code)
    return code


def report_transport_error(transport: Any, exc: BaseException, message: str) -> None:
    """Report a transport's fatal error as asyncio does: an OSError (a peer
    that went away, say) only in the debug log, anything else through the
    loop's exception handler."""
    if isinstance(exc, OSError):
        if transport._loop.get_debug():
            logger.debug("%r: %s", transport, message, exc_info=True)
    else:
        transport._loop.call_exception_handler({
            "message": message,
            "exception": exc,
            "transport": transport,
            "protocol": transport._protocol,
        })
