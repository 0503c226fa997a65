"""Micro-benchmarks of the event loop core, on asyncio's loop, uvloop (when it
is importable) and uvloop_lite side by side, in one run.

    python bench/micro.py                 # all benchmarks, best of 3
    python bench/micro.py --quick         # a fraction of the work, one round
    python bench/micro.py --only timers,tasks --repeat 5
    python bench/micro.py --isolate       # each loop in its own process (default on PyPy)

Every benchmark is an ordinary asyncio coroutine run with
``loop.run_until_complete`` on a fresh loop of each kind; the figure is
operations per second (best of ``--repeat`` rounds), and the ratio is against
asyncio's own loop (above 1.00x = faster).  The benchmarks check their own
results, so a loop that drops callbacks fails instead of looking fast.

On PyPy the loops share asyncio's pure-Python code, and the JIT compiles it
for whichever loop runs it first: in one process the first loop measured gets
the best machine code.  ``--isolate`` (the default on PyPy) therefore runs
each loop's rounds of each benchmark in fresh processes of its own: two, the
loops taking turns, about half of ``--repeat`` rounds in each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple



def _use_checkout() -> None:
    """`python bench/micro.py` in a source checkout: import the checkout's
    uvloop_lite if it has an extension built for this interpreter (else the
    installed one, if any)."""
    import importlib.machinery

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    built = any(os.path.exists(os.path.join(root, "uvloop_lite", "_uv" + suffix))
                for suffix in importlib.machinery.EXTENSION_SUFFIXES)
    if built and root not in sys.path:
        sys.path.insert(0, root)


if __name__ == "__main__":
    _use_checkout()

import uvloop_lite  # noqa: E402
from run import steal_fraction, steal_ticks  # noqa: E402   (bench/run.py)

Bench = Callable[[int], Awaitable[int]]


# -- the workloads -----------------------------------------------------------------
# Each takes a size n and returns the number of operations it performed.

async def call_soon_batch(n: int) -> int:
    """n callbacks queued at once with call_soon, run in one iteration."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = n

    def callback() -> None:
        nonlocal left
        left -= 1
        if not left:
            done.set_result(None)

    for _ in range(n):
        loop.call_soon(callback)
    await done
    return n


async def call_soon_chain(n: int) -> int:
    """n callbacks, each scheduling the next: one loop iteration (one poll
    for I/O with a zero timeout) per callback."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def callback(left: int) -> None:
        if left:
            loop.call_soon(callback, left - 1)
        else:
            done.set_result(None)

    loop.call_soon(callback, n - 1)
    await done
    return n


async def call_later_timers(n: int) -> int:
    """n timers over the next ~2 ms, every fourth one cancelled."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    expected = n - len(range(0, n, 4))
    fired = 0

    def callback() -> None:
        nonlocal fired
        fired += 1
        if fired == expected:
            done.set_result(None)

    def cancelled() -> None:
        if not done.done():
            done.set_exception(AssertionError("a cancelled timer fired"))

    handles = [loop.call_later((i % 200) * 1e-5, cancelled if i % 4 == 0 else callback)
               for i in range(n)]
    for handle in handles[::4]:
        handle.cancel()
    await done
    return n


async def timer_cancel(n: int) -> int:
    """A timer made and cancelled at once (a timeout that is not needed);
    the loop purges the cancelled ones as it goes (sleep(0) every 1,000)."""
    loop = asyncio.get_running_loop()
    fired = []
    for i in range(n):
        loop.call_later(10.0, fired.append, i).cancel()
        if i % 1000 == 999:
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    if fired:
        raise AssertionError("a cancelled timer fired")
    return n


def run_until_complete_entry(loop: asyncio.AbstractEventLoop, n: int) -> int:
    """``loop.run_until_complete(coro)`` of a coroutine that returns at once:
    the cost of entering and leaving the loop (sync: not run inside it)."""
    async def nothing(i: int) -> int:
        return i

    total = 0
    for i in range(n):
        total += loop.run_until_complete(nothing(1))
    if total != n:
        raise AssertionError("run_until_complete lost a result")
    return n


async def threadsafe_ping_pong(n: int) -> int:
    """A thread and the loop take turns: the thread wakes the loop with
    call_soon_threadsafe and waits for the loop's answer, n round trips."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    answers: "queue.SimpleQueue[int]" = queue.SimpleQueue()

    def worker() -> None:
        for i in range(n):
            loop.call_soon_threadsafe(answers.put, i)
            if answers.get() != i:
                loop.call_soon_threadsafe(done.set_exception,
                                          AssertionError("answers out of order"))
                return
        loop.call_soon_threadsafe(done.set_result, None)

    thread = threading.Thread(target=worker, name="ping-pong")
    thread.start()
    try:
        await done
    finally:
        thread.join()
    return n


async def gather_tasks(n: int) -> int:
    """n tasks, each yielding to the loop three times, gathered."""

    async def job(i: int) -> int:
        for _ in range(3):
            await asyncio.sleep(0)
        return i

    results = await asyncio.gather(*(job(i) for i in range(n)))
    if sum(results) != n * (n - 1) // 2:
        raise AssertionError("gather lost results")
    return n


async def queue_producer_consumer(n: int) -> int:
    """4 producers and 4 consumers pass n items through a bounded Queue."""
    q: "asyncio.Queue[Optional[int]]" = asyncio.Queue(maxsize=64)
    producers, consumers = 4, 4
    per_producer = n // producers
    total = 0

    async def produce(base: int) -> None:
        for i in range(per_producer):
            await q.put(base + i)

    async def consume() -> None:
        nonlocal total
        while True:
            item = await q.get()
            if item is None:
                return
            total += 1

    tasks = [asyncio.ensure_future(consume()) for _ in range(consumers)]
    await asyncio.gather(*(produce(p * per_producer) for p in range(producers)))
    for _ in range(consumers):
        await q.put(None)
    await asyncio.gather(*tasks)
    if total != producers * per_producer:
        raise AssertionError(f"{total} items consumed")
    return total


async def udp_echo(n: int) -> int:
    """n round trips of a 100-byte datagram between two UDP endpoints on
    127.0.0.1 (a connected client, an echo server answering with sendto() to
    the sender's address), 16 datagrams in flight."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    window = min(16, n)
    data = b"x" * 100

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, datagram: bytes, addr: Any) -> None:
            self.transport.sendto(datagram, addr)

    class Client(asyncio.DatagramProtocol):
        sent = received = 0

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, datagram: bytes, addr: Any) -> None:
            self.received += 1
            if self.sent < n:
                self.sent += 1
                self.transport.sendto(data)
            elif self.received == n and not done.done():
                done.set_result(None)

        def error_received(self, exc: Exception) -> None:
            if not done.done():
                done.set_exception(exc)

    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    client_tr, client = await loop.create_datagram_endpoint(
        Client, remote_addr=server.get_extra_info("sockname"))
    try:
        for _ in range(window):
            client.sent += 1
            client_tr.sendto(data)
        # Loopback does not drop 16 small datagrams in flight; a timeout
        # means a loop lost one.
        await asyncio.wait_for(done, 60)
    finally:
        client_tr.close()
        server.close()
    return n


# name -> (workload, default size); a workload that is not a coroutine
# function is given the loop and runs it itself.
BENCHMARKS: Dict[str, Tuple[Any, int]] = {
    "call_soon": (call_soon_batch, 200_000),
    "call_soon_chain": (call_soon_chain, 100_000),
    "timers": (call_later_timers, 50_000),
    "timer_cancel": (timer_cancel, 200_000),
    "run_until_complete": (run_until_complete_entry, 20_000),
    "threadsafe": (threadsafe_ping_pong, 10_000),
    "tasks": (gather_tasks, 20_000),
    "queue": (queue_producer_consumer, 50_000),
    "udp_echo": (udp_echo, 50_000),
}


# -- the loops -----------------------------------------------------------------------

def loop_factories() -> Dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """asyncio's selector loop, uvloop if installed, and uvloop_lite."""
    factories: Dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.SelectorEventLoop,
    }
    try:
        import uvloop
    except ImportError:
        pass
    else:
        factories["uvloop"] = uvloop.new_event_loop
    factories["uvloop_lite"] = uvloop_lite.new_event_loop
    return factories


# Benchmarks whose threads run pinned to one CPU.  A thread woken on another,
# idle, CPU of a virtual machine waits tens of microseconds for the hypervisor
# to run that CPU: the threadsafe round trips took ~12-25 us or ~60 us each,
# on either loop, as the scheduler happened to place the two threads, and a
# round's figure measured that placement, not the loop's wake-up path.  On
# one CPU every round trip is two ordinary context switches.
_PINNED = frozenset({threadsafe_ping_pong})


def _pin_to_one_cpu() -> Optional[Any]:
    """Pin this thread (and the threads it starts) to one of its CPUs; return
    the CPUs to restore, or None where affinity cannot be set."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    return cpus


def run_once(factory: Callable[[], asyncio.AbstractEventLoop], bench: Any,
             n: int) -> float:
    """Run one round on a fresh loop; return operations per second."""
    saved_cpus = _pin_to_one_cpu() if bench in _PINNED else None
    try:
        return _run_once_on(factory, bench, n)
    finally:
        if saved_cpus is not None:
            os.sched_setaffinity(0, saved_cpus)


def _run_once_on(factory: Callable[[], asyncio.AbstractEventLoop], bench: Any,
                 n: int) -> float:
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        gc.collect()
        if asyncio.iscoroutinefunction(bench):
            start = time.perf_counter()
            ops = loop.run_until_complete(bench(n))
        else:
            start = time.perf_counter()
            ops = bench(loop, n)
        elapsed = time.perf_counter() - start
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return ops / elapsed


def measure(names: List[str], kinds: Dict[str, Callable[[], Any]], scale: float,
            repeat: int, isolate: bool = False, quiet: bool = False,
            steals: Optional[Dict[str, Optional[float]]] = None,
            ) -> Dict[str, Dict[str, float]]:
    """{benchmark: {loop kind: best ops/s}}; the kinds alternate within each
    round so that a noisy moment does not favour one of them.  ``isolate``:
    each kind's rounds run in fresh processes of its own instead (the kinds
    taking turns, twice).  ``steals``, if given, gets each benchmark's share
    of the CPUs' time the hypervisor gave to other guests while it ran."""
    results: Dict[str, Dict[str, float]] = {}
    for name in names:
        st0 = steal_ticks()
        bench, size = BENCHMARKS[name]
        n = max(8, int(size * scale))
        best: Dict[str, float] = {kind: 0.0 for kind in kinds}
        if isolate:
            # The kinds take turns, twice, each time in a fresh process:
            # measured one after the other only once, a noisy spell of a
            # shared machine (tens of seconds) could fall on one kind's
            # rounds alone and flip the ratio either way.
            per_process = max(1, (repeat + 1) // 2)
            for _ in range(_ISOLATE_TURNS):
                for kind in kinds:
                    best[kind] = max(best[kind],
                                     _measure_apart(name, kind, scale, per_process))
        else:
            for _ in range(repeat):
                for kind, factory in kinds.items():
                    best[kind] = max(best[kind], run_once(factory, bench, n))
        results[name] = best
        steal = steal_fraction(st0, steal_ticks())
        if steals is not None:
            steals[name] = steal
        if not quiet:
            print(_row(name, best, list(kinds), steal), flush=True)
    return results


# How many processes of its own each loop kind gets per benchmark (--isolate).
_ISOLATE_TURNS = 2


def _measure_apart(name: str, kind: str, scale: float, repeat: int) -> float:
    """One benchmark on one loop kind, in a new process (see --isolate)."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--only", name, "--loops", kind,
         "--scale", repr(scale), "--repeat", str(repeat), "--no-isolate", "--json"],
        check=True, stdout=subprocess.PIPE).stdout
    return float(json.loads(out)[name][kind])


# -- output --------------------------------------------------------------------------

_NAME_W, _COL_W = 16, 22


def _header(kinds: List[str]) -> str:
    return "benchmark".ljust(_NAME_W) + "".join(k.rjust(_COL_W) for k in kinds)


# A row measured while the hypervisor's steal was above this is flagged: its
# ratio moved with the host (bench/run.py's --steal-limit default).
_STEAL_FLAG = 0.03


def _row(name: str, best: Dict[str, float], kinds: List[str],
         steal: Optional[float] = None) -> str:
    base = best.get("asyncio") or 0.0
    cells = []
    for kind in kinds:
        cell = f"{best[kind]:,.0f}/s"
        if kind != "asyncio" and base:
            cell += f" ({best[kind] / base:.2f}x)"
        cells.append(cell.rjust(_COL_W))
    flag = f"   ~ steal {steal:.0%}" if steal is not None and steal > _STEAL_FLAG else ""
    return name.ljust(_NAME_W) + "".join(cells) + flag


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="",
                        help="comma-separated benchmarks: " + ", ".join(BENCHMARKS))
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds per loop; the best is reported (default 3)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every benchmark's size (default 1.0)")
    parser.add_argument("--quick", action="store_true",
                        help="same as --scale 0.1 --repeat 1")
    parser.add_argument("--no-uvloop", action="store_true",
                        help="leave uvloop out even if it is installed")
    parser.add_argument("--loops", default="",
                        help="comma-separated loop kinds (asyncio,uvloop,uvloop_lite)")
    iso = parser.add_mutually_exclusive_group()
    iso.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                     help="each loop's rounds in a process of its own "
                          "(default on PyPy, whose JIT favours the loop run first)")
    iso.add_argument("--no-isolate", dest="isolate", action="store_false",
                     help="all loops in this process, taking turns")
    parser.add_argument("--json", action="store_true",
                        help="print {benchmark: {loop: ops/s}} as JSON only")
    args = parser.parse_args(argv)
    isolate = (platform.python_implementation() == "PyPy"
               if args.isolate is None else args.isolate)

    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(BENCHMARKS)}")
    scale, repeat = (0.1, 1) if args.quick else (args.scale, args.repeat)
    if repeat < 1 or scale <= 0:
        parser.error("--repeat must be >= 1 and --scale > 0")

    kinds = loop_factories()
    if args.no_uvloop:
        kinds.pop("uvloop", None)
    if args.loops:
        wanted = [k.strip() for k in args.loops.split(",") if k.strip()]
        missing = [k for k in wanted if k not in kinds]
        if missing:
            parser.error(f"loop(s) not available: {', '.join(missing)}")
        kinds = {k: kinds[k] for k in wanted}
    if args.json:
        print(json.dumps(measure(names, kinds, scale, repeat, isolate, quiet=True)))
        return 0
    versions = [f"{platform.python_implementation()} {platform.python_version()}",
                f"uvloop_lite {uvloop_lite.__version__} on libuv "
                f"{uvloop_lite.libuv_version()}"]
    if "uvloop" in kinds:
        import uvloop
        versions.append(f"uvloop {uvloop.__version__}")
    else:
        versions.append("uvloop not installed" if not args.no_uvloop
                        else "uvloop left out")
    print(f"event loop micro-benchmarks: {'; '.join(versions)}")
    print(f"operations per second, best of {repeat}; (x) = ratio to asyncio, "
          "higher is faster" + ("; each loop in a process of its own" if isolate else "")
          + "\n")
    print(_header(list(kinds)))
    steals: Dict[str, Optional[float]] = {}
    st0 = steal_ticks()
    measure(names, kinds, scale, repeat, isolate, steals=steals)
    steal = steal_fraction(st0, steal_ticks())
    if steal is not None:
        worst = max((v for v in steals.values() if v is not None), default=0.0)
        print(f"\nsteal (CPU time the hypervisor gave to other guests): {steal:.1%} over "
              f"the run, up to {worst:.1%} in one row; '~': a row over "
              f"{_STEAL_FLAG:.0%}, whose ratios moved with the host")
    return 0


if __name__ == "__main__":
    sys.exit(main())
