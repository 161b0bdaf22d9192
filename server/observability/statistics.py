"""Per model version counters and timings: what ModelStatistics and /metrics both report.

Two feeds, both on the event loop: the data plane reports each request's outcome (on_request), and
the scheduler reports executions and finished requests (the SchedulerObserver methods). With one
writer thread, plain integer adds need no lock; readers copy on the loop (VersionStatistics.copy).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left

from server.scheduling.observer import ExecutionTimes
from server.scheduling.pending import PendingRequest

log = logging.getLogger(__name__)

NS_PER_SECOND = 1_000_000_000
OK = "OK"
# The frontends whose requests are counted apart in /metrics (ModelStatistics adds them up).
PROTOCOLS = ("grpc", "http")

# Seconds, from 50 us (small tabular models) to a minute (large models on CPU).
DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Duration:
    """A count and the nanoseconds it accounts for (the protocol's StatisticDuration)."""

    __slots__ = ("count", "ns")

    def __init__(self, count: int = 0, ns: int = 0) -> None:
        self.count = count
        self.ns = ns

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns

    def copy(self) -> Duration:
        return Duration(self.count, self.ns)


class Buckets:
    """A histogram: observations per bucket (not cumulative; the last is +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus' "le").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) pairs, ending with +Inf."""
        running = 0
        pairs = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs

    def copy(self) -> Buckets:
        other = Buckets(self.bounds)
        other.counts = self.counts.copy()
        other.total = self.total
        return other


class BatchTimes:
    """Executions of one batch size and their compute times (the protocol's batch_stats)."""

    __slots__ = ("count", "input_ns", "infer_ns", "output_ns")

    def __init__(self, count: int = 0, input_ns: int = 0, infer_ns: int = 0, output_ns: int = 0):
        self.count = count
        self.input_ns = input_ns
        self.infer_ns = infer_ns
        self.output_ns = output_ns

    def copy(self) -> BatchTimes:
        return BatchTimes(self.count, self.input_ns, self.infer_ns, self.output_ns)


class VersionStatistics:
    """One model version's accumulators, and the observer its scheduler reports to."""

    def __init__(self, name: str, version: str, slow_seconds: float = 0.0) -> None:
        self.name = name
        self.version = version  # "" for requests that named no served version
        self.slow_seconds = slow_seconds  # 0: slow requests are not logged
        self.last_inference_ms = 0
        self.inference_count = 0  # rows of successful executions
        self.execution_count = 0
        # (status name, protocol) -> requests; OK starts at 0 so rates have a series from the start.
        self.outcomes: dict[tuple[str, str], int] = (
            {(OK, protocol): 0 for protocol in PROTOCOLS} if version else {}
        )
        # Per request, as Triton counts them: each request of a batch gets the batch's times.
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self._compute = (self.compute_input, self.compute_infer, self.compute_output)
        # Response cache lookups (and decoding) that answered, and lookups plus stores that did
        # not; a hit also counts as a success, but never as a queue wait, execution or inference.
        self.cache_hit = Duration()
        self.cache_miss = Duration()
        self.batches: dict[int, BatchTimes] = {}
        self.request_seconds = Buckets(DURATION_BUCKETS)  # successful requests, end to end
        self.queue_seconds = Buckets(DURATION_BUCKETS)  # successful requests
        self.input_seconds = Buckets(DURATION_BUCKETS)  # per execution from here on
        self.infer_seconds = Buckets(DURATION_BUCKETS)
        self.output_seconds = Buckets(DURATION_BUCKETS)
        self.batch_rows = Buckets(BATCH_BUCKETS)
        # The execution whose requests are being reported (on_execution comes first).
        self._last_ns = (0, 0, 0)

    # --- the frontend -------------------------------------------------------------------

    def on_request(self, code: str, seconds: float, protocol: str = "grpc") -> None:
        """One request answered with this status, `seconds` after it arrived over `protocol`."""
        self.last_inference_ms = time.time_ns() // 1_000_000
        key = (code, protocol)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        if code == OK:
            self.success.add(int(seconds * NS_PER_SECOND))
            self.request_seconds.observe(seconds)
        else:
            self.fail.add(int(seconds * NS_PER_SECOND))

    # --- the response cache (CacheObserver) --------------------------------------------

    def on_cache_hit(self, seconds: float) -> None:
        self.cache_hit.add(int(seconds * NS_PER_SECOND))

    def on_cache_miss(self, seconds: float) -> None:
        self.cache_miss.add(int(seconds * NS_PER_SECOND))

    # --- the scheduler (SchedulerObserver) ----------------------------------------------

    def on_execution(self, times: ExecutionTimes) -> None:
        ns = (
            int(times.input * NS_PER_SECOND),
            int(times.infer * NS_PER_SECOND),
            int(times.output * NS_PER_SECOND),
        )
        self._last_ns = ns
        self.execution_count += 1
        self.inference_count += times.rows
        # Every request of a successful execution is counted with the execution's times (as
        # Triton does): added here once per execution rather than once per request.
        requests = times.requests
        for duration, value in zip(self._compute, ns, strict=True):
            duration.count += requests
            duration.ns += value * requests
        batch = self.batches.get(times.rows)
        if batch is None:
            batch = self.batches[times.rows] = BatchTimes()
        batch.count += 1
        batch.input_ns += ns[0]
        batch.infer_ns += ns[1]
        batch.output_ns += ns[2]
        self.input_seconds.observe(times.input)
        self.infer_seconds.observe(times.infer)
        self.output_seconds.observe(times.output)
        self.batch_rows.observe(times.rows)

    def on_request_done(self, pending: PendingRequest, error: BaseException | None) -> None:
        if error is None:
            wait = pending.compute_start - pending.queue_start
            self.queue.add(int(wait * NS_PER_SECOND))
            self.queue_seconds.observe(wait)
        end = pending.compute_end  # 0 when it never ran (expired or failed while queued)
        if self.slow_seconds and end and end - pending.queue_start > self.slow_seconds:
            self._log_slow(pending, error)

    def _log_slow(self, pending: PendingRequest, error: BaseException | None) -> None:
        total_ms = (pending.compute_end - pending.queue_start) * 1000
        queue_ms = (pending.compute_start - pending.queue_start) * 1000
        compute_ms = (pending.compute_end - pending.compute_start) * 1000
        input_ns, infer_ns, output_ns = self._last_ns if error is None else (0, 0, 0)
        fields = {
            "model": self.name,
            "version": self.version,
            "request_id": pending.request.id,
            "rows": pending.rows,
            "batch_rows": pending.batch_rows,
            "total_ms": round(total_ms, 3),
            "queue_ms": round(queue_ms, 3),
            "compute_ms": round(compute_ms, 3),
            "compute_input_ms": round(input_ns / 1e6, 3),
            "compute_infer_ms": round(infer_ns / 1e6, 3),
            "compute_output_ms": round(output_ns / 1e6, 3),
            "error": str(error) if error is not None else "",
        }
        log.warning(
            "slow request: model '%s' version %s: %.1f ms (queue %.1f ms, compute %.1f ms: "
            "input %.1f, infer %.1f, output %.1f) in a batch of %d rows%s",
            self.name,
            self.version,
            total_ms,
            queue_ms,
            compute_ms,
            input_ns / 1e6,
            infer_ns / 1e6,
            output_ns / 1e6,
            pending.batch_rows,
            f"; failed: {error}" if error is not None else "",
            extra=fields,
        )

    def copy(self) -> VersionStatistics:
        """A snapshot, taken on the loop, that another thread may read at leisure."""
        other = VersionStatistics(self.name, self.version, self.slow_seconds)
        other.last_inference_ms = self.last_inference_ms
        other.inference_count = self.inference_count
        other.execution_count = self.execution_count
        other.outcomes = self.outcomes.copy()
        for attr in _DURATIONS:
            setattr(other, attr, getattr(self, attr).copy())
        other._compute = (other.compute_input, other.compute_infer, other.compute_output)
        other.batches = {rows: b.copy() for rows, b in self.batches.items()}
        for attr in _HISTOGRAMS:
            setattr(other, attr, getattr(self, attr).copy())
        return other


_DURATIONS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)
_HISTOGRAMS = (
    "request_seconds",
    "queue_seconds",
    "input_seconds",
    "infer_seconds",
    "output_seconds",
    "batch_rows",
)


class Statistics:
    """Every served version's accumulators, kept across reloads so counters only ever grow."""

    def __init__(self, slow_seconds: float = 0.0) -> None:
        self.slow_seconds = slow_seconds
        self._versions: dict[tuple[str, str], VersionStatistics] = {}

    def version(self, name: str, version: str) -> VersionStatistics:
        stats = self._versions.get((name, version))
        if stats is None:
            stats = VersionStatistics(name, version, self.slow_seconds)
            self._versions[(name, version)] = stats
        return stats

    def observer(self, name: str, version: int) -> VersionStatistics:
        """The manager's observer_factory: what a loaded version's scheduler reports to."""
        return self.version(name, str(version))

    def on_request(
        self, model: str, version: str, code: str, seconds: float, protocol: str = "grpc"
    ) -> None:
        """The data plane's outcome hook; labels must name what the repository knows."""
        stats = self._versions.get((model, version))
        if stats is None:
            stats = self.version(model, version)
        stats.on_request(code, seconds, protocol)

    def forget(self, name: str, version: int) -> None:
        """The manager's on_released: the version is gone, so are its series (a reload of the
        same version keeps them)."""
        self._versions.pop((name, str(version)), None)

    def get(self, name: str, version: str) -> VersionStatistics | None:
        return self._versions.get((name, version))

    def copy(self) -> list[VersionStatistics]:
        return [stats.copy() for stats in self._versions.values()]
