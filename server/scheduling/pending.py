"""One queued request and its explicit lifecycle state.

grpc.aio cancels the future a handler awaits when the client goes away, so `future.done()`
cannot tell a queued request from a running one; the state below can.
"""

from __future__ import annotations

import asyncio
import enum

import numpy as np

from server.inference import InferenceRequest


class RequestState(enum.Enum):
    QUEUED = "queued"
    HANDED = "handed"  # in an instance's thread, its run not started: may still expire
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"  # by the client, or its deadline passed before its run


class PendingRequest:
    __slots__ = (
        "request",
        "future",
        "state",
        "shape_key",
        "queue_start",
        "compute_start",
        "compute_end",
        "batch_rows",
        "timer",
    )

    def __init__(
        self,
        request: InferenceRequest,
        future: asyncio.Future[dict[str, np.ndarray]],
        shape_key: tuple,
        now: float,
    ) -> None:
        self.request = request
        self.future = future
        self.state = RequestState.QUEUED
        self.shape_key = shape_key  # requests share a batch only when these agree
        self.queue_start = now
        self.compute_start = 0.0
        self.compute_end = 0.0
        self.batch_rows = 0  # rows of the batch it ran in
        self.timer: asyncio.TimerHandle | None = None  # deadline timer, if any

    @property
    def rows(self) -> int:
        return self.request.batch_size

    def finish(self, outputs: dict[str, np.ndarray] | None, error: BaseException | None) -> None:
        """Completes the future if the client is still waiting; never raises."""
        self.state = RequestState.DONE
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(outputs)  # type: ignore[arg-type]
