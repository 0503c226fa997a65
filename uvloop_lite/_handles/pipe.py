"""UnixTransport (uv_pipe_t): connections on Unix stream sockets."""

from __future__ import annotations

from asyncio import constants
from typing import TYPE_CHECKING, Any

from .._ffi import lib
from .stream import UVStreamServer, UVStreamTransport

if TYPE_CHECKING:
    from .._loop import Loop

__all__ = ["UnixTransport", "UnixServer"]


class UnixTransport(UVStreamTransport):
    _ctype = "uv_pipe_t *"
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop: Loop, protocol: Any, extra: dict | None = None,
                 server: Any = None) -> None:
        super().__init__(loop, protocol, extra, server)
        self._init_done(lib.uv_pipe_init(loop._uv, self._ptr, 0))

    def _uv_open(self, fd: int) -> int:
        return lib.uv_pipe_open(self._ptr, fd)

    def _accepted(self) -> None:
        pass


class UnixServer(UVStreamServer):
    """A listening socket accepting into UnixTransports."""

    _ctype = "uv_pipe_t *"

    def __init__(self, loop: Loop, *args: Any) -> None:
        super().__init__(loop, *args)
        self._init_done(lib.uv_pipe_init(loop._uv, self._ptr, 0))

    def _uv_open(self, fd: int) -> int:
        return lib.uv_pipe_open(self._ptr, fd)
