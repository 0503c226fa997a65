"""File-descriptor readiness and the ``sock_*`` methods, on ``uv_poll_t``.

``add_reader``/``add_writer`` keep asyncio's model: one reader and one writer
Handle per fd, queued on the ready queue when libuv reports the fd ready.
The ``sock_*`` coroutines try the system call at once and only wait for
readiness when it would block.  A waiting call is the fd's reader or writer
too (so ``add_reader`` replaces it and ``remove_reader`` drops it, as with
asyncio), but its step is the loop's own code and runs straight from libuv's
callback; the coroutine stops watching when it ends, cancelled or not.

A poll left with nothing to watch stays as it is until just before the next
``uv_run()``, and is closed then, unless a ``sock_*`` call on the same socket
object watches it again first: an echo loop of ``sock_recv``/``sock_sendall``
keeps one ``uv_poll_t`` per socket, armed all along, instead of opening and
closing one per wait (three system calls to open, two to close).  The same
socket object, open all along, means the same open file, so the kernel's
registration still holds.  Anything else gets a fresh poll.  The idle polls
are closed at once whenever libuv is about to watch another fd (every new
handle), and a poll that goes idle inside ``uv_run()`` is stopped at once:
libuv lets only one watcher per fd number into its table.

A watcher left on a fd whose socket was closed is asyncio's behaviour too
(an fd closed under epoll just never reports), but libuv aborts when epoll
refuses a fd it is told to watch: ``_handles/poll.py`` keeps such stale polls
away from libuv.  Starting a stale poll raises what asyncio's selector raises
for the same change (``PermissionError`` for a regular file, ...); as with
asyncio's selector, the fd's watchers are then dropped.

``sock_recv(sock, n)`` (any ``n`` up to 1 MiB) and ``sock_recvfrom(sock, n)``
with a large ``n`` (the usual "whatever is there": 256 KiB) read into one
buffer of the loop's and return a copy of what arrived: ``sock.recv(n)``
itself allocates ``n`` bytes on every call, which glibc serves with an
mmap/munmap pair above its mmap threshold (128 KiB until a larger block is
freed), and which costs PyPy about 10 us at 256 KiB (and, at 64 KiB, a
non-moving allocation that counts towards its next major collection, also
when the call would block).  ``sock_recv`` and ``sock_sendall`` on a plain
socket make the system call through the C shim, which returns ``-errno``:
a call that would block (the first try of nearly every ``sock_recv`` in a
request/response loop) then costs no ``BlockingIOError``, 0.5 us on
CPython and 2-4 us on PyPy.  Other errors raise what the socket method
raises (``OSError(errno, strerror)``); ``EINTR``, or a socket with a
timeout, goes to the socket's own method.  Once a waiting ``sock_recv``'s
socket is readable, CPython reads up to 64 KiB with ``sock.recv(n)``
(no copy), PyPy through the buffer.  The buffer is a private anonymous
mapping: only the pages a read wrote to take memory.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import socket
import sys
import weakref
from asyncio import exceptions, futures
from typing import TYPE_CHECKING, Any, Callable, Literal, overload

from ._ffi import ffi, lib
from ._handles.poll import DISCONNECT, READABLE, WRITABLE, UVPoll, UVPollGuard
from ._typing import Handle, LoopBase

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._typing import Ts

try:
    import ssl
except ImportError:  # pragma: no cover
    ssl = None  # type: ignore[assignment]

__all__ = ["SockMixin"]

_INET_FAMILIES = (socket.AF_INET, getattr(socket, "AF_INET6", socket.AF_INET))


_FD_MAX = 2**31 - 1   # a C int: libuv's fds

# sock_recv(n) reads through the loop's buffer for 0 < n <= _RECV_BUF_SIZE,
# sock_recvfrom(n) for _RECV_BUF_MIN < n <= _RECV_BUF_SIZE (up to 64 KiB,
# recvfrom(n)'s own allocation is cheaper than the copy); beyond the buffer,
# both allocate as asyncio's.
_RECV_BUF_MIN = 64 * 1024
_RECV_BUF_SIZE = 1024 * 1024
_PLAIN_SOCKET = socket.socket
_PLAIN_RECV = socket.socket.recv
_PLAIN_SEND = socket.socket.send
_sock_recv = lib.uvl_sock_recv
_sock_send = lib.uvl_sock_send
_EAGAIN = -errno.EAGAIN
_PYPY = sys.implementation.name == "pypy"
_EINTR = -errno.EINTR


def _reads_plainly(sock: Any, read: str, read_into: str) -> bool:
    """Whether ``sock.<read_into>`` into a buffer is what ``sock.<read>``
    does: a socket.socket, or a subclass that overrides neither."""
    cls = type(sock)   # not __class__: a Mock(spec=socket) says socket
    return cls is _PLAIN_SOCKET or (
        getattr(cls, read, None) is getattr(_PLAIN_SOCKET, read) and
        getattr(cls, read_into, None) is getattr(_PLAIN_SOCKET, read_into))


def _sock_error(sock: socket.socket, err: int) -> bool:
    """After the shim's recv()/send() returned ``err`` (-errno): False if
    the call would block (wait for the socket), True if the socket's own
    method must make it (EINTR, or a socket with a timeout, where the method
    waits); raises any other error as the method would."""
    if err == _EAGAIN:
        return bool(sock.gettimeout())   # 0.0 or None: would block, as reported
    if err == _EINTR:
        return True
    raise OSError(-err, os.strerror(-err))


def _fileno_of(fileobj: Any) -> int:
    if isinstance(fileobj, int):
        return fileobj
    try:
        return int(fileobj.fileno())
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"Invalid file object: {fileobj!r}") from None


def _fd_of(fileobj: Any) -> int:
    fd = _fileno_of(fileobj)
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _fd_to_watch(fileobj: Any) -> int:
    fd = _fd_of(fileobj)
    if fd > _FD_MAX:   # as epoll's register() says it
        raise OverflowError("Python int too large to convert to C int")
    return fd


def _check_sock(loop: Any, sock: socket.socket) -> None:
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if loop._debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


class _SockWait:
    """The reader or writer of a fd while a ``sock_*`` call waits on it:
    ``step(*args)`` is called when the fd is ready, until the call ends."""

    __slots__ = ("_cancelled", "fd", "step", "args")

    def __init__(self, fd: int, step: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._cancelled = False
        self.fd = fd
        self.step = step
        self.args = args

    def cancel(self) -> None:
        self._cancelled = True


class SockMixin(LoopBase):
    """add_reader/add_writer and the sock_* methods of :class:`Loop`."""

    _polls: dict[int, UVPoll]
    _transports: dict[int, weakref.ref[Any]]

    def _init_sock(self) -> None:
        self._polls = {}
        self._transports = {}                    # fd -> weakref to its transport
        # fd -> stream transport (_add_stream): while its handle is open.
        self._stream_fds: dict[int, Any] = {}
        self._polls_idle: list[UVPoll] = []      # to close before the next uv_run()
        self._polls_changed = False              # that list has polls
        self._poll_guard: UVPollGuard | None = None   # made with the first poll
        # The recv buffer (see the module's doc), made on first use; a call
        # takes it out of the list while it reads, so that a second reader
        # (another thread misusing the loop) cannot share it.
        self._recv_bufs: list[tuple[mmap.mmap, Any]] = []   # (buffer, its address)
        self._recv_buf_made = False

    # -- readiness -------------------------------------------------------------

    def _add_transport(self, fd: int, transport: Any) -> None:
        """Record that ``fd`` belongs to ``transport``: add_reader() and the
        sock_* methods refuse it while the transport is open."""
        self._transports[fd] = weakref.ref(transport)

    def _add_stream(self, fd: int, transport: Any) -> None:
        """``_add_transport`` for a stream transport: a plain reference (a
        weak one is some 70 bytes a connection), which the transport's close
        callback removes (UVStreamTransport._on_close): the loop holds it as
        long as that anyway (``_handles``)."""
        self._stream_fds[fd] = transport
        transport._fd = fd

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        fileno = _fileno_of(fd)
        transport = self._stream_fds.get(fileno)
        if transport is None or transport.is_closing():
            ref = self._transports.get(fileno)
            transport = None if ref is None else ref()
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    def _poll_for(self, fd: int, sock: socket.socket | None) -> UVPoll:
        poll = self._polls.get(fd)
        if poll is not None:
            if poll.reader is not None or poll.writer is not None:
                return poll
            if sock is not None and poll.sock is sock:
                return poll   # idle, and the same socket, open all along
            self._drop_poll(poll)
        poll = UVPoll(self, fd, self._on_fd_ready)
        poll.sock = sock
        self._polls[fd] = poll
        return poll

    def _drop_poll(self, poll: UVPoll) -> None:
        """Forget the fd's watchers and close its poll (not cancelling them:
        asyncio's selector drops them so when it fails to modify a fd)."""
        poll.reader = poll.writer = None
        if self._polls.get(poll.fd) is poll:
            del self._polls[poll.fd]
        poll.close()

    def _watch(self, poll: UVPoll) -> None:
        """Start or stop ``poll`` for its reader and writer.  If its fd was
        closed or names another file (OSError), the poll is dropped."""
        events_ = (READABLE if poll.reader is not None else 0) | \
                  (WRITABLE if poll.writer is not None else 0)
        if events_:
            if events_ != poll.events:
                try:
                    poll.start(events_)
                except OSError:
                    self._drop_poll(poll)
                    raise
        else:
            if self._uv_data.running:   # inside uv_run(): see the module's doc
                poll.start(0)
            self._polls_idle.append(poll)
            self._polls_changed = True

    def _report_watch_error(self, poll: UVPoll, exc: OSError) -> None:
        """Where asyncio's loop stops watching from a callback, _watch()'s
        error goes to the exception handler."""
        self.call_exception_handler({
            "message": f"Exception in callback removing a watcher of fd {poll.fd}",
            "exception": exc,
        })

    def _close_idle_polls(self) -> None:
        """Close the polls left with nothing to watch (see the module's doc)."""
        idle, self._polls_idle = self._polls_idle, []
        polls = self._polls
        for poll in idle:
            if poll.reader is None and poll.writer is None and polls.get(poll.fd) is poll:
                del polls[poll.fd]
                poll.close()

    def _sync_polls(self) -> None:
        """Run right before uv_run(): close the idle polls."""
        self._polls_changed = False
        if self._polls_idle:
            self._close_idle_polls()

    def _set_watcher(self, fd: int, which: str, watcher: Any,
                     sock: socket.socket | None = None, fileobj: Any = None) -> None:
        """Make ``watcher`` (a Handle or a _SockWait) the fd's reader or
        writer (``which``), replacing (and cancelling) the previous one."""
        self._check_closed()
        # asyncio's selector registers a fd afresh with the object it was
        # given: what remove_reader() finds once its fileno() is -1.
        owner = fd if fileobj is None else fileobj
        poll = self._poll_for(fd, sock)
        fresh = poll.reader is None and poll.writer is None
        if fresh:
            poll.fileobj = owner
        old = getattr(poll, which)
        setattr(poll, which, watcher)
        try:
            self._watch(poll)
        except OSError:
            if not fresh:
                raise   # asyncio's modify() failed: its watchers are gone too
            # An idle poll of this socket object whose fd names another file
            # now (closed behind the object): a new registration, as asyncio's.
            poll = self._poll_for(fd, sock)
            poll.fileobj = owner
            setattr(poll, which, watcher)
            try:
                self._watch(poll)
            except OSError:
                setattr(poll, which, None)
                raise
        except BaseException:
            setattr(poll, which, old)
            raise
        if old is not None:
            old.cancel()

    def _poll_of(self, fileobj: Any) -> UVPoll | None:
        try:
            fd = _fileno_of(fileobj)
            if fd < 0:
                raise ValueError(f"Invalid file descriptor: {fd}")
        except ValueError:
            # As asyncio's selector: a closed file object is found by identity
            # among the watched fds.
            for poll in self._polls.values():
                if poll.fileobj is fileobj and (poll.reader is not None or
                                                poll.writer is not None):
                    return poll
            raise
        return self._polls.get(fd)

    def _clear_watcher(self, fd: Any, which: str) -> bool:
        if self.is_closed():
            return False
        poll = self._poll_of(fd)
        if poll is None:
            return False
        watcher = getattr(poll, which)
        if watcher is None:
            return False
        setattr(poll, which, None)
        self._watch(poll)
        watcher.cancel()
        return True

    def _add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> Handle:
        handle = Handle(callback, args, self, None)
        self._set_watcher(_fd_to_watch(fd), "reader", handle, None, fd)
        return handle

    def _add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> Handle:
        handle = Handle(callback, args, self, None)
        self._set_watcher(_fd_to_watch(fd), "writer", handle, None, fd)
        return handle

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
                elif reader.__class__ is _SockWait:
                    reader.step(*reader.args)
                else:
                    self._ready.append(reader)
        if ready & WRITABLE:
            writer = poll.writer
            if writer is not None:
                if writer._cancelled:
                    self._remove_writer(poll.fd)
                elif writer.__class__ is _SockWait:
                    writer.step(*writer.args)
                else:
                    self._ready.append(writer)

    def add_reader(self, fd: Any, callback: Callable[[Unpack[Ts]], object],
                   *args: Unpack[Ts]) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable."""
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd: Any, callback: Callable[[Unpack[Ts]], object],
                   *args: Unpack[Ts]) -> None:
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
        self._polls_idle.clear()
        self._recv_bufs.clear()   # sock_recv() then allocates, as asyncio's
        self._recv_buf_made = True
        if self._poll_guard is not None:
            self._poll_guard.close()
            self._poll_guard = None

    # -- waiting on one socket -----------------------------------------------------

    def _sock_wait(self, sock: socket.socket, which: str, step: Callable[..., Any],
                   *args: Any) -> _SockWait:
        """Make ``step(*args)`` the reader or writer of ``sock``'s fd until
        :meth:`_sock_unwait`."""
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        wait = _SockWait(fd, step, args)
        self._set_watcher(fd, which, wait, sock)
        return wait

    def _sock_unwait(self, wait: _SockWait, which: str) -> None:
        """The sock_* call of ``wait`` ended: stop watching for it, unless
        another reader/writer replaced it or it was removed meanwhile."""
        # The step's arguments hold the call's future, and so its exception,
        # whose traceback holds the frames that ran the step: drop them, so a
        # failed call leaves no reference cycle behind.
        wait.args = ()
        if wait._cancelled:
            return
        wait._cancelled = True
        poll = self._polls.get(wait.fd)
        if poll is not None and getattr(poll, which) is wait:
            setattr(poll, which, None)
            try:
                self._watch(poll)
            except OSError as exc:
                self._report_watch_error(poll, exc)

    def _retry(self, fut: Any, sock: socket.socket, method: str, args: tuple[Any, ...]) -> None:
        """Run one non-blocking attempt for a waiting sock_* call.  The method
        is looked up on each attempt, as asyncio does."""
        if not fut.done():
            self._call_step(fut, getattr(sock, method), *args)

    def _call_step(self, fut: Any, func: Callable[..., Any], *args: Any) -> None:
        """One attempt of a waiting call: ``func(*args)``'s result or error
        to ``fut``; would-block and EINTR wait for the next readiness."""
        if fut.done():
            return
        try:
            result = func(*args)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut = None  # held by this frame, in the exception's traceback
        else:
            fut.set_result(result)

    # What sock.<method>(*args) returns, for mypy (the calls below).
    @overload
    async def _sock_io(self, sock: socket.socket, which: str, method: Literal["recv"],
                       *args: Any) -> bytes: ...
    @overload
    async def _sock_io(self, sock: socket.socket, which: str,
                       method: Literal["recv_into", "sendto"], *args: Any) -> int: ...
    @overload
    async def _sock_io(self, sock: socket.socket, which: str, method: Literal["recvfrom"],
                       *args: Any) -> tuple[bytes, Any]: ...
    @overload
    async def _sock_io(self, sock: socket.socket, which: str,
                       method: Literal["recvfrom_into"], *args: Any) -> tuple[int, Any]: ...

    async def _sock_io(self, sock: socket.socket, which: str, method: str, *args: Any) -> Any:
        _check_sock(self, sock)
        try:
            return getattr(sock, method)(*args)
        except (BlockingIOError, InterruptedError):
            pass
        fut: futures.Future[Any] | None
        fut = self.create_future()
        wait = self._sock_wait(sock, which, self._retry, fut, sock, method, args)
        try:
            return await fut
        finally:
            self._sock_unwait(wait, which)
            fut = None  # the exception's traceback holds this frame: no cycle

    # -- reading through the loop's buffer ---------------------------------------

    def _new_recv_buf(self) -> tuple[mmap.mmap, Any] | None:
        """The buffer, made on first use; None if it is in use (taken out of
        ``_recv_bufs``: list.pop() and append() are atomic) or gone."""
        if self._recv_buf_made:
            return None   # in use, or the loop is closed
        self._recv_buf_made = True
        try:   # private: a forked child's copy is its own
            buf = mmap.mmap(-1, _RECV_BUF_SIZE, flags=mmap.MAP_PRIVATE)
        except OSError:
            return None   # recv(n) allocates, from now on
        return buf, ffi.from_buffer(buf)

    def _recv_buffered(self, sock: socket.socket, n: int) -> bytes | None:
        """``sock.recv(n)`` through the loop's buffer (0 < n <= its size);
        None if it would block."""
        bufs = self._recv_bufs
        buf: tuple[mmap.mmap, Any] | None
        try:
            buf = bufs.pop()
        except IndexError:
            buf = self._new_recv_buf()
            if buf is None:
                return self._recv_plain(sock, n)
        try:
            got = _sock_recv(sock.fileno(), buf[1], n)
            if got >= 0:
                return buf[0][:got]
        finally:
            bufs.append(buf)
        if _sock_error(sock, got):
            return self._recv_plain(sock, n)
        return None

    def _recv_plain(self, sock: socket.socket, n: int) -> bytes | None:
        """``sock.recv(n)``; None if it would block."""
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            return None

    def _recvfrom_buffered(self, sock: socket.socket, n: int) -> tuple[bytes, Any]:
        """``sock.recvfrom(n)`` through the loop's buffer."""
        bufs = self._recv_bufs
        buf: tuple[mmap.mmap, Any] | None
        try:
            buf = bufs.pop()
        except IndexError:
            buf = self._new_recv_buf()
            if buf is None:
                return sock.recvfrom(n)
        try:
            size, address = sock.recvfrom_into(buf[0], n)
            return buf[0][:size], address
        finally:
            bufs.append(buf)

    async def _sock_await(self, sock: socket.socket, which: str,
                          step: Callable[..., Any], *args: Any) -> Any:
        """The waiting half of ``_sock_io()``: ``step(fut, *args)`` runs each
        time ``sock`` is ready (``which``: "reader" or "writer") until it
        sets ``fut``'s result."""
        fut: futures.Future[Any] | None
        fut = self.create_future()
        wait = self._sock_wait(sock, which, step, fut, *args)
        try:
            return await fut
        finally:
            self._sock_unwait(wait, which)
            fut = None  # the exception's traceback holds this frame: no cycle

    def _recv_step(self, fut: Any, sock: socket.socket, n: int) -> None:
        """A waiting sock_recv() once the socket is readable.  On CPython,
        up to 64 KiB, ``sock.recv(n)`` itself: it rarely fails now, and its
        allocation is cheaper than the copy out of the buffer."""
        if fut.done():
            return
        try:
            if n <= _RECV_BUF_MIN and not _PYPY:
                data = self._recv_plain(sock, n)
            else:
                data = self._recv_buffered(sock, n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut = None  # held by this frame, in the exception's traceback
        else:
            if data is not None:
                fut.set_result(data)

    # -- the sock_* coroutines ---------------------------------------------------------

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """Receive up to ``n`` bytes from the non-blocking ``sock``."""
        _check_sock(self, sock)
        if n.__class__ is int and 0 < n <= _RECV_BUF_SIZE and (
                type(sock) is _PLAIN_SOCKET or getattr(type(sock), "recv", None) is _PLAIN_RECV):
            data: bytes | None = self._recv_buffered(sock, n)
            if data is not None:
                return data
            fut: futures.Future[bytes] | None
            fut = self.create_future()
            wait = self._sock_wait(sock, "reader", self._recv_step, fut, sock, n)
            try:
                return await fut
            finally:
                self._sock_unwait(wait, "reader")
                fut = None  # the exception's traceback holds this frame: no cycle
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            pass
        got: bytes = await self._sock_await(sock, "reader", self._retry, sock, "recv", (n,))
        return got

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """Receive into ``buf``; return the number of bytes received."""
        return await self._sock_io(sock, "reader", "recv_into", buf)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to ``bufsize`` bytes: ``(data, address)``."""
        _check_sock(self, sock)
        if bufsize.__class__ is int and _RECV_BUF_MIN < bufsize <= _RECV_BUF_SIZE and (
                type(sock) is _PLAIN_SOCKET or
                _reads_plainly(sock, "recvfrom", "recvfrom_into")):
            try:
                return self._recvfrom_buffered(sock, bufsize)
            except (BlockingIOError, InterruptedError):
                pass
            got: tuple[bytes, Any] = await self._sock_await(
                sock, "reader", self._call_step, self._recvfrom_buffered, sock, bufsize)
            return got
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            pass
        got = await self._sock_await(sock, "reader", self._retry, sock, "recvfrom", (bufsize,))
        return got

    async def sock_recvfrom_into(self, sock: socket.socket, buf: Any,
                                 nbytes: int = 0) -> tuple[int, Any]:
        """Receive a datagram into ``buf``: ``(nbytes, address)``."""
        if not nbytes:
            nbytes = len(buf)
        return await self._sock_io(sock, "reader", "recvfrom_into", buf, nbytes)

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        """Send a datagram to ``address``; return the number of bytes sent."""
        return await self._sock_io(sock, "writer", "sendto", data, address)

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        """Send all of ``data``; partial sends continue when writable."""
        _check_sock(self, sock)
        if data.__class__ is bytes and (
                type(sock) is _PLAIN_SOCKET or getattr(type(sock), "send", None) is _PLAIN_SEND):
            n = _sock_send(sock.fileno(), data, len(data))
            if n < 0:
                n = self._send_plain(sock, data) if _sock_error(sock, n) else 0
        else:
            n = self._send_plain(sock, data)
        if n == len(data):
            return
        fut: futures.Future[None] | None
        fut = self.create_future()
        wait = self._sock_wait(sock, "writer", self._sendall_step, fut, sock,
                               memoryview(data), [n])
        try:
            return await fut
        finally:
            self._sock_unwait(wait, "writer")
            fut = None  # the exception's traceback holds this frame: no cycle

    def _send_plain(self, sock: socket.socket, data: Any) -> int:
        """``sock.send(data)``; 0 if it would block."""
        try:
            return sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    def _sendall_step(self, fut: Any, sock: socket.socket, view: memoryview,
                      pos: list[int]) -> None:
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
            fut = None  # held by this frame, in the exception's traceback
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
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        else:
            return
        await self._sock_await(sock, "writer", self._connect_step, sock, address)

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
            fut = None  # held by this frame, in the exception's traceback
        else:
            fut.set_result(None)

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        """Accept a connection: ``(conn, address)``, ``conn`` non-blocking."""
        _check_sock(self, sock)
        try:
            conn, address = sock.accept()
        except (BlockingIOError, InterruptedError):
            pass
        else:
            conn.setblocking(False)
            return conn, address
        fut: futures.Future[tuple[socket.socket, Any]] | None
        fut = self.create_future()
        wait = self._sock_wait(sock, "reader", self._accept_step, fut, sock)
        try:
            return await fut
        finally:
            self._sock_unwait(wait, "reader")
            fut = None  # the exception's traceback holds this frame: no cycle

    def _accept_step(self, fut: Any, sock: socket.socket) -> None:
        if fut.done():
            return
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut = None  # held by this frame, in the exception's traceback
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
        fut: futures.Future[int] | None
        fut = self.create_future()
        state = _SendfileState(sock, fileno, offset, count, blocksize)
        self._sendfile_step(fut, state)
        if fut.done():
            return fut.result()
        wait = self._sock_wait(sock, "writer", self._sendfile_step, fut, state)
        try:
            return await fut
        finally:
            self._sock_unwait(wait, "writer")
            fut = None  # the exception's traceback holds this frame: no cycle

    def _sendfile_step(self, fut: Any, state: _SendfileState) -> None:
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
            n = os.sendfile(state.sock.fileno(), state.fileno, state.offset, size)
        except (BlockingIOError, InterruptedError):
            return
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
            fut = None  # held by this frame, in the exception's traceback
            del err
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            state.seek()
            fut.set_exception(exc)
            fut = None  # held by this frame, in the exception's traceback
            return
        if n == 0:   # end of file
            state.seek()
            fut.set_result(state.sent)
            return
        state.offset += n
        state.sent += n


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

    def seek(self) -> None:
        # As with asyncio: the file position ends after what was sent.
        if self.sent > 0:
            os.lseek(self.fileno, self.offset, os.SEEK_SET)
