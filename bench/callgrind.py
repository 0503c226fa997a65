"""Instructions per request of a bench server, counted by valgrind's callgrind:
deterministic, unlike CPU time, which other load on the machine disturbs.

    python bench/callgrind.py --loops asyncio,uvloop_lite --modes proto,http \\
        [--size 1024] [--requests 2000] [--conns 1]

Each server (bench/servers.py) runs under ``valgrind --tool=callgrind
--instr-atstart=no``; a blocking Python client (this process, not
counted) makes ``--conns`` connections and does some warm-up exchanges,
then instrumentation is switched on (``callgrind_control -i on``), more
warm-up, the counters zeroed, ``--requests`` request/response exchanges
run (in rounds: a request sent on every connection, then every response
read whole) and the counts dumped.  Prints instructions (Ir) per request
per server, with the ratio asyncio / each loop.  With one connection every
request is one read and one loop iteration on the server; with more, the
server (slowed down by valgrind) mostly finds a whole round ready in one
iteration, as a busy server under bench/run.py's load does (the batching
depends on timing, so those counts are less exact).  Counts leave out the
kernel, which on loopback is most of a request's CPU time (the loops make
the same system calls per request: see bench/README.md).
"""

from __future__ import annotations

import argparse
import glob
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _request(mode: str, size: int) -> bytes:
    if mode == "http":
        return b"GET /%d HTTP/1.1\r\nHost: bench\r\nUser-Agent: callgrind\r\n\r\n" % size
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def _response_len(mode: str, size: int) -> int:
    if mode == "http":
        sys.path.insert(0, HERE)
        import servers
        return len(servers.http_response(b"/%d" % size))
    return size


def _exchange(socks: List[socket.socket], req: bytes, resp_len: int, n: int) -> None:
    """``n`` request/response exchanges, in rounds: a request sent on every
    connection, then every response read whole (the last round may be
    shorter)."""
    for first in range(0, n, len(socks)):
        batch = socks[:n - first]
        for s in batch:
            s.sendall(req)
        for s in batch:
            got = 0
            while got < resp_len:
                chunk = s.recv(resp_len - got)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                got += len(chunk)


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL)


def measure(loop: str, mode: str, size: int, requests: int, conns: int, warmup: int,
            outdir: str) -> float:
    out = os.path.join(outdir, f"cg.{loop}.{mode}.{size}.%p")
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
           f"--callgrind-out-file={out}", sys.executable, os.path.join(HERE, "servers.py"),
           "--loop", loop, "--mode", mode]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"{loop} {mode} server did not start")
        port = int(line.split()[1])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
        for s in socks:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req, resp_len = _request(mode, size), _response_len(mode, size)
        _exchange(socks, req, resp_len, warmup)
        time.sleep(0.5)   # let the server go back to waiting
        _control(proc.pid, "-i", "on")
        _exchange(socks, req, resp_len, warmup)   # again, instrumented
        time.sleep(0.5)
        _control(proc.pid, "-z")
        _exchange(socks, req, resp_len, requests)
        _control(proc.pid, "-d")
        for s in socks:
            s.close()
    finally:
        proc.terminate()
        proc.wait(60)
    total = 0
    for path in glob.glob(out.replace("%p", str(proc.pid)) + "*"):
        with open(path) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = max(total, int(line.split()[1]))
                    break
    return total / requests


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loops", default="asyncio,uvloop_lite")
    ap.add_argument("--modes", default="proto,http")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--keep", metavar="DIR", help="keep the callgrind files in DIR")
    args = ap.parse_args(argv)
    loops = args.loops.replace(",", " ").split()
    outdir = args.keep or tempfile.mkdtemp(prefix="uvl-callgrind-")
    os.makedirs(outdir, exist_ok=True)
    print(f"{sys.implementation.name} {sys.version.split()[0]}, {args.size} B, "
          f"{args.requests} requests on {args.conns} connection(s)")
    for mode in args.modes.replace(",", " ").split():
        ir: Dict[str, float] = {}
        for loop in loops:
            ir[loop] = measure(loop, mode, args.size, args.requests, args.conns,
                               args.warmup, outdir)
        cells = "  ".join(f"{loop} {ir[loop]:9.0f}" for loop in loops)
        ratios = "  ".join(f"{ir['asyncio'] / ir[loop]:.2f}x" for loop in loops
                           if loop != "asyncio" and "asyncio" in ir)
        print(f"{mode:8} Ir/request: {cells}   asyncio/ours {ratios}", flush=True)
    if not args.keep:
        for path in glob.glob(os.path.join(outdir, "*")):
            os.unlink(path)
        os.rmdir(outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
