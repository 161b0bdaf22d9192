"""Freed buffers pinned under a live allocation are given back to the OS by the trimmer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from server.heap_trim import HeapTrimmer, malloc_trim

pytestmark = pytest.mark.skipif(malloc_trim() is None, reason="the C library has no malloc_trim")

# Runs in a fresh interpreter, so the heap holds nothing but what it makes: 48 buffers of 1 MiB
# from malloc, each followed by a small allocation that stays alive; then the buffers are freed.
FRAGMENT = """
import ctypes, json
from pathlib import Path
from server.heap_trim import malloc_trim

def rss_mib():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
libc.free(libc.malloc(8 << 20))  # one freed mmapped block lifts the mmap threshold over 1 MiB
buffers, pins = [], []
for _ in range(48):
    buffers.append(libc.malloc(1 << 20))
    libc.memset(buffers[-1], 1, 1 << 20)  # resident
    pins.append(libc.malloc(4096))  # above the buffer in the heap, alive to the end
before = rss_mib()
for buffer in buffers:
    libc.free(buffer)
freed = rss_mib()
malloc_trim()(0)
print(json.dumps([before, freed, rss_mib()]))
"""


def test_malloc_trim_returns_freed_buffers_that_free_alone_keeps_resident() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRAGMENT], capture_output=True, text=True, timeout=60, check=True
    )
    before, freed, trimmed = json.loads(done.stdout)
    assert freed > before - 8, "free() alone already gave the pinned buffers back"
    assert trimmed < freed - 40, f"RSS before, after free, after trim: {before, freed, trimmed}"


def test_the_trimmer_calls_trim_on_its_interval_and_stops_on_close() -> None:
    calls: list[int] = []

    async def main() -> int:
        trimmer = HeapTrimmer(interval=0.01)
        trimmer._trim = calls.append  # type: ignore[assignment]  # records instead of trimming
        trimmer.start()
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        await trimmer.close()
        stopped_at = len(calls)
        await asyncio.sleep(0.05)
        return stopped_at

    stopped_at = asyncio.run(main())
    assert calls[:3] == [0, 0, 0]
    assert len(calls) == stopped_at
