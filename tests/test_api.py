"""The public surface: AbstractEventLoop methods on Loop, and uvloop_lite.__all__."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import uvloop_lite

# Implemented by the loop core (this must never be the abstract stub).
CORE_METHODS = {
    "run_forever", "run_until_complete", "stop", "is_running", "is_closed", "close",
    "shutdown_asyncgens", "shutdown_default_executor",
    "call_soon", "call_later", "call_at", "time", "call_soon_threadsafe",
    "create_future", "create_task", "set_task_factory", "get_task_factory",
    "run_in_executor", "set_default_executor",
    "get_exception_handler", "set_exception_handler", "default_exception_handler",
    "call_exception_handler", "get_debug", "set_debug",
}

# Network, pipes, signals and subprocesses: another part of the project.
IO_METHODS = {
    "add_reader", "remove_reader", "add_writer", "remove_writer",
    "add_signal_handler", "remove_signal_handler",
    "create_connection", "create_server", "create_unix_connection",
    "create_unix_server", "create_datagram_endpoint", "connect_accepted_socket",
    "connect_read_pipe", "connect_write_pipe", "subprocess_exec", "subprocess_shell",
    "getaddrinfo", "getnameinfo", "sendfile", "start_tls",
    "sock_accept", "sock_connect", "sock_recv", "sock_recv_into", "sock_recvfrom",
    "sock_recvfrom_into", "sock_sendall", "sock_sendto", "sock_sendfile",
}

ABSTRACT_PUBLIC = sorted(n for n, v in vars(asyncio.AbstractEventLoop).items()
                         if not n.startswith("_") and callable(v))


def _defining_class(name: str) -> type:
    for klass in uvloop_lite.Loop.__mro__:
        if name in vars(klass):
            return klass
    raise AttributeError(name)


def test_every_abstract_method_is_classified():
    unknown = set(ABSTRACT_PUBLIC) - CORE_METHODS - IO_METHODS
    assert not unknown, f"new AbstractEventLoop methods to classify: {sorted(unknown)}"
    assert CORE_METHODS <= set(ABSTRACT_PUBLIC)


@pytest.mark.parametrize("name", ABSTRACT_PUBLIC)
def test_abstract_method_reachable(name):
    assert callable(getattr(uvloop_lite.Loop, name))


@pytest.mark.parametrize("name", sorted(CORE_METHODS))
def test_core_method_is_not_the_abstract_stub(name):
    assert _defining_class(name) is not asyncio.AbstractEventLoop
    # Same signature as asyncio's own loop offers.
    ours = inspect.signature(getattr(uvloop_lite.Loop, name))
    theirs = inspect.signature(getattr(asyncio.SelectorEventLoop, name))
    assert list(ours.parameters) == list(theirs.parameters)


def test_core_methods_do_not_raise_not_implemented(uv_loop):
    # The cheap ones called for real; the rest are exercised by other tests.
    uv_loop.set_debug(uv_loop.get_debug())
    uv_loop.set_task_factory(uv_loop.get_task_factory())
    uv_loop.set_exception_handler(uv_loop.get_exception_handler())
    uv_loop.call_soon(uv_loop.stop)
    uv_loop.call_at(uv_loop.time(), int).cancel()
    uv_loop.call_later(0, int).cancel()
    uv_loop.call_soon_threadsafe(int)
    uv_loop.run_forever()
    assert uv_loop.is_running() is False
    assert uv_loop.is_closed() is False
    uv_loop.run_until_complete(uv_loop.shutdown_asyncgens())
    uv_loop.run_until_complete(uv_loop.run_in_executor(None, int))
    uv_loop.run_until_complete(uv_loop.shutdown_default_executor())


def test_loop_is_an_asyncio_event_loop():
    assert issubclass(uvloop_lite.Loop, asyncio.AbstractEventLoop)


def test_all_is_the_documented_set():
    assert sorted(uvloop_lite.__all__) == sorted([
        "Loop", "new_event_loop", "EventLoopPolicy", "install", "run",
        "libuv_version", "__version__",
    ])
    for name in uvloop_lite.__all__:
        assert hasattr(uvloop_lite, name)


def test_star_import_gives_exactly_all():
    ns: dict = {}
    exec("from uvloop_lite import *", ns)
    ns.pop("__builtins__")
    assert set(ns) == set(uvloop_lite.__all__)
