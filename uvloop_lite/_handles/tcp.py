"""TCPTransport (uv_tcp_t): TCP connections; TCP_NODELAY is set on each, as
asyncio does."""

from __future__ import annotations

from asyncio import constants
from typing import TYPE_CHECKING, Any

from .._ffi import lib
from .stream import UVStreamTransport

if TYPE_CHECKING:
    from .._typing import LoopBase

__all__ = ["TCPTransport"]


class TCPTransport(UVStreamTransport):
    _ctype = "uv_tcp_t *"
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop: LoopBase, protocol: Any, extra: dict[str, Any] | None = None,
                 server: Any = None) -> None:
        super().__init__(loop, protocol, extra, server)
        self._init_done(lib.uv_tcp_init(loop._uv, self._ptr))

    def _uv_open(self, fd: int) -> int:
        return lib.uv_tcp_open(self._ptr, fd)

    def _accepted(self) -> None:
        lib.uv_tcp_nodelay(self._ptr, 1)

