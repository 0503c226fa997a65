"""CPU pinning for the bench processes, on interpreters with and without
``os.sched_setaffinity`` (PyPy 3.9 has neither it nor ``sched_getaffinity``):
then libc's functions of the same names are called through ctypes."""

from __future__ import annotations

import ctypes
import os
from typing import List, Optional

# cpu_set_t of glibc: 1024 bits.
_MASK_WORDS = 1024 // (8 * ctypes.sizeof(ctypes.c_ulong))
_WORD_BITS = 8 * ctypes.sizeof(ctypes.c_ulong)
_Mask = ctypes.c_ulong * _MASK_WORDS
_libc: Optional[ctypes.CDLL] = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _call(name: str, mask: "ctypes.Array[ctypes.c_ulong]") -> None:
    fn = getattr(_lib(), name)
    if fn(0, ctypes.sizeof(mask), ctypes.byref(mask)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def allowed_cpus() -> List[int]:
    """The CPUs this process may run on (as os.sched_getaffinity(0))."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    mask = _Mask()
    _call("sched_getaffinity", mask)
    return [w * _WORD_BITS + b for w in range(_MASK_WORDS) for b in range(_WORD_BITS)
            if mask[w] >> b & 1]


def pin(cpu: int) -> str:
    """Pin this process to one CPU; returns how ("os" or "libc").
    OSError if neither works (not Linux, or the CPU is not allowed)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
        return "os"
    mask = _Mask()
    mask[cpu // _WORD_BITS] = 1 << (cpu % _WORD_BITS)
    try:
        _call("sched_setaffinity", mask)
    except AttributeError as exc:   # no such function in this libc
        raise OSError(f"cannot pin to CPU {cpu}: {exc}") from exc
    return "libc"


def current_cpus(pid: int = 0) -> List[int]:
    """The CPUs process `pid` may run on, from /proc (Cpus_allowed_list)."""
    with open(f"/proc/{pid or 'self'}/status") as fp:
        for line in fp:
            if line.startswith("Cpus_allowed_list:"):
                cpus: List[int] = []
                for part in line.split(":", 1)[1].strip().split(","):
                    lo, _, hi = part.partition("-")
                    cpus.extend(range(int(lo), int(hi or lo) + 1))
                return cpus
    raise OSError(f"no Cpus_allowed_list for pid {pid}")
