"""CPython's own test_asyncio, run against uvloop_lite (see README.md)."""
