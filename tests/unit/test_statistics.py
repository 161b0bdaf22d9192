"""The per-version accumulators behind ModelStatistics and /metrics, fed by hand."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from server.inference import InferenceRequest
from server.observability.statistics import (
    BATCH_BUCKETS,
    Buckets,
    Statistics,
    VersionStatistics,
)
from server.scheduling.observer import ExecutionTimes


@dataclass
class FakePending:
    """What the observer reads from a PendingRequest (times on the monotonic clock)."""

    queue_start: float
    compute_start: float
    compute_end: float
    batch_rows: int
    rows: int = 1
    request: InferenceRequest = field(default_factory=lambda: InferenceRequest("m", "", {}))


def run_batch(stats: VersionStatistics, rows: list[int], times: ExecutionTimes) -> None:
    """Reports one execution and its requests as the scheduler does: execution first."""
    stats.on_execution(times)
    for r in rows:
        stats.on_request_done(FakePending(10.0, 10.5, 11.0, sum(rows), r), None)


def test_buckets_count_a_value_equal_to_a_bound_in_that_bucket() -> None:
    b = Buckets((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 2.0, 7.0):
        b.observe(v)
    assert b.counts == [2, 2, 1]
    assert b.cumulative() == [(1.0, 2), (2.0, 4), (float("inf"), 5)]
    assert (b.count, b.total) == (5, 12.0)


def test_an_execution_counts_rows_once_and_times_per_request() -> None:
    stats = VersionStatistics("m", "1")
    run_batch(
        stats, [2, 3], ExecutionTimes(rows=5, requests=2, input=0.001, infer=0.5, output=0.002)
    )
    assert (stats.execution_count, stats.inference_count) == (1, 5)
    # Each request of the batch gets the batch's times, as Triton reports them.
    assert (stats.compute_infer.count, stats.compute_infer.ns) == (2, 1_000_000_000)
    assert (stats.compute_input.count, stats.compute_input.ns) == (2, 2_000_000)
    assert (stats.queue.count, stats.queue.ns) == (2, 1_000_000_000)
    (batch,) = stats.batches.items()
    assert batch[0] == 5
    assert (batch[1].count, batch[1].infer_ns, batch[1].output_ns) == (1, 500_000_000, 2_000_000)
    assert stats.batch_rows.counts[BATCH_BUCKETS.index(8)] == 1  # 5 rows: the le=8 bucket
    assert stats.infer_seconds.count == 1 and stats.queue_seconds.count == 2


def test_a_failed_request_adds_no_success_times() -> None:
    stats = VersionStatistics("m", "1")
    stats.on_request_done(FakePending(1.0, 0.0, 0.0, 0), RuntimeError("expired"))
    assert stats.queue.count == 0 and stats.compute_infer.count == 0


def test_outcomes_split_success_and_failure() -> None:
    stats = VersionStatistics("m", "1")
    # The OK series of each protocol exists before the first request.
    assert stats.outcomes == {("OK", "grpc"): 0, ("OK", "http"): 0}
    stats.on_request("OK", 0.25)
    stats.on_request("OK", 0.5, "http")
    stats.on_request("INVALID_ARGUMENT", 0.001)
    assert stats.outcomes == {("OK", "grpc"): 1, ("OK", "http"): 1, ("INVALID_ARGUMENT", "grpc"): 1}
    assert (stats.success.count, stats.success.ns) == (2, 750_000_000)
    assert (stats.fail.count, stats.fail.ns) == (1, 1_000_000)
    assert stats.request_seconds.count == 2  # successes only
    assert stats.last_inference_ms > 0


def test_the_registry_keeps_one_accumulator_per_version() -> None:
    statistics = Statistics()
    observer = statistics.observer("m", 1)
    assert statistics.observer("m", 1) is observer  # a reload keeps counting on it
    statistics.on_request("m", "1", "OK", 0.1)
    statistics.on_request("", "", "NOT_FOUND", 0.1)
    assert observer.outcomes == {("OK", "grpc"): 1, ("OK", "http"): 0}
    unknown = statistics.get("", "")
    assert unknown is not None and unknown.outcomes == {("NOT_FOUND", "grpc"): 1}


def test_a_copy_does_not_change_with_the_original() -> None:
    stats = VersionStatistics("m", "1")
    run_batch(stats, [1], ExecutionTimes(1, 1, 0.001, 0.001, 0.001))
    stats.on_request("OK", 0.01)
    copy = stats.copy()
    run_batch(stats, [4], ExecutionTimes(4, 1, 0.001, 0.001, 0.001))
    stats.on_request("INTERNAL", 0.01)
    assert (copy.execution_count, copy.inference_count) == (1, 1)
    assert copy.outcomes == {("OK", "grpc"): 1, ("OK", "http"): 0}
    assert list(copy.batches) == [1]
    assert copy.batch_rows.count == 1 and copy.queue.count == 1 and copy.fail.count == 0


def test_slow_requests_are_logged_with_their_timings(caplog: pytest.LogCaptureFixture) -> None:
    stats = VersionStatistics("m", "3", slow_seconds=0.75)
    caplog.set_level(logging.WARNING)
    run_batch(stats, [2, 1], ExecutionTimes(3, 2, 0.001, 0.4, 0.002))  # 1 s each: logged
    stats.on_execution(ExecutionTimes(1, 1, 0.0, 0.1, 0.0))
    stats.on_request_done(FakePending(10.0, 10.1, 10.5, 1), None)  # 0.5 s: not logged
    assert len(caplog.records) == 2
    record = caplog.records[0]
    assert record.getMessage() == (
        "slow request: model 'm' version 3: 1000.0 ms (queue 500.0 ms, compute 500.0 ms: "
        "input 1.0, infer 400.0, output 2.0) in a batch of 3 rows"
    )
    assert (record.model, record.version, record.rows, record.batch_rows) == ("m", "3", 2, 3)
    assert record.compute_infer_ms == 400.0


def test_slow_logging_is_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    stats = VersionStatistics("m", "1")
    caplog.set_level(logging.DEBUG)
    run_batch(stats, [1], ExecutionTimes(1, 1, 0.0, 100.0, 0.0))
    assert caplog.records == []
