"""A synchronous test: it runs once, whatever the switch."""

import asyncio


def test_sync():
    async def main():
        return 42

    assert asyncio.run(main()) == 42
