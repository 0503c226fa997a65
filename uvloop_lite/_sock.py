"""File-descriptor readiness and the ``sock_*`` methods, on ``uv_poll_t``.

``add_reader``/``add_writer`` keep asyncio's model: one reader and one writer
Handle per fd, queued on the ready queue when libuv reports the fd ready.
The ``sock_*`` coroutines try the system call at once and only wait for
readiness when it would block; a cancelled call removes its watcher.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import socket
import weakref
from asyncio import events, exceptions
from typing import Any

from ._handles.poll import DISCONNECT, READABLE, WRITABLE, UVPoll

try:
    import ssl
except ImportError:  # pragma: no cover
    ssl = None  # type: ignore[assignment]

__all__ = ["SockMixin"]

_INET_FAMILIES = (socket.AF_INET, getattr(socket, "AF_INET6", socket.AF_INET))


def _fd_of(fileobj: Any) -> int:
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _check_sock(loop: Any, sock: socket.socket) -> None:
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if loop._debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


class SockMixin:
    """add_reader/add_writer and the sock_* methods of :class:`Loop`."""

    _polls: dict[int, UVPoll]
    _transports: weakref.WeakValueDictionary

    def _init_sock(self) -> None:
        self._polls = {}
        self._transports = weakref.WeakValueDictionary()  # fd -> transport
        self._polls_started: list[UVPoll] = []   # since the last uv_run()

    # -- readiness -------------------------------------------------------------

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        fileno = _fd_of(fd)
        transport = self._transports.get(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    def _poll_for(self, fd: int) -> UVPoll:
        poll = self._polls.get(fd)
        if poll is None:
            poll = UVPoll(self, fd, self._on_fd_ready)
            self._polls[fd] = poll
        return poll

    def _watch(self, poll: UVPoll) -> None:
        events_ = (READABLE if poll.reader is not None else 0) | \
                  (WRITABLE if poll.writer is not None else 0)
        if events_:
            if events_ != poll.events:
                poll.start(events_)
                self._polls_started.append(poll)
        else:
            del self._polls[poll.fd]
            poll.close()

    def _check_started_polls(self) -> None:
        """Run right before uv_run().  libuv gives the fd of a poll started
        since the last run to epoll only then, and aborts the process if that
        fd was closed meanwhile.  asyncio registers at once, and an fd closed
        afterwards just never reports: stop watching such an fd the same way
        (its reader and writer stay registered, as with asyncio)."""
        polls, self._polls_started = self._polls_started, []
        for poll in polls:
            if poll.events and poll.is_open():
                try:
                    os.get_inheritable(poll.fd)   # fcntl(F_GETFD): still open?
                except OSError:
                    poll.start(0)

    def _set_watcher(self, fd: Any, which: str, callback: Any, args: tuple) -> events.Handle:
        """Make ``callback(*args)`` the fd's reader or writer (``which``),
        replacing (and cancelling) the previous one."""
        self._check_closed()
        fd = _fd_of(fd)
        handle = events.Handle(callback, args, self, None)
        poll = self._poll_for(fd)
        old = getattr(poll, which)
        setattr(poll, which, handle)
        try:
            self._watch(poll)
        except BaseException:
            setattr(poll, which, old)
            self._watch(poll)
            raise
        if old is not None:
            old.cancel()
        return handle

    def _clear_watcher(self, fd: Any, which: str) -> bool:
        if self.is_closed():
            return False
        poll = self._polls.get(_fd_of(fd))
        if poll is None or getattr(poll, which) is None:
            return False
        getattr(poll, which).cancel()
        setattr(poll, which, None)
        self._watch(poll)
        return True

    def _add_reader(self, fd: Any, callback: Any, *args: Any) -> events.Handle:
        return self._set_watcher(fd, "reader", callback, args)

    def _add_writer(self, fd: Any, callback: Any, *args: Any) -> events.Handle:
        return self._set_watcher(fd, "writer", callback, args)

    def _remove_reader(self, fd: Any) -> bool:
        return self._clear_watcher(fd, "reader")

    def _remove_writer(self, fd: Any) -> bool:
        return self._clear_watcher(fd, "writer")

    def _on_fd_ready(self, poll: UVPoll, ready: int, status: int) -> None:
        if status < 0:   # report errors as readiness: the call itself raises
            ready = READABLE | WRITABLE
        if ready & (READABLE | DISCONNECT):
            reader = poll.reader
            if reader is not None:
                if reader._cancelled:
                    self._remove_reader(poll.fd)
                else:
                    self._ready.append(reader)
        if ready & WRITABLE:
            writer = poll.writer
            if writer is not None:
                if writer._cancelled:
                    self._remove_writer(poll.fd)
                else:
                    self._ready.append(writer)

    def add_reader(self, fd: Any, callback: Any, *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable."""
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd: Any, callback: Any, *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable."""
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    def _close_polls(self) -> None:
        for poll in list(self._polls.values()):
            for h in (poll.reader, poll.writer):
                if h is not None:
                    h.cancel()
            poll.reader = poll.writer = None
            poll.close()
        self._polls.clear()

    # -- waiting on one socket -----------------------------------------------------

    def _wait_read(self, fut: Any, sock: socket.socket, callback: Any, *args: Any) -> None:
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_reader(fd, callback, fut, sock, *args)
        fut.add_done_callback(functools.partial(self._read_done, fd, handle))

    def _wait_write(self, fut: Any, sock: socket.socket, callback: Any, *args: Any) -> None:
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, callback, fut, sock, *args)
        fut.add_done_callback(functools.partial(self._write_done, fd, handle))

    def _read_done(self, fd: int, handle: events.Handle, fut: Any) -> None:
        if not handle.cancelled():   # else a newer reader replaced it
            self._remove_reader(fd)

    def _write_done(self, fd: int, handle: events.Handle, fut: Any) -> None:
        if not handle.cancelled():
            self._remove_writer(fd)

    def _retry(self, fut: Any, sock: socket.socket, method: str, *args: Any) -> None:
        """Run one non-blocking attempt for a waiting sock_* call.  The method
        is looked up on each attempt, as asyncio does."""
        if fut.done():
            return
        try:
            result = getattr(sock, method)(*args)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    async def _sock_io(self, sock: socket.socket, write: bool, method: str, *args: Any) -> Any:
        _check_sock(self, sock)
        try:
            return getattr(sock, method)(*args)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        wait = self._wait_write if write else self._wait_read
        wait(fut, sock, self._retry, method, *args)
        return await fut

    # -- the sock_* coroutines ---------------------------------------------------------

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """Receive up to ``n`` bytes from the non-blocking ``sock``."""
        return await self._sock_io(sock, False, "recv", n)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """Receive into ``buf``; return the number of bytes received."""
        return await self._sock_io(sock, False, "recv_into", buf)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple:
        """Receive a datagram of up to ``bufsize`` bytes: ``(data, address)``."""
        return await self._sock_io(sock, False, "recvfrom", bufsize)

    async def sock_recvfrom_into(self, sock: socket.socket, buf: Any, nbytes: int = 0) -> tuple:
        """Receive a datagram into ``buf``: ``(nbytes, address)``."""
        if not nbytes:
            nbytes = len(buf)
        return await self._sock_io(sock, False, "recvfrom_into", buf, nbytes)

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        """Send a datagram to ``address``; return the number of bytes sent."""
        return await self._sock_io(sock, True, "sendto", data, address)

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        """Send all of ``data``; partial sends continue when writable."""
        _check_sock(self, sock)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        fut = self.create_future()
        self._wait_write(fut, sock, self._sendall_step, memoryview(data), [n])
        return await fut

    def _sendall_step(self, fut: Any, sock: socket.socket, view: memoryview, pos: list) -> None:
        if fut.done():
            return
        try:
            n = sock.send(view[pos[0]:])
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        pos[0] += n
        if pos[0] == len(view):
            fut.set_result(None)

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Connect ``sock`` to ``address`` (resolved first if it is a name);
        the connect() call is issued at once."""
        _check_sock(self, sock)
        if sock.family in _INET_FAMILIES:
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self)
            _, _, _, _, address = resolved[0]
        fut = self.create_future()
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            self._wait_write(fut, sock, self._connect_step, address)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        try:
            return await fut
        finally:
            fut = None  # break the cycle through the exception's traceback

    def _connect_step(self, fut: Any, sock: socket.socket, address: Any) -> None:
        if fut.done():
            return
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                raise OSError(err, f"Connect call failed {address}")
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)

    async def sock_accept(self, sock: socket.socket) -> tuple:
        """Accept a connection: ``(conn, address)``, ``conn`` non-blocking."""
        _check_sock(self, sock)
        fut = self.create_future()
        self._accept_step(fut, sock, first=True)
        return await fut

    def _accept_step(self, fut: Any, sock: socket.socket, first: bool = False) -> None:
        if fut.done():
            return
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
        except (BlockingIOError, InterruptedError):
            if first:
                self._wait_read(fut, sock, self._accept_step)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result((conn, address))

    # -- sendfile ------------------------------------------------------------------

    async def _sock_sendfile_native(self, sock: socket.socket, file: Any,
                                    offset: int, count: int | None) -> int:
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0   # an empty file
        fut = self.create_future()
        state = _SendfileState(sock, fileno, offset, count, blocksize)
        self._sendfile_step(fut, state)
        return await fut

    def _sendfile_step(self, fut: Any, state: _SendfileState, *_: Any) -> None:
        sock = state.sock
        fd = sock.fileno()
        if fut.done():
            state.seek()
            return
        size = state.blocksize
        if state.count:
            size = state.count - state.sent
            if size <= 0:
                state.seek()
                fut.set_result(state.sent)
                return
        try:
            n = os.sendfile(fd, state.fileno, state.offset, size)
        except (BlockingIOError, InterruptedError):
            n = None
        except OSError as exc:
            if state.sent == 0:
                err: BaseException = exceptions.SendfileNotAvailableError("os.sendfile call failed")
                err.__cause__ = exc
            elif exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                err = ConnectionError("socket is not connected", errno.ENOTCONN)
                err.__cause__ = exc
            else:
                err = exc
            state.seek()
            fut.set_exception(err)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            state.seek()
            fut.set_exception(exc)
            return
        if n == 0:   # end of file
            state.seek()
            fut.set_result(state.sent)
            return
        if n is not None:
            state.offset += n
            state.sent += n
        if not state.waiting:
            state.waiting = True
            self._ensure_fd_no_transport(fd)
            handle = self._add_writer(fd, self._sendfile_step, fut, state)
            fut.add_done_callback(functools.partial(self._write_done, fd, handle))


class _SendfileState:
    """Progress of one sock_sendfile() through os.sendfile()."""

    def __init__(self, sock: socket.socket, fileno: int, offset: int,
                 count: int | None, blocksize: int) -> None:
        self.sock = sock
        self.fileno = fileno
        self.offset = offset
        self.count = count
        self.blocksize = blocksize
        self.sent = 0
        self.waiting = False

    def seek(self) -> None:
        # As with asyncio: the file position ends after what was sent.
        if self.sent > 0:
            os.lseek(self.fileno, self.offset, os.SEEK_SET)
