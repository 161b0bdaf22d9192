"""Prometheus families for the models, built at scrape time from a snapshot.

Nothing here runs on the inference path: requests only add integers (statistics.py); a scrape
copies them on the event loop (take_snapshot) and formats them in the HTTP server's thread.
Collectors live on a CollectorRegistry made here, never on prometheus_client's global one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from server.cache import CacheCounters
from server.observability.statistics import Buckets, Statistics, VersionStatistics
from server.repository.manager import ModelRepositoryManager
from server.repository.states import ModelState

log = logging.getLogger(__name__)

LABELS = ("model", "version")
STATES = tuple(state.value for state in ModelState)

# (family name, help, VersionStatistics attribute) for each histogram.
HISTOGRAMS = (
    (
        "onnxserve_request_duration_seconds",
        "Successful inference requests: time from arrival to response, in seconds.",
        "request_seconds",
    ),
    (
        "onnxserve_queue_duration_seconds",
        "Successful inference requests: time waiting in the model's queue, in seconds.",
        "queue_seconds",
    ),
    (
        "onnxserve_compute_input_duration_seconds",
        "Executions: time merging the requests' inputs into one batch, in seconds.",
        "input_seconds",
    ),
    (
        "onnxserve_compute_infer_duration_seconds",
        "Executions: time in the ONNX Runtime run, in seconds.",
        "infer_seconds",
    ),
    (
        "onnxserve_compute_output_duration_seconds",
        "Executions: time splitting the outputs back into responses, in seconds.",
        "output_seconds",
    ),
    ("onnxserve_batch_size_rows", "Executions: rows in the batch.", "batch_rows"),
)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    statistics: list[VersionStatistics]
    queues: list[tuple[str, str, int, int]]  # model, version, queued requests, executions
    states: list[tuple[str, str, str]]  # model, version ("" if none could be read), state
    cache: CacheCounters | None = None  # the response cache's store, if the manager has one


def take_snapshot(statistics: Statistics, manager: ModelRepositoryManager) -> MetricsSnapshot:
    """Runs on the event loop, so it reads the accumulators and the manager between updates."""
    served = manager.served_versions()
    return MetricsSnapshot(
        statistics=statistics.copy(),
        queues=[
            (
                m.name,
                m.version_str,
                m.scheduler.queue_depth,
                m.scheduler.executions_in_flight,
            )
            for m in served
        ],
        states=[
            (s.name, "" if s.version is None else str(s.version), s.state.value)
            for s in manager.index()
        ],
        cache=manager.response_cache.counters(),
    )


class ModelCollector(Collector):
    """Yields the model families from whatever `snapshot` returns at scrape time."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not take a snapshot (the loop may not be running yet)

    def collect(self) -> Iterable[Metric]:
        try:
            snapshot = self._snapshot()
        except Exception as error:  # a scrape still returns the process metrics
            log.warning("metrics: could not read the model statistics: %r", error)
            return []
        return families(snapshot)


def build_registry(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ModelCollector(snapshot))
    ProcessCollector(registry=registry)  # CPU seconds, resident memory, open fds, start time
    PlatformCollector(registry=registry)  # python_info
    return registry


def families(snapshot: MetricsSnapshot) -> list[Metric]:
    requests = CounterMetricFamily(
        "onnxserve_requests",
        "Inference requests by outcome and frontend: code is OK or the status name (gRPC's "
        "names, whichever protocol carried the request); protocol is grpc or http.",
        labels=(*LABELS, "code", "protocol"),
    )
    inferences = CounterMetricFamily(
        "onnxserve_inferences",
        "Rows inferred by successful executions (a request of N rows counts N).",
        labels=LABELS,
    )
    executions = CounterMetricFamily(
        "onnxserve_executions",
        "Model executions (ONNX Runtime runs); inferences / executions is the mean batch size.",
        labels=LABELS,
    )
    histograms = [HistogramMetricFamily(name, text, labels=LABELS) for name, text, _ in HISTOGRAMS]
    for stats in snapshot.statistics:
        labels = (stats.name, stats.version)
        for (code, protocol), count in sorted(stats.outcomes.items()):
            requests.add_metric((*labels, code, protocol), count)
        if not stats.version:
            continue  # requests that named no served version never execute
        inferences.add_metric(labels, stats.inference_count)
        executions.add_metric(labels, stats.execution_count)
        for family, (_, _, attr) in zip(histograms, HISTOGRAMS, strict=True):
            _add_histogram(family, labels, getattr(stats, attr))

    queue_depth = GaugeMetricFamily(
        "onnxserve_queue_depth", "Requests waiting in the model's queue.", labels=LABELS
    )
    in_flight = GaugeMetricFamily(
        "onnxserve_executions_in_flight",
        "Executions running now (at most the model's instance count).",
        labels=LABELS,
    )
    for name, version, depth, running in snapshot.queues:
        queue_depth.add_metric((name, version), depth)
        in_flight.add_metric((name, version), running)

    state = GaugeMetricFamily(
        "onnxserve_model_state",
        "Model version state: 1 for the current state, 0 for the others.",
        labels=(*LABELS, "state"),
    )
    for name, version, current in snapshot.states:
        for candidate in STATES:
            state.add_metric((name, version, candidate), 1 if candidate == current else 0)
    loaded = GaugeMetricFamily(
        "onnxserve_models_loaded", "Model versions loaded and serving.", len(snapshot.queues)
    )
    return [
        requests,
        inferences,
        executions,
        *histograms,
        queue_depth,
        in_flight,
        state,
        loaded,
        *cache_families(snapshot),
    ]


def cache_families(snapshot: MetricsSnapshot) -> list[Metric]:
    """Hits and misses per version (as ModelStatistics counts them) and the store's own counts."""
    hits = CounterMetricFamily(
        "onnxserve_cache_hits",
        "Requests answered from the response cache (no queue, no execution).",
        labels=LABELS,
    )
    misses = CounterMetricFamily(
        "onnxserve_cache_misses",
        "Requests to a cached model not answered from the cache: they ran, and were stored.",
        labels=LABELS,
    )
    for stats in snapshot.statistics:
        if stats.version:
            hits.add_metric((stats.name, stats.version), stats.cache_hit.count)
            misses.add_metric((stats.name, stats.version), stats.cache_miss.count)
    found: list[Metric] = [hits, misses]
    counters = snapshot.cache
    if counters is None:
        return found
    label = (counters.kind,)
    errors = CounterMetricFamily(
        "onnxserve_cache_errors",
        "Response cache calls that failed or timed out (the request ran without the cache).",
        labels=("cache",),
    )
    errors.add_metric(label, counters.errors)
    found.append(errors)
    if counters.bytes is not None:  # only a local cache knows what it holds
        held = GaugeMetricFamily(
            "onnxserve_cache_bytes",
            "Bytes held by the local response cache (keys and values).",
            labels=("cache",),
        )
        held.add_metric(label, counters.bytes)
        entries = GaugeMetricFamily(
            "onnxserve_cache_entries", "Responses held by the local cache.", labels=("cache",)
        )
        entries.add_metric(label, counters.entries or 0)
        evictions = CounterMetricFamily(
            "onnxserve_cache_evictions",
            "Responses evicted from the local cache to make room (least recently used first).",
            labels=("cache",),
        )
        evictions.add_metric(label, counters.evictions or 0)
        found += [held, entries, evictions]
    return found


def _add_histogram(family: HistogramMetricFamily, labels: tuple[str, str], data: Buckets) -> None:
    buckets = [(floatToGoString(bound), count) for bound, count in data.cumulative()]
    family.add_metric(labels, buckets, data.total)
