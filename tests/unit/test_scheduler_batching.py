"""How the dynamic batcher forms batches: rows, delay, preferred size, shapes, output subsets."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.scheduler_fakes import (
    FakeInstance,
    Recorder,
    RecordingObserver,
    check_outputs,
    make_scheduler,
    policy,
    request,
    running,
    wait_until,
)

OUTPUT_CHOICES = (None, ("OUTPUT0",), ("ID_OUT",), ("ID_OUT", "OUTPUT0"))


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    max_rows = draw(st.integers(1, 8))
    specs = draw(
        st.lists(
            st.tuples(
                st.integers(1, max_rows),  # rows
                st.sampled_from((2, 3)),  # width: requests of different widths never mix
                st.floats(0, 0.004),  # arrival offset in seconds
                st.sampled_from(OUTPUT_CHOICES),
                st.one_of(st.none(), st.floats(0, 0.006)),  # when its client cancels, if ever
            ),
            min_size=1,
            max_size=40,
        )
    )
    return {
        "max_rows": max_rows,
        "target": draw(st.integers(1, max_rows)),
        "delay": draw(st.sampled_from((0.0, 0.001, 0.003))),
        "instances": draw(st.integers(1, 3)),
        "seconds": draw(st.sampled_from((0.0, 0.001))),
        "specs": specs,
    }


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_every_response_holds_exactly_its_own_rows(scenario: dict) -> None:
    recorder = Recorder()
    instances = [
        FakeInstance(recorder, i, seconds=scenario["seconds"]) for i in range(scenario["instances"])
    ]
    batch_policy = policy(scenario["max_rows"], scenario["target"], scenario["delay"])
    specs = scenario["specs"]
    order: list[int] = []  # request ids in the order they were queued

    async def main() -> list:
        async with running(make_scheduler(instances, batch_policy)) as scheduler:

            async def one(rid: int, rows: int, width: int, arrival: float, outputs) -> tuple:
                await asyncio.sleep(arrival)  # pacing: the scenario's arrival time
                req = request(rid, rows, width, outputs)
                order.append(rid)  # infer() queues before its first await: nothing runs between
                return req, await scheduler.infer(req)

            loop = asyncio.get_running_loop()
            tasks = []
            for rid, (*spec, cancel_at) in enumerate(specs):
                tasks.append(asyncio.ensure_future(one(rid, *spec)))
                if cancel_at is not None:
                    loop.call_later(cancel_at, tasks[-1].cancel)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await wait_until(lambda: scheduler.queue_depth == 0)  # the last cancels landed
            return results

    results = asyncio.run(main())
    cancelled = set()
    for rid, result in enumerate(results):
        if isinstance(result, asyncio.CancelledError):
            assert specs[rid][4] is not None
            cancelled.add(rid)
        else:
            check_outputs(*result)

    position = {rid: n for n, rid in enumerate(order)}
    ran = recorder.ran_ids()
    assert len(ran) == len(set(ran)), "no request runs twice"
    assert set(range(len(specs))) - cancelled <= set(ran), "every request that was not cancelled"
    for call in recorder.calls:
        ids = call.requests
        assert call.rows <= scenario["max_rows"]
        # Past the target only a single request runs, never a batch of several.
        assert call.rows <= scenario["target"] or len(ids) == 1
        assert {specs[rid][1] for rid in ids} == {call.width}
        # A batch is a run of consecutive requests in arrival order, skipping cancelled ones.
        first, last = position[ids[0]], position[ids[-1]]
        skipped = set(order[first : last + 1]) - set(ids)
        assert skipped <= cancelled
        assert [position[rid] for rid in ids] == sorted(position[rid] for rid in ids)


def wait_of(observer: RecordingObserver, rid: int) -> float:
    pending = next(p for p, _ in observer.done if p.request.id == str(rid))
    return pending.compute_start - pending.queue_start


def test_lone_request_with_zero_delay_starts_at_once() -> None:
    observer = RecordingObserver()
    instance = FakeInstance(Recorder())

    async def main() -> None:
        async with running(make_scheduler([instance], policy(8, delay=0.0), observer)) as s:
            await s.infer(request(0))

    asyncio.run(main())
    # A delay of 0 never waits; 0.2 s only leaves room for a slow machine.
    assert wait_of(observer, 0) < 0.2


def test_lone_request_waits_the_delay_then_goes_alone() -> None:
    delay = 0.4
    observer = RecordingObserver()
    recorder = Recorder()

    async def main() -> None:
        sched = make_scheduler([FakeInstance(recorder)], policy(8, delay=delay), observer)
        async with running(sched) as s:
            await s.infer(request(0))

    asyncio.run(main())
    waited = wait_of(observer, 0)
    assert delay - 0.002 <= waited < delay + 2.0
    assert [c.requests for c in recorder.calls] == [[0]]


def test_delay_is_measured_from_the_oldest_request() -> None:
    delay = 0.5
    observer = RecordingObserver()
    recorder = Recorder()

    async def main() -> None:
        sched = make_scheduler([FakeInstance(recorder)], policy(8, delay=delay), observer)
        async with running(sched) as s:
            first = asyncio.ensure_future(s.infer(request(0)))
            await asyncio.sleep(0.3)  # pacing: the second request arrives 0.3 s after the first
            await asyncio.gather(first, s.infer(request(1)))

    asyncio.run(main())
    assert [c.requests for c in recorder.calls] == [[0, 1]]
    # Were the clock restarted by the second request, the first would wait about 0.8 s.
    assert delay - 0.002 <= wait_of(observer, 0) < 0.7


def test_burst_fills_the_preferred_size_without_waiting() -> None:
    recorder = Recorder()

    async def main() -> float:
        # A 10 s delay: any batch that waited for it would show in the elapsed time.
        sched = make_scheduler([FakeInstance(recorder)], policy(8, target=4, delay=10.0))
        async with running(sched) as s:
            loop = asyncio.get_running_loop()
            start = loop.time()
            pendings = [s.enqueue(request(rid)) for rid in range(8)]
            await asyncio.gather(*(p.future for p in pendings))
            return loop.time() - start

    elapsed = asyncio.run(main())
    assert [c.requests for c in recorder.calls] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert elapsed < 5.0


def test_batch_never_grows_past_the_preferred_size() -> None:
    recorder = Recorder()

    async def main() -> None:
        sched = make_scheduler([FakeInstance(recorder)], policy(8, target=4, delay=10.0))
        async with running(sched) as s:
            # 3 + 3 would fit max_batch_size 8 but cross the preferred 4: the 3 goes alone.
            pendings = [s.enqueue(request(rid, rows)) for rid, rows in enumerate([3, 3, 1, 2, 2])]
            await asyncio.gather(*(p.future for p in pendings))

    asyncio.run(main())
    assert [c.requests for c in recorder.calls] == [[0], [1, 2], [3, 4]]
    assert [c.rows for c in recorder.calls] == [3, 4, 4]


def test_max_rows_caps_a_batch() -> None:
    recorder = Recorder()

    async def main() -> None:
        sched = make_scheduler([FakeInstance(recorder)], policy(4))
        async with running(sched) as s:
            pendings = [s.enqueue(request(rid, rows)) for rid, rows in enumerate([2, 1, 2, 4, 1])]
            await asyncio.gather(*(p.future for p in pendings))

    asyncio.run(main())
    assert [c.requests for c in recorder.calls] == [[0, 1], [2], [3], [4]]


def test_only_requests_of_equal_shapes_share_a_batch() -> None:
    recorder = Recorder()

    async def main() -> None:
        async with running(make_scheduler([FakeInstance(recorder)], policy(8))) as s:
            widths = [2, 2, 3, 3, 2, 2]
            pendings = [s.enqueue(request(rid, 1, w)) for rid, w in enumerate(widths)]
            for p in pendings:
                check_outputs(p.request, await p.future)

    asyncio.run(main())
    assert [(c.requests, c.width) for c in recorder.calls] == [
        ([0, 1], 2),
        ([2, 3], 3),
        ([4, 5], 2),
    ]


def test_requests_for_different_outputs_share_one_run() -> None:
    recorder = Recorder()

    async def main() -> None:
        async with running(make_scheduler([FakeInstance(recorder)], policy(8))) as s:
            reqs = [request(rid, 2, outputs=out) for rid, out in enumerate(OUTPUT_CHOICES)]
            pendings = [s.enqueue(r) for r in reqs]
            for p in pendings:
                check_outputs(p.request, await p.future)
            only_ids = [s.enqueue(request(rid, outputs=("ID_OUT",))) for rid in (10, 11)]
            for p in only_ids:
                check_outputs(p.request, await p.future)

    asyncio.run(main())
    assert [(c.requests, c.output_names) for c in recorder.calls] == [
        ([0, 1, 2, 3], ("OUTPUT0", "ID_OUT")),
        ([10, 11], ("ID_OUT",)),  # nobody asked for OUTPUT0: it is not computed
    ]


def test_without_dynamic_batching_each_request_runs_alone() -> None:
    recorder = Recorder()

    async def main() -> None:
        sched = make_scheduler([FakeInstance(recorder)], policy(8, batching=False))
        async with running(sched) as s:
            pendings = [s.enqueue(request(rid, 2)) for rid in range(3)]
            for p in pendings:
                check_outputs(p.request, await p.future)

    asyncio.run(main())
    assert [c.requests for c in recorder.calls] == [[0], [1], [2]]
