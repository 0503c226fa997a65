"""TCPTransport (uv_tcp_t): TCP connections; TCP_NODELAY is set on each, as
asyncio does."""

from __future__ import annotations

from asyncio import constants
from contextvars import Context
from typing import TYPE_CHECKING, Any

from .._ffi import ffi, lib
from .stream import UVStreamTransport

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["TCPTransport"]

# On Unix a uv_tcp_t is a uv_stream_t with no fields of its own: allocated as
# one, the transport needs no second cdata for its stream calls (see
# UVStreamTransport.__init__); the few uv_tcp_* calls cast.
_TCP_IS_STREAM = ffi.sizeof("uv_tcp_t") == ffi.sizeof("uv_stream_t")


class TCPTransport(UVStreamTransport):
    __slots__ = ()
    _ctype = "uv_stream_t *" if _TCP_IS_STREAM else "uv_tcp_t *"
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop: LoopBase, protocol: Any, extra: dict[str, Any] | None = None,
                 server: Any = None, context: Context | None = None) -> None:
        super().__init__(loop, protocol, extra, server, context)
        self._init_done(lib.uv_tcp_init(loop._uv, self._tcp))

    @property
    def _tcp(self) -> Any:
        """The handle as the ``uv_tcp_t *`` of the uv_tcp_* calls."""
        return ffi.cast("uv_tcp_t *", self._ptr)

    def _uv_open(self, fd: int) -> int:
        return lib.uv_tcp_open(self._tcp, fd)

    def _accepted(self) -> None:
        lib.uv_tcp_nodelay(self._tcp, 1)
