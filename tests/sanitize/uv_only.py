"""pytest plugin (``-p tests.sanitize.uv_only``): deselect the asyncio half of
tests parametrized by conftest's ``loop_kind``, which runs none of our C code
(the valgrind run is slow enough with the half that does)."""

from __future__ import annotations


def pytest_collection_modifyitems(config, items) -> None:
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("loop_kind") if callspec is not None else None
        (drop if kind == "asyncio" else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
