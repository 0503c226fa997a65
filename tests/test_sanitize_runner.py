"""The sanitizer switch of build_uv.py and the report filter of the valgrind
run (tests/sanitize/run.py); the runs themselves are CI steps (./dev sanitize)."""

from __future__ import annotations

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loaded by path: the repository root need not be on sys.path under pytest.
_spec = importlib.util.spec_from_file_location(
    "sanitize_run", os.path.join(ROOT, "tests", "sanitize", "run.py"))
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)
build_uv = run.build_uv


@pytest.mark.parametrize("value, flavor", [
    ("", ()),
    (" ", ()),
    ("address", ("address",)),
    ("undefined, address", ("address", "undefined")),
    ("address,address", ("address",)),
    ("assert", ("assert",)),
    ("assert,undefined", ("undefined",)),   # every sanitized build has the asserts
])
def test_sanitize_flavor(value, flavor):
    assert build_uv.sanitize_flavor(value) == flavor


def test_unknown_sanitizer_is_an_error():
    with pytest.raises(SystemExit, match="thread"):
        build_uv.sanitize_flavor("address,thread")


def test_sanitize_flags():
    assert build_uv._sanitize_args(()) == (["-O2"], [], 0)
    cflags, ldflags, mask = build_uv._sanitize_args(("address", "undefined"))
    assert mask == 7
    assert "-fsanitize=address,undefined" in cflags and ldflags == ["-fsanitize=address,undefined"]
    # Asserts on, recoverable UBSan off, Python's -fwrapv undone.
    for flag in ("-UNDEBUG", "-O1", "-g", "-fno-sanitize-recover=undefined", "-fno-wrapv"):
        assert flag in cflags
    cflags, ldflags, mask = build_uv._sanitize_args(("assert",))
    assert mask == 4 and ldflags == [] and "-UNDEBUG" in cflags
    assert not any(f.startswith("-fsanitize") for f in cflags)


def _frame(obj: str, fn: str) -> str:
    return f"<frame><ip>0x1</ip><obj>{obj}</obj><fn>{fn}</fn></frame>"


_OURS = "/x/.sanitize/assert/uvloop_lite/_uv.abi3.so"
_PYTHON = "/usr/bin/python3.11"


def _error(kind: str, *frames: str) -> str:
    return (f"<error><unique>0x1</unique><tid>1</tid><kind>{kind}</kind>"
            f"<what>{kind} here</what><stack>{''.join(frames)}</stack></error>")


def _signal(name: str) -> str:
    return (f"<fatal_signal><tid>1</tid><signo>6</signo><signame>{name}</signame>"
            f"<stack>{_frame('/lib/libc.so.6', 'raise')}</stack></fatal_signal>")


@pytest.mark.parametrize("body, counts", [
    ("", False),
    (_error("InvalidWrite", _frame(_OURS, "uvl_run"), _frame(_PYTHON, "main")), True),
    (_error("InvalidRead", _frame("/v/_cffi_backend.cpython-311-x86_64-linux-gnu.so",
                                  "b_memmove")), True),
    # The interpreter's own (CPython 3.11.7's int.from_bytes), and leak records.
    (_error("UninitCondition", _frame(_PYTHON, "_PyLong_FromByteArray")), False),
    (_error("Leak_PossiblyLost", _frame(_OURS, "uv_loop_init")), False),
    (_signal("SIGABRT"), True),        # a failed assert
    (_signal("SIGSEGV"), True),
    (_signal("SIGTERM"), False),       # a test's terminate()
])
def test_valgrind_report_counts_our_errors_and_crashes(tmp_path, body, counts):
    (tmp_path / "vg.42").write_text("")
    (tmp_path / "vg.42.xml").write_text(
        f'<?xml version="1.0"?>\n<valgrindoutput>\n{body}\n</valgrindoutput>\n')
    reports = run.logged_reports(str(tmp_path))
    assert bool(reports) == counts, reports


def test_asan_logs_count_when_not_empty(tmp_path):
    (tmp_path / "asan.1").write_text("")
    assert run.logged_reports(str(tmp_path)) == {}
    (tmp_path / "ubsan.2").write_text("x.c:1:2: runtime error: signed integer overflow\n")
    assert list(run.logged_reports(str(tmp_path))) == [str(tmp_path / "ubsan.2")]
