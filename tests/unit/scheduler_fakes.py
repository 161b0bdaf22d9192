"""Fake instances and helpers for driving the Scheduler without a server or onnxruntime.

The fake model has inputs INPUT0 (FP32 [rows, width]) and ID (INT64 [rows, 1]) and outputs
OUTPUT0 = 2 * INPUT0 and ID_OUT = ID, so every response can be checked row by row against the
request that sent it. Every run is recorded (ids in batch order, rows, width, thread, times).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np

from server.inference import InferenceRequest
from server.scheduling.observer import ExecutionTimes
from server.scheduling.pending import PendingRequest
from server.scheduling.policy import BatchPolicy
from server.scheduling.scheduler import Scheduler

INPUTS = ("INPUT0", "ID")
OUTPUTS = ("OUTPUT0", "ID_OUT")
GATE_TIMEOUT = 30.0  # a forgotten gate must not hang the suite


@dataclass
class Call:
    instance: int
    ids: list[int]  # one entry per row, in batch order
    width: int
    output_names: tuple[str, ...]
    thread: int
    start: float
    end: float = 0.0

    @property
    def rows(self) -> int:
        return len(self.ids)

    @property
    def requests(self) -> list[int]:
        """The request ids of the batch in order, one per request."""
        return [i for n, i in enumerate(self.ids) if n == 0 or self.ids[n - 1] != i]


@dataclass
class Recorder:
    """Shared by the instances of one scheduler."""

    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ran_ids(self) -> list[int]:
        with self.lock:
            return [i for c in self.calls for i in c.requests]


class Gate:
    """Holds runs back: allow(n) lets n more runs through, open() lets every run through."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._permits = 0
        self._opened = False

    def allow(self, runs: int = 1) -> None:
        with self._cond:
            self._permits += runs
            self._cond.notify_all()

    def open(self) -> None:
        with self._cond:
            self._opened = True
            self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._opened or self._permits > 0, GATE_TIMEOUT)
            if not self._opened and self._permits > 0:
                self._permits -= 1


class FakeInstance:
    def __init__(
        self,
        recorder: Recorder,
        index: int = 0,
        *,
        seconds: float = 0.0,
        gate: Gate | None = None,
        meet: threading.Barrier | None = None,
        fail_ids: frozenset[int] = frozenset(),
    ) -> None:
        self.recorder = recorder
        self.index = index
        self.seconds = seconds  # blocking work per run, whatever the batch size
        self.gate = gate  # when set, each run waits for it before computing
        self.meet = meet  # when set, each run waits there for runs on the other instances
        self.fail_ids = fail_ids  # a batch holding one of these raises like ORT would
        self.drop_last_row = False  # returns one row too few
        self.started = threading.Event()

    def run(self, output_names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids = feeds["ID"][:, 0].tolist()
        call = Call(
            self.index,
            ids,
            feeds["INPUT0"].shape[1],
            tuple(output_names),
            threading.get_ident(),
            time.monotonic(),
        )
        with self.recorder.lock:
            self.recorder.calls.append(call)
        self.started.set()
        if self.gate is not None:
            self.gate.wait()
        if self.meet is not None:
            self.meet.wait(GATE_TIMEOUT)  # breaks (and fails the run) unless all meet at once
        if self.seconds:
            time.sleep(self.seconds)  # stands for the model's computing time
        bad = self.fail_ids.intersection(ids)
        if bad:
            raise RuntimeError(f"Gather: indices element out of data bounds, idx={min(bad)}")
        outputs = {"OUTPUT0": feeds["INPUT0"] * 2, "ID_OUT": feeds["ID"].copy()}
        if self.drop_last_row:
            outputs = {name: array[:-1] for name, array in outputs.items()}
        call.end = time.monotonic()
        return [outputs[name] for name in output_names]


class RecordingObserver:
    def __init__(self) -> None:
        self.executions: list[ExecutionTimes] = []
        self.done: list[tuple[PendingRequest, BaseException | None]] = []

    def on_execution(self, times: ExecutionTimes) -> None:
        self.executions.append(times)

    def on_request_done(self, pending: PendingRequest, error: BaseException | None) -> None:
        self.done.append((pending, error))


def policy(
    max_rows: int = 8,
    target: int | None = None,
    delay: float = 0.0,
    max_queue_size: int = 0,
    timeout: float = 0.0,
    batching: bool = True,
) -> BatchPolicy:
    return BatchPolicy(batching, max_rows, target or max_rows, delay, max_queue_size, timeout)


def request(
    rid: int,
    rows: int = 1,
    width: int = 2,
    outputs: tuple[str, ...] | None = None,
    deadline: float | None = None,
) -> InferenceRequest:
    """Rows hold distinct values, so a row returned to the wrong request cannot go unnoticed."""
    values = np.arange(rows * width, dtype=np.float32).reshape(rows, width) + rid * 1000
    ids = np.full((rows, 1), rid, dtype=np.int64)
    return InferenceRequest(
        "fake",
        "1",
        {"INPUT0": values, "ID": ids},
        requested_outputs=outputs,
        id=str(rid),
        batch_size=rows,
        deadline=deadline,
    )


def check_outputs(req: InferenceRequest, outputs: dict[str, np.ndarray]) -> None:
    """Exactly the request's own rows, of exactly the outputs it asked for, in its order."""
    assert list(outputs) == list(req.requested_outputs or OUTPUTS)
    if "OUTPUT0" in outputs:
        np.testing.assert_array_equal(outputs["OUTPUT0"], req.inputs["INPUT0"] * 2)
    if "ID_OUT" in outputs:
        np.testing.assert_array_equal(outputs["ID_OUT"], req.inputs["ID"])


def make_scheduler(
    instances: Sequence[FakeInstance],
    batch_policy: BatchPolicy,
    observer: RecordingObserver | None = None,
) -> Scheduler:
    return Scheduler("fake", instances, batch_policy, INPUTS, OUTPUTS, True, observer)


@asynccontextmanager
async def running(scheduler: Scheduler, *gates: Gate) -> AsyncIterator[Scheduler]:
    """Starts the scheduler; on the way out opens every gate and closes it."""
    scheduler.start()
    try:
        yield scheduler
    finally:
        for gate in gates:
            gate.open()
        await scheduler.close(GATE_TIMEOUT)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)  # pacing the poll
