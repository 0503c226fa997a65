"""What pyproject.toml does not say, in a form every setuptools from 62 on
takes without warnings (pyproject.toml holds the static metadata):

* the cffi extension: ``cffi_modules`` has no pyproject key yet;
* the packages, and ``py.typed`` and ``_uv.pyi`` (the extension's type stub)
  as their only data: ``uvloop_lite/_c`` (the cdef and the shim) is build
  input, in the sdist (MANIFEST.in) but not installed;
* the version, read from ``uvloop_lite/_version.py`` without importing the
  package (which needs the extension);
* the licence: setuptools 77 and later take an SPDX expression (PEP 639) and
  warn about the older free-text field, which is all that setuptools 62 to 76
  know (a Python 3.11 venv's own setuptools, Debian 12's).  The wheel contains
  libuv, so libuv's licence file travels with ours;
* the compile step: build_uv.py's ``build_ext`` (libuv's files compiled in
  parallel with a progress line each, unchanged objects reused);
* the wheel's ABI tag: on CPython (without free threading) cffi compiles the
  extension against the stable ABI (``_uv.abi3.so``), so the wheel is tagged
  ``cp39-abi3`` and serves CPython 3.9 and later.  PyPy keeps its own tag.
"""
import os
import platform
import re
import sys
import sysconfig

import setuptools
from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
# setuptools' PEP 517 backend does not put the source tree on sys.path.
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import build_uv  # noqa: E402


def _version() -> str:
    with open(os.path.join(HERE, "uvloop_lite", "_version.py"), encoding="utf-8") as fp:
        match = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', fp.read(), re.M)
    if match is None:
        raise RuntimeError("no __version__ in uvloop_lite/_version.py")
    return match.group(1)


def _major(version: str) -> int:
    digits = version.split(".")[0]
    return int(digits) if digits.isdigit() else 0


kwargs = {"license_files": ["LICENSE", "vendor/libuv/LICENSE"]}
if _major(setuptools.__version__) >= 77:
    kwargs["license_expression"] = "MIT"
else:
    kwargs["license"] = "MIT"

options = {}
if (platform.python_implementation() == "CPython"
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
        and not sysconfig.get_config_var("Py_DEBUG")):
    options["bdist_wheel"] = {"py_limited_api": "cp39"}

setup(
    version=_version(),
    packages=["uvloop_lite", "uvloop_lite._handles"],
    package_data={"uvloop_lite": ["py.typed", "_uv.pyi"]},
    include_package_data=False,
    cffi_modules=["build_uv.py:ffibuilder"],
    cmdclass={"build_ext": build_uv.make_build_ext(build_ext)},
    options=options,
    **kwargs,
)
