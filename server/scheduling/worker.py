"""A dedicated thread per model instance, fed batches through a SimpleQueue.

Cheaper per batch than loop.run_in_executor: no concurrent.futures.Future chained to an asyncio
one and no executor bookkeeping; the outcome returns to the event loop in one
call_soon_threadsafe. On a small model that hop is a large share of a request's cost
(measured with bench/: about 130 -> 90 us of CPU per unbatched execution on 2 cores).
`run_then` goes further for the scheduler: the outcome is handed straight to a callback on the
loop, with no future and no task to wake in between.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any


class InstanceThread:
    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        # Daemon: a scheduler that is never closed must not keep the process alive at exit.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        """Runs fn(*args) in this thread, after the jobs before it; the future completes on loop."""
        future = loop.create_future()
        self._jobs.put((loop, _complete, future, fn, args))
        return future

    def run_then(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[Any, Any, BaseException | None], None],
        context: Any,
    ) -> None:
        """Runs fn(*args) in this thread, then done(context, result, error) on the loop."""
        self._jobs.put((loop, done, context, fn, args))

    def stop(self) -> None:
        """The thread ends once the jobs already submitted are done."""
        self._jobs.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, done, context, fn, args = job
            del job
            error: BaseException | None = None
            try:
                value = fn(*args)
            except BaseException as caught:  # the loop's side turns it into the batch's error
                value, error = None, caught
            try:
                loop.call_soon_threadsafe(done, context, value, error)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more
            # Drop the batch's arrays now rather than when the next job arrives.
            del loop, done, context, fn, args, value, error


def _complete(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
