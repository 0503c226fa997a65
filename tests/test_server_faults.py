"""Servers and connections under fd pressure and failing factories (issue 8,
items 5 and 10): one fd per connection as asyncio, user sockets owned and
closed by their transport, accept errors at the fd limit reported and
survived, a protocol factory raising KeyboardInterrupt/SystemExit not ending
the server."""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import socket
import subprocess
import sys
import textwrap

import pytest

import faults
from netutil import LOCALHOST, Recorder

N_CONNECTIONS = 200


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


# -- one fd per connection -------------------------------------------------------


def test_one_fd_per_connection(loop):
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and limit < 4 * N_CONNECTIONS + 100:
        pytest.skip(f"RLIMIT_NOFILE {limit} too low")

    async def main():
        accepted = []
        made = {"n": 0, "all": loop.create_future()}

        def factory():
            proto = Recorder(loop)
            accepted.append(proto)
            made["n"] += 1
            if made["n"] == N_CONNECTIONS + 1:
                made["all"].set_result(None)
            return proto

        server = await loop.create_server(factory, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        # A first connection opens whatever the loop opens once (libuv's
        # reserve fd, say): not per connection.
        clients = [await loop.create_connection(lambda: Recorder(loop), *addr)]
        while not accepted or not accepted[0].made.done():
            await asyncio.sleep(0)
        before = _open_fds()
        for _ in range(N_CONNECTIONS):
            clients.append(await loop.create_connection(lambda: Recorder(loop), *addr))
        await made["all"]
        await asyncio.gather(*(p.made for p in accepted))
        after = _open_fds()
        for tr, _ in clients:
            tr.close()
        for p in accepted:
            p.transport.close()
        await asyncio.gather(*(p.lost for _, p in clients), *(p.lost for p in accepted))
        server.close()
        await server.wait_closed()
        return after - before

    # Both ends of each connection live in this process: two sockets each.
    assert loop.run_until_complete(main()) == 2 * N_CONNECTIONS


def test_socket_extra_info_is_the_connection_fd(loop):
    async def main():
        server_side = loop.create_future()

        def factory():
            proto = Recorder(loop)
            server_side.set_result(proto)
            return proto

        server = await loop.create_server(factory, LOCALHOST, 0)
        addr = server.sockets[0].getsockname()
        ctr, cproto = await loop.create_connection(lambda: Recorder(loop), *addr)
        sproto = await server_side
        str_ = await sproto.made
        out = []
        for tr in (ctr, str_):
            tsock = tr.get_extra_info("socket")
            out.append(type(tsock).__name__)
            out.append(tsock.getsockname() == tr.get_extra_info("sockname"))
            out.append(tsock.getpeername() == tr.get_extra_info("peername"))
            out.append(tsock.gettimeout())
            tsock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            out.append(tsock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0)
            out.append(tsock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0)
            # The transport's own fd: no second one for Python's view of it.
            fds = [int(name) for name in os.listdir("/proc/self/fd")]
            same = [fd for fd in fds if _same_file(fd, tsock.fileno())]
            out.append(len(same))
        # The transport still works after all that.
        ctr.write(b"ping")
        await sproto.until(4)
        ctr.close()
        str_.close()
        await asyncio.gather(cproto.lost, sproto.lost)
        server.close()
        await server.wait_closed()
        return out

    expected = ["TransportSocket", True, True, 0.0, True, True, 1]
    assert loop.run_until_complete(main()) == expected * 2


def _same_file(fd: int, other: int) -> bool:
    try:
        a, b = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _reuse_check(sock: socket.socket, fd: int) -> bool:
    """After the transport closed ``sock`` (fd ``fd``): a file opened now gets
    that number back, and dropping the socket object must not close it."""
    files = []
    try:
        while not files or files[-1].fileno() < fd:
            files.append(open("/proc/self/status", "rb", buffering=0))
        if files[-1].fileno() != fd:
            return False
        sock.close()   # the transport closed it already: a no-op
        del sock
        gc.collect()
        return all(len(f.read(10)) == 10 for f in files)
    finally:
        for f in files:
            f.close()


def test_user_sockets_owned_and_closed_by_transports(loop):
    async def main():
        results = {}
        server_side = asyncio.Queue()

        def factory():
            proto = Recorder(loop)
            server_side.put_nowait(proto)
            return proto

        lsock = socket.create_server((LOCALHOST, 0))
        lsock.setblocking(False)
        lfd = lsock.fileno()
        server = await loop.create_server(factory, sock=lsock)
        addr = lsock.getsockname()

        # create_connection(sock=)
        csock = socket.socket()
        csock.setblocking(False)
        await loop.sock_connect(csock, addr)
        cfd = csock.fileno()
        tr, proto = await loop.create_connection(lambda: Recorder(loop), sock=csock)
        results["conn_same_fd"] = tr.get_extra_info("socket").fileno() == cfd
        peer = await server_side.get()
        await peer.made
        tr.close()
        await proto.lost
        results["conn_fileno"] = csock.fileno()
        peer.transport.close()
        await peer.lost
        results["conn_reuse"] = _reuse_check(csock, cfd)
        del csock

        # connect_accepted_socket(sock=)
        a, b = socket.socketpair()
        afd = a.fileno()
        tr, proto = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
        results["accepted_same_fd"] = tr.get_extra_info("socket").fileno() == afd
        b.sendall(b"hi")
        await proto.until(2)
        tr.close()
        await proto.lost
        b.close()
        results["accepted_fileno"] = a.fileno()
        results["accepted_reuse"] = _reuse_check(a, afd)
        del a

        # create_datagram_endpoint(sock=)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((LOCALHOST, 0))
        u.setblocking(False)
        ufd = u.fileno()
        dtr, dproto = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=u)
        results["udp_same_fd"] = dtr.get_extra_info("socket").fileno() == ufd
        dtr.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        results["udp_fileno"] = u.fileno()
        results["udp_reuse"] = _reuse_check(u, ufd)
        del u

        # connect_read_pipe() of a socket
        r, w = socket.socketpair()
        rfd = r.fileno()
        ptr, pproto = await loop.connect_read_pipe(lambda: Recorder(loop), r)
        w.sendall(b"xy")
        await pproto.until(2)
        w.close()
        await pproto.lost
        results["pipe_fileno"] = r.fileno()
        results["pipe_reuse"] = _reuse_check(r, rfd)
        del r

        # create_server(sock=): the server closes it
        server.close()
        await server.wait_closed()
        results["server_fileno"] = lsock.fileno()
        results["server_reuse"] = _reuse_check(lsock, lfd)
        return results

    results = loop.run_until_complete(main())
    assert results == {
        "conn_same_fd": True, "conn_fileno": -1, "conn_reuse": True,
        "accepted_same_fd": True, "accepted_fileno": -1, "accepted_reuse": True,
        "udp_same_fd": True, "udp_fileno": -1, "udp_reuse": True,
        "pipe_fileno": -1, "pipe_reuse": True,
        "server_fileno": -1, "server_reuse": True,
    }


def test_transport_replaces_a_reader_of_its_socket(loop):
    # With one fd, a transport and an add_reader() poll would watch the same fd
    # number: as asyncio's transport, it takes over the reader.
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        called = []
        loop.add_reader(a, called.append, "reader")
        tr, proto = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
        b.sendall(b"data")
        await proto.until(4)
        tr.close()
        await proto.lost
        b.close()
        return called, bytes(proto.data)

    assert loop.run_until_complete(main()) == ([], b"data")


def test_transport_left_open_at_loop_close_never_closes_a_reused_fd(uv_loop):
    # libuv closes the fd of a transport still open when the loop closes:
    # the transport's socket object must let go of that number.
    loop = uv_loop

    async def main():
        a, b = socket.socketpair()
        tr, proto = await loop.connect_accepted_socket(lambda: Recorder(loop), a)
        await proto.made
        return a, b, tr

    a, b, tr = loop.run_until_complete(main())
    fd = a.fileno()
    loop.set_exception_handler(lambda lp, ctx: None)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        loop.close()
    try:
        assert a.fileno() == -1
        assert _reuse_check(a, fd)
    finally:
        b.close()
        del tr


# -- accept errors at the fd limit -------------------------------------------------

# A child serving echo connections: the exception handler records each
# context and the run ends when ``expect`` clients were served.
EMFILE_CHILD = """
import asyncio, errno, os, sys, threading
import uvloop_lite
kind, mode, expect = sys.argv[1], sys.argv[2], int(sys.argv[3])
loop = asyncio.SelectorEventLoop() if kind == "asyncio" else uvloop_lite.new_event_loop()
contexts = []
served = 0
done = loop.create_future()
first_error = loop.create_future()

def handler(lp, ctx):
    contexts.append(ctx)
    if not first_error.done():
        first_error.set_result(None)
loop.set_exception_handler(handler)

class Echo(asyncio.Protocol):
    def connection_made(self, tr):
        self.tr = tr
    def data_received(self, data):
        global served
        self.tr.write(data)
        self.tr.close()
        served += 1
        if served == expect and not done.done():
            done.set_result(None)

async def main():
    server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=128)
    spare = []
    if mode == "rlimit":
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        try:
            while True:
                spare.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
    else:
        from faults import arm
        arm("accept|accept4:%s:*" % mode)
    print(server.sockets[0].getsockname()[1], flush=True)
    # The parent connects every client, then says go; the first error report
    # comes from the server trying to accept them.
    go = loop.create_future()
    threading.Thread(target=lambda: (sys.stdin.readline(),
                     loop.call_soon_threadsafe(go.set_result, None)), daemon=True).start()
    await asyncio.wait_for(first_error, 10)
    await asyncio.wait_for(go, 10)
    print("errors-seen", flush=True)
    if mode == "rlimit":
        for fd in spare:
            os.close(fd)
    else:
        arm("")
    await asyncio.wait_for(done, 20)
    server.close()
    await server.wait_closed()

loop.run_until_complete(main())
ctx = contexts[0]
exc = ctx.get("exception")
print("served", served)
print("message", ctx.get("message"))
print("errno", errno.errorcode.get(getattr(exc, "errno", None)))
print("socket", type(ctx.get("socket")).__name__)
print("kinds", sorted({c.get("message") for c in contexts}))
loop.close()
"""


@pytest.mark.parametrize("mode", ["rlimit", "EMFILE", "ENFILE"])
def test_clients_at_fd_limit_are_served_and_errors_logged(loop_kind, mode):
    """The issue's scenario: 60 clients connect while the server is out of
    fds (RLIMIT_NOFILE reached, or accept() failing as armed)."""
    n_clients = 60
    if mode != "rlimit":
        faults.library()
        env = dict(os.environ)
        env["LD_PRELOAD"] = f"{env.get('LD_PRELOAD', '')} {faults.library()}".strip()
    else:
        env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(faults.ROOT), str(faults.HERE)])
    proc = subprocess.Popen(
        [sys.executable, "-c", EMFILE_CHILD, loop_kind, mode, str(n_clients)],
        cwd=faults.ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    clients = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(n_clients):
            c = socket.create_connection((LOCALHOST, port), timeout=20)
            c.sendall(b"x")
            clients.append(c)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        echoed = 0
        for c in clients:
            try:
                if c.recv(1) == b"x":
                    echoed += 1
            except OSError:
                pass
        out, err = proc.communicate(timeout=30)
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines()[1:] if " " in line)
    assert echoed == n_clients
    assert lines["served"] == str(n_clients)
    assert lines["message"] == "socket.accept() out of system resource"
    assert lines["errno"] == ("EMFILE" if mode == "rlimit" else mode)
    assert lines["socket"] == "TransportSocket"
    assert lines["kinds"] == "['socket.accept() out of system resource']"


# -- a protocol factory raising KeyboardInterrupt / SystemExit ----------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_server_keeps_serving_after_factory_raises_base_exception(loop, exc_type):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    calls = {"n": 0}

    def factory():
        calls["n"] += 1
        if calls["n"] == 1:
            raise exc_type()
        return Echo()

    server = loop.run_until_complete(loop.create_server(factory, LOCALHOST, 0))
    addr = server.sockets[0].getsockname()

    async def client():
        reader, writer = await asyncio.open_connection(*addr)
        try:
            writer.write(b"ping")
            return await asyncio.wait_for(reader.read(4), 5)
        finally:
            writer.close()

    async def first():
        # The factory raises for this one.
        reader, writer = await asyncio.open_connection(*addr)
        try:
            await asyncio.sleep(10)   # interrupted by the factory's exception
        finally:
            writer.close()

    task = loop.create_task(first())
    with pytest.raises(exc_type):
        loop.run_until_complete(task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    # The program caught it and runs the loop again: the server still serves.
    assert loop.run_until_complete(client()) == b"ping"
    assert loop.run_until_complete(client()) == b"ping"
    server.close()
    loop.run_until_complete(server.wait_closed())
    # Only asyncio's note about the task that raised may have been logged.
    assert all("never retrieved" in c.get("message", "") for c in contexts), contexts


# -- a datagram that waits for writability ------------------------------------------

UDP_WAIT_CHILD = """
import asyncio, os, socket, sys
import uvloop_lite
from faults import arm, fired
kind = sys.argv[1]
loop = asyncio.SelectorEventLoop() if kind == "asyncio" else uvloop_lite.new_event_loop()

async def main():
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    r.setblocking(False)
    tr, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    before = len(os.listdir("/proc/self/fd"))
    # A host name goes through the Python socket's own sendto(); the kernel
    # pushes back once, so the datagram waits for writability.
    arm("sendto:EAGAIN:1")
    tr.sendto(b"hello", ("localhost", r.getsockname()[1]))
    data = await asyncio.wait_for(loop.sock_recv(r, 100), 5)
    pushed_back = fired("sendto")
    arm("")
    for _ in range(3):
        await asyncio.sleep(0)
    print(data.decode(), pushed_back, len(os.listdir("/proc/self/fd")) - before)
    tr.close()
    r.close()
    await asyncio.sleep(0)

loop.run_until_complete(main())
loop.close()
"""


def test_datagram_waiting_for_writability_is_sent(loop_kind):
    proc = faults.run(UDP_WAIT_CHILD, "", loop_kind)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["hello", "1", "0"]


def test_aborted_accept_is_skipped(loop_kind):
    proc = faults.run("""
import asyncio, sys
import uvloop_lite
from faults import arm, fired
kind = sys.argv[1]
loop = asyncio.SelectorEventLoop() if kind == "asyncio" else uvloop_lite.new_event_loop()
contexts = []
loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

class Echo(asyncio.Protocol):
    def connection_made(self, tr):
        self.tr = tr
    def data_received(self, data):
        self.tr.write(data)

async def main():
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    arm("accept|accept4:ECONNABORTED:1")
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    writer.write(b"ping")
    got = await asyncio.wait_for(reader.read(4), 5)
    print(got.decode(), fired("accept") + fired("accept4"), len(contexts))
    writer.close()
    server.close()
    await server.wait_closed()

loop.run_until_complete(main())
loop.close()
""", "", loop_kind)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ping", "1", "0"]
