"""getaddrinfo / getnameinfo: the loop's answers must equal the socket
module's (same tuples, same enums, same gaierror errno and message), on
asyncio's loop (which runs socket.getaddrinfo in an executor) and on
uvloop_lite (libuv's resolver, with a numeric fast path)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from netutil import HAS_IPV6

LOOKUPS = [
    ("localhost", 80, {}),
    ("localhost", "http", {}),
    ("localhost", None, {"type": socket.SOCK_STREAM}),
    ("localhost", 0, {"family": socket.AF_INET}),
    ("127.0.0.1", 0, {}),
    ("127.0.0.1", 8080, {"type": socket.SOCK_DGRAM}),
    ("127.0.0.1", "8080", {"proto": socket.IPPROTO_TCP}),
    ("127.0.0.1", b"8080", {}),
    (b"127.0.0.1", 53, {"family": socket.AF_INET, "type": socket.SOCK_DGRAM}),
    ("::1", 443, {}),
    ("::1", "https", {"type": socket.SOCK_STREAM}),
    (None, 80, {}),
    (None, 80, {"flags": socket.AI_PASSIVE}),
    (None, "domain", {"family": socket.AF_INET, "flags": socket.AI_PASSIVE}),
    (None, "ssh", {}),
    ("localhost", 25, {"flags": socket.AI_CANONNAME, "family": socket.AF_INET}),
]


def _ids(case):
    host, port, kw = case
    return f"{host!r}-{port!r}-{sorted(kw)}"


@pytest.mark.parametrize("host,port,kw", LOOKUPS, ids=[_ids(c) for c in LOOKUPS])
def test_getaddrinfo_equals_socket(loop, host, port, kw):
    if host == "::1" and not HAS_IPV6:
        pytest.skip("no IPv6 loopback")
    want = socket.getaddrinfo(host, port, **kw)
    got = loop.run_until_complete(loop.getaddrinfo(host, port, **kw))
    assert got == want
    # Same element types too (enums, not bare ints).
    assert [tuple(map(type, t)) for t in got] == [tuple(map(type, t)) for t in want]


def _gai_error(fn):
    try:
        fn()
    except socket.gaierror as exc:
        return exc
    pytest.fail("no gaierror")


@pytest.mark.parametrize("host,port", [
    ("nonexistent.invalid", 80),
    ("nonexistent.invalid", None),
    ("localhost", "no-such-service-xyz"),
    ("127.0.0.1", "no-such-service-xyz"),
    (None, None),
])
def test_getaddrinfo_errors(loop, host, port):
    want = _gai_error(lambda: socket.getaddrinfo(host, port))

    async def main():
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo(host, port)
        return info.value

    got = loop.run_until_complete(main())
    assert type(got) is socket.gaierror
    assert got.errno == want.errno
    assert got.strerror == want.strerror
    assert str(got) == str(want)
    assert got.args == want.args


def test_getaddrinfo_bad_flags(loop):
    want = _gai_error(lambda: socket.getaddrinfo("localhost", 80, flags=0x7fffffff))

    async def main():
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("localhost", 80, flags=0x7fffffff)
        return info.value

    got = loop.run_until_complete(main())
    assert got.args == want.args


@pytest.mark.parametrize("sockaddr,flags", [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("127.0.0.1", 22), socket.NI_NUMERICHOST),
    (("127.0.0.1", 53), socket.NI_DGRAM),
    (("::1", 443), 0),
    (("::1", 443, 0, 0), socket.NI_NUMERICHOST),
])
def test_getnameinfo_equals_socket(loop, sockaddr, flags):
    if sockaddr[0] == "::1" and not HAS_IPV6:
        pytest.skip("no IPv6 loopback")
    want = socket.getnameinfo(sockaddr, flags)
    got = loop.run_until_complete(loop.getnameinfo(sockaddr, flags))
    assert got == want


def test_cancelled_lookup_leaves_loop_working(loop):
    async def main():
        # A lookup that goes through the resolver (not the numeric fast path).
        task = asyncio.ensure_future(loop.getaddrinfo("localhost", "http"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        name_task = asyncio.ensure_future(loop.getnameinfo(("127.0.0.1", 80)))
        name_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await name_task
        # Still resolves afterwards, and timers still fire.
        again = await loop.getaddrinfo("localhost", "http", family=socket.AF_INET)
        await asyncio.sleep(0.001)
        return again

    assert loop.run_until_complete(main()) == socket.getaddrinfo(
        "localhost", "http", family=socket.AF_INET)


def test_lookup_cancelled_by_wait_for(loop):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(loop.getaddrinfo("localhost", 80), 0)
        return await loop.getaddrinfo("localhost", 80)

    assert loop.run_until_complete(main()) == socket.getaddrinfo("localhost", 80)


def test_many_concurrent_lookups(loop):
    hosts = [("localhost", p) for p in range(1000, 1100)]
    hosts += [("127.0.0.1", p) for p in range(2000, 2050)]
    hosts += [("localhost", "no-such-service-xyz")] * 10

    async def main():
        return await asyncio.gather(*(loop.getaddrinfo(h, p, type=socket.SOCK_STREAM)
                                      for h, p in hosts), return_exceptions=True)

    results = loop.run_until_complete(main())
    for (h, p), got in zip(hosts, results):
        if p == "no-such-service-xyz":
            assert isinstance(got, socket.gaierror)
            assert got.args == _gai_error(lambda: socket.getaddrinfo(h, p)).args
        else:
            assert got == socket.getaddrinfo(h, p, type=socket.SOCK_STREAM)


def test_many_concurrent_reverse_lookups(loop):
    addrs = [("127.0.0.1", p) for p in (22, 25, 53, 80, 443)] * 10

    async def main():
        return await asyncio.gather(*(loop.getnameinfo(a) for a in addrs))

    assert loop.run_until_complete(main()) == [socket.getnameinfo(a, 0) for a in addrs]


def test_lookup_pending_when_loop_closes(uv_loop):
    # Closing with a lookup still queued on libuv's thread pool must neither
    # crash nor leak (teardown checks libuv's handles).
    task = uv_loop.create_task(uv_loop.getaddrinfo("localhost", "http"))
    uv_loop.call_soon(uv_loop.stop)
    uv_loop.run_forever()
    task.cancel()
    uv_loop.run_until_complete(asyncio.sleep(0))
    uv_loop.close()
    assert task.cancelled() or task.done()


def _outcome(fn):
    try:
        return fn()
    except Exception as exc:   # the exception's type and text are the result
        return (type(exc), str(exc))


@pytest.mark.parametrize("host,port,kw", [
    ("", 80, {}),
    (123, 80, {}),
    ("localhost", 1.5, {}),
    ("localhost", "", {}),
    ("пример.invalid", 80, {}),
    ("127.0.0.1", 80, {"family": socket.AF_INET6}),
    ("localhost", 80, {"family": 12345}),
    ("localhost", 80, {"flags": socket.AI_NUMERICHOST}),
    ("localhost", "http", {"flags": socket.AI_NUMERICSERV}),
    ("127.1", 80, {}),
])
def test_getaddrinfo_odd_arguments(loop, host, port, kw):
    want = _outcome(lambda: socket.getaddrinfo(host, port, **kw))
    got = _outcome(lambda: loop.run_until_complete(loop.getaddrinfo(host, port, **kw)))
    assert got == want


# Names libuv's resolver would change or refuse before libc sees them (its
# IDNA step writes into 256 bytes and punycodes non-ASCII bytes; a C string
# ends at a NUL), next to odd names it passes as they are.  Each fails in
# libc or in Python without asking a DNS server, or asks about .invalid.
ODD_NAMES = [
    b"0x" + b"0" * 246 + b"7f000001.example.com",   # 268 bytes
    b"a" * 64 + b".invalid",                        # a label over 63
    "a" * 64 + ".invalid",                          # the IDNA codec refuses it
    b"a" * 250 + b".invalid",                       # over 255 in all
    "a" * 250 + ".invalid",
    b"a" * 255, b"a" * 256,
    b"local\0host", "local\0host", b"\0",
    "bücher.invalid", b"b\xc3\xbccher.invalid", b"\xff.invalid",
    "nothing.invalid.", b"a..invalid", "a..invalid", ".invalid", "。invalid",
    "0x7f.1", "127.1", "2130706433", b"0x7f000001", "127.0.0.1.", "017700000001",
    " 127.0.0.1", "localhost",
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("host", ODD_NAMES, ids=lambda h: repr(h)[:30])
@pytest.mark.parametrize("port", [80, "ht\0tp"])
def test_getaddrinfo_odd_names_as_socket(loop, host, port):
    want = _outcome(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    got = _outcome(lambda: loop.run_until_complete(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
    assert got == want


@pytest.mark.parametrize("sockaddr,flags", [
    (("127.0.0.1",), 0),
    (("127.0.0.1", "80"), 0),
    ("127.0.0.1", 0),
    (("localhost", 80), 0),
    (("127.0.0.1", 80, 0, 0), 0),
    (("127.0.0.1", 80), "x"),
])
def test_getnameinfo_errors(loop, sockaddr, flags):
    want = _outcome(lambda: socket.getnameinfo(sockaddr, flags))
    got = _outcome(lambda: loop.run_until_complete(loop.getnameinfo(sockaddr, flags)))
    assert isinstance(want, tuple) and issubclass(want[0], Exception)
    assert got == want


@pytest.mark.parametrize("host", ["::1", "fe80::1%1", "127.0.0.1"])
def test_resolver_path_formats_addresses_as_socket_does(uv_loop, host):
    # Numeric hosts normally take the fast path; push them through libuv's
    # resolver to check its sockaddr conversion (scope id only in item 4).
    got = uv_loop.run_until_complete(
        uv_loop._uv_getaddrinfo(host, 80, 0, socket.SOCK_STREAM, 0, 0))
    assert got == socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)
