"""Third-party projects' test suites run on asyncio's loop and on uvloop_lite (see README.md)."""
