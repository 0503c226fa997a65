"""``python -m uvloop_lite``: run a program with uvloop_lite as asyncio's loop.

    python -m uvloop_lite script.py [args...]
    python -m uvloop_lite -m package.module [args...]
    python -m uvloop_lite --version

:class:`uvloop_lite.EventLoopPolicy` is installed first, so the program's
``asyncio.run()`` and ``asyncio.new_event_loop()`` get uvloop_lite loops.  The
program then runs as ``python script.py`` / ``python -m module`` would run it:
as ``__main__``, with ``sys.argv`` holding its own path and arguments and
``sys.path[0]`` set to the script's directory (or the current directory for
``-m``).

Frameworks that choose the loop class themselves (uvicorn's ``--loop``)
bypass the policy: the help text names the forms that reach uvloop_lite.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import NoReturn, Sequence

USAGE = """\
usage: python -m uvloop_lite [--version] (script.py | -m module) [args ...]

Run a Python program with uvloop_lite installed as asyncio's event loop policy.

  script.py     run this file as __main__, passing it args
  -m module     run this module as __main__ (like python -m), passing it args
  --version     print the uvloop_lite and libuv versions and exit
  -h, --help    show this help and exit

The policy reaches code that calls asyncio.run() or asyncio.new_event_loop().
Frameworks with their own loop switch bypass it; name uvloop_lite's loop
factory to them instead, e.g. uvicorn (0.36+):

  uvicorn app:app --loop uvloop_lite:new_event_loop

(or, with the policy: python -m uvloop_lite -m uvicorn app:app --loop none;
without --loop, python -m uvloop_lite -m uvicorn warns that it is bypassed).
"""


def _usage_error(message: str) -> NoReturn:
    sys.stderr.write(USAGE + f"\nerror: {message}\n")
    raise SystemExit(2)


def version_text() -> str:
    """``uvloop_lite X (libuv Y, <implementation> Z)``."""
    import platform

    import uvloop_lite

    return (f"uvloop_lite {uvloop_lite.__version__} "
            f"(libuv {uvloop_lite.libuv_version()}, "
            f"{platform.python_implementation()} {platform.python_version()})")


def bypass_hint(module: str, args: Sequence[str]) -> str | None:
    """A warning for a program known to pick its loop past the policy when
    not told otherwise (uvicorn without ``--loop``), else None."""
    if module.split(".")[0] != "uvicorn":
        return None
    if any(a == "--loop" or a.startswith("--loop=") for a in args):
        return None
    return ("uvloop_lite: uvicorn chooses its own loop (--loop auto), bypassing "
            "the policy; add --loop uvloop_lite:new_event_loop (or --loop none)\n")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the program it names.

    The program's own exceptions and ``SystemExit`` propagate unchanged."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        _usage_error("nothing to run")
    first = args[0]
    if first in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return
    if first in ("-V", "--version"):
        print(version_text())
        return

    import uvloop_lite

    if first == "-m":
        if len(args) < 2:
            _usage_error("-m needs a module name")
        module, rest = args[1], args[2:]
        hint = bypass_hint(module, rest)
        if hint:
            sys.stderr.write(hint)
        uvloop_lite.install()
        # Like `python -m`: the current directory comes first on sys.path, and
        # run_module(alter_sys=True) puts the module's file in sys.argv[0].
        sys.argv[:] = [module, *rest]
        sys.path[0] = os.getcwd()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return

    if first.startswith("-"):
        _usage_error(f"unknown option {first!r}")
    script, rest = first, args[1:]
    if not os.path.exists(script):
        _usage_error(f"can't open file {script!r}: no such file")
    uvloop_lite.install()
    sys.argv[:] = [script, *rest]
    if os.path.isfile(script):
        # Like `python script.py`: the script's directory comes first on
        # sys.path.  (For a directory or zip file run_path puts it there.)
        sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
