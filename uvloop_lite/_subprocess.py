"""subprocess_exec / subprocess_shell: the loop hook asyncio's BaseEventLoop
awaits, answered with a SubprocessTransport on uv_spawn."""

from __future__ import annotations

import weakref
from typing import Any

from ._handles.process import SubprocessTransport
from ._typing import LoopBase

__all__ = ["SubprocessMixin"]


class SubprocessMixin(LoopBase):
    """Child processes of :class:`Loop`."""

    _subprocesses: weakref.WeakSet[SubprocessTransport]

    def _init_subprocess(self) -> None:
        self._subprocesses = weakref.WeakSet()

    async def _make_subprocess_transport(self, protocol: Any, args: Any, shell: bool,
                                         stdin: Any, stdout: Any, stderr: Any, bufsize: int,
                                         extra: dict[str, Any] | None = None,
                                         **kwargs: Any) -> SubprocessTransport:
        waiter = self.create_future()
        transport = SubprocessTransport(self, protocol, args, shell, stdin, stdout, stderr,
                                        bufsize, waiter=waiter, extra=extra, **kwargs)
        self._subprocesses.add(transport)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport

    def _orphan_subprocesses(self) -> None:
        for transport in list(self._subprocesses):
            transport._orphan()
