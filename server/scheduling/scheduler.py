"""A model's queue and what feeds its instances: the dynamic batcher.

Requests queue in arrival order; a dispatch pass on the event loop hands each batch to a free
instance, whose blocking run happens in the instance's worker thread. A pass is a plain loop
callback, not a task: it runs when a request arrives, a batch finishes or a batching delay ends,
and costs no task step or wake-up future per execution. Semantics follow Triton's dynamic
batcher: a batch grows up to the target size while the *oldest* request has waited less than
the max queue delay; with a delay of 0 whatever is queued goes as soon as an instance is free.
Models without dynamic batching take the same path with one request per execution.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from server.errors import (
    DeadlineExceededError,
    InferenceServerError,
    InternalError,
    ResourceExhaustedError,
    UnavailableError,
)
from server.inference import InferenceRequest
from server.scheduling import fine_timer
from server.scheduling.execution import BatchOutcome, BatchRunner, Instance
from server.scheduling.observer import ExecutionTimes, NullObserver, SchedulerObserver
from server.scheduling.pending import PendingRequest, RequestState
from server.scheduling.policy import BatchPolicy
from server.scheduling.worker import InstanceThread

log = logging.getLogger(__name__)

QUEUED = RequestState.QUEUED
HANDED = RequestState.HANDED
CANCELLED = RequestState.CANCELLED


class Scheduler:
    def __init__(
        self,
        model: str,
        instances: Sequence[Instance],
        policy: BatchPolicy,
        input_names: Sequence[str],
        output_names: Sequence[str],
        batched: bool,
        observer: SchedulerObserver | None = None,
    ) -> None:
        if not instances:
            raise ValueError("a scheduler needs at least one instance")
        self.model = model
        self.policy = policy
        self._input_names = tuple(input_names)
        # Taken by the instance threads to claim a batch's requests, and by the loop to expire
        # or cancel a request handed to a thread: whichever comes first decides.
        self._claim_lock = threading.Lock()
        self._runner = BatchRunner(model, input_names, output_names, batched, self._claim_lock)
        self._observer = observer or NullObserver()
        # Free execution slots, one per instance; an unbatched model gets a second one, so that
        # its next request already waits in the instance's thread and runs the moment the one
        # before finishes, not a round trip through the loop later. Batching models keep one:
        # what queues meanwhile joins their next batch instead.
        depth = 1 if policy.batching else 2
        self._idle: list[Instance] = [i for _ in range(depth) for i in instances]
        self._instance_count = len(instances)
        self._instances = tuple(instances)
        # id(instance) -> the thread that runs its batches; made by start(), ended by close().
        self._threads: dict[int, InstanceThread] = {}
        self._queue: deque[PendingRequest] = deque()
        self._queued = 0  # requests in state QUEUED; the queue may also hold dead entries
        self._running = 0  # executions handed to an instance thread and not yet finished
        self._drained: asyncio.Future[None] | None = None  # close() waits on it for _running 0
        self._emptied: asyncio.Future[None] | None = None  # close() waits on it for _queued 0
        self._dispatch_due = False  # a _dispatch call is scheduled on the loop
        # Wakes _dispatch when the oldest request's batching delay ends.
        self._timer: asyncio.TimerHandle | fine_timer.FineHandle | None = None
        self._timer_at = 0.0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- public -------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queued

    @property
    def executions_in_flight(self) -> int:
        return self._running

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._threads = {
            id(instance): InstanceThread(f"run-{self.model}-{n}", self._loop)
            for n, instance in enumerate(self._instances)
        }

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        """Queues a validated request and waits for its outputs."""
        pending = self.enqueue(request)
        try:
            return await pending.future
        except asyncio.CancelledError:
            self._cancel(pending)
            raise

    def enqueue(self, request: InferenceRequest) -> PendingRequest:
        """Synchronous, so a caller that just looked the model up cannot race a model swap."""
        if self._closing or self._loop is None:
            raise UnavailableError(f"model '{self.model}' is not accepting requests")
        policy = self.policy
        if policy.max_queue_size and self._queued >= policy.max_queue_size:
            raise ResourceExhaustedError(
                f"model '{self.model}': queue is full ({policy.max_queue_size} requests waiting, "
                f"max_queue_size {policy.max_queue_size})"
            )
        loop = self._loop
        now = loop.time()
        inputs = request.inputs
        key = tuple(inputs[n].shape[1:] for n in self._input_names) if policy.batching else ()
        pending = PendingRequest(request, loop.create_future(), key, now)
        deadline = request.deadline
        if policy.default_timeout and not request.parameters.get("timeout"):
            # The default stands in for a missing `timeout` parameter; a client's gRPC deadline
            # is its own limit and must not lift the operator's queue timeout.
            default = now + policy.default_timeout
            if deadline is None or default < deadline:
                deadline = default
        if deadline is not None:
            if deadline <= now:  # a timer due now would fire after the batcher took it
                raise DeadlineExceededError(
                    f"model '{self.model}': the request's deadline had passed when it arrived"
                )
            pending.timer = loop.call_at(deadline, self._expire, pending)
        self._queue.append(pending)
        self._queued += 1
        self._wake()
        return pending

    async def close(self, timeout: float | None = None) -> None:
        """Stops taking requests, lets queued and running ones finish, then releases threads."""
        self._closing = True
        loop = asyncio.get_running_loop()
        # One timeout for both waits: the queue's and the running batches'.
        deadline = None if timeout is None else loop.time() + timeout
        if self._queued and self._loop is not None:
            self._emptied = loop.create_future()
            self._wake()  # closing: batches leave without waiting for their delay
            try:
                await asyncio.wait_for(asyncio.shield(self._emptied), timeout)
            except TimeoutError:
                self._fail_queued(UnavailableError(f"model '{self.model}' was unloaded"))
        self._set_timer(None)
        if self._running:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            self._drained = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), left)
            except TimeoutError:
                pass  # the threads finish their jobs after stop(); nobody waits for them
        for thread in self._threads.values():
            thread.stop()

    # --- the loop -----------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hands batches to idle instances while the policy lets a batch leave."""
        self._dispatch_due = False
        try:
            while self._idle:
                batch, wake_at = self._next_batch()
                if batch is None:
                    self._set_timer(wake_at)
                    break
                self._launch(self._idle.pop(), batch)
        except Exception:  # one bad batch must never stop the scheduler
            log.exception("model '%s': scheduler error", self.model)
        emptied = self._emptied
        if self._closing and not self._queued and emptied is not None and not emptied.done():
            emptied.set_result(None)

    def _next_batch(self) -> tuple[list[PendingRequest] | None, float | None]:
        queue = self._queue
        while queue and queue[0].state is not QUEUED:
            queue.popleft()
        if not queue:
            return None, None
        policy = self.policy
        if not policy.batching:
            return [self._take(queue.popleft())], None

        head = queue[0]
        key = head.shape_key
        rows = 0
        count = 0
        ready = False
        for p in queue:
            if p.state is not QUEUED:
                count += 1
                continue
            # The target (<= max_rows) is never crossed; the first request always runs, even
            # when it alone is larger than the target.
            if rows and (p.shape_key != key or rows + p.rows > policy.target_rows):
                ready = True  # the next request cannot join: send what we have
                break
            rows += p.rows
            count += 1
            if rows >= policy.target_rows:
                ready = True
                break
        if not ready and policy.max_delay > 0 and not self._closing:
            wake_at = head.queue_start + policy.max_delay
            if self._loop.time() < wake_at:  # type: ignore[union-attr]
                return None, wake_at
        batch = []
        for _ in range(count):
            p = queue.popleft()
            if p.state is QUEUED:
                batch.append(self._take(p))
        return batch, None

    def _take(self, pending: PendingRequest) -> PendingRequest:
        # Its deadline timer stays armed: the request may wait in the thread before it runs.
        pending.state = HANDED
        self._queued -= 1
        return pending

    def _launch(self, instance: Instance, batch: list[PendingRequest]) -> None:
        """Hands the batch to the instance's thread; _batch_done takes the outcome on the loop.

        No task per execution: the thread's outcome reaches _batch_done in one
        call_soon_threadsafe (a task and its future cost ~10 us of CPU per execution).
        """
        self._running += 1
        try:
            self._threads[id(instance)].run_then(
                self._runner.run, (instance, batch), self._batch_done, (instance, batch)
            )
        except BaseException as error:  # never strand the batch or lose the instance
            self._batch_done((instance, batch), None, error)

    def _batch_done(
        self,
        context: tuple[Instance, list[PendingRequest]],
        outcome: BatchOutcome | None,
        error: BaseException | None,
    ) -> None:
        instance, batch = context
        ran: list[PendingRequest] = []
        try:
            if outcome is None:  # the thread failed outside the run itself
                ran = [p for p in batch if p.state not in (CANCELLED, RequestState.DONE)]
                outcome = BatchOutcome(ran, None, None, error)
            ran, results, times, failure = outcome
            if results is not None:
                end = time.monotonic()
                for p, outputs in zip(ran, results, strict=True):
                    p.compute_end = end
                    p.finish(outputs, None)
                self._report(ran, None, times)
            elif isinstance(failure, InferenceServerError):
                self._finish_all(ran, failure)
            elif failure is not None:  # ONNX Runtime's own failures carry its message
                log.error(
                    "model '%s': a batch of %d request(s) failed: %s", self.model, len(ran), failure
                )
                self._finish_all(ran, InternalError(f"model '{self.model}': {failure}"))
            # No results and no failure: every request left before the run, and nothing ran.
        except Exception:  # the instance must come back whatever happened
            log.exception("model '%s': finishing a batch failed", self.model)
            self._finish_all(ran, InternalError(f"model '{self.model}': internal error"))
        finally:
            self._idle.append(instance)
            self._running -= 1
            drained = self._drained
            if not self._running and drained is not None and not drained.done():
                drained.set_result(None)
            self._wake()

    # --- helpers ------------------------------------------------------------------------

    def _finish_all(self, batch: list[PendingRequest], error: BaseException) -> None:
        end = time.monotonic()
        for p in batch:
            p.compute_end = end
            p.finish(None, error)
        self._report(batch, error, None)

    def _report(
        self, batch: list[PendingRequest], error: BaseException | None, times: ExecutionTimes | None
    ) -> None:
        """Runs once every future is complete, so a fault in statistics never strands a client."""
        try:
            if times is not None:
                self._observer.on_execution(times)
            for p in batch:
                self._observer.on_request_done(p, error)
        except Exception:
            log.exception("model '%s': statistics observer failed", self.model)

    def _cancel(self, pending: PendingRequest) -> None:
        state = pending.state
        if state is QUEUED:
            self._queued -= 1  # the slot is freed here, once; the dead entry is skipped later
            if self._closing:
                self._wake()  # close() may be waiting for the queue to empty
        if state is not RequestState.DONE:
            # Handed: its thread skips it. Running: its result is dropped.
            with self._claim_lock:
                pending.state = CANCELLED
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None

    def _expire(self, pending: PendingRequest) -> None:
        pending.timer = None
        if pending.state is QUEUED:
            self._queued -= 1
            pending.state = CANCELLED
        elif pending.state is HANDED:
            with self._claim_lock:  # its thread may be claiming it right now
                if pending.state is not HANDED:
                    return  # claimed: it runs, and a timeout applies only before that
                pending.state = CANCELLED
        else:
            return  # running: a timeout applies only before the run starts
        error = DeadlineExceededError(
            f"model '{self.model}': request timed out after waiting in the queue"
        )
        if not pending.future.done():
            pending.future.set_exception(error)
        self._observer.on_request_done(pending, error)
        self._wake()

    def _fail_queued(self, error: BaseException) -> None:
        while self._queue:
            p = self._queue.popleft()
            if p.state is QUEUED:
                self._queued -= 1
                p.finish(None, error)
                self._observer.on_request_done(p, error)

    def _set_timer(self, wake_at: float | None) -> None:
        """One pending wake-up at most: at the oldest batch's deadline, or none."""
        timer = self._timer
        if timer is not None:
            if wake_at == self._timer_at:
                return
            timer.cancel()
            self._timer = None
        if wake_at is not None and self._loop is not None:
            # The batching delay may be far below epoll's millisecond: fine_timer keeps it.
            self._timer = fine_timer.call_at(self._loop, wake_at, self._on_timer)
            self._timer_at = wake_at

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _wake(self) -> None:
        """A dispatch pass after the callbacks already due on the loop, so that requests
        arriving in the same loop iteration can join one batch; one pass is pending at most."""
        if not self._dispatch_due and self._loop is not None:
            self._dispatch_due = True
            self._loop.call_soon(self._dispatch)
