"""getaddrinfo / getnameinfo on libuv's resolver (uv_getaddrinfo_t,
uv_getnameinfo_t), which runs the blocking libc calls on libuv's thread pool.

Results and errors are those of Python's socket.getaddrinfo/getnameinfo:
families and socket types as enums, sockaddr tuples, socket.gaierror with
libc's code and message.  Numeric hosts (and a numeric or absent port) take a
fast path: socket.getaddrinfo() itself, at once, since it cannot block then.
A name libuv would not hand to libc as it is (see ``_libuv_takes``) is looked
up as asyncio's loop does it: socket.getaddrinfo() in the default executor.
"""

from __future__ import annotations

import operator
import platform
import socket
from asyncio import futures
from asyncio.log import logger
from typing import Any, Generic, TypeVar

from ._errors import gai_error
from ._ffi import ffi, lib
from ._handles.base import callback_error
from ._typing import LoopBase

__all__ = ["DnsMixin"]

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_UV_EAI_CANCELED = lib.UV_EAI_CANCELED
_INT_MIN, _INT_MAX = -2 ** 31, 2 ** 31 - 1   # a C int, as getaddrinfo()'s hints
# How this Python's socket module writes a scoped IPv6 host: CPython keeps the
# scope id in the 4th item only, PyPy also appends "%<interface>".
_SCOPE_IN_HOST = platform.python_implementation() == "PyPy"
_T = TypeVar("_T")   # a request's result


def _is_numeric_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    for family, text in ((_AF_INET, host), (_AF_INET6, host.partition("%")[0])):
        try:
            socket.inet_pton(family, text)
            return True
        except (OSError, ValueError):
            pass
    return False


def _is_numeric_port(port: Any) -> bool:
    if port is None or isinstance(port, int):
        return True
    return isinstance(port, (str, bytes)) and port.isdigit()


def _encode_host(host: Any) -> bytes | None:
    if host is None:
        return None
    if isinstance(host, str):
        return host.encode("idna")
    if isinstance(host, (bytes, bytearray)):
        return bytes(host)
    raise TypeError("getaddrinfo() argument 1 must be string or None")


# uv_getaddrinfo() converts the name with its own IDNA code into a 256-byte
# buffer: a longer name fails with EINVAL, non-ASCII bytes become punycode (or
# EINVAL), while Python hands bytes to libc unchanged.  And a C string ends at
# a NUL.
_UV_MAX_NAME = 255


def _libuv_takes(node: bytes | None, service: bytes | None) -> bool:
    """Does libuv pass ``node`` and ``service`` to libc's getaddrinfo()
    exactly as socket.getaddrinfo() would?"""
    if node is not None and (len(node) > _UV_MAX_NAME or not node.isascii()
                             or b"\0" in node):
        return False
    return service is None or b"\0" not in service


def _encode_port(port: Any) -> bytes | None:
    if port is None:
        return None
    if type(port) is int:
        return str(port).encode("ascii")
    if isinstance(port, str):
        return port.encode("utf-8")
    if isinstance(port, bytes):
        return bytes(port)
    # Anything else: socket.getaddrinfo()'s own verdict, which differs between
    # implementations (CPython: OSError "Int or String expected"; PyPy: a
    # TypeError; PyPy takes int subclasses).  Numeric-only flags: no lookup.
    try:
        socket.getaddrinfo(None, port, 0, 0, 0, socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
    except socket.gaierror:
        pass   # a type it takes
    if isinstance(port, int):
        return str(int(port)).encode("ascii")
    raise OSError("Int or String expected")


def _enum(cls: Any, value: int) -> Any:
    try:
        return cls(value)
    except ValueError:
        return value


def sockaddr_to_tuple(addr: Any) -> Any:
    """A ``struct sockaddr *`` (IPv4/IPv6) as Python's socket module shows it."""
    family = addr.sa_family
    if family == _AF_INET:
        sin = ffi.cast("struct sockaddr_in *", addr)
        buf = ffi.new("char[]", 64)
        lib.uv_ip4_name(sin, buf, 64)
        return (ffi.string(buf).decode("ascii"), socket.ntohs(sin.sin_port))
    if family == _AF_INET6:
        sin6 = ffi.cast("struct sockaddr_in6 *", addr)
        buf = ffi.new("char[]", 64)
        lib.uv_ip6_name(sin6, buf, 64)
        host = ffi.string(buf).decode("ascii")
        scope = sin6.sin6_scope_id
        if scope and _SCOPE_IN_HOST:
            # libc's own numeric form, "%<interface>" included (no lookup).
            host = socket.getnameinfo((host, 0, 0, scope),
                                      socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)[0]
        return (host, socket.ntohs(sin6.sin6_port),
                socket.ntohl(sin6.sin6_flowinfo), scope)
    return (family, b"")


class _Request(Generic[_T]):
    """A resolver request: its memory and its future live until libuv's
    callback (the loop holds it in ``_dns_requests``).

    The memory is malloc'd and owned by this object, unless the loop closes
    while a thread-pool worker still resolves: then ``abandon()`` hands it
    to C (the worker writes into it later; see _handles/base.py)."""

    def __init__(self, loop: Any, ctype: str) -> None:
        loop._check_closed()
        self.loop = loop
        req = lib.uvl_calloc(ffi.sizeof(ctype[:-2]))
        if req == ffi.NULL:
            raise MemoryError
        self.req = ffi.gc(ffi.cast(ctype, req), lib.uvl_free)
        self.handle = ffi.new_handle(self)
        self.req.data = self.handle
        self.fut: futures.Future[_T] = loop.create_future()
        self.keep: list[Any] = []
        self.pending = True   # in libuv's hands: until its callback, or abandon()
        loop._dns_requests.add(self)

    def cancel(self) -> None:
        # A flag, not req.data: once the request has ended, this may run from
        # a garbage collection in which cffi already freed the memory (the
        # finalizers of a cycle run in no set order).
        if self.pending:
            lib.uv_cancel(ffi.cast("uv_req_t *", self.req))

    def abandon(self) -> None:
        """The loop is closing with this request still in libuv's thread
        pool: its callback becomes C code that frees the memory."""
        req = self.req
        if req is not None:   # once (the loop's close may resume)
            self.pending = False
            lib.uvl_req_abandon(ffi.cast("uv_req_t *", req))
            ffi.gc(req, None)
            self.req = None   # C frees it: never touched from Python again
        self.loop._dns_requests.discard(self)

    async def wait(self, rc: int) -> _T:
        """The result, once libuv's callback came (``rc``: what submitting
        the request returned); cancelled with the awaiting task."""
        if rc < 0:
            self.done()
            raise gai_error(rc)
        try:
            return await self.fut
        except BaseException:
            if not self.fut.done():
                self.cancel()
            raise

    def done(self) -> None:
        self.pending = False
        self.req.data = ffi.NULL
        self.loop._dns_requests.discard(self)


class DnsMixin(LoopBase):
    """Name resolution of :class:`Loop`."""

    _dns_requests: set[_Request[Any]]

    def _init_dns(self) -> None:
        self._dns_requests = set()

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> list[tuple[Any, ...]]:
        """Resolve ``host``/``port`` as socket.getaddrinfo() does, without
        blocking the loop."""
        t0 = self.time() if self._debug else 0.0
        if (_is_numeric_host(host) and _is_numeric_port(port)) or host in ("", b""):
            # (An empty name fails in libc at once; libuv's IDNA step would
            # report EINVAL instead of libc's EAI_NONAME.)
            result = socket.getaddrinfo(host, port, family, type, proto, flags)
        else:
            result = await self._uv_getaddrinfo(host, port, family, type, proto, flags)
        if self._debug:
            self._log_lookup(host, port, family, type, proto, flags, t0, result)
        return result

    def _log_lookup(self, host: Any, port: Any, family: int, type: int, proto: int,
                    flags: int, t0: float, result: Any) -> None:
        msg = [f"{host}:{port!r}"]
        for name, value in (("family", family), ("type", type), ("proto", proto),
                            ("flags", flags)):
            if value:
                msg.append(f"{name}={value!r}")
        text = ", ".join(msg)
        dt = self.time() - t0
        line = f"Getting address info {text} took {dt * 1e3:.3f}ms: {result!r}"
        (logger.info if dt >= self.slow_callback_duration else logger.debug)(line)

    async def _uv_getaddrinfo(self, host: Any, port: Any, family: int, type: int,
                              proto: int, flags: int) -> list[tuple[Any, ...]]:
        try:
            node = _encode_host(host)
            service = _encode_port(port)
            takes = _libuv_takes(node, service)
        except UnicodeError:   # the codecs': socket.getaddrinfo() raises its own
            takes = False
        if not takes:
            return await self.run_in_executor(None, socket.getaddrinfo, host, port,
                                              family, type, proto, flags)
        if node is None and service is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        for value in (family, type, proto, flags):
            if value.__class__ is not int or not _INT_MIN <= value <= _INT_MAX:
                # socket.getaddrinfo()'s own TypeError/OverflowError, raised
                # before any lookup (and without a host there is none).
                try:
                    socket.getaddrinfo(None, 0, family, type, proto, flags)
                except socket.gaierror:
                    pass
                break
        hints = ffi.new("struct addrinfo *")
        hints.ai_family = family
        hints.ai_socktype = type
        hints.ai_protocol = proto
        hints.ai_flags = flags
        c_node = ffi.new("char[]", node) if node is not None else ffi.NULL
        c_service = ffi.new("char[]", service) if service is not None else ffi.NULL
        request: _Request[list[tuple[Any, ...]]]
        request = _Request(self, "uv_getaddrinfo_t *")   # nothing may raise after this
        request.keep += [hints, c_node, c_service]
        rc = lib.uv_getaddrinfo(self._uv, request.req, lib.uvl_on_getaddrinfo,
                                c_node, c_service, hints)
        return await request.wait(rc)

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        """Reverse-resolve ``sockaddr`` as socket.getnameinfo() does, without
        blocking the loop."""
        # Argument errors are socket.getnameinfo()'s own: their wording differs
        # across versions (3.9: "an integer is required (got type str)") and
        # implementations (PyPy).  It raises them before any lookup.
        if not isinstance(flags, int):
            try:
                flags = operator.index(flags)
            except TypeError:
                socket.getnameinfo(sockaddr, flags)
                raise
        if not isinstance(sockaddr, tuple):
            socket.getnameinfo(sockaddr, flags | socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            raise TypeError("getnameinfo() argument 1 must be a tuple")
        # Python's own argument checks, with their exact errors: a numeric-only
        # getnameinfo() does no lookup.
        socket.getnameinfo(sockaddr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        # Numeric parsing (no lookup: AI_NUMERICHOST).
        host, port = sockaddr[0], sockaddr[1]
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
        if len(infos) > 1:
            raise OSError("sockaddr resolved to multiple addresses")
        addr: Any   # (host, port, ...): a numeric IP address
        family, _, _, _, addr = infos[0]
        if family == _AF_INET6:
            sa: Any = ffi.new("struct sockaddr_in6 *")
            rc = lib.uv_ip6_addr(addr[0].encode("ascii"), addr[1], sa)
            if len(sockaddr) > 2:
                sa.sin6_flowinfo = socket.htonl(sockaddr[2])
            if len(sockaddr) > 3:
                sa.sin6_scope_id = sockaddr[3]
        else:
            if len(sockaddr) != 2:
                raise OSError("IPv4 sockaddr must be 2 tuple")
            sa = ffi.new("struct sockaddr_in *")
            rc = lib.uv_ip4_addr(addr[0].encode("ascii"), addr[1], sa)
        if rc < 0:
            raise gai_error(rc)
        request: _Request[tuple[str, str]] = _Request(self, "uv_getnameinfo_t *")
        request.keep.append(sa)
        rc = lib.uv_getnameinfo(self._uv, request.req, lib.uvl_on_getnameinfo,
                                ffi.cast("struct sockaddr *", sa), flags)
        return await request.wait(rc)

    def _cancel_dns(self) -> None:
        for request in list(self._dns_requests):
            request.cancel()

    def _abandon_dns(self) -> None:
        """At close, with requests still in libuv's thread pool (the only
        requests that outlive their handles): give them to C."""
        for request in list(self._dns_requests):
            request.abandon()


def _settle(req: Any, status: int) -> _Request[Any] | None:
    """The request libuv's callback is for, if its future still awaits a
    result; an error or a cancellation is delivered here."""
    data = req.data
    if data == ffi.NULL:
        return None
    request: _Request[Any] = ffi.from_handle(data)
    request.done()
    fut = request.fut
    if fut.done() or request.loop.is_closed():
        return None
    if status < 0:
        if status == _UV_EAI_CANCELED:
            fut.cancel()
        else:
            fut.set_exception(gai_error(status))
        return None
    return request


@ffi.def_extern(onerror=callback_error)
def uvl_on_getaddrinfo(req: Any, status: int, res: Any) -> None:
    try:
        request = _settle(req, status)
        if request is None:
            return
        result = []
        ai = res
        while ai != ffi.NULL:
            canon = ffi.string(ai.ai_canonname).decode("utf-8", "replace") \
                if ai.ai_canonname != ffi.NULL else ""
            result.append((_enum(socket.AddressFamily, ai.ai_family),
                           _enum(socket.SocketKind, ai.ai_socktype),
                           ai.ai_protocol, canon, sockaddr_to_tuple(ai.ai_addr)))
            ai = ai.ai_next
        request.fut.set_result(result)
    finally:
        lib.uv_freeaddrinfo(res)


@ffi.def_extern(onerror=callback_error)
def uvl_on_getnameinfo(req: Any, status: int, hostname: Any, service: Any) -> None:
    request = _settle(req, status)
    if request is not None:
        request.fut.set_result((ffi.string(hostname).decode("utf-8", "replace"),
                                ffi.string(service).decode("utf-8", "replace")))
