"""ModelStatistics through tritonclient after known traffic: exact counts, batch_stats, and the
same numbers as /metrics."""

from __future__ import annotations

import queue
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import tritonclient.grpc as triton

from tests.harness import ServerProcess
from tests.integration.observability import double_inputs, expect_error, scrape, value
from tests.models import build_double, write_broken_model

# The repository holds a broken model on purpose.
pytestmark = pytest.mark.server_errors("failed to load: .*INVALID_PROTOBUF")


@pytest.fixture(scope="module")
def server(start_module_server, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    repo = tmp_path_factory.mktemp("repo")
    # Three 2-row requests meet in one 6-row execution (sent once 6 rows wait, long before
    # the 10 s delay).
    build_double(
        repo,
        "batched",
        config={
            "dynamic_batching": {
                "max_queue_delay_microseconds": 10_000_000,
                "preferred_batch_size": [6],
            }
        },
    )
    build_double(repo, "plain", config={"dynamic_batching": None})
    build_double(repo, "streamed", config={"dynamic_batching": None})
    write_broken_model(repo)
    return start_module_server(repo)


@pytest.fixture(scope="module")
def traffic(server: ServerProcess) -> tuple[int, int]:
    """Known traffic; returns the wall clock (ms) before and after it."""
    before = time.time_ns() // 1_000_000

    def infer(model: str, rows: int) -> None:
        with triton.InferenceServerClient(server.address) as client:
            client.infer(model, double_inputs(rows))

    with ThreadPoolExecutor(3) as pool:
        for future in [pool.submit(infer, "batched", 2) for _ in range(3)]:
            future.result()
    for rows in (1, 1, 4):
        infer("plain", rows)
    with triton.InferenceServerClient(server.address) as client:
        expect_error("INVALID_ARGUMENT", lambda: client.infer("plain", double_inputs(9)))
        # ModelStreamInfer: two answers and one in-band error, counted like unary requests.
        results: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: results.put(error))
        for rows in (1, 2, 9):
            client.async_stream_infer("streamed", double_inputs(rows))
        errors = [results.get(timeout=30) for _ in range(3)]
        client.stop_stream()
    assert sum(error is not None for error in errors) == 1
    return before, time.time_ns() // 1_000_000


@pytest.fixture
def client(server: ServerProcess):
    with triton.InferenceServerClient(server.address) as client:
        yield client


def test_counts_of_a_batched_model(client, traffic: tuple[int, int]) -> None:
    stats = client.get_inference_statistics("batched", "1", as_json=True)["model_stats"]
    assert len(stats) == 1
    s = stats[0]
    assert (s["name"], s["version"]) == ("batched", "1")
    assert int(s["inference_count"]) == 6
    assert int(s["execution_count"]) == 1
    infer = s["inference_stats"]
    # Per request, as Triton counts them; every request gets its batch's compute times.
    for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert int(infer[key]["count"]) == 3, key
        assert int(infer[key]["ns"]) > 0, key
    assert "count" not in infer.get("fail", {})
    (batch,) = s["batch_stats"]
    assert int(batch["batch_size"]) == 6
    for key in ("compute_input", "compute_infer", "compute_output"):
        assert int(batch[key]["count"]) == 1
        assert int(infer[key]["ns"]) == 3 * int(batch[key]["ns"]), key
    before, after = traffic
    assert before <= int(s["last_inference"]) <= after


def test_counts_of_an_unbatched_model(client, traffic: tuple[int, int]) -> None:
    (s,) = client.get_inference_statistics("plain", as_json=True)["model_stats"]
    assert int(s["inference_count"]) == 6
    assert int(s["execution_count"]) == 3
    assert int(s["inference_stats"]["success"]["count"]) == 3
    assert int(s["inference_stats"]["fail"]["count"]) == 1
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in s["batch_stats"]}
    assert sizes == {1: 2, 4: 1}


def test_all_models_lists_the_served_versions(client, traffic: tuple[int, int]) -> None:
    stats = client.get_inference_statistics(as_json=True)["model_stats"]
    names = [(s["name"], s["version"]) for s in stats]
    assert names == [("batched", "1"), ("plain", "1"), ("streamed", "1")]


def test_stream_requests_are_counted(client, server: ServerProcess, traffic) -> None:
    (s,) = client.get_inference_statistics("streamed", as_json=True)["model_stats"]
    assert int(s["inference_count"]) == 3
    assert int(s["execution_count"]) == 2
    assert int(s["inference_stats"]["success"]["count"]) == 2
    assert int(s["inference_stats"]["fail"]["count"]) == 1
    samples = scrape(server.metrics_port)
    labels = {"model": "streamed", "version": "1"}
    assert value(samples, "onnxserve_requests_total", code="OK", protocol="grpc", **labels) == 2
    assert (
        value(
            samples, "onnxserve_requests_total", code="INVALID_ARGUMENT", protocol="grpc", **labels
        )
        == 1
    )


def test_unknown_and_unavailable_models(client, traffic: tuple[int, int]) -> None:
    expect_error("NOT_FOUND", lambda: client.get_inference_statistics("nope"))
    expect_error("NOT_FOUND", lambda: client.get_inference_statistics("plain", "2"))
    expect_error("UNAVAILABLE", lambda: client.get_inference_statistics("broken"))


def test_statistics_agree_with_metrics(client, server: ServerProcess, traffic) -> None:
    samples = scrape(server.metrics_port)
    for model in ("batched", "plain", "streamed"):
        (s,) = client.get_inference_statistics(model, as_json=True)["model_stats"]
        infer = s["inference_stats"]
        labels = {"model": model, "version": "1"}
        ok = value(samples, "onnxserve_requests_total", code="OK", protocol="grpc", **labels)
        assert ok == int(infer["success"]["count"])
        failed = sum(
            v
            for (name, key), v in samples.items()
            if name == "onnxserve_requests_total"
            and ("model", model) in key
            and ("version", "1") in key
            and ("code", "OK") not in key
        )
        assert failed == int(infer.get("fail", {}).get("count", 0))
        inferences = value(samples, "onnxserve_inferences_total", **labels)
        assert inferences == int(s["inference_count"])
        executions = value(samples, "onnxserve_executions_total", **labels)
        assert executions == int(s["execution_count"])
        for family, key in (("request", "success"), ("queue", "queue")):
            name = f"onnxserve_{family}_duration_seconds"
            assert value(samples, f"{name}_count", **labels) == int(infer[key]["count"])
            seconds = value(samples, f"{name}_sum", **labels)
            assert seconds == pytest.approx(int(infer[key]["ns"]) / 1e9, abs=1e-6)
        infer_seconds = value(samples, "onnxserve_compute_infer_duration_seconds_sum", **labels)
        batch_ns = sum(int(b["compute_infer"]["ns"]) for b in s["batch_stats"])
        assert infer_seconds == pytest.approx(batch_ns / 1e9, abs=1e-6)
