"""What the scheduler reports as requests and batches finish; observability implements it.

Kept as a protocol so scheduling never imports metrics, and tests can pass a recorder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from server.scheduling.pending import PendingRequest


@dataclass(frozen=True, slots=True)
class ExecutionTimes:
    """Seconds spent in one execution: merging inputs, the model run, splitting outputs."""

    rows: int
    requests: int
    input: float
    infer: float
    output: float


class SchedulerObserver(Protocol):
    def on_execution(self, times: ExecutionTimes) -> None: ...

    # error is None on success; pending carries queue_start, compute_start/end and batch_rows.
    def on_request_done(self, pending: PendingRequest, error: BaseException | None) -> None: ...


class NullObserver:
    def on_execution(self, times: ExecutionTimes) -> None:
        pass

    def on_request_done(self, pending: PendingRequest, error: BaseException | None) -> None:
        pass
