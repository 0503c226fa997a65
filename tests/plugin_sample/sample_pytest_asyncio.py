"""pytest-asyncio tests: with --uvloop-lite=both each runs as test_x[asyncio]
and test_x[uvloop_lite]."""

import asyncio

import pytest
import pytest_asyncio


def report(request: pytest.FixtureRequest) -> None:
    """Print the loop running this test (the outer test reads it)."""
    cls = type(asyncio.get_running_loop())
    print(f"\nLOOP {request.node.name} {cls.__module__}.{cls.__qualname__}")


@pytest_asyncio.fixture
async def echo_server():
    async def handle(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_echo(request, echo_server):
    report(request)
    # The async fixture was set up on the loop the test runs on.
    assert echo_server.get_loop() is asyncio.get_running_loop()
    host, port = echo_server.sockets[0].getsockname()[:2]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"hello\n")
    assert await reader.readline() == b"HELLO\n"
    writer.close()
    await writer.wait_closed()


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", [0, 0.001])
async def test_sleep(request, delay):
    report(request)
    await asyncio.sleep(delay)
