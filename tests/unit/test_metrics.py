"""The Prometheus families, rendered by prometheus-client from a fixed snapshot."""

from __future__ import annotations

import asyncio
import logging
import threading
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.errors import ListenError
from server.observability.http import on_loop, start_metrics_server
from server.observability.metrics import MetricsSnapshot, build_registry
from server.observability.statistics import Statistics
from server.scheduling.observer import ExecutionTimes
from tests.unit.test_statistics import run_batch


def snapshot() -> MetricsSnapshot:
    statistics = Statistics()
    stats = statistics.observer("m", 2)
    run_batch(stats, [2, 2], ExecutionTimes(4, 2, 0.0001, 0.003, 0.0002))
    run_batch(stats, [1], ExecutionTimes(1, 1, 0.0001, 0.002, 0.0002))
    for _ in range(3):
        statistics.on_request("m", "2", "OK", 0.004)
    statistics.on_request("m", "2", "INVALID_ARGUMENT", 0.0001, "http")
    statistics.on_request("", "", "NOT_FOUND", 0.0001)
    return MetricsSnapshot(
        statistics=statistics.copy(),
        queues=[("m", "2", 5, 1)],
        states=[("m", "2", "READY"), ("m", "1", "UNLOADING"), ("bad", "", "UNAVAILABLE")],
    )


def parse(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def samples() -> dict:
    fixed = snapshot()
    return parse(generate_latest(build_registry(lambda: fixed)).decode())


def get(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_counters(samples: dict) -> None:
    m2 = {"model": "m", "version": "2"}
    requests = "onnxserve_requests_total"
    assert get(samples, requests, code="OK", protocol="grpc", **m2) == 3
    assert get(samples, requests, code="OK", protocol="http", **m2) == 0
    assert get(samples, requests, code="INVALID_ARGUMENT", protocol="http", **m2) == 1
    unknown = {"model": "", "version": "", "code": "NOT_FOUND", "protocol": "grpc"}
    assert get(samples, "onnxserve_requests_total", **unknown) == 1
    assert get(samples, "onnxserve_inferences_total", **m2) == 5
    assert get(samples, "onnxserve_executions_total", **m2) == 2
    # Requests that named no served version have no execution series.
    names = {name for name, labels in samples if ("model", "") in labels}
    assert names == {"onnxserve_requests_total"}


def test_histograms_are_cumulative_with_prometheus_bounds(samples: dict) -> None:
    m2 = {"model": "m", "version": "2"}
    infer = "onnxserve_compute_infer_duration_seconds"
    assert get(samples, f"{infer}_bucket", le="0.0025", **m2) == 1  # the 2 ms execution
    assert get(samples, f"{infer}_bucket", le="0.005", **m2) == 2
    assert get(samples, f"{infer}_bucket", le="+Inf", **m2) == 2
    assert get(samples, f"{infer}_count", **m2) == 2
    assert get(samples, f"{infer}_sum", **m2) == pytest.approx(0.005)
    assert get(samples, "onnxserve_compute_input_duration_seconds_bucket", le="0.0001", **m2) == 2
    assert get(samples, "onnxserve_compute_input_duration_seconds_bucket", le="5e-05", **m2) == 0
    assert get(samples, "onnxserve_batch_size_rows_bucket", le="1.0", **m2) == 1
    assert get(samples, "onnxserve_batch_size_rows_bucket", le="4.0", **m2) == 2
    assert get(samples, "onnxserve_batch_size_rows_sum", **m2) == 5
    assert get(samples, "onnxserve_queue_duration_seconds_count", **m2) == 3
    assert get(samples, "onnxserve_request_duration_seconds_count", **m2) == 3
    assert get(samples, "onnxserve_request_duration_seconds_bucket", le="0.0025", **m2) == 0


def test_gauges(samples: dict) -> None:
    m2 = {"model": "m", "version": "2"}
    assert get(samples, "onnxserve_queue_depth", **m2) == 5
    assert get(samples, "onnxserve_executions_in_flight", **m2) == 1
    assert get(samples, "onnxserve_models_loaded") == 1
    states = {
        (labels[0][1], labels[2][1], labels[1][1]): v
        for (name, labels), v in samples.items()
        if name == "onnxserve_model_state"
    }
    assert len(states) == 15  # five states for each of the three versions
    assert {key for key, v in states.items() if v == 1} == {
        ("m", "2", "READY"),
        ("m", "1", "UNLOADING"),
        ("bad", "", "UNAVAILABLE"),
    }


def test_process_metrics_come_from_prometheus_client(samples: dict) -> None:
    assert get(samples, "process_open_fds") > 0
    assert get(samples, "process_resident_memory_bytes") > 0


def test_a_failing_snapshot_still_serves_process_metrics(caplog) -> None:
    def broken() -> MetricsSnapshot:
        raise TimeoutError("the loop did not answer")

    caplog.set_level(logging.WARNING)
    samples = parse(generate_latest(build_registry(broken)).decode())
    assert get(samples, "process_open_fds") > 0
    assert not any(name.startswith("onnxserve_") for name, _ in samples)
    assert "could not read the model statistics" in caplog.text


def test_the_endpoint_takes_its_snapshot_on_the_loop() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    seen: list[threading.Thread] = []

    def take() -> MetricsSnapshot:
        seen.append(threading.current_thread())
        return snapshot()

    server = start_metrics_server("127.0.0.1", 0, build_registry(on_loop(loop, take)))
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            samples = parse(response.read().decode())
    finally:
        server.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert seen == [thread]
    assert get(samples, "onnxserve_executions_total", model="m", version="2") == 2


def test_a_taken_port_is_a_listen_error() -> None:
    first = start_metrics_server("127.0.0.1", 0, build_registry(snapshot))
    try:
        with pytest.raises(ListenError):
            start_metrics_server("127.0.0.1", first.port, build_registry(snapshot))
    finally:
        first.stop()
