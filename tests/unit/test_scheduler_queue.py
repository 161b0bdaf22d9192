"""The queue policy: size limit, timeouts, client cancellation, draining on close."""

from __future__ import annotations

import asyncio
import random

import pytest

from server.errors import DeadlineExceededError, ResourceExhaustedError, UnavailableError
from tests.unit.scheduler_fakes import (
    FakeInstance,
    Gate,
    Recorder,
    RecordingObserver,
    check_outputs,
    make_scheduler,
    policy,
    request,
    running,
    wait_until,
)


def test_full_queue_refuses_at_once_and_takes_requests_again_once_drained() -> None:
    gate = Gate()
    instance = FakeInstance(Recorder(), gate=gate)

    async def main() -> None:
        sched = make_scheduler([instance], policy(1, max_queue_size=3))
        async with running(sched, gate) as s:
            running_one = s.enqueue(request(0))
            await wait_until(instance.started.is_set)  # request 0 left the queue
            queued = [s.enqueue(request(rid)) for rid in (1, 2, 3)]
            assert s.queue_depth == 3
            with pytest.raises(ResourceExhaustedError, match="queue is full"):
                s.enqueue(request(4))
            gate.open()
            for p in [running_one, *queued]:
                check_outputs(p.request, await p.future)
            assert s.queue_depth == 0
            again = [s.enqueue(request(rid)) for rid in (5, 6, 7)]
            for p in again:
                check_outputs(p.request, await p.future)

    asyncio.run(main())


def test_a_deadline_already_past_is_refused_at_once_and_never_runs() -> None:
    recorder = Recorder()
    instance = FakeInstance(recorder)

    async def main() -> None:
        sched = make_scheduler([instance], policy(1))
        async with running(sched) as s:
            past = asyncio.get_running_loop().time() - 0.001
            with pytest.raises(DeadlineExceededError, match="had passed"):
                s.enqueue(request(1, deadline=past))
            assert s.queue_depth == 0
            check_outputs(request(2), await s.infer(request(2)))

    asyncio.run(main())
    assert recorder.ran_ids() == [2]


@pytest.mark.parametrize("how", ["default_timeout", "request_deadline"])
def test_timeout_while_queued_answers_deadline_exceeded_and_never_runs(how: str) -> None:
    gate = Gate()
    recorder = Recorder()
    instance = FakeInstance(recorder, gate=gate)
    observer = RecordingObserver()
    timeout = 0.05 if how == "default_timeout" else 0.0

    async def main() -> None:
        sched = make_scheduler([instance], policy(1, timeout=timeout), observer)
        async with running(sched, gate) as s:
            first = asyncio.ensure_future(s.infer(request(0)))
            await wait_until(instance.started.is_set)
            deadline = asyncio.get_running_loop().time() + 0.05 if timeout == 0 else None
            with pytest.raises(DeadlineExceededError, match="timed out"):
                await s.infer(request(1, deadline=deadline))
            assert s.queue_depth == 0
            gate.open()
            # The timeout applies while queued only: request 0 ran longer than it and succeeds.
            check_outputs(request(0), await first)
            check_outputs(request(2), await s.infer(request(2)))

    asyncio.run(main())
    assert recorder.ran_ids() == [0, 2]
    errors = {p.request.id: type(e) for p, e in observer.done}
    assert errors == {"0": type(None), "1": DeadlineExceededError, "2": type(None)}


def test_default_timeout_applies_to_requests_without_a_timeout_parameter() -> None:
    gate = Gate()
    recorder = Recorder()
    instance = FakeInstance(recorder, gate=gate)

    async def main() -> None:
        sched = make_scheduler([instance], policy(1, timeout=0.05))
        async with running(sched, gate) as s:
            first = s.enqueue(request(0))
            await wait_until(instance.started.is_set)
            later = asyncio.get_running_loop().time() + 60.0
            # A generous gRPC deadline does not lift the model's default queue timeout...
            with pytest.raises(DeadlineExceededError):
                await asyncio.wait_for(s.infer(request(1, deadline=later)), 10.0)
            # ...but a `timeout` parameter of the request's own replaces it.
            own = request(2, deadline=later)
            own.parameters["timeout"] = 60_000_000
            waiting = asyncio.ensure_future(s.infer(own))
            await asyncio.sleep(0.2)  # pacing: outlasts the model's 50 ms queue timeout
            assert not waiting.done()
            gate.open()
            check_outputs(first.request, await first.future)
            check_outputs(own, await waiting)

    asyncio.run(main())
    assert recorder.ran_ids() == [0, 2]


def test_cancelled_requests_never_run_and_free_their_slot_exactly_once() -> None:
    size = 300
    gate = Gate()
    recorder = Recorder()
    instance = FakeInstance(recorder, gate=gate)
    rng = random.Random(3)

    async def main() -> set[int]:
        # With a default timeout every request also holds a timer that cancelling must release.
        sched = make_scheduler([instance], policy(4, max_queue_size=size, timeout=30.0))
        async with running(sched, gate) as s:
            blocker = s.enqueue(request(-1))
            await wait_until(instance.started.is_set)
            tasks = {rid: asyncio.ensure_future(s.infer(request(rid))) for rid in range(size)}
            await wait_until(lambda: s.queue_depth == size)  # every task has queued its request
            with pytest.raises(ResourceExhaustedError):
                s.enqueue(request(size))
            cancelled: set[int] = set()
            for _ in range(3):  # storms of random cancels; some tasks are cancelled twice
                for rid in rng.sample(range(size), 120):
                    tasks[rid].cancel()
                    cancelled.add(rid)
                await asyncio.sleep(0)  # a yield: this storm's cancels land before the next one
            # Each cancelled request frees its slot exactly once: never below this count.
            await wait_until(lambda: s.queue_depth == size - len(cancelled))
            # Every freed slot can be taken again, and not one more.
            refill = [s.enqueue(request(1000 + n)) for n in range(len(cancelled))]
            assert s.queue_depth == size
            with pytest.raises(ResourceExhaustedError):
                s.enqueue(request(size))
            gate.open()
            check_outputs(blocker.request, await blocker.future)
            for p in refill:
                check_outputs(p.request, await p.future)
            for rid, task in tasks.items():
                if rid in cancelled:
                    assert task.cancelled()
                else:
                    check_outputs(request(rid), await task)
            assert s.queue_depth == 0
            return cancelled

    cancelled = asyncio.run(main())
    ran = recorder.ran_ids()
    assert not cancelled.intersection(ran)
    assert len(ran) == len(set(ran)) == 1 + size


def test_cancel_while_running_drops_the_result_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    recorder = Recorder()
    instance = FakeInstance(recorder, gate=gate)

    async def main() -> None:
        async with running(make_scheduler([instance], policy(8)), gate) as s:
            alone = asyncio.ensure_future(s.infer(request(0)))
            await wait_until(lambda: len(recorder.calls) == 1)
            # Two requests that will share the next batch; one of them is cancelled mid-run.
            kept = asyncio.ensure_future(s.infer(request(1)))
            dropped = asyncio.ensure_future(s.infer(request(2)))
            await wait_until(lambda: s.queue_depth == 2)
            alone.cancel()
            gate.allow()
            await wait_until(lambda: len(recorder.calls) == 2)
            dropped.cancel()
            await wait_until(dropped.done)  # the cancel landed while its batch runs
            gate.allow()
            check_outputs(request(1), await kept)
            assert dropped.cancelled() and alone.cancelled()
            gate.open()
            check_outputs(request(3), await s.infer(request(3)))
            assert s.queue_depth == 0

    with caplog.at_level("ERROR"):
        asyncio.run(main())
    assert [c.requests for c in recorder.calls] == [[0], [1, 2], [3]]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_close_drains_queued_requests_without_waiting_the_delay() -> None:
    recorder = Recorder()
    instance = FakeInstance(recorder, seconds=0.02)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        s = make_scheduler([instance], policy(2, delay=10.0))
        s.start()
        pendings = [s.enqueue(request(rid)) for rid in range(5)]
        start = loop.time()
        await s.close(30.0)
        elapsed = loop.time() - start
        for p in pendings:
            check_outputs(p.request, p.future.result())
        with pytest.raises(UnavailableError):
            s.enqueue(request(9))
        return elapsed

    elapsed = asyncio.run(main())
    assert sorted(recorder.ran_ids()) == [0, 1, 2, 3, 4]
    assert elapsed < 5.0  # the lone last request did not wait its 10 s delay


def test_close_timeout_fails_what_is_still_queued() -> None:
    gate = Gate()
    recorder = Recorder()
    instance = FakeInstance(recorder, gate=gate)

    async def main() -> None:
        s = make_scheduler([instance], policy(1))
        s.start()
        stuck = s.enqueue(request(0))
        await wait_until(instance.started.is_set)
        queued = [s.enqueue(request(rid)) for rid in (1, 2)]
        await s.close(0.2)
        for p in queued:
            with pytest.raises(UnavailableError, match="unloaded"):
                await p.future
        assert s.queue_depth == 0
        gate.open()  # the run that outlived the timeout still answers its client
        check_outputs(stuck.request, await stuck.future)

    asyncio.run(main())
    assert recorder.ran_ids() == [0]


@pytest.mark.parametrize("leaves_by", ["deadline", "cancel"])
def test_a_request_waiting_in_the_instance_thread_can_still_leave_and_never_runs(
    leaves_by: str,
) -> None:
    gate = Gate()
    recorder = Recorder()
    instance = FakeInstance(recorder, gate=gate)
    observer = RecordingObserver()

    async def main() -> None:
        sched = make_scheduler([instance], policy(1, batching=False), observer)
        async with running(sched, gate) as s:
            first = asyncio.ensure_future(s.infer(request(0)))
            await wait_until(instance.started.is_set)
            deadline = asyncio.get_running_loop().time() + 0.05
            waiting = asyncio.ensure_future(
                s.infer(request(1, deadline=deadline if leaves_by == "deadline" else None))
            )
            # Handed to the instance's thread, behind the run held at the gate.
            await wait_until(lambda: s.executions_in_flight == 2 and s.queue_depth == 0)
            if leaves_by == "deadline":
                with pytest.raises(DeadlineExceededError, match="timed out"):
                    await waiting  # answered at its deadline, while the run before still holds
            else:
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            assert not first.done()
            gate.open()
            check_outputs(request(0), await first)
            check_outputs(request(2), await s.infer(request(2)))

    asyncio.run(main())
    assert recorder.ran_ids() == [0, 2]
    done = [(p.request.id, type(e).__name__) for p, e in observer.done]
    expected_1 = [("1", "DeadlineExceededError")] if leaves_by == "deadline" else []
    assert sorted(done) == sorted([("0", "NoneType"), *expected_1, ("2", "NoneType")])
