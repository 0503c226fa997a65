"""add_reader / remove_reader / add_writer / remove_writer, as asyncio's."""

from __future__ import annotations

import asyncio
import errno
import platform
import socket

import pytest

from netutil import close_all, tcp_pair


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


class FileLike:
    def __init__(self, sock):
        self._sock = sock

    def fileno(self):
        return self._sock.fileno()


def test_return_values(loop):
    async def main():
        a, b = _pair()
        with a, b:
            fired = loop.create_future()
            results = [
                loop.add_reader(a, lambda: fired.done() or fired.set_result(a.recv(10))),
                loop.remove_writer(a),           # never added
            ]
            b.send(b"r")
            results.append(await fired)
            results += [loop.remove_reader(a), loop.remove_reader(a), loop.remove_reader(b)]
            wfired = loop.create_future()
            results.append(loop.add_writer(a.fileno(), lambda: wfired.done()
                                           or wfired.set_result("writable")))
            results.append(await wfired)
            results += [loop.remove_writer(a.fileno()), loop.remove_writer(a.fileno())]
            # A file-like object is accepted wherever an fd is.
            ffired = loop.create_future()
            loop.add_reader(FileLike(a), lambda: ffired.done() or ffired.set_result(a.recv(10)))
            b.send(b"f")
            results.append(await ffired)
            results.append(loop.remove_reader(FileLike(a)))
        return results

    assert loop.run_until_complete(main()) == [
        None, False, b"r", True, False, False, None, "writable", True, False, b"f", True]


def test_reader_and_writer_on_the_same_fd(loop):
    async def main():
        a, b = _pair()
        with a, b:
            seen = []
            both = loop.create_future()

            def on_read():
                seen.append(("read", a.recv(10)))
                loop.remove_reader(a)
                if len(seen) == 2:
                    both.set_result(None)

            def on_write():
                seen.append(("write", None))
                loop.remove_writer(a)
                if len(seen) == 2:
                    both.set_result(None)

            loop.add_reader(a, on_read)
            loop.add_writer(a, on_write)
            b.send(b"both")
            await both
            # Removing one direction keeps the other.
            loop.add_reader(a, on_read)
            loop.add_writer(a, lambda: None)
            removed_writer = loop.remove_writer(a)
            again = loop.create_future()
            loop.add_reader(a, lambda: again.done() or again.set_result(a.recv(10)))
            b.send(b"again")
            got = await again
            return sorted(seen), removed_writer, got, loop.remove_reader(a), loop.remove_writer(a)

    assert loop.run_until_complete(main()) == (
        [("read", b"both"), ("write", None)], True, b"again", True, False)


def test_replacing_a_reader(loop):
    async def main():
        a, b = _pair()
        with a, b:
            calls = []
            done = loop.create_future()

            def first():
                calls.append("first")

            def second(tag):
                calls.append(tag)
                a.recv(10)
                if not done.done():
                    done.set_result(None)

            loop.add_reader(a, first)
            loop.add_reader(a, second, "second")
            b.send(b"x")
            await done
            loop.remove_reader(a)
            return calls

    assert loop.run_until_complete(main()) == ["second"]


def test_callback_arguments_and_errors(loop):
    async def main():
        handled = []
        loop.set_exception_handler(lambda lp, ctx: handled.append(ctx))
        a, b = _pair()
        with a, b:
            got = loop.create_future()

            def cb(x, y):
                loop.remove_writer(a)
                got.set_result((x, y))
                raise KeyError("in callback")

            loop.add_writer(a, cb, 1, "two")
            result = await got
            await asyncio.sleep(0)
        return result, [(h["message"].split(" ")[0:3], type(h["exception"])) for h in handled]

    result, handled = loop.run_until_complete(main())
    assert result == (1, "two")
    assert handled == [(["Exception", "in", "callback"], KeyError)]


def test_transport_fd_is_refused(loop):
    async def main():
        server, tr, cli, srv = await tcp_pair(loop)
        messages = []
        for t in (tr, srv.transport):
            fd = t.get_extra_info("socket").fileno()
            for call in (lambda: loop.add_reader(fd, print), lambda: loop.add_writer(fd, print),
                         lambda: loop.remove_reader(fd), lambda: loop.remove_writer(fd)):
                with pytest.raises(RuntimeError) as ei:
                    call()
                messages.append(str(ei.value).startswith(f"File descriptor {fd!r} is used by "
                                                         "transport"))
        await close_all(server, tr)
        return messages

    assert loop.run_until_complete(main()) == [True] * 8


def test_bad_file_objects(loop):
    async def main():
        errors = []
        for bad in ("x", -1, object(), 1.5):
            for call in (loop.add_reader, loop.add_writer):
                with pytest.raises(ValueError) as ei:
                    call(bad, print)
                errors.append(str(ei.value).split(":")[0])
            for call in (loop.remove_reader, loop.remove_writer):
                with pytest.raises(ValueError):
                    call(bad)
        # An fd that is not open.
        a, b = _pair()
        fd = a.fileno()
        a.close()
        b.close()
        with pytest.raises(OSError) as ei:
            loop.add_reader(fd, print)
        errors.append(type(ei.value))
        return errors

    assert loop.run_until_complete(main()) == [
        "Invalid file object", "Invalid file object",
        "Invalid file descriptor", "Invalid file descriptor",
        "Invalid file object", "Invalid file object",
        "Invalid file object", "Invalid file object",
        OSError]


def test_fd_closed_under_a_fresh_reader(loop):
    """The fd is closed in the same iteration as add_reader(): no callback
    ever fires, nothing crashes, and the reader is still registered."""
    async def main():
        results = []
        for add, remove in ((loop.add_reader, loop.remove_reader),
                            (loop.add_writer, loop.remove_writer)):
            a, b = _pair()
            fd = a.fileno()
            add(fd, print, "never")
            a.close()
            b.close()
            for _ in range(3):
                await asyncio.sleep(0)
            results.append(remove(fd))
        return results

    assert loop.run_until_complete(main()) == [True, True]


def test_fd_closed_under_a_pending_sock_recv(loop):
    async def main():
        a, b = _pair()
        task = asyncio.ensure_future(loop.sock_recv(a, 10))
        await asyncio.sleep(0)       # the wait starts
        a.close()                    # ... and its fd goes away right after
        for _ in range(3):
            await asyncio.sleep(0)
        pending = not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        b.close()
        return pending

    assert loop.run_until_complete(main()) is True


def test_reader_sees_eof(loop):
    async def main():
        a, b = _pair()
        with a:
            got = loop.create_future()
            loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(10)))
            b.close()
            data = await got
            loop.remove_reader(a)
            return data

    assert loop.run_until_complete(main()) == b""


def test_closed_loop(loop):
    a, b = _pair()
    with a, b:
        loop.add_reader(a, print)
        loop.close()
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            loop.add_reader(a, print)
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            loop.add_writer(a, print)
        assert loop.remove_reader(a) is False
        assert loop.remove_writer(a) is False


def test_remove_and_add_reader_from_a_protocol_callback(loop):
    """remove_reader()/add_reader() called from data_received() (inside the
    loop's poll on uvloop_lite): the reader stops, then works again."""
    async def main():
        a, b = socket.socketpair()
        x, y = socket.socketpair()
        for s in (a, b, x, y):
            s.setblocking(False)
        fired = []
        seen = loop.create_future()

        def on_readable():
            fired.append(a.recv(100))
            if not seen.done():
                seen.set_result(None)

        class Proto(asyncio.Protocol):
            def __init__(self):
                self.messages = asyncio.Queue()

            def data_received(self, data):
                if data == b"remove":
                    self.removed = loop.remove_reader(a)
                elif data == b"add":
                    loop.add_reader(a, on_readable)
                self.messages.put_nowait(data)

        loop.add_reader(a, on_readable)
        transport, proto = await loop.connect_accepted_socket(Proto, x)
        try:
            y.send(b"remove")
            assert await proto.messages.get() == b"remove"
            b.send(b"unseen")          # no reader now
            y.send(b"add")
            assert await proto.messages.get() == b"add"
            await asyncio.wait_for(seen, 5)
            return proto.removed, fired
        finally:
            loop.remove_reader(a)
            transport.close()
            for s in (a, b, y):
                s.close()
            await asyncio.sleep(0)

    # The data sent while no reader was registered is read once the reader
    # is back, in one piece.
    assert loop.run_until_complete(main()) == (True, [b"unseen"])


def test_fd_beyond_a_c_int(loop):
    """A huge fd never reaches libuv as a truncated int: asyncio's epoll
    raises OverflowError (with this message on CPython); removing it is
    just False."""
    messages = []
    for fd in (2**31, 2**40, 2**63, 2**70):
        for call in (loop.add_reader, loop.add_writer):
            with pytest.raises(OverflowError) as ei:
                call(fd, print)
            messages.append(str(ei.value))
        assert loop.remove_reader(fd) is False
        assert loop.remove_writer(fd) is False
    if platform.python_implementation() == "CPython":
        assert set(messages) == {"Python int too large to convert to C int"}


@pytest.mark.parametrize("which", ["reader", "writer"])
def test_remove_watcher_of_a_closed_socket_object(loop, which):
    """anyio closes a socket while add_reader() (or add_writer()) watches it
    by the socket object, and removes the watcher afterwards, when fileno()
    is -1: asyncio's selector finds the object by identity (issue 9)."""
    add = getattr(loop, "add_" + which)
    remove = getattr(loop, "remove_" + which)
    other = loop.remove_writer if which == "reader" else loop.remove_reader

    async def main():
        results = []
        a, b = _pair()
        with b:
            fd = a.fileno()
            add(a, print, "never")
            if which == "reader":
                await asyncio.sleep(0)   # polled once, too
            a.close()
            results.append(other(a))
            results.append(remove(a))
            # Gone: the closed object is not found any more, as with asyncio.
            with pytest.raises(ValueError):
                remove(a)
            # No stale watcher left: a new socket at the same number works.
            c, d = _pair()
            with c, d:
                if c.fileno() != fd:   # pragma: no cover - another fd was free
                    pytest.skip("the fd number was not reused")
                got = loop.create_future()
                loop.add_reader(c, lambda: got.done() or got.set_result(c.recv(10)))
                d.send(b"new")
                results.append(await asyncio.wait_for(got, 5))
                results.append(loop.remove_reader(c))
            await asyncio.sleep(0)
        return results

    assert loop.run_until_complete(main()) == [False, True, b"new", True]


def test_remove_one_of_two_watchers_of_a_closed_socket_object(loop):
    """Both watched: removing one changes the closed fd's registration,
    which asyncio's epoll refuses (EBADF); both watchers are gone then."""
    async def main():
        a, b = _pair()
        with b:
            loop.add_reader(a, print, "never")
            loop.add_writer(a, print, "never")
            a.close()
            with pytest.raises(OSError) as ei:
                loop.remove_reader(a)
            with pytest.raises(ValueError):
                loop.remove_writer(a)
            await asyncio.sleep(0)
            return ei.value.errno

    assert loop.run_until_complete(main()) == errno.EBADF


def test_remove_watchers_of_a_closed_socket_watched_by_number(loop):
    """Watched by its number, a closed socket object is not found: asyncio's
    ValueError; the watcher stays until removed by number."""
    async def main():
        a, b = _pair()
        with b:
            fd = a.fileno()
            loop.add_reader(fd, print, "never")
            a.close()
            errors = []
            for call in (loop.remove_reader, loop.remove_writer):
                with pytest.raises(ValueError) as ei:
                    call(a)
                errors.append(str(ei.value))
            return errors, loop.remove_reader(fd)

    assert loop.run_until_complete(main()) == (["Invalid file descriptor: -1"] * 2, True)
