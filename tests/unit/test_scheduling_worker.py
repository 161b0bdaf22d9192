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
        worker = InstanceThread("test-run")
        loop = asyncio.get_running_loop()
        try:
            return list(await asyncio.gather(*(worker.submit(loop, job, n) for n in range(5))))
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
        worker = InstanceThread("test-run")
        loop = asyncio.get_running_loop()
        try:
            with pytest.raises(RuntimeError, match="Gather: index out of bounds"):
                await worker.submit(loop, fail)
            return await worker.submit(loop, lambda: 7)
        finally:
            worker.stop()
            worker.join(10)

    assert asyncio.run(main()) == 7


def test_a_cancelled_waiter_does_not_break_the_thread() -> None:
    release = threading.Event()

    async def main() -> str:
        worker = InstanceThread("test-run")
        loop = asyncio.get_running_loop()
        try:
            first = worker.submit(loop, lambda: release.wait(10))
            first.cancel()
            release.set()
            return await worker.submit(loop, lambda: "after")
        finally:
            worker.stop()
            worker.join(10)

    assert asyncio.run(main()) == "after"


def test_stop_finishes_the_jobs_already_submitted() -> None:
    async def main() -> tuple[list[int], bool]:
        worker = InstanceThread("test-run")
        loop = asyncio.get_running_loop()
        futures = [worker.submit(loop, lambda n=n: n) for n in range(3)]
        worker.stop()
        results = list(await asyncio.gather(*futures))
        worker.join(10)
        return results, worker._thread.is_alive()

    assert asyncio.run(main()) == ([0, 1, 2], False)


def test_run_then_hands_result_or_error_to_the_callback_on_the_loop_thread() -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    async def main() -> list[tuple[str, object, str, bool]]:
        worker = InstanceThread("test-run")
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, object, str, bool]] = []
        both = loop.create_future()

        def done(context: str, value: object, error: BaseException | None) -> None:
            on_loop = threading.get_ident() == loop_thread
            seen.append((context, value, type(error).__name__, on_loop))
            if len(seen) == 2:
                both.set_result(None)

        loop_thread = threading.get_ident()
        try:
            worker.run_then(loop, divide, (6, 3), done, "first")
            worker.run_then(loop, divide, (1, 0), done, "second")
            await asyncio.wait_for(both, 10)
            return seen
        finally:
            worker.stop()
            worker.join(10)

    assert asyncio.run(main()) == [
        ("first", 2.0, "NoneType", True),
        ("second", None, "ZeroDivisionError", True),
    ]
