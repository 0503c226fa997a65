"""Wrappers of libuv handles, one module per libuv handle type."""
