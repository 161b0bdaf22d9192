"""What an instance's thread does with a batch: claim its requests, merge, run, split.

A request handed to the thread is not running yet: until its run starts, its deadline can still
pass and its client can still go away, both seen on the event loop. The claim, under a lock the
loop's side takes too, settles once per request which of the two sides wins: a request that
left before the claim never runs, and one that was claimed is no longer expired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from server.scheduling.observer import ExecutionTimes
from server.scheduling.payload import merge_inputs, output_names_for, split_outputs
from server.scheduling.pending import PendingRequest, RequestState

HANDED = RequestState.HANDED
RUNNING = RequestState.RUNNING


class Instance(Protocol):
    """One session that runs a whole batch; `run` blocks and is called from a worker thread."""

    def run(
        self, output_names: Sequence[str], feeds: dict[str, np.ndarray]
    ) -> list[np.ndarray]: ...


class BatchOutcome(NamedTuple):
    ran: list[PendingRequest]  # the requests the run was for; the others left before it
    results: list[dict[str, np.ndarray]] | None  # one per request of `ran`, on success
    times: ExecutionTimes | None
    error: BaseException | None


class BatchRunner:
    """One model's way of running a batch; `run` is called in an instance's thread."""

    def __init__(
        self,
        model: str,
        input_names: Sequence[str],
        output_names: Sequence[str],
        batched: bool,
        claim_lock: threading.Lock,
    ) -> None:
        self.model = model
        self._input_names = tuple(input_names)
        self._all_outputs = tuple(output_names)
        self._batched = batched
        self._claim_lock = claim_lock

    def run(self, instance: Instance, batch: list[PendingRequest]) -> BatchOutcome:
        """Never raises: a failed run comes back as the outcome's error."""
        with self._claim_lock:
            ran = [p for p in batch if p.state is HANDED]
            for p in ran:
                p.state = RUNNING
        if not ran:
            return BatchOutcome(ran, None, None, None)
        t0 = time.monotonic()
        rows = sum(p.rows for p in ran)
        for p in ran:  # read on the loop only once the outcome is back
            p.compute_start = t0
            p.batch_rows = rows
        try:
            feeds = merge_inputs(ran, self._input_names)
            names = output_names_for(ran, self._all_outputs)
            t1 = time.monotonic()
            arrays = instance.run(names, feeds)
            t2 = time.monotonic()
            results = split_outputs(ran, names, arrays, rows, self.model, self._batched)
            t3 = time.monotonic()
        except Exception as error:  # the loop's side turns it into the batch's error
            return BatchOutcome(ran, None, None, error)
        return BatchOutcome(
            ran, results, ExecutionTimes(rows, len(ran), t1 - t0, t2 - t1, t3 - t2), None
        )
