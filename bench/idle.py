"""Scale benchmark: many idle connections to one server, on each loop.

    python bench/idle.py                    # 10,000 connections, every loop
    python bench/idle.py --conns 20000 --loops asyncio,uvloop_lite --json
    python bench/run.py --idle [N]          # the same, from run.py

The server (``serve``, in its own process pinned to one CPU) is
``create_server()`` with a Protocol that does nothing; the client (``connect``,
another process pinned to another CPU) opens the connections one after the
other and keeps them open.  Reported for each loop:

* bytes per connection: the server's resident memory (VmRSS from
  /proc/self/status, after ``gc.collect()``) once all are accepted, less the
  same before the first, divided by their number.  Socket buffers are the
  kernel's and not in it;
* the time to accept them all: from the client's first ``connect()`` to the
  server's last ``connection_made()``.

Before the baseline the server accepts and loses a few hundred connections,
so that first-use allocations (free lists, code paths, PyPy's JIT) are not
counted.  The client never gets more than ``--window`` connections ahead of
the server's accepts (it reads the server's count from a shared page):
the listen backlog never overflows, so no SYN waits out the kernel's 1 s
retransmission timer and the time is the server's.  Both processes raise
their RLIMIT_NOFILE to fit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import mmap
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ALL_LOOPS = ("asyncio", "uvloop", "uvloop_lite")
WARMUP_CONNS = 300


def raise_nofile(n: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to at least n (and the
    hard one if it is lower and we may); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return soft
    if hard != resource.RLIM_INFINITY and hard < n:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            return n
        except (ValueError, OSError) as exc:
            raise OSError(f"RLIMIT_NOFILE hard limit {hard} < {n} and cannot be raised "
                          f"({exc}): try `ulimit -n {n}` as root") from exc
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    return n


def vm_rss() -> int:
    """This process's resident set size in bytes (VmRSS)."""
    with open("/proc/self/status") as fp:
        for line in fp:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS in /proc/self/status")


def _counter(path: str) -> Any:
    """The shared page's first 8 bytes as a one-element array of uint64."""
    with open(path, "r+b") as fp:
        mm = mmap.mmap(fp.fileno(), 8)
    return memoryview(mm).cast("Q")


# -- server ------------------------------------------------------------------------

class IdleProtocol(asyncio.Protocol):
    """Does nothing but count."""

    def connection_made(self, transport: Any) -> None:
        _STATE.made()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        _STATE.lost()


class _ServerState:
    def __init__(self, counter: Any, conns: int, warmup: int) -> None:
        self.counter = counter   # accepted so far, for the client's window
        self.accepted = 0
        self.open = 0
        self.conns = conns
        self.warmup = warmup
        self.phase = "warmup"

    def _report(self, what: str) -> None:
        t = time.monotonic()
        gc.collect()
        print(f"{what} {t!r} {vm_rss()}", flush=True)

    def made(self) -> None:
        self.accepted += 1
        self.open += 1
        self.counter[0] = self.accepted
        if self.phase == "warmup" and self.open == self.warmup:
            self.phase = "warmup-close"
        elif self.phase == "measure" and self.open == self.conns:
            self.phase = "done"
            self._report("ALL")

    def lost(self) -> None:
        self.open -= 1
        if self.phase == "warmup-close" and self.open == 0:
            self.phase = "measure"
            self._report("BASE")


_STATE: _ServerState


def serve(args: argparse.Namespace) -> int:
    global _STATE
    raise_nofile(args.conns + args.warmup_conns + 100)
    if args.cpu is not None:
        import pinning
        pinning.pin(args.cpu)
    sys.path.insert(0, HERE)
    from servers import loop_factory
    _STATE = _ServerState(_counter(args.counter), args.conns, args.warmup_conns)
    loop = loop_factory(args.loop)()
    asyncio.set_event_loop(loop)

    async def main() -> None:
        server = await loop.create_server(IdleProtocol, "127.0.0.1", 0, backlog=args.backlog)
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        loop.run_until_complete(main())
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


# -- client ------------------------------------------------------------------------

def connect(args: argparse.Namespace) -> int:
    raise_nofile(args.conns + args.warmup_conns + 100)
    if args.cpu is not None:
        import pinning
        pinning.pin(args.cpu)
    accepted = _counter(args.counter)
    addr = ("127.0.0.1", args.port)
    # Warm-up: connections the server accepts and loses before its baseline.
    socks = [socket.create_connection(addr) for _ in range(args.warmup_conns)]
    while accepted[0] < args.warmup_conns:
        os.sched_yield()
    for s in socks:
        s.close()
    if sys.stdin.readline().strip() != "GO":   # the server has its baseline
        return 1
    base = args.warmup_conns
    socks = []
    t0 = time.monotonic()
    for i in range(args.conns):
        while i - (accepted[0] - base) >= args.window:
            os.sched_yield()
        socks.append(socket.create_connection(addr))
    t1 = time.monotonic()
    print(f"OPEN {t0!r} {t1!r}", flush=True)
    sys.stdin.readline()   # until the driver is done with the server
    for s in socks:
        s.close()
    return 0


# -- driver ------------------------------------------------------------------------

def _env() -> Dict[str, str]:
    """The servers' and clients' environment: run.py's (beside this script,
    so importable as it is)."""
    from run import _env as run_env
    return run_env()


def _expect(proc: "subprocess.Popen[bytes]", word: str, who: str) -> List[str]:
    line = proc.stdout.readline().decode()
    if not line.startswith(word + " "):
        proc.kill()
        raise RuntimeError(f"{who}: expected {word!r}, got {line!r} (exit {proc.wait()})")
    return line.split()[1:]


def measure(loop: str, args: argparse.Namespace, cpus: List[Optional[int]]) -> Dict[str, Any]:
    fd, counter = tempfile.mkstemp(prefix="uvloop_lite_idle_")
    os.write(fd, bytes(8))
    os.close(fd)
    pin = [[] if c is None else ["--cpu", str(c)] for c in cpus]
    me = [sys.executable, os.path.abspath(__file__)]
    server = subprocess.Popen(
        me + ["--warmup-conns", str(args.warmup_conns), "serve", "--loop", loop,
              "--conns", str(args.conns), "--counter", counter,
              "--backlog", str(args.backlog)] + pin[0],
        stdout=subprocess.PIPE, env=_env(), cwd=ROOT)
    client = None
    try:
        port = _expect(server, "READY", f"{loop} server")[0]
        client = subprocess.Popen(
            me + ["--warmup-conns", str(args.warmup_conns), "connect", "--port", port, "--conns", str(args.conns), "--counter",
                  counter, "--window", str(args.window)] + pin[1],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_env(), cwd=ROOT)
        _, rss0 = _expect(server, "BASE", f"{loop} server")
        client.stdin.write(b"GO\n")
        client.stdin.flush()
        t_all, rss1 = _expect(server, "ALL", f"{loop} server")
        t0, t1 = _expect(client, "OPEN", "client")
        client.stdin.write(b"done\n")
        client.stdin.flush()
        if client.wait(60) != 0:
            raise RuntimeError(f"client exited with {client.returncode}")
    finally:
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        os.unlink(counter)
    rss0_, rss1_ = int(rss0), int(rss1)
    return {
        "loop": loop, "conns": args.conns,
        "bytes_per_conn": round((rss1_ - rss0_) / args.conns),
        "accept_s": round(float(t_all) - float(t0), 3),
        "connect_s": round(float(t1) - float(t0), 3),
        "rss_before": rss0_, "rss_after": rss1_,
    }


def run(args: argparse.Namespace, loops: List[str], log: Any) -> List[Dict[str, Any]]:
    sys.path.insert(0, HERE)
    from run import cpus
    where = cpus()
    rows = []
    log(f"{args.conns:,} idle connections to one server (create_server, a Protocol that does "
        f"nothing); client: Python, at most {args.window} connections ahead of the accepts; "
        f"server on CPU {where[0]}, client on CPU {where[1]}; best of {args.repeat}")
    log("")
    log(f"{'loop':<14}{'bytes/conn':>12}{'accept all':>12}{'RSS before':>12}"
        f"{'RSS after':>12}")
    for loop in loops:
        runs = [measure(loop, args, where) for _ in range(args.repeat)]
        best = dict(min(runs, key=lambda r: (r["bytes_per_conn"], r["accept_s"])))
        best["accept_s"] = min(r["accept_s"] for r in runs)
        best["rounds"] = runs
        rows.append(best)
        log(f"{loop:<14}{best['bytes_per_conn']:>12,}{best['accept_s']:>10.2f} s"
            f"{best['rss_before'] / 2**20:>8.1f} MiB{best['rss_after'] / 2**20:>8.1f} MiB")
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="role")
    ap.add_argument("--conns", type=int, default=10000, help="connections (10000)")
    ap.add_argument("--loops", default=",".join(ALL_LOOPS),
                    help=f"loops ({','.join(ALL_LOOPS)}; uvloop if it imports)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per loop; the least memory and the least time kept (1)")
    ap.add_argument("--window", type=int, default=512,
                    help="most connections the client opens ahead of the accepts (512)")
    ap.add_argument("--backlog", type=int, default=1024, help="listen backlog (1024)")
    ap.add_argument("--warmup-conns", type=int, default=WARMUP_CONNS,
                    help=f"connections opened and closed before the baseline ({WARMUP_CONNS})")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s = sub.add_parser("serve", help="(internal) the server")
    s.add_argument("--loop", choices=ALL_LOOPS, required=True)
    s.add_argument("--counter", required=True)
    s.add_argument("--cpu", type=int)
    s.add_argument("--conns", type=int, default=10000)
    s.add_argument("--backlog", type=int, default=1024)
    c = sub.add_parser("connect", help="(internal) the client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--counter", required=True)
    c.add_argument("--cpu", type=int)
    c.add_argument("--conns", type=int, default=10000)
    c.add_argument("--window", type=int, default=512)
    args = ap.parse_args(argv)
    if args.role == "serve":
        return serve(args)
    if args.role == "connect":
        return connect(args)
    if args.window >= args.backlog:
        ap.error("--window must be below --backlog")
    sys.path.insert(0, HERE)
    from run import available_loops
    loops = available_loops([n for n in args.loops.split(",") if n])

    def log(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    log(f"{platform.python_implementation()} {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.2f}")
    if "uvloop" in args.loops.split(",") and "uvloop" not in loops:
        log("uvloop is not importable here: no uvloop row")
    rows = run(args, loops, log)
    if args.json:
        json.dump({"python": platform.python_implementation() + " " +
                   platform.python_version(), "rows": rows}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
