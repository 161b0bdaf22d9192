"""Wake-ups finer than the event loop's own timers, for sub-millisecond batching delays.

asyncio's default loop waits in epoll, whose timeout is counted in whole milliseconds: a
`call_at` 100 us ahead fires after about 1.1 ms. A `max_queue_delay_microseconds` below a
millisecond would so wait a millisecond whenever its batch does not fill first. Waits shorter
than COARSE_SECONDS are kept instead by one daemon thread that sleeps on a condition variable
(microsecond precision) and hands the callback to the loop with call_soon_threadsafe; longer
ones stay on the loop's timer, which costs no thread hop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable

# Below this the loop's timer could be late by a large part of the wait.
COARSE_SECONDS = 0.002


class FineHandle:
    """What call_at returns: cancel() on the loop thread stops the callback for good."""

    __slots__ = ("_callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def _run(self) -> None:  # on the loop thread, so cancel() and this never race
        if not self.cancelled:
            self._callback()


class _FineTimerThread:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, FineHandle, asyncio.AbstractEventLoop]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(
        self, loop: asyncio.AbstractEventLoop, delay: float, callback: Callable[[], None]
    ) -> FineHandle:
        handle = FineHandle(callback)
        entry = (time.monotonic() + delay, next(self._order), handle, loop)
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="fine-timer", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:  # an earlier wake-up than the thread waits for
                self._condition.notify()
        return handle

    def _serve(self) -> None:
        heap = self._heap
        while True:
            with self._condition:
                while True:
                    if not heap:
                        self._condition.wait()
                        continue
                    wait = heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._condition.wait(wait)
                _, _, handle, loop = heapq.heappop(heap)
            if handle.cancelled:
                continue
            try:
                loop.call_soon_threadsafe(handle._run)
            except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
                pass


_TIMER = _FineTimerThread()


def call_at(
    loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], None]
) -> asyncio.TimerHandle | FineHandle:
    """Calls `callback` on the loop at loop time `when`, late by microseconds, not by the
    millisecond epoll rounds a short wait up to."""
    delay = when - loop.time()
    if delay >= COARSE_SECONDS or delay <= 0:
        return loop.call_at(when, callback)
    return _TIMER.call_later(loop, delay, callback)
