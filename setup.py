"""Only here because cffi's ``cffi_modules`` has no pyproject.toml key yet;
all metadata lives in pyproject.toml."""
from setuptools import setup

setup(cffi_modules=["build_uv.py:ffibuilder"])
