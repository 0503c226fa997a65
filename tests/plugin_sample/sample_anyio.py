"""anyio tests on anyio's own anyio_backend fixture: with --uvloop-lite=both
its asyncio parameter runs as [asyncio] and [uvloop_lite]."""

import asyncio

import anyio
import pytest

pytestmark = pytest.mark.anyio


async def test_task_group(request):
    cls = type(asyncio.get_running_loop())
    print(f"\nLOOP {request.node.name} {cls.__module__}.{cls.__qualname__}")
    results = []

    async def worker(i):
        await anyio.sleep(0)
        results.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(worker, i)
    assert sorted(results) == [0, 1, 2]
