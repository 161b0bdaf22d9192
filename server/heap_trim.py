"""Gives freed heap memory back to the OS every few seconds (glibc's malloc_trim).

glibc shrinks a heap only from its top. After a burst of large requests or responses, any small
allocation made later and still alive sits above the freed buffers and keeps all of them
resident: the process stays at the burst's peak although the memory is free. malloc_trim(0)
returns the free pages anywhere in every arena. It runs in the loop's default executor (ctypes
releases the GIL for the call) and takes well under a millisecond; with a C library that has no
malloc_trim there is nothing to do.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_SECONDS = 5.0


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols the process already has, the C library's included
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class HeapTrimmer:
    def __init__(self, interval: float = TRIM_SECONDS) -> None:
        self._interval = interval
        self._trim = malloc_trim()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._trim is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="heap-trim")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            try:
                await loop.run_in_executor(None, self._trim, 0)
            except RuntimeError:  # the executor is shutting down with the loop
                return
