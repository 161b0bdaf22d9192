"""A dedicated thread per model instance, fed jobs through a SimpleQueue, answering on one loop.

Cheaper per batch than loop.run_in_executor: no concurrent.futures.Future chained to an asyncio
one and no executor bookkeeping. Outcomes go back in a list that the loop drains: the thread
wakes the loop (call_soon_threadsafe, a write to its self-pipe) only when the list was empty, so
jobs that finish while the loop is busy share one wake-up. On a small model the round trip is a
large share of a request's cost (bench/request_path.py times it).
`run_then` hands the outcome straight to a callback on the loop, with no future in between.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Done = Callable[[Any, Any, BaseException | None], None]


class InstanceThread:
    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[tuple[Done, Any, Callable[..., Any], Any] | None] = (
            queue.SimpleQueue()
        )
        self._outcomes: list[tuple[Done, Any, Any, BaseException | None]] = []
        self._outcomes_lock = threading.Lock()
        # Daemon: a scheduler that is never closed must not keep the process alive at exit.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Runs fn(*args) in this thread, after the jobs before it; the future completes on
        the loop."""
        future = self._loop.create_future()
        self._jobs.put((_complete, future, fn, args))
        return future

    def run_then(
        self, fn: Callable[..., Any], args: tuple[Any, ...], done: Done, context: Any
    ) -> None:
        """Runs fn(*args) in this thread, then done(context, result, error) on the loop."""
        self._jobs.put((done, context, fn, args))

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
            done, context, fn, args = job
            del job
            error: BaseException | None = None
            try:
                value = fn(*args)
            except BaseException as caught:  # the loop's side turns it into the batch's error
                value, error = None, caught
            with self._outcomes_lock:
                self._outcomes.append((done, context, value, error))
                wake = len(self._outcomes) == 1  # otherwise a drain is already on its way
            if wake:
                try:
                    self._loop.call_soon_threadsafe(self._drain)
                except RuntimeError:
                    pass  # the loop is closed: nobody is waiting any more
            # Drop the batch's arrays now rather than when the next job arrives.
            del done, context, fn, args, value, error

    def _drain(self) -> None:
        with self._outcomes_lock:
            outcomes, self._outcomes = self._outcomes, []
        for done, context, value, error in outcomes:
            try:
                done(context, value, error)
            except Exception:  # the outcomes after it must still be delivered
                log.exception("%s: handing back an outcome failed", self._thread.name)


def _complete(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
