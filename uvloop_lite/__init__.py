"""uvloop_lite: a drop-in asyncio event loop on libuv, bound with cffi.

Three ways to use it::

    uvloop_lite.install()                 # policy: asyncio.run() now uses it
    uvloop_lite.run(main())               # one call, as asyncio.run()/uvloop.run()
    asyncio.Runner(loop_factory=uvloop_lite.new_event_loop)   # Python 3.11+

and ``new_event_loop`` is the loop factory frameworks take (uvicorn's
``--loop uvloop_lite:new_event_loop``).
"""

from __future__ import annotations

from ._ffi import libuv_version
from ._loop import Loop
from ._policy import EventLoopPolicy, install, new_event_loop, run
from ._version import __version__

__all__ = [
    "Loop",
    "new_event_loop",
    "EventLoopPolicy",
    "install",
    "run",
    "libuv_version",
    "__version__",
]
