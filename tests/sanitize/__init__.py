"""The test suite on a sanitized build (ASan/UBSan, libuv's asserts) and under
valgrind: see run.py."""
