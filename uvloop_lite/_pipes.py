"""connect_read_pipe / connect_write_pipe: the loop hooks asyncio's
BaseEventLoop calls, answered with uv_pipe_t transports."""

from __future__ import annotations

from typing import Any

from ._handles.pipe import ReadPipeTransport, WritePipeTransport
from ._typing import LoopBase

__all__ = ["PipesMixin"]


class PipesMixin(LoopBase):
    """Pipe transports of :class:`Loop`."""

    def _make_read_pipe_transport(self, pipe: Any, protocol: Any, waiter: Any = None,
                                  extra: dict[str, Any] | None = None) -> ReadPipeTransport:
        transport = ReadPipeTransport(self, pipe, protocol, extra)
        transport._start(waiter)
        return transport

    def _make_write_pipe_transport(self, pipe: Any, protocol: Any, waiter: Any = None,
                                   extra: dict[str, Any] | None = None) -> WritePipeTransport:
        transport = WritePipeTransport(self, pipe, protocol, extra)
        transport._start(waiter)
        return transport
