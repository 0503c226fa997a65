"""connect_read_pipe / connect_write_pipe on pipes, socket pairs and PTYs:
one body run on asyncio's loop and on uvloop_lite."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
import tty

import pytest

from netutil import MIB, Recorder, fd_is_open, payload

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix pipes")


def _pipe():
    r, w = os.pipe()
    return open(r, "rb", buffering=0), open(w, "wb", buffering=0)


# asyncio's read pipe transport answers is_reading() from 3.11 on; before, it
# raises NotImplementedError.  uvloop_lite's always answers.
ASYNCIO_PIPE_IS_READING = sys.version_info >= (3, 11)


def _has_is_reading(loop_kind: str) -> bool:
    return loop_kind == "uvloop_lite" or ASYNCIO_PIPE_IS_READING


def _is_reading(tr, loop_kind: str):
    """tr.is_reading(); None where asyncio's transport lacks the method (after
    checking that it says so)."""
    if not _has_is_reading(loop_kind):
        with pytest.raises(NotImplementedError):
            tr.is_reading()
        return None
    return tr.is_reading()


async def _settle():
    for _ in range(3):
        await asyncio.sleep(0)


def test_read_pipe_data_then_eof(loop, loop_kind):
    rpipe, wpipe = _pipe()

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), rpipe)
        info = (tr.get_extra_info("pipe") is rpipe, _is_reading(tr, loop_kind),
                tr.is_closing())
        os.write(wpipe.fileno(), b"hello ")
        await pr.until(6)
        os.write(wpipe.fileno(), b"pipe")
        await pr.until(10)
        wpipe.close()
        await pr.eof
        exc = await pr.lost
        return info, bytes(pr.data), pr.events, exc, tr.is_closing()

    info, data, events, exc, closing = loop.run_until_complete(main())
    assert info == (True, True if _has_is_reading(loop_kind) else None, False)
    assert data == b"hello pipe"
    assert events == ["made", "data", "eof", "lost"]
    assert exc is None and closing
    assert rpipe.closed


def test_read_pipe_pause_resume_loses_nothing(loop, loop_kind):
    rpipe, wpipe = _pipe()
    data = payload(2 * MIB, 3)

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), rpipe)
        writer_tr, writer = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        writer_tr.write(data)
        writer_tr.close()
        pauses = 0
        got = 0
        while got < len(data):
            await pr.until(min(got + 100_000, len(data)))
            tr.pause_reading()
            # What arrived up to the pause (more reads may have followed the
            # one that completed the wait, in the same loop iteration).
            got = len(pr.data)
            assert _is_reading(tr, loop_kind) is (False if _has_is_reading(loop_kind) else None)
            pauses += 1
            tr.pause_reading()      # idempotent
            await _settle()         # nothing arrives while paused
            assert len(pr.data) == got
            tr.resume_reading()
            # (EOF may already be in when the last bytes were: then it is closing.)
            reading = _is_reading(tr, loop_kind)
            assert reading is (True if _has_is_reading(loop_kind) else None) or pr.eof.done()
        await pr.lost
        await writer.lost
        return bytes(pr.data), pr.events, pauses

    got, events, pauses = loop.run_until_complete(main())
    assert got == data
    assert events == ["made", "data", "eof", "lost"]
    assert pauses > 1


def test_read_pipe_close(loop):
    rpipe, wpipe = _pipe()

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), rpipe)
        tr.close()
        assert tr.is_closing()
        tr.close()
        exc = await pr.lost
        return exc, pr.events

    try:
        exc, events = loop.run_until_complete(main())
    finally:
        wpipe.close()
    assert exc is None and events == ["made", "lost"]
    assert rpipe.closed


def test_write_pipe_to_read_pipe(loop):
    rpipe, wpipe = _pipe()
    data = payload(MIB, 7)

    async def main():
        rtr, reader = await loop.connect_read_pipe(lambda: Recorder(loop), rpipe)
        wtr, writer = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        info = (wtr.get_extra_info("pipe") is wpipe, wtr.can_write_eof(), wtr.is_closing())
        wtr.write(b"first")
        wtr.write(bytearray(b" second"))
        wtr.writelines([b" third", memoryview(b" fourth ")])
        wtr.write(data)
        with pytest.raises((TypeError, AssertionError)):   # asyncio: an assert
            wtr.write("text")
        wtr.write_eof()
        assert wtr.is_closing()
        wexc = await writer.lost
        await reader.eof
        rexc = await reader.lost
        return info, bytes(reader.data), writer.events, reader.events, wexc, rexc

    info, got, wevents, revents, wexc, rexc = loop.run_until_complete(main())
    assert info == (True, True, False)
    assert got == b"first second third fourth " + data
    assert wevents[0] == "made" and wevents[-1] == "lost"
    assert revents == ["made", "data", "eof", "lost"]
    assert wexc is None and rexc is None
    assert wpipe.closed and rpipe.closed


def test_write_pipe_has_no_reading_side(loop):
    # asyncio's write pipe transport gets these from ReadTransport: each
    # raises NotImplementedError, on every version.
    rpipe, wpipe = _pipe()

    async def main():
        wtr, writer = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        results = []
        for name in ("is_reading", "pause_reading", "resume_reading"):
            try:
                results.append((name, getattr(wtr, name)()))
            except NotImplementedError as exc:
                results.append((name, type(exc), str(exc)))
        wtr.write(b"x")
        wtr.close()
        await writer.lost
        return results

    try:
        results = loop.run_until_complete(main())
        assert os.read(rpipe.fileno(), 10) == b"x"
    finally:
        rpipe.close()
    assert results == [(name, NotImplementedError, "")
                       for name in ("is_reading", "pause_reading", "resume_reading")]


@pytest.mark.parametrize("fallback", [True, False])
def test_sendfile_refuses_pipe_transports(loop, tmp_path, fallback):
    rpipe, wpipe = _pipe()
    path = tmp_path / "data"
    path.write_bytes(b"x" * 100)

    async def main():
        wtr, writer = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        rtr, reader = await loop.connect_read_pipe(lambda: Recorder(loop), rpipe)
        errors = []
        with open(path, "rb") as f:
            for tr in (wtr, rtr):
                try:
                    await loop.sendfile(tr, f, fallback=fallback)
                except RuntimeError as exc:
                    errors.append(str(exc).startswith(
                        f"sendfile is not supported for transport {tr!r}"))
        wtr.close()
        rtr.close()
        await writer.lost
        return errors

    assert loop.run_until_complete(main()) == [True, True]


def test_write_pipe_notices_reader_closing(loop):
    rpipe, wpipe = _pipe()

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        tr.write(b"unread")
        rpipe.close()
        exc = await pr.lost
        return exc, pr.events, tr.is_closing()

    exc, events, closing = loop.run_until_complete(main())
    assert exc is None   # nothing was still buffered
    assert events == ["made", "lost"] and closing
    assert wpipe.closed


def test_write_pipe_reader_closes_with_data_buffered(loop):
    rpipe, wpipe = _pipe()

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        tr.set_write_buffer_limits(high=MIB * 64)
        chunk = b"z" * 65536
        while tr.get_write_buffer_size() == 0:
            tr.write(chunk)
        rpipe.close()
        exc = await pr.lost
        return exc, tr.get_write_buffer_size()

    exc, size = loop.run_until_complete(main())
    assert isinstance(exc, BrokenPipeError)
    assert size == 0


def test_write_pipe_reader_gone_before_connect(loop):
    async def main(data):
        rpipe, wpipe = _pipe()
        rpipe.close()
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        if data:
            tr.write(data)   # fails at once: EPIPE
        exc = await pr.lost
        return pr.events, type(exc)

    assert loop.run_until_complete(main(b"")) == (["made", "lost"], type(None))
    assert loop.run_until_complete(main(b"data")) == (["made", "lost"], BrokenPipeError)


def test_read_pipe_writer_gone_before_connect(loop):
    rpipe, wpipe = _pipe()
    wpipe.close()

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), rpipe)
        return await pr.lost, pr.events

    assert loop.run_until_complete(main()) == (None, ["made", "eof", "lost"])


def test_write_pipe_flow_control(loop):
    rpipe, wpipe = _pipe()
    chunk = payload(64 * 1024, 1)

    async def main():
        wtr, writer = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        limits = wtr.get_write_buffer_limits()
        wtr.set_write_buffer_limits(high=256 * 1024, low=16 * 1024)
        sent = 0
        while not writer.paused.done():
            wtr.write(chunk)
            sent += len(chunk)
            assert sent < 256 * MIB
        at_pause = writer.size_at_pause
        rtr, reader = await loop.connect_read_pipe(lambda: Recorder(loop), rpipe)
        await writer.resumed
        at_resume = writer.size_at_resume
        await reader.until(sent)
        final_size = wtr.get_write_buffer_size()
        wtr.close()
        await writer.lost
        await reader.lost
        return limits, at_pause, at_resume, final_size, sent, bytes(reader.data), writer.events

    limits, at_pause, at_resume, final_size, sent, got, events = loop.run_until_complete(main())
    assert limits == (16 * 1024, 64 * 1024)
    assert at_pause > 256 * 1024
    assert at_resume <= 16 * 1024
    assert final_size == 0
    assert got == chunk * (sent // len(chunk))
    assert events == ["made", "pause", "resume", "lost"]


def test_write_pipe_abort_drops_buffer(loop):
    rpipe, wpipe = _pipe()

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        tr.set_write_buffer_limits(high=MIB * 64)
        while tr.get_write_buffer_size() == 0:
            tr.write(b"a" * 65536)
        tr.abort()
        exc = await pr.lost
        size = tr.get_write_buffer_size()
        tr.write(b"after abort")   # ignored
        return exc, size, pr.events

    try:
        exc, size, events = loop.run_until_complete(main())
    finally:
        rpipe.close()
    assert exc is None and size == 0
    assert events == ["made", "lost"]
    assert wpipe.closed


def test_write_after_close_is_ignored(loop):
    rpipe, wpipe = _pipe()

    async def main():
        tr, pr = await loop.connect_write_pipe(lambda: Recorder(loop), wpipe)
        tr.write(b"before")
        tr.close()
        tr.write(b"after")   # no exception, not sent
        await pr.lost
        return os.read(rpipe.fileno(), 100)

    try:
        assert loop.run_until_complete(main()) == b"before"
    finally:
        rpipe.close()


def test_socketpair_as_pipes(loop):
    a, b = socket.socketpair()
    data = payload(MIB // 2, 9)

    async def main():
        rtr, reader = await loop.connect_read_pipe(lambda: Recorder(loop), a)
        wtr, writer = await loop.connect_write_pipe(lambda: Recorder(loop), b)
        wtr.write(data)
        wtr.write_eof()
        await writer.lost
        await reader.eof
        await reader.lost
        return bytes(reader.data), reader.events, writer.events

    got, revents, wevents = loop.run_until_complete(main())
    assert got == data
    assert revents == ["made", "data", "eof", "lost"]
    assert wevents[0] == "made" and wevents[-1] == "lost"
    assert a.fileno() == -1 and b.fileno() == -1


def test_pty_both_directions(loop):
    master, slave = os.openpty()
    tty.setraw(slave)   # no echo, no line editing, no \n -> \r\n
    master_r = open(master, "rb", buffering=0, closefd=False)
    master_w = open(os.dup(master), "wb", buffering=0)
    slave_r = open(slave, "rb", buffering=0, closefd=False)
    slave_w = open(os.dup(slave), "wb", buffering=0)

    async def main():
        s_rtr, s_reader = await loop.connect_read_pipe(lambda: Recorder(loop), slave_r)
        m_rtr, m_reader = await loop.connect_read_pipe(lambda: Recorder(loop), master_r)
        m_wtr, m_writer = await loop.connect_write_pipe(lambda: Recorder(loop), master_w)
        s_wtr, s_writer = await loop.connect_write_pipe(lambda: Recorder(loop), slave_w)
        m_wtr.write(b"to the slave\n")
        down = await s_reader.until(13)
        s_wtr.write(b"to the master\n")
        up = await m_reader.until(14)
        big = payload(200_000, 5)
        m_wtr.write(big)
        down_big = await s_reader.until(13 + len(big))
        for tr, pr in ((m_wtr, m_writer), (s_wtr, s_writer), (s_rtr, s_reader),
                       (m_rtr, m_reader)):
            tr.close()
            await pr.lost
        return down, up, down_big[13:] == big

    try:
        down, up, big_ok = loop.run_until_complete(main())
    finally:
        for f in (master_r, slave_r):
            f.close()
        for fd in (master, slave):
            if fd_is_open(fd):
                os.close(fd)
    assert down == b"to the slave\n"
    assert up == b"to the master\n"
    assert big_ok


def test_pty_slave_closed_ends_master_reader(loop):
    master, slave = os.openpty()
    master_r = open(master, "rb", buffering=0)

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Recorder(loop), master_r)
        os.write(slave, b"last words\n")
        await pr.until(1)
        os.close(slave)
        exc = await pr.lost
        return exc, bytes(pr.data)

    exc, data = loop.run_until_complete(main())
    # Linux reports EIO on the master once the slave's last fd is closed.
    if exc is not None:
        assert isinstance(exc, OSError) and exc.errno == errno.EIO
    assert data.replace(b"\r", b"") == b"last words\n"
    assert master_r.closed


def test_regular_file_is_refused(loop, tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(b"x")

    async def main():
        errors = []
        with open(path, "rb") as f:
            with pytest.raises(ValueError) as info:
                await loop.connect_read_pipe(asyncio.Protocol, f)
            errors.append(str(info.value))
        with open(path, "wb") as f:
            with pytest.raises(ValueError) as info:
                await loop.connect_write_pipe(asyncio.Protocol, f)
            errors.append(str(info.value))
        return errors

    assert loop.run_until_complete(main()) == [
        "Pipe transport is for pipes/sockets only.",
        "Pipe transport is only for pipes, sockets and character devices"]


def test_read_pipe_protocol_error_is_reported(loop):
    # An exception from data_received() reaches the exception handler.  (Then
    # asyncio's read pipe keeps reading, uvloop_lite's closes the transport
    # with connection_lost(exc), as its socket transports and asyncio's do.)
    rpipe, wpipe = _pipe()
    contexts = []
    reported = loop.create_future()

    def handler(lp, ctx):
        contexts.append(ctx)
        if not reported.done():
            reported.set_result(None)

    loop.set_exception_handler(handler)

    class Bad(Recorder):
        def data_received(self, data):
            raise ZeroDivisionError

    async def main():
        tr, pr = await loop.connect_read_pipe(lambda: Bad(loop), rpipe)
        os.write(wpipe.fileno(), b"boom")
        await reported
        tr.close()
        exc = await pr.lost
        return exc

    try:
        exc = loop.run_until_complete(main())
    finally:
        wpipe.close()
    assert exc is None or isinstance(exc, ZeroDivisionError)
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ZeroDivisionError)


def test_streams_over_pipes(loop):
    rpipe, wpipe = _pipe()

    async def main():
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), rpipe)
        wtr, wproto = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, wpipe)
        writer = asyncio.StreamWriter(wtr, wproto, None, loop)
        writer.write(b"line one\nline two\n")
        await writer.drain()
        writer.close()   # (FlowControlMixin has no close waiter: no wait_closed())
        got = [await reader.readline(), await reader.readline(), await reader.read()]
        await _settle()
        return got

    assert loop.run_until_complete(main()) == [b"line one\n", b"line two\n", b""]
