"""asyncio's high-level streams (StreamReader/StreamWriter) on both loops."""

from __future__ import annotations

import asyncio
import pathlib
import uuid

import pytest

from netutil import LOCALHOST, MIB, payload


async def _echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.startswith(b"BIG "):
                n = int(line.split()[1])
                writer.write(payload(n, 1))
            else:
                writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


async def _talk(reader, writer):
    results = []
    writer.write(b"hello\n")
    writer.writelines([b"two ", b"parts\n"])
    await writer.drain()
    results.append(await reader.readline())
    results.append(await reader.readuntil(b"\n"))
    writer.write(b"BIG %d\n" % MIB)
    await writer.drain()
    big = await reader.readexactly(MIB)
    results.append(big == payload(MIB, 1))
    writer.write(b"partial\n")
    results.append(await reader.read(3))
    results.append(await reader.readexactly(5))
    results.append(writer.can_write_eof())
    writer.write_eof()
    results.append(await reader.read())
    results.append(reader.at_eof())
    with pytest.raises(asyncio.IncompleteReadError) as ei:
        await reader.readexactly(1)
    results.append((ei.value.partial, ei.value.expected))
    writer.close()
    await writer.wait_closed()
    results.append(writer.is_closing())
    return results


EXPECTED = [b"HELLO\n", b"TWO PARTS\n", True, b"PAR", b"TIAL\n", True, b"", True,
            (b"", 1), True]


def test_tcp_streams(loop):
    async def main():
        server = await asyncio.start_server(_echo_handler, LOCALHOST, 0)
        async with server:
            addr = server.sockets[0].getsockname()
            reader, writer = await asyncio.open_connection(*addr)
            peer = writer.get_extra_info("peername")
            results = await _talk(reader, writer)
        return peer == addr, results

    ok, results = loop.run_until_complete(main())
    assert ok
    assert results == EXPECTED


def test_unix_streams(loop):
    path = pathlib.Path("/tmp") / f"uvl-{uuid.uuid4().hex[:12]}.sock"

    async def main():
        server = await asyncio.start_unix_server(_echo_handler, path)
        async with server:
            reader, writer = await asyncio.open_unix_connection(path)
            return await _talk(reader, writer)

    try:
        assert loop.run_until_complete(main()) == EXPECTED
    finally:
        if path.exists():
            path.unlink()


def test_drain_waits_for_a_slow_reader(loop):
    async def main():
        gate = asyncio.Event()
        received = loop.create_future()

        async def slow(reader, writer):
            await gate.wait()
            data = await reader.read()
            received.set_result(len(data))
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(slow, LOCALHOST, 0)
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            writer.transport.set_write_buffer_limits(high=64 * 1024)
            total = 0
            chunk = b"z" * (256 * 1024)
            drain = None
            while total < 256 * MIB:
                writer.write(chunk)
                total += len(chunk)
                drain = asyncio.ensure_future(writer.drain())
                await asyncio.sleep(0)
                if not drain.done():
                    break
            blocked = not drain.done()
            gate.set()
            await drain
            writer.write_eof()
            n = await received
            writer.close()
            await writer.wait_closed()
            return blocked, n == total

    assert loop.run_until_complete(main()) == (True, True)


def test_connection_reset_surfaces_in_streams(loop):
    async def main():
        async def rude(reader, writer):
            writer.transport.abort()

        server = await asyncio.start_server(rude, LOCALHOST, 0)
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            data = await reader.read()
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
            return data

    assert loop.run_until_complete(main()) == b""


def test_readline_limit(loop):
    async def main():
        async def send_long(reader, writer):
            writer.write(b"x" * 100 + b"\nrest\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(send_long, LOCALHOST, 0)
        async with server:
            reader, writer = await asyncio.open_connection(
                *server.sockets[0].getsockname(), limit=10)
            with pytest.raises(ValueError):
                await reader.readline()
            rest = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return rest

    assert loop.run_until_complete(main()) == b"rest\n"
