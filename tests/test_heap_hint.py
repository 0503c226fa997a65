"""The loop's one-time glibc heap hint (``uvl__heap_hint`` in the C shim).

In a fresh process glibc gives the heap's free top back to the kernel once
it passes 128 KiB, so memory that a burst of 100 KB blocks used is faulted in
again by the next burst. After the first uvloop_lite loop the top is kept up
to 2 MiB, as it is (up to 512 KiB) in an asyncio server after its first
256 KiB read. Measured as page faults in a
subprocess, so nothing else in the test run has moved the thresholds.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.skipif(
        sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
        reason="glibc's malloc thresholds",
    ),
    pytest.mark.skipif(
        platform.python_implementation() == "PyPy",
        reason="PyPy's GC frees large strings at its collections, not at del",
    ),
    pytest.mark.skipif(
        "ASAN_OPTIONS" in os.environ or "LD_PRELOAD" in os.environ,
        reason="a replaced malloc has no such thresholds",
    ),
]

_CHILD = r"""
import json, resource, sys
import uvloop_lite   # (and asyncio): the imports alone may move the thresholds
if sys.argv[1] == "uvloop_lite":
    uvloop_lite.new_event_loop().close()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(100):
    # 1.5 MB of 100 KB blocks (under the mmap threshold: heap), freed again.
    # b"x" * n writes every page.
    blocks = [b"x" * 100_000 for _ in range(15)]
    del blocks
print(json.dumps(faults() - before))
"""


def _faults(kind: str, tunables: str = "") -> int:
    env = dict(os.environ)
    for name in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(name, None)
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind], env=env, check=True,
        capture_output=True, text=True, timeout=60,
    ).stdout
    return int(json.loads(out))


_PAGES = 1_500_000 // 4096   # one burst


@pytest.fixture(scope="module")
def trimming() -> None:
    """Skip unless this interpreter's allocations show glibc's trimming:
    the control makes the same imports and no loop (run once per module)."""
    control = _faults("none")
    if control < 20 * _PAGES:
        pytest.skip(f"no trimming to see with this interpreter's allocations ({control} faults)")


def test_large_blocks_stay_on_the_heap_after_the_first_loop(trimming: None) -> None:
    # With the first loop: the first burst is faulted in once, then the heap keeps it.
    assert _faults("uvloop_lite") < 5 * _PAGES


def test_thresholds_the_program_set_are_kept(trimming: None) -> None:
    # Set explicitly (here through GLIBC_TUNABLES, as mallopt() would), glibc
    # no longer moves them, and the loop's hint changes nothing.
    assert _faults("uvloop_lite", "glibc.malloc.trim_threshold=131072") >= 20 * _PAGES
