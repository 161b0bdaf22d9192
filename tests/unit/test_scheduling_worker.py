"""The per-instance thread: runs jobs off the loop in order, hands back results and errors."""

from __future__ import annotations

import asyncio
import threading

import pytest

from server.scheduling.worker import InstanceThread


def test_jobs_run_in_order_on_one_thread_off_the_loop() -> None:
    ran: list[tuple[int, int]] = []

    def job(n: int) -> int:
        ran.append((n, threading.get_ident()))
        return n * 10

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        worker = InstanceThread("test-run", loop)
        try:
            return list(await asyncio.gather(*(worker.submit(job, n) for n in range(5))))
        finally:
            worker.stop()
            worker.join(10)

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    assert [n for n, _ in ran] == [0, 1, 2, 3, 4]
    threads = {ident for _, ident in ran}
    assert len(threads) == 1 and threading.get_ident() not in threads


def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    def fail() -> None:
        raise RuntimeError("Gather: index out of bounds")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        worker = InstanceThread("test-run", loop)
        try:
            with pytest.raises(RuntimeError, match="Gather: index out of bounds"):
                await worker.submit(fail)
            return await worker.submit(lambda: 7)
        finally:
            worker.stop()
            worker.join(10)

    assert asyncio.run(main()) == 7


def test_a_cancelled_waiter_does_not_break_the_thread() -> None:
    release = threading.Event()

    async def main() -> str:
        loop = asyncio.get_running_loop()
        worker = InstanceThread("test-run", loop)
        try:
            first = worker.submit(lambda: release.wait(10))
            first.cancel()
            release.set()
            return await worker.submit(lambda: "after")
        finally:
            worker.stop()
            worker.join(10)

    assert asyncio.run(main()) == "after"


def test_stop_finishes_the_jobs_already_submitted() -> None:
    async def main() -> tuple[list[int], bool]:
        loop = asyncio.get_running_loop()
        worker = InstanceThread("test-run", loop)
        futures = [worker.submit(lambda n=n: n) for n in range(3)]
        worker.stop()
        results = list(await asyncio.gather(*futures))
        worker.join(10)
        return results, worker._thread.is_alive()

    assert asyncio.run(main()) == ([0, 1, 2], False)


def test_run_then_hands_result_or_error_to_the_callback_on_the_loop_thread() -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    async def main() -> list[tuple[str, object, str, bool]]:
        loop = asyncio.get_running_loop()
        worker = InstanceThread("test-run", loop)
        seen: list[tuple[str, object, str, bool]] = []
        both = loop.create_future()

        def done(context: str, value: object, error: BaseException | None) -> None:
            on_loop = threading.get_ident() == loop_thread
            seen.append((context, value, type(error).__name__, on_loop))
            if len(seen) == 2:
                both.set_result(None)

        loop_thread = threading.get_ident()
        try:
            worker.run_then(divide, (6, 3), done, "first")
            worker.run_then(divide, (1, 0), done, "second")
            await asyncio.wait_for(both, 10)
            return seen
        finally:
            worker.stop()
            worker.join(10)

    assert asyncio.run(main()) == [
        ("first", 2.0, "NoneType", True),
        ("second", None, "ZeroDivisionError", True),
    ]


def test_outcomes_that_pile_up_while_the_loop_is_busy_share_one_wake_up() -> None:
    async def main() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        wake_ups = 0
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counting(*args: object) -> object:
            nonlocal wake_ups
            wake_ups += 1
            return call_soon_threadsafe(*args)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        worker = InstanceThread("test-run", loop)
        seen: list[int] = []
        all_done = loop.create_future()

        def done(context: int, value: object, error: BaseException | None) -> None:
            seen.append(context)
            if len(seen) == 5:
                all_done.set_result(None)

        try:
            for n in range(5):
                worker.run_then(lambda: None, (), done, n)
            worker.run_then(lambda: None, (), lambda *_: None, None)
            finished = threading.Event()
            worker.run_then(finished.set, (), lambda *_: None, None)
            finished.wait(10)  # the loop is blocked here while every job finishes
            await asyncio.wait_for(all_done, 10)
            return seen, wake_ups
        finally:
            worker.stop()
            worker.join(10)

    seen, wake_ups = asyncio.run(main())
    assert seen == [0, 1, 2, 3, 4]
    assert wake_ups == 1
