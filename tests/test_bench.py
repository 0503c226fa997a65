"""The benchmark's helpers (bench/): the round-trip histogram, CPU pinning, and
tiny end-to-end runs of the load client and of the idle-connections mode."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
if not os.path.isdir(BENCH):   # an unpacked sdist: bench/ is the checkout's only
    pytest.skip("no bench/ directory", allow_module_level=True)
sys.path.insert(0, BENCH)

import client  # noqa: E402
import pinning  # noqa: E402

# Across the bucket groups: exact small values, powers of two and their
# neighbours, and values of every size up to days.
SAMPLES = sorted({*range(0, 200), *(2 ** e + d for e in range(5, 50) for d in (-1, 0, 1)),
                  *(int(1.37 ** k) for k in range(1, 110))})


def test_hist_bucket_bounds_its_value() -> None:
    for ns in SAMPLES:
        idx = client.hist_bucket(ns)
        lo, hi = client.hist_lower(idx), client.hist_lower(idx + 1)
        if idx < client.HIST_BUCKETS - 1:
            assert lo <= ns < hi, (ns, idx, lo, hi)
            assert hi - lo <= max(1, lo / 32), (ns, lo, hi)   # 3% wide at most
    assert [client.hist_lower(client.hist_bucket(v)) for v in range(64)] == list(range(64))
    # monotonic
    idxs = [client.hist_bucket(v) for v in SAMPLES]
    assert idxs == sorted(idxs)


def test_hist_bucket_agrees_with_c() -> None:
    if not client.c_engine_available():
        pytest.skip("the C load client does not build here")
    _ffi, lib = client._load_c()
    assert lib.LG_HIST_BUCKETS == client.HIST_BUCKETS
    for ns in SAMPLES + [-5, 2 ** 60]:
        assert lib.lg_hist_bucket_of(ns) == client.hist_bucket(ns), ns


def test_hist_percentiles() -> None:
    hist = [0] * client.HIST_BUCKETS
    assert client.hist_percentiles(hist, [0.5]) == [None]
    assert client.latency_summary(hist) is None
    assert client.latency_summary(None) is None
    # 98 round trips of 10 us, 2 of 1 ms
    hist[client.hist_bucket(10_000)] += 98
    hist[client.hist_bucket(1_000_000)] += 2
    p50, p99, top = client.hist_percentiles(hist, [0.5, 0.99, 1.0])
    assert abs(p50 - 10_000) / 10_000 < 0.02
    assert abs(p99 - 1_000_000) / 1_000_000 < 0.02
    assert top == p99
    assert client.latency_summary(hist) == {"p50": round(p50 / 1e3, 1),
                                            "p99": round(p99 / 1e3, 1),
                                            "max": round(top / 1e3, 1), "count": 100}
    # the 98th of 100 is still 10 us: the 99th is the first at 1 ms
    assert client.hist_percentiles(hist, [0.98]) == [p50]


def _allowed_from_proc() -> list:
    return pinning.current_cpus()


def test_rounds_histograms_add_up() -> None:
    import run
    a = [0] * client.HIST_BUCKETS
    b = [0] * client.HIST_BUCKETS
    for us in (100, 100, 120):
        a[client.hist_bucket(us * 1000)] += 1
    for us in (100, 900):
        b[client.hist_bucket(us * 1000)] += 1
    sparse = [[[i, n] for i, n in enumerate(h) if n] for h in (a, b)]
    merged = run.merge_hists(sparse)
    assert merged == [x + y for x, y in zip(a, b)]
    assert client.latency_summary(merged)["count"] == 5
    # the slow round trip of the second round is the top of the merged one
    assert client.latency_summary(merged)["max"] > 800
    assert run.merge_hists([sparse[0], None]) is None
    assert run.merge_hists([]) is None


def test_steal_fraction() -> None:
    import run
    now = run.steal_ticks()
    assert now is None or 0 <= now[0] <= now[1]
    assert run.steal_fraction([10, 1000], [60, 2000]) == 0.05
    assert run.steal_fraction(None, [60, 2000]) is None
    assert run.steal_fraction([10, 1000], [10, 1000]) is None


def test_quiet_rounds() -> None:
    import run
    rounds = [{"steal": 0.2}, {"steal": 0.01}, {"steal": None}]
    assert run.quiet_rounds(rounds, 0.03) == rounds[1:]
    assert not run.all_quiet({"a": rounds[:1], "b": rounds[1:]}, 0.03)
    assert run.all_quiet({"a": rounds, "b": rounds[1:]}, 0.03)


def test_micro_rows_flag_steal() -> None:
    import micro
    best = {"asyncio": 100.0, "uvloop_lite": 150.0}
    kinds = ["asyncio", "uvloop_lite"]
    assert "(1.50x)" in micro._row("timers", best, kinds, 0.05)
    assert micro._row("timers", best, kinds, 0.05).endswith("~ steal 5%")
    assert "~" not in micro._row("timers", best, kinds, 0.01)
    assert "~" not in micro._row("timers", best, kinds, None)


def test_allowed_cpus_matches_proc() -> None:
    assert pinning.allowed_cpus() == _allowed_from_proc()


@pytest.mark.parametrize("how", ["os", "libc"])
def test_pin_in_a_child(how: str) -> None:
    """pin() in a child process, through os.sched_setaffinity or (as on PyPy
    3.9, which has none) libc's sched_setaffinity through ctypes."""
    cpu = pinning.allowed_cpus()[-1]
    code = (f"import os, sys; sys.path.insert(0, {BENCH!r}); import pinning\n"
            + ("for name in ('sched_setaffinity', 'sched_getaffinity'):\n"
               "    vars(os).pop(name, None)\n" if how == "libc" else "")
            + f"print(pinning.pin({cpu}), pinning.allowed_cpus(), pinning.current_cpus())")
    if how == "os" and not hasattr(os, "sched_setaffinity"):
        pytest.skip("no os.sched_setaffinity on this interpreter")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True,
                         timeout=30).stdout.decode().split(None, 1)
    assert out[0] == how
    assert out[1].strip() == f"[{cpu}] [{cpu}]"


def _server(loop: str, mode: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.path.dirname(BENCH))
    proc = subprocess.Popen([sys.executable, os.path.join(BENCH, "servers.py"), "--loop", loop,
                             "--mode", mode], stdout=subprocess.PIPE, env=env)
    line = proc.stdout.readline().decode()
    assert line.startswith("READY "), line
    proc.port = int(line.split()[1])   # type: ignore[attr-defined]
    return proc


@pytest.mark.parametrize("engine", ["c", "python"])
def test_client_reports_round_trips(engine: str) -> None:
    if engine == "c" and not client.c_engine_available():
        pytest.skip("the C load client does not build here")
    proc = _server("uvloop_lite", "proto")
    try:
        res = client.run(proc.port, "proto", 1024, conns=2, duration=0.3, warmup=0.6,
                         server_pid=proc.pid, engine=engine)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
    lat = res["latency_us"]
    assert res["engine"] == engine
    # every response of the timed part counted once (the count excludes the
    # responses in flight at its start, which arrive within it)
    assert res["requests"] <= lat["count"] <= res["requests"] + 2
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert sum(n for _, n in res["latency_hist"]) == lat["count"]
    # the requests in flight when the timed part began are timed from their
    # send, not from the warm-up's start (0.6 s before)
    assert lat["max"] < 500_000
    assert res["server_cpu"] is not None


def test_idle_mode_tiny() -> None:
    env = dict(os.environ, PYTHONPATH=os.path.dirname(BENCH))
    out = subprocess.run(
        [sys.executable, os.path.join(BENCH, "idle.py"), "--conns", "300", "--warmup-conns",
         "20", "--window", "64", "--backlog", "128", "--loops", "uvloop_lite",
         "--json"], stdout=subprocess.PIPE, env=env, check=True, timeout=50).stdout
    import json
    rows = json.loads(out)["rows"]
    assert [row["loop"] for row in rows] == ["uvloop_lite"]
    for row in rows:
        assert row["conns"] == 300
        assert row["rss_after"] > 0 and row["rss_before"] > 0
        assert 0 < row["connect_s"] and 0 < row["accept_s"] < 40


_CONNECTOR = """
import socket, sys
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1])))
         for _ in range(int(sys.argv[2]))]
print("ok", flush=True)
sys.stdin.readline()
"""


def _traced_bytes_per_idle_conn(kind: str, n: int = 300) -> float:
    """Python-heap bytes (tracemalloc) a server keeps per idle connection
    (a Protocol that does nothing), the clients in another process."""
    import asyncio
    import gc
    import tracemalloc

    from tests.conftest import make_loop

    loop = make_loop(kind)
    made = 0
    target: dict = {}

    class Idle(asyncio.Protocol):
        def connection_made(self, transport: object) -> None:
            nonlocal made
            made += 1
            fut = target.get(made)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def connect(port: int, count: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _CONNECTOR, str(port), str(count)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    async def main() -> float:
        server = await loop.create_server(Idle, "127.0.0.1", 0, backlog=512)
        port = server.sockets[0].getsockname()[1]
        # a first batch, accepted and closed: first-use allocations
        target[20] = loop.create_future()
        warm = connect(port, 20)
        await asyncio.wait_for(target[20], 30)
        warm.communicate(b"\n", timeout=30)
        for _ in range(20):
            await asyncio.sleep(0.01)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            target[20 + n] = loop.create_future()
            proc = connect(port, n)
            await asyncio.wait_for(target[20 + n], 30)
            for _ in range(5):
                await asyncio.sleep(0)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        proc.communicate(b"\n", timeout=30)
        server.close()
        await server.wait_closed()
        return (after - before) / n

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="tracemalloc is CPython's")
def test_idle_connection_costs_no_more_than_asyncio() -> None:
    """bench/idle.py's target: an idle uvloop_lite connection keeps no more
    memory than asyncio's (it kept ~1.4x before its write queue was made on
    first use and its uv_handle_t * cast on demand)."""
    per_conn = {kind: _traced_bytes_per_idle_conn(kind) for kind in ("asyncio", "uvloop_lite")}
    assert per_conn["uvloop_lite"] <= per_conn["asyncio"], per_conn


@pytest.mark.parametrize("isolate", ["--isolate", "--no-isolate"])
def test_micro_rows_run_on_both_loops(isolate: str) -> None:
    """micro.py's rows the speed targets name (timers, timer_cancel,
    run_until_complete), a tiny run of each on asyncio and uvloop_lite, in
    one process or one per loop: a positive rate for every cell."""
    import json
    rows = "timers,timer_cancel,run_until_complete,call_soon"
    out = subprocess.run(
        [sys.executable, os.path.join(BENCH, "micro.py"), "--only", rows, "--scale", "0.01",
         "--repeat", "1", "--loops", "asyncio,uvloop_lite", isolate, "--json"],
        check=True, stdout=subprocess.PIPE, timeout=120).stdout
    result = json.loads(out)
    assert sorted(result) == sorted(rows.split(","))
    for row in result.values():
        assert sorted(row) == ["asyncio", "uvloop_lite"]
        assert all(rate > 0 for rate in row.values())
