"""Server benchmarks: asyncio's loop, uvloop (when it is importable) and
uvloop_lite serving the same workloads, side by side, in one run.

    python bench/run.py                  # every workload, about 4 minutes
    python bench/run.py --quick          # one shorter measurement per cell, about 100 s
    python bench/run.py --json           # machine-readable results on stdout
    python bench/run.py --modes proto,streams --sizes 1024 --loops asyncio,uvloop_lite

Workloads (bench/servers.py), each with 1 KiB, 10 KiB and 100 KiB messages
(for ``http``: response bodies):

``proto``    echo server on an ``asyncio.Protocol``
``streams``  echo server on ``asyncio.start_server`` (read / write / drain)
``sock``     echo server on ``sock_accept`` / ``sock_recv`` / ``sock_sendall``
``sock256k`` ``sock`` with ``sock_recv(conn, 262144)`` (not in the default set)
``http``     HTTP/1.1 keep-alive server (minimal parsing, fixed body)
``tls``      the ``proto`` echo server with ``ssl=`` (TLS 1.3); the client's
             loop links OpenSSL (bench/loadgen_tls.c), or is Python's ssl
             when that cannot be built (with a note: it caps the rate)

Every server runs in its own process pinned to one CPU; the load client
(bench/client.py: N keep-alive connections, one request in flight on each,
driven by an epoll loop in C, or in Python if the C one cannot be built)
runs in another process pinned to another CPU, only on 127.0.0.1.  For one
workload the servers of all loops are started together and measured in
turn, in a rotating order, so a drift of the machine hits them alike.

Measurements taken while the hypervisor gave more than ``--steal-limit`` of
the CPUs' time to other guests (/proc/stat's steal) are set aside when a cell
has others, and up to ``--extra`` rounds are added until every loop has one.

Two tables come out: requests per second (the best of ``--repeat``
measurements) with, for that measurement, how busy the server was (its CPU
time over the wall time); the round-trip times' median and 99th percentile
over all the measurements of the cell (p50, p99, in microseconds, as the
client saw them); and the
server's CPU time per request (user + system, from /proc), which other load
on the machine disturbs much less than the rate.
Ratios compare uvloop_lite with asyncio and with uvloop; above 1.00x means
uvloop_lite is faster (more requests per second, less CPU per request).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import client  # noqa: E402   (bench/client.py: histograms; also run as a script)
MODES = ("proto", "streams", "sock", "http", "tls", "sock256k")
DEFAULT_MODES = MODES[:5]   # sock256k on request (--modes sock256k)
SIZES = (1024, 10 * 1024, 100 * 1024)
ALL_LOOPS = ("asyncio", "uvloop", "uvloop_lite")


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    return env


def available_loops(wanted: List[str]) -> List[str]:
    loops = []
    for name in wanted:
        if name == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                continue
        loops.append(name)
    return loops


def cpus() -> List[Optional[int]]:
    """[server CPU, client CPU], or Nones if the process cannot pin."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import pinning   # os.sched_getaffinity, or libc's (PyPy 3.9 has no os.sched_*)
    try:
        allowed = pinning.allowed_cpus()
    except (OSError, AttributeError):   # pragma: no cover - not Linux
        return [None, None]
    if len(allowed) < 2:
        return [None, None]
    return [allowed[0], allowed[1]]


class Server:
    def __init__(self, loop: str, mode: str, cpu: Optional[int]) -> None:
        cmd = [sys.executable, os.path.join(HERE, "servers.py"), "--loop", loop, "--mode", mode]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        self.loop = loop
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=_env(), cwd=ROOT)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"{loop} {mode} server did not start (exit {self.proc.returncode})")
        self.port = int(line.split()[1])
        if cpu is not None:
            import pinning
            pinned = pinning.current_cpus(self.proc.pid)
            if pinned != [cpu]:
                self.stop()
                raise RuntimeError(f"{loop} {mode} server runs on CPUs {pinned}, not {cpu}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:   # pragma: no cover
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def measure(server: Server, mode: str, size: int, args: argparse.Namespace,
            cpu: Optional[int]) -> Dict[str, Any]:
    cmd = [sys.executable, os.path.join(HERE, "client.py"), "--port", str(server.port),
           "--mode", mode, "--size", str(size), "--conns", str(args.conns),
           "--duration", str(args.duration), "--warmup", str(args.warmup),
           "--server-pid", str(server.proc.pid),
           "--engine", args.tls_client if mode == "tls" else args.client]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    st0 = steal_ticks()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, env=_env(), cwd=ROOT, check=True,
                         timeout=args.warmup + args.duration + 60).stdout
    res = json.loads(out)
    res["steal"] = steal_fraction(st0, steal_ticks())
    return res


def steal_ticks() -> Optional[List[int]]:
    """/proc/stat's all-CPU line: [steal, total] clock ticks (None: no such file)."""
    try:
        with open("/proc/stat") as fp:
            fields = [int(v) for v in fp.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return [fields[7] if len(fields) > 7 else 0, sum(fields[:8])]


def steal_fraction(before: Optional[List[int]], after: Optional[List[int]]) -> Optional[float]:
    """The share of the CPUs' time the hypervisor gave to others between two
    steal_ticks(): a measurement taken while it is high is the host's, not the loop's."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fp:
            for line in fp:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(loops: List[str]) -> Dict[str, str]:
    v = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    if "uvloop" in loops:
        import uvloop
        v["uvloop"] = uvloop.__version__
    if "uvloop_lite" in loops:
        if ROOT not in sys.path:
            sys.path.insert(0, ROOT)
        import uvloop_lite
        v["uvloop_lite"] = f"{uvloop_lite.__version__} (libuv {uvloop_lite.libuv_version()})"
    return v


def _result(res: Dict[str, Any]) -> Dict[str, Any]:
    cpu = res["server_cpu"]
    slices = sorted(res["slice_rps"]) or [res["rps"]]
    return {
        "rps": round(res["rps"], 1),
        "requests": res["requests"],
        "seconds": round(res["seconds"], 3),
        "rps_median_slice": round(slices[len(slices) // 2], 1),
        "rps_best_slice": round(slices[-1], 1),
        "server_cpu": None if cpu is None else round(cpu, 3),
        "server_sys": None if res["server_sys"] is None else round(res["server_sys"], 3),
        "client_cpu": round(res["client_cpu"], 3),
        "cpu_us_per_req": None if not cpu else round(cpu * 1e6 / res["rps"], 2),
        "latency_us": res.get("latency_us"),
        "steal": res.get("steal"),
        "client": res["engine"],
        **({"tls": res["tls"]} if "tls" in res else {}),
    }


def _quiet(res: Dict[str, Any], limit: float) -> bool:
    return res.get("steal") is None or res["steal"] <= limit


def quiet_rounds(rounds: List[Dict[str, Any]], limit: float) -> List[Dict[str, Any]]:
    """The measurements taken while the hypervisor's steal was at most limit."""
    return [res for res in rounds if _quiet(res, limit)]


def all_quiet(runs: Dict[str, List[Dict[str, Any]]], limit: float) -> bool:
    """Whether every loop has at least one quiet measurement."""
    return all(quiet_rounds(rounds, limit) for rounds in runs.values())


def merge_hists(hists: Iterable[Optional[List[List[int]]]]) -> Optional[List[int]]:
    """Add up client.py's sparse histograms ([bucket, count] pairs); None if
    any is missing."""
    total = [0] * client.HIST_BUCKETS
    seen = False
    for sparse in hists:
        if sparse is None:
            return None
        seen = True
        for idx, n in sparse:
            total[idx] += n
    return total if seen else None


def run(args: argparse.Namespace, loops: List[str], log: Callable[[str], None]
        ) -> List[Dict[str, Any]]:
    srv_cpu, cli_cpu = cpus()
    rows = []
    for mode in args.modes:
        servers = {loop: Server(loop, mode, srv_cpu) for loop in loops}
        try:
            for size in args.sizes:
                runs: Dict[str, List[Dict[str, Any]]] = {loop: [] for loop in loops}
                r = 0
                while r < args.repeat or (r < args.repeat + args.extra
                                          and not all_quiet(runs, args.steal_limit)):
                    # Rotate the order between rounds: nobody always goes first.
                    # Past --repeat, rounds are added (up to --extra) until every
                    # loop has one with the hypervisor's steal under the limit.
                    order = loops[r % len(loops):] + loops[:r % len(loops)]
                    for loop in order:
                        runs[loop].append(measure(servers[loop], mode, size, args, cli_cpu))
                    r += 1
                row: Dict[str, Any] = {"mode": mode, "size": size, "results": {}}
                for loop in loops:
                    # The rounds the host left alone, if there are any.
                    quiet = quiet_rounds(runs[loop], args.steal_limit)
                    kept = quiet or runs[loop]
                    best = _result(max(kept, key=lambda res: res["rps"]))
                    best["quiet"] = bool(quiet)
                    # CPU per request: the least over the rounds (the one least
                    # disturbed by other processes' cache and interrupt load).
                    cpus_per_req = [_result(res)["cpu_us_per_req"] for res in kept]
                    if None not in cpus_per_req:
                        best["cpu_us_per_req"] = min(cpus_per_req)
                    best["rounds"] = [_result(res) for res in runs[loop]]
                    # Round trips: all rounds' histograms added up. One round's
                    # p99 is mostly which second of the machine's noise it
                    # met; every loop meets the same seconds over the rounds.
                    merged = merge_hists(res.get("latency_hist") for res in runs[loop])
                    if merged is not None:
                        best["latency_us"] = client.latency_summary(merged)
                    row["results"][loop] = best
                rows.append(row)
                log(format_row(row, loops, "rps"))
        finally:
            for server in servers.values():
                server.stop()
    return rows


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


def _ratio_names(loops: List[str]) -> List[str]:
    if "uvloop_lite" not in loops:
        return []
    return [other for other in ("asyncio", "uvloop") if other in loops]


# The requests/s table: per loop, the rate, how busy the server was, and the
# round trips' p50 and p99 (us), under the loop's name.
_RPS_COLS = (("req/s", 9), ("busy", 6), ("p50", 8), ("p99", 9))
_RPS_WIDTH = sum(w for _, w in _RPS_COLS) + 2


def format_header(loops: List[str], what: str) -> str:
    unit = "requests/s" if what == "rps" else "server CPU us/request"
    ratios = "".join(f"{'lite/' + other:>14}" for other in _ratio_names(loops))
    if what == "rps":
        names = "".join(f"  {' ' + name + ' ':-^{_RPS_WIDTH - 2}}" for name in loops)
        cols = "".join("  " + "".join(f"{c:>{w}}" for c, w in _RPS_COLS) for _ in loops)
        return (f"{'':<18}{names}\n{'workload':<18}{cols}{ratios}   "
                f"({unit}, server busy, round trip p50/p99 in us)")
    cols = "".join(f"{name:>13}" for name in loops)
    return f"{'workload':<18}{cols}{ratios}   ({unit})"


def _us(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def _rps_cell(res: Dict[str, Any]) -> str:
    lat = res.get("latency_us") or {}
    busy = res["server_cpu"]
    vals = (f"{res['rps']:,.0f}", "-" if busy is None else f"{busy:.0%}",
            _us(lat.get("p50")), _us(lat.get("p99")))
    return "  " + "".join(f"{v:>{w}}" for v, (_, w) in zip(vals, _RPS_COLS))


def format_row(row: Dict[str, Any], loops: List[str], what: str) -> str:
    res = row["results"]
    text = f"{row['mode'] + ' ' + _size(row['size']):<18}"
    if what == "rps":
        text += "".join(_rps_cell(res[name]) for name in loops)
    else:
        text += "".join(f"{res[name]['cpu_us_per_req'] or 0:>13.2f}" for name in loops)
    lite = res.get("uvloop_lite")
    for other in _ratio_names(loops):
        if what == "rps":
            ratio = lite["rps"] / res[other]["rps"]
        elif lite["cpu_us_per_req"] and res[other]["cpu_us_per_req"]:
            ratio = res[other]["cpu_us_per_req"] / lite["cpu_us_per_req"]
        else:
            ratio = float("nan")
        text += f"{ratio:>13.2f}x"
    if what == "rps":
        # A rate is only the server's if the server was (nearly) saturated.
        flags = [name for name in loops if (res[name]["server_cpu"] or 1) < 0.9]
        if flags:
            text += "   *" + ",".join(flags)
    noisy = [name for name in loops if not res[name].get("quiet", True)]
    if noisy:
        text += "   ~" + ",".join(noisy)
    return text


def cpu_pressure() -> Optional[float]:
    """/proc/pressure/cpu 'some avg60': % of time runnable tasks waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as fp:
            for line in fp:
                if line.startswith("some"):
                    return float(line.split()[2].split("=")[1])
    except (OSError, IndexError, ValueError):
        pass
    return None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--quick", action="store_true",
                    help="one 1.5 s measurement per cell after 0.5 s of warm-up")
    ap.add_argument("--json", action="store_true", help="print JSON results instead of tables")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per measurement (2; --quick: 1.5)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="warm-up seconds before each measurement (0.5)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="measurements per cell, the best kept (2; --quick: 1)")
    ap.add_argument("--steal-limit", type=float, default=0.03, metavar="F",
                    help="a measurement counts only if the hypervisor's steal during it "
                         "was at most F of the CPUs' time (0.03), if any was")
    ap.add_argument("--extra", type=int, default=None, metavar="N",
                    help="rounds added to a cell (N at most; --repeat's value) while a "
                         "loop has no measurement under --steal-limit")
    ap.add_argument("--conns", type=int, default=8, help="client connections (8)")
    ap.add_argument("--client", choices=("auto", "c", "python"), default="auto",
                    help="load client's request loop: C (built with cffi on first "
                         "use) or Python; auto: C if it builds")
    # Lists: comma- or space-separated (--modes proto,tls or --modes proto tls).
    ap.add_argument("--modes", nargs="+", default=[",".join(DEFAULT_MODES)],
                    help=f"workloads, comma- or space-separated ({','.join(MODES)})")
    ap.add_argument("--sizes", nargs="+", default=[",".join(str(s) for s in SIZES)],
                    help=f"message sizes in bytes ({','.join(str(s) for s in SIZES)})")
    ap.add_argument("--loops", nargs="+", default=[",".join(ALL_LOOPS)],
                    help=f"loops ({','.join(ALL_LOOPS)}; uvloop if it imports)")
    ap.add_argument("--idle", type=int, nargs="?", const=10000, default=None, metavar="N",
                    help="instead of the workloads: memory per connection and time to "
                         "accept N (10000) idle connections (bench/idle.py)")
    args = ap.parse_args(argv)
    if args.idle is not None:
        if HERE not in sys.path:
            sys.path.insert(0, HERE)
        import idle
        return idle.main(["--conns", str(args.idle), "--loops", ",".join(args.loops)]
                         + (["--json"] if args.json else []))
    if args.duration is None:
        args.duration = 1.5 if args.quick else 2.0
    if args.warmup is None:
        args.warmup = 0.5
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2
    if args.extra is None:
        args.extra = 0 if args.quick else args.repeat
    args.modes = [m for m in ",".join(args.modes).split(",") if m]
    args.sizes = [int(s) for s in ",".join(args.sizes).split(",") if s]
    for m in args.modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    loops = available_loops([name for name in ",".join(args.loops).split(",") if name])
    if not loops:
        ap.error("no loop to run")
    if args.client != "python":
        if client.c_engine_available():
            args.client = "c"
        elif args.client == "c":
            ap.error("the C load client could not be built (cffi and a C compiler needed)")
        else:
            args.client = "python"
    # tls: C with OpenSSL if that builds (libssl's headers: libssl-dev),
    # else Python's ssl, which is slower than the servers (a note says so).
    args.tls_client, tls_note = args.client, None
    if "tls" in args.modes and args.client == "c":
        why = client.c_tls_unavailable()
        if why:
            args.tls_client = "python"
            tls_note = (f"the C TLS client could not be built ({why}; OpenSSL's headers are "
                        f"in libssl-dev): tls uses the Python one, which is slower than the "
                        f"servers: where a server is below 90% busy (*), the client set the rate")

    def log(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    info: Dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "pinning": dict(zip(("server", "client"), cpus())),
        "platform": platform.platform(),
        "versions": versions(loops),
        "client": args.client,
        "tls_client": args.tls_client if "tls" in args.modes else None,
        "duration": args.duration, "warmup": args.warmup, "repeat": args.repeat,
        "steal_limit": args.steal_limit, "extra": args.extra,
        "conns": args.conns,
        "loadavg_before": os.getloadavg()[0],
        "cpu_pressure_before": cpu_pressure(),
    }
    steal0 = steal_ticks()
    pin_how = ("os.sched_setaffinity" if hasattr(os, "sched_setaffinity")
               else "libc's sched_setaffinity through ctypes")
    info["pinning"]["how"] = pin_how if info["pinning"]["server"] is not None else None
    if "uvloop" in ",".join(args.loops).split(",") and "uvloop" not in loops:
        log(f"uvloop is not importable here ({platform.python_implementation()}): "
            f"no uvloop columns")
    log(f"{info['versions']['python']} on {info['cpu']} ({info['cpus']} CPUs), "
        f"{info['platform']}, {info['date']}")
    log(", ".join(f"{k} {v}" for k, v in info["versions"].items() if k != "python"))
    log(f"client: {args.conns} connections, request loop in {args.client}; "
        f"{args.duration:g} s per measurement after {args.warmup:g} s warm-up, best of "
        f"{args.repeat} (up to {args.repeat + args.extra} while the hypervisor's steal "
        f"is over {args.steal_limit:.0%}); server on CPU {info['pinning']['server']}, client on CPU "
        f"{info['pinning']['client']} ({pin_how}); load average {info['loadavg_before']:.2f}")
    if "tls" in args.modes:
        import ssl
        log(f"tls: servers on Python's ssl ({ssl.OPENSSL_VERSION}), client's loop in "
            f"{'C on OpenSSL' if args.tls_client == 'c' else 'Python (ssl)'}")
        if tls_note:
            log(f"NOTE: {tls_note}")
    log("")
    log(format_header(loops, "rps"))
    t0 = time.monotonic()
    rows = run(args, loops, log)
    info["elapsed"] = round(time.monotonic() - t0, 1)
    info["loadavg_after"] = os.getloadavg()[0]
    info["cpu_pressure_after"] = cpu_pressure()
    info["steal"] = steal_fraction(steal0, steal_ticks())
    steals = [r.get("steal") for row in rows for res in row["results"].values()
              for r in res["rounds"]]
    info["steal_max"] = max((v for v in steals if v is not None), default=None)
    log("")
    log(format_header(loops, "cpu"))
    for row in rows:
        log(format_row(row, loops, "cpu"))
    log("")
    log(f"{info['elapsed']:.0f} s; load average {info['loadavg_after']:.2f} at the end.")
    if info["steal"] is not None:
        log(f"steal (CPU time the hypervisor gave to other guests): {info['steal']:.1%} over "
            f"the run, up to {info['steal_max'] or 0:.1%} in one measurement. Above a few %, "
            f"the cells move with the host, not with the loop.")
    if any("*" in format_row(row, loops, "rps") for row in rows):
        log("*: that server was below 90% CPU during its best measurement: the client or "
            "other load on the machine, not the server, set that rate.")
    if any(not res.get("quiet", True) for row in rows for res in row["results"].values()):
        log(f"~: no measurement of that loop's cell had the hypervisor's steal under "
            f"{args.steal_limit:.0%}, even with {args.extra} more rounds: it is the host's.")
    if args.json:
        json.dump({"info": info, "loops": loops, "rows": rows}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
