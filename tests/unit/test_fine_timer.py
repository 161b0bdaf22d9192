"""Sub-millisecond wake-ups for the batcher: never early, in deadline order, cancellable, and
left to the loop's own timer when the wait is long enough for it."""

from __future__ import annotations

import asyncio

from server.scheduling import fine_timer


def test_short_waits_fire_in_order_and_never_early() -> None:
    async def scenario() -> list[tuple[str, float, float]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[str, float, float]] = []
        done = loop.create_future()
        plan = [("c", 0.0015), ("a", 0.0003), ("b", 0.0009)]
        for name, delay in plan:
            when = loop.time() + delay

            def record(name: str = name, when: float = when) -> None:
                fired.append((name, when, loop.time()))
                if len(fired) == len(plan):
                    done.set_result(None)

            handle = fine_timer.call_at(loop, when, record)
            assert isinstance(handle, fine_timer.FineHandle)  # kept off epoll's millisecond
        await asyncio.wait_for(done, 5)
        return fired

    fired = asyncio.run(scenario())
    assert [name for name, _, _ in fired] == ["a", "b", "c"]
    assert all(at >= when for _, when, at in fired)


def test_a_cancelled_wait_never_calls_back() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        calls: list[str] = []
        cancelled = fine_timer.call_at(loop, loop.time() + 0.0002, lambda: calls.append("x"))
        cancelled.cancel()
        later = loop.create_future()
        fine_timer.call_at(loop, loop.time() + 0.0008, lambda: later.set_result(None))
        await asyncio.wait_for(later, 5)  # the thread has passed the cancelled one by now
        await asyncio.sleep(0)  # one loop turn for anything handed over with it
        return calls

    assert asyncio.run(scenario()) == []


def test_long_waits_stay_on_the_loop_timer() -> None:
    async def scenario() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        long = fine_timer.call_at(loop, loop.time() + 10 * fine_timer.COARSE_SECONDS, print)
        past = fine_timer.call_at(loop, loop.time() - 1, lambda: None)
        long.cancel()
        return long, past

    long, past = asyncio.run(scenario())
    assert isinstance(long, asyncio.TimerHandle) and isinstance(past, asyncio.TimerHandle)
