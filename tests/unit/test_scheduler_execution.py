"""Running batches: failures stay inside their batch, instances run in parallel off the loop."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from server.errors import InternalError
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


async def outcomes(pendings: list) -> list:
    return await asyncio.gather(*(p.future for p in pendings), return_exceptions=True)


def test_failing_run_fails_only_its_own_batch_with_the_message() -> None:
    recorder = Recorder()
    instance = FakeInstance(recorder, fail_ids=frozenset({1}))

    async def main() -> list:
        async with running(make_scheduler([instance], policy(2))) as s:
            pendings = [s.enqueue(request(rid)) for rid in range(6)]
            return list(zip(pendings, await outcomes(pendings), strict=True))

    results = asyncio.run(main())
    assert [c.requests for c in recorder.calls] == [[0, 1], [2, 3], [4, 5]]
    for _pending, result in results[:2]:
        assert isinstance(result, InternalError)
        assert result.message == ("model 'fake': Gather: indices element out of data bounds, idx=1")
    for pending, result in results[2:]:
        check_outputs(pending.request, result)


def test_wrong_row_count_fails_the_batch_cleanly() -> None:
    recorder = Recorder()
    instance = FakeInstance(recorder)
    instance.drop_last_row = True

    async def main() -> None:
        async with running(make_scheduler([instance], policy(8))) as s:
            pendings = [s.enqueue(request(rid, rows)) for rid, rows in enumerate([2, 3])]
            for result in await outcomes(pendings):
                assert isinstance(result, InternalError)
                assert "output 'OUTPUT0' has shape [4, 2], expected 5 rows" in result.message
            instance.drop_last_row = False
            check_outputs(request(2), await s.infer(request(2)))

    asyncio.run(main())


def test_two_slow_instances_run_at_the_same_time_off_the_event_loop() -> None:
    recorder = Recorder()
    meet = threading.Barrier(2)  # passed only by two runs under way at the same time
    instances = [FakeInstance(recorder, i, meet=meet) for i in range(2)]

    async def main() -> None:
        async with running(make_scheduler(instances, policy(1))) as s:
            pendings = [s.enqueue(request(rid)) for rid in range(2)]
            for p in pendings:
                check_outputs(p.request, await p.future)

    asyncio.run(main())
    first, second = recorder.calls
    assert {first.instance, second.instance} == {0, 1}
    assert first.thread != second.thread
    assert threading.get_ident() not in (first.thread, second.thread)
    assert not meet.broken  # one after the other, the first run would have broken the barrier


def test_an_instance_runs_one_batch_at_a_time() -> None:
    gate = Gate()
    recorder = Recorder()
    instance = FakeInstance(recorder, gate=gate)

    async def main() -> None:
        async with running(make_scheduler([instance], policy(1)), gate) as s:
            pendings = [s.enqueue(request(rid)) for rid in range(3)]
            await wait_until(lambda: len(recorder.calls) == 1 and s.queue_depth == 2)
            gate.open()
            await outcomes(pendings)

    asyncio.run(main())
    calls = recorder.calls
    assert len(calls) == 3
    # A second run started while the first waited at the gate would start before its end.
    assert all(a.end <= b.start for a, b in itertools.pairwise(calls))


def test_observer_gets_queue_and_compute_times_and_batch_rows() -> None:
    observer = RecordingObserver()
    instance = FakeInstance(Recorder(), fail_ids=frozenset({9}), seconds=0.01)

    async def main() -> None:
        async with running(make_scheduler([instance], policy(8), observer)) as s:
            pendings = [s.enqueue(request(rid, rows)) for rid, rows in enumerate([1, 3, 2])]
            await outcomes(pendings)
            with pytest.raises(InternalError):
                await s.infer(request(9, 2))

    asyncio.run(main())
    assert [(t.rows, t.requests) for t in observer.executions] == [(6, 3)]
    assert observer.executions[0].infer >= 0.009  # the run's 10 ms are inside the measurement
    done = {p.request.id: (p, error) for p, error in observer.done}
    assert sorted(done) == ["0", "1", "2", "9"]
    for rid, (pending, error) in done.items():
        assert pending.queue_start <= pending.compute_start <= pending.compute_end
        assert pending.batch_rows == (2 if rid == "9" else 6)
        assert (error is None) == (rid != "9")


class FaultyObserver(RecordingObserver):
    def on_request_done(self, pending, error) -> None:
        super().on_request_done(pending, error)
        raise ValueError("statistics bug")


def test_a_faulty_observer_never_leaves_requests_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = FaultyObserver()
    instance = FakeInstance(Recorder(), fail_ids=frozenset({3}))

    async def main() -> None:
        async with running(make_scheduler([instance], policy(2), observer)) as s:
            pendings = [s.enqueue(request(rid)) for rid in range(4)]
            results = await asyncio.wait_for(outcomes(pendings), 10.0)
            for p, result in zip(pendings[:2], results[:2], strict=True):
                check_outputs(p.request, result)
            assert all(isinstance(r, InternalError) for r in results[2:])
            check_outputs(request(5), await asyncio.wait_for(s.infer(request(5)), 10.0))

    with caplog.at_level("ERROR"):
        asyncio.run(main())
    # The first report of each execution raised; it was logged, and nothing else was harmed.
    assert sorted(p.request.id for p, _ in observer.done) == ["0", "2", "5"]
    logged = [r for r in caplog.records if "statistics observer failed" in r.getMessage()]
    assert len(logged) == 3


def test_an_unbatched_instance_has_its_next_request_waiting_in_its_thread() -> None:
    gate = Gate()
    recorder = Recorder()
    observer = RecordingObserver()
    instance = FakeInstance(recorder, gate=gate)

    async def main() -> None:
        sched = make_scheduler([instance], policy(1, batching=False), observer)
        async with running(sched, gate) as s:
            pendings = [s.enqueue(request(rid)) for rid in range(3)]
            # One runs, one waits in the instance's thread, one in the queue.
            await wait_until(lambda: len(recorder.calls) == 1 and s.executions_in_flight == 2)
            assert s.queue_depth == 1
            gate.open()
            for p in pendings:
                check_outputs(p.request, await p.future)

    asyncio.run(main())
    calls = recorder.calls
    assert [c.requests for c in calls] == [[0], [1], [2]]
    assert all(a.end <= b.start for a, b in itertools.pairwise(calls))
    # The time a request waited in the thread counts as queue time, not compute time.
    done = {p.request.id: p for p, error in observer.done if error is None}
    for call in calls:
        pending = done[str(call.ids[0])]
        assert pending.compute_start <= call.start <= call.end <= pending.compute_end
