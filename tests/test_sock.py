"""The loop's sock_* coroutines on plain non-blocking sockets."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import tempfile

import pytest

from netutil import LOCALHOST, MIB, free_port, listening_socket, payload


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def _tcp_pair(loop):
    listener = listening_socket()
    client = socket.socket()
    client.setblocking(False)
    with listener:
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        await loop.sock_connect(client, listener.getsockname())
        conn, _ = await accept
    return client, conn


def test_sock_recv_and_recv_into(loop):
    async def main():
        a, b = _pair()
        with a, b:
            results = []
            pending = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            results.append(pending.done())
            await loop.sock_sendall(b, b"first")
            results.append(await pending)
            await loop.sock_sendall(b, b"ready")
            results.append(await loop.sock_recv(a, 100))   # data already there
            buf = bytearray(10)
            into = asyncio.ensure_future(loop.sock_recv_into(a, memoryview(buf)[2:]))
            await asyncio.sleep(0)
            await loop.sock_sendall(b, b"into")
            results.append((await into, bytes(buf)))
            b.shutdown(socket.SHUT_WR)
            results.append(await loop.sock_recv(a, 100))
            results.append(await loop.sock_recv_into(a, buf))
        return results

    assert loop.run_until_complete(main()) == [
        False, b"first", b"ready", (4, b"\0\0into\0\0\0\0"), b"", 0]


HAS_RECVFROM = hasattr(asyncio.AbstractEventLoop, "sock_recvfrom")   # 3.11+


def test_sock_recvfrom_and_sendto(loop, loop_kind):
    if loop_kind == "asyncio" and not HAS_RECVFROM:
        # asyncio's loop has them from 3.11 on; uvloop_lite's on every version.
        assert not hasattr(loop, "sock_recvfrom")
        pytest.skip("asyncio's sock_recvfrom() & co are new in 3.11")

    async def main():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind((LOCALHOST, 0))
            tx.bind((LOCALHOST, 0))
            rx.setblocking(False)
            tx.setblocking(False)
            addr = rx.getsockname()
            results = []
            pending = asyncio.ensure_future(loop.sock_recvfrom(rx, 100))
            await asyncio.sleep(0)
            results.append(await loop.sock_sendto(tx, b"dgram", addr))
            results.append(await pending)
            buf = bytearray(16)
            pending = asyncio.ensure_future(loop.sock_recvfrom_into(rx, buf))
            await asyncio.sleep(0)
            await loop.sock_sendto(tx, b"into", addr)
            results.append((await pending, bytes(buf[:4])))
            await loop.sock_sendto(tx, b"truncated", addr)
            results.append(await loop.sock_recvfrom_into(rx, buf, 3))
            return results, tx.getsockname()

    results, txaddr = loop.run_until_complete(main())
    assert results == [5, (b"dgram", txaddr), ((4, txaddr), b"into"), (3, txaddr)]


def test_sock_sendall_large_with_partial_sends(loop):
    data = payload(16 * MIB, 9)

    async def main():
        a, b = await _tcp_pair(loop)
        with a, b:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

            async def reader():
                got = bytearray()
                buf = bytearray(256 * 1024)
                while True:
                    n = await loop.sock_recv_into(b, buf)
                    if not n:
                        return bytes(got)
                    got += buf[:n]

            task = asyncio.ensure_future(reader())
            await loop.sock_sendall(a, memoryview(data))
            assert await loop.sock_sendall(a, b"") is None
            a.shutdown(socket.SHUT_WR)
            return await task

    assert loop.run_until_complete(main()) == data


def test_sock_connect_and_accept(loop):
    async def main():
        listener = listening_socket(backlog=5)
        port = listener.getsockname()[1]
        results = []
        with listener:
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            await asyncio.sleep(0)
            results.append(accept.done())
            client = socket.socket()
            client.setblocking(False)
            with client:
                # A host name is resolved first (AF_INET sockets).
                results.append(await loop.sock_connect(client, ("localhost", port)))
                conn, addr = await accept
                with conn:
                    results.append(addr == client.getsockname())
                    results.append(conn.gettimeout())
                    await loop.sock_sendall(client, b"hi")
                    results.append(await loop.sock_recv(conn, 10))
        refused = socket.socket()
        refused.setblocking(False)
        with refused:
            with pytest.raises(OSError) as ei:
                await loop.sock_connect(refused, (LOCALHOST, free_port()))
        results.append((type(ei.value), ei.value.errno))
        return results

    assert loop.run_until_complete(main()) == [
        False, None, True, 0.0, b"hi", (ConnectionRefusedError, errno.ECONNREFUSED)]


def test_sock_unix_connect_and_accept(loop):
    path = os.path.join(tempfile.mkdtemp(prefix="uvl"), "s")

    async def main():
        listener = listening_socket(path, socket.AF_UNIX)
        with listener:
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            client = socket.socket(socket.AF_UNIX)
            client.setblocking(False)
            with client:
                await loop.sock_connect(client, path)
                conn, addr = await accept
                with conn:
                    await loop.sock_sendall(conn, b"unix")
                    return addr, await loop.sock_recv(client, 10)

    try:
        assert loop.run_until_complete(main()) == ("", b"unix")
    finally:
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


def test_cancelled_sock_recv_removes_its_watcher(loop):
    async def main():
        a, b = _pair()
        with a, b:
            task = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The fd is free: no reader left, a new one works.
            removed = loop.remove_reader(a)
            got = loop.create_future()
            loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(100)))
            b.send(b"after cancel")
            data = await got
            removed_again = loop.remove_reader(a)
            # A cancelled sock_accept and sock_sendall leave nothing behind either.
            listener = listening_socket()
            with listener:
                acc = asyncio.ensure_future(loop.sock_accept(listener))
                await asyncio.sleep(0)
                acc.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await acc
                free_after_accept = loop.remove_reader(listener)
            send = asyncio.ensure_future(loop.sock_sendall(a, b"x" * (64 * MIB)))
            await asyncio.sleep(0)
            send.cancel()
            with pytest.raises(asyncio.CancelledError):
                await send
            free_after_send = loop.remove_writer(a)
            return removed, data, removed_again, free_after_accept, free_after_send

    assert loop.run_until_complete(main()) == (False, b"after cancel", True, False, False)


def test_cancelled_sock_recv_leaves_no_poll_handle(uv_loop):
    def polls():
        return uv_loop._uv_handle_stats().get("UVPoll", (0, 0))

    async def main():
        a, b = _pair()
        with a, b:
            before = polls()
            task = asyncio.ensure_future(uv_loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            assert a.fileno() in uv_loop._polls
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)      # let libuv run the close callback
            after = polls()
            return dict(uv_loop._polls), after[0] - before[0], after[1] - before[1]

    # One uv_poll_t was opened for the wait, and closed by the cancellation.
    assert uv_loop.run_until_complete(main()) == ({}, 1, 1)


def test_echo_loop_keeps_one_poll_per_socket(uv_loop):
    """Waits of sock_recv/sock_sendall on one socket re-arm the same uv_poll_t
    instead of opening and closing one per wait."""
    def polls():
        return uv_loop._uv_handle_stats().get("UVPoll", (0, 0))

    async def echo(sock):
        while True:
            data = await uv_loop.sock_recv(sock, 100)
            if not data:
                return
            await uv_loop.sock_sendall(sock, data)

    async def main():
        a, b = _pair()
        with a, b:
            server = asyncio.ensure_future(echo(b))
            before = polls()
            replies = []
            for i in range(50):
                await uv_loop.sock_sendall(a, b"%d" % i)
                replies.append(await uv_loop.sock_recv(a, 100))
            a.shutdown(socket.SHUT_WR)
            await server
            opened = polls()[0] - before[0]
        return replies, opened

    replies, opened = uv_loop.run_until_complete(main())
    assert replies == [b"%d" % i for i in range(50)]
    assert opened == 2   # one per socket, not one per wait


def _fill_fds_below(fd):
    """Open fds until every number below ``fd`` is taken; return them."""
    held = []
    while True:
        new = os.dup(0)
        if new >= fd:
            os.close(new)
            return held
        held.append(new)


async def _wait_then_close(loop, a, b):
    """A sock_recv() on ``a`` that has to wait (the data is sent by a task
    that runs later), then ``a`` closed in the same step: its poll is left
    idle and its fd number free.  Returns (data, the closed fd, the sender)."""
    sender = asyncio.ensure_future(loop.sock_sendall(b, b"one"))
    data = await loop.sock_recv(a, 100)
    fd = a.fileno()
    a.close()
    return data, fd, sender


def _fd_reused(old, new):
    if new.fileno() != old:   # pragma: no cover - another thread took the fd
        pytest.skip("the fd number was not reused")


def test_closed_socket_fd_reused_by_new_socket_in_same_step(loop):
    """A socket closed right after a sock_* call, its fd number taken by a new
    socket that a sock_* call waits on in the same loop iteration: the new
    socket is watched afresh (the kernel dropped the old registration)."""
    async def main():
        a, b = _pair()
        with b:
            first, fd, sender = await _wait_then_close(loop, a, b)
            c, d = _pair()
            with c, d:
                _fd_reused(fd, c)
                loop.call_soon(d.send, b"two")
                # Awaited here, not in a new task: the wait starts in this step.
                guard = loop.call_later(5, asyncio.current_task().cancel)
                second = await loop.sock_recv(c, 100)
                guard.cancel()
            await sender
        return first, second

    assert loop.run_until_complete(main()) == (b"one", b"two")


def test_closed_socket_fd_reused_by_transport_in_same_step(uv_loop):
    """As above, but the fd number goes to a transport's duplicate of its
    socket's fd, which libuv watches for writing in the same iteration."""
    size = 8 * MIB

    async def main():
        # libuv opens a spare fd with its first stream: have that done.
        warm, other = _pair()
        with other:
            uv_loop._make_socket_transport(warm, asyncio.Protocol()).close()
        x, y = _pair()
        a, b = _pair()
        with b, y:
            first, fd, sender = await _wait_then_close(uv_loop, a, b)
            holders = _fill_fds_below(fd)   # so that the next fd is a's number
            transport = uv_loop._make_socket_transport(x, asyncio.Protocol())
            for held in holders:
                os.close(held)
            if transport._fileno() != fd:   # pragma: no cover
                pytest.skip("the fd number was not reused")
            transport.write(b"x" * size)     # more than the kernel takes at once
            received = 0
            while received < size:
                data = await asyncio.wait_for(uv_loop.sock_recv(y, MIB), 5)
                received += len(data)
            transport.close()
            await sender
            await asyncio.sleep(0)
        return first, received

    assert uv_loop.run_until_complete(main()) == (b"one", size)


def test_add_reader_on_regular_file_after_socket_closed(loop):
    """A regular file taking the number of a socket that sock_* calls watched:
    add_reader refuses it as asyncio's epoll does (no abort in libuv)."""
    async def main():
        a, b = _pair()
        with b:
            first, fd, sender = await _wait_then_close(loop, a, b)
            await sender
            with tempfile.TemporaryFile() as f:
                _fd_reused(fd, f)
                with pytest.raises(PermissionError):
                    loop.add_reader(f.fileno(), lambda: None)
                assert not loop.remove_reader(f.fileno())
            await asyncio.sleep(0)
        return first

    assert loop.run_until_complete(main()) == b"one"


async def _sock_call_errors(loop, loop_kind, sock, exc_type) -> list[str]:
    """The message of the ``exc_type`` each sock_* call raises for ``sock``
    (the sock_recvfrom family too where the loop has it)."""
    calls = [
        lambda: loop.sock_recv(sock, 1),
        lambda: loop.sock_recv_into(sock, bytearray(1)),
        lambda: loop.sock_sendall(sock, b"x"),
        lambda: loop.sock_connect(sock, (LOCALHOST, 9)),
        lambda: loop.sock_accept(sock),
        lambda: loop.sock_sendfile(sock, open(os.devnull, "rb")),
    ]
    if HAS_RECVFROM or loop_kind == "uvloop_lite":
        calls += [
            lambda: loop.sock_recvfrom(sock, 1),
            lambda: loop.sock_recvfrom_into(sock, bytearray(1)),
            lambda: loop.sock_sendto(sock, b"x", (LOCALHOST, 9)),
        ]
    messages = []
    for call in calls:
        with pytest.raises(exc_type) as ei:
            await call()
        messages.append(str(ei.value))
    return messages


def test_debug_mode_rejects_blocking_sockets(loop, loop_kind):
    has_recvfrom = HAS_RECVFROM or loop_kind == "uvloop_lite"

    async def main():
        loop.set_debug(True)
        sock = socket.socket()
        with sock:
            sock.settimeout(None)
            messages = await _sock_call_errors(loop, loop_kind, sock, ValueError)
        loop.set_debug(False)
        return messages

    messages = loop.run_until_complete(main())
    assert messages == ["the socket must be non-blocking"] * (9 if has_recvfrom else 6)


def test_ssl_socket_is_rejected(loop, loop_kind):
    has_recvfrom = HAS_RECVFROM or loop_kind == "uvloop_lite"

    async def main():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        sock = ctx.wrap_socket(socket.socket(), server_hostname="x",
                               do_handshake_on_connect=False)
        with sock:
            sock.setblocking(False)
            return await _sock_call_errors(loop, loop_kind, sock, TypeError)

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)   # the devnull files
        messages = loop.run_until_complete(main())
    assert messages == ["Socket cannot be of type SSLSocket"] * (9 if has_recvfrom else 6)


def test_sock_methods_on_closed_socket(loop):
    async def main():
        sock = socket.socket()
        sock.close()
        errors = []
        for call in (lambda: loop.sock_recv(sock, 1),
                     lambda: loop.sock_sendall(sock, b"x"),
                     lambda: loop.sock_accept(sock)):
            with pytest.raises(OSError) as ei:
                await call()
            errors.append(ei.value.errno)
        return errors

    assert loop.run_until_complete(main()) == [errno.EBADF] * 3


def test_sock_recv_on_peer_reset(loop):
    async def main():
        a, b = await _tcp_pair(loop)
        with a:
            pending = asyncio.ensure_future(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            b.close()
            with pytest.raises(OSError) as ei:
                await pending
            return type(ei.value)

    assert loop.run_until_complete(main()) is ConnectionResetError


def _reset_pair_errors(loop, call):
    """The exception of ``call(a)`` on a connection whose peer reset it."""
    async def main():
        a, b = await _tcp_pair(loop)
        with a:
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            b.close()
            with pytest.raises(OSError) as ei:
                await call(a)
            return type(ei.value), ei.value.args, str(ei.value)

    return loop.run_until_complete(main())


@pytest.mark.parametrize("method", ["recv", "sendall"])
def test_sock_errors_are_the_socket_methods_own(loop, method):
    """uvloop_lite makes the system call itself (shim.c): its errors are
    what socket.recv()/send() raise, type, args and message."""
    async def own(a):
        return a.recv(1024) if method == "recv" else a.send(b"x" * 1024)

    async def loops(a):
        if method == "recv":
            return await loop.sock_recv(a, 1024)
        return await loop.sock_sendall(a, b"x" * 1024)

    expected = _reset_pair_errors(loop, own)
    assert expected[0] in (ConnectionResetError, BrokenPipeError)
    assert _reset_pair_errors(loop, loops) == expected
    sock = socket.socket()
    sock.close()
    with pytest.raises(OSError) as ei:
        sock.recv(1)
    own_closed = (type(ei.value), ei.value.args, str(ei.value))
    with pytest.raises(OSError) as ei:
        loop.run_until_complete(loops(sock))
    assert (type(ei.value), ei.value.args, str(ei.value)) == own_closed


def test_sock_recv_and_sendall_on_a_socket_with_a_timeout(loop):
    """Outside debug mode a socket with a timeout is used as given: its
    recv()/send() wait up to the timeout and raise socket.timeout, on the
    loop's thread (as asyncio's loop calls them)."""
    async def main():
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            try:   # fill the send buffer
                while True:
                    a.send(b"x" * 65536)
            except BlockingIOError:
                pass
            results = []
            a.settimeout(0.01)
            b.settimeout(0.01)
            for call in (lambda: loop.sock_recv(a, 1024),
                         lambda: loop.sock_recv(a, 262144),
                         lambda: loop.sock_sendall(a, b"y" * 1024)):
                with pytest.raises(socket.timeout):
                    await call()
                results.append(True)
            results.append(len(await loop.sock_recv(b, 1024)))   # data there
            return results

    assert loop.run_until_complete(main()) == [True, True, True, 1024]


class _RecordingSocket(socket.socket):
    """A socket whose recv()/send() are its own: what the loop must call."""

    __slots__ = ("calls",)

    def recv(self, n, *args):
        self.calls.append(("recv", n))
        return super().recv(n, *args)

    def send(self, data, *args):
        self.calls.append(("send", len(data)))
        return super().send(data, *args)


def test_sock_recv_and_sendall_call_overridden_methods(loop):
    async def main():
        a0, b = socket.socketpair()
        a = _RecordingSocket(a0.family, a0.type, fileno=a0.detach())
        a.calls = []
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            pending = asyncio.ensure_future(loop.sock_recv(a, 100))
            await asyncio.sleep(0)
            b.send(b"one")
            got = [await pending]
            await loop.sock_sendall(a, b"two")
            got.append(b.recv(100))
            return got, a.calls

    assert loop.run_until_complete(main()) == (
        [b"one", b"two"], [("recv", 100), ("recv", 100), ("send", 3)])
