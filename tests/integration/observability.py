"""Helpers for the observability tests: reading /metrics, a model that fails at run time."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton
from onnx import helper, numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from tests.models import make_model, tensor, tensor_config, write_model

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics_port: int) -> Samples:
    """Every sample of the server's /metrics, keyed by (sample name, labels)."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_for_metric(
    metrics_port: int, name: str, expected: float, timeout: float = 30.0, **labels: str
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = value(scrape(metrics_port), name, **labels)
        if seen == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} stayed {seen}, expected {expected}")
        time.sleep(0.02)  # pacing the poll of /metrics


def held(metrics_port: int, model: str, version: str = "1") -> tuple[int, int]:
    """(queued, running) requests of one model version, from the server's gauges."""
    samples = scrape(metrics_port)
    queued = value(samples, "onnxserve_queue_depth", model=model, version=version)
    running = value(samples, "onnxserve_executions_in_flight", model=model, version=version)
    assert queued is not None and running is not None, f"{model}: its gauges are missing"
    return int(queued), int(running)


def wait_held(
    metrics_port: int, model: str, queued: int, running: int = 1, timeout: float = 30.0
) -> None:
    """Waits until the server holds exactly `queued` waiting and `running` executing requests
    of the model: the server's own view, which no client-side deadline can fake."""
    deadline = time.monotonic() + timeout
    while (seen := held(metrics_port, model)) != (queued, running):
        assert time.monotonic() < deadline, f"{model}: held {seen}, expected {(queued, running)}"
        time.sleep(0.01)  # pacing the poll of /metrics


def build_reshape(repo: Path, name: str = "reshape") -> Path:
    """INPUT0 FP32 [-1] -> OUTPUT0 FP32 [4]: runs for 4 values per row, and fails inside ONNX
    Runtime (INTERNAL) for any other length, which validation cannot see coming."""
    model = make_model(
        [helper.make_node("Reshape", ["INPUT0", "shape"], ["OUTPUT0"])],
        [tensor("INPUT0", "FP32", [-1])],
        [tensor("OUTPUT0", "FP32", [4])],
        [numpy_helper.from_array(np.array([-1, 4], np.int64), "shape")],
        name,
    )
    config = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": [tensor_config("INPUT0", "FP32", [-1])],
        "outputs": [tensor_config("OUTPUT0", "FP32", [4])],
    }
    return write_model(repo, name, 1, model, config)


def fp32_input(rows: int, width: int = 4, name: str = "INPUT0") -> triton.InferInput:
    data = np.arange(rows * width, dtype=np.float32).reshape(rows, width)
    tensor_input = triton.InferInput(name, [rows, width], "FP32")
    tensor_input.set_data_from_numpy(data)
    return tensor_input


def double_inputs(rows: int, width: int = 3) -> list[triton.InferInput]:
    """Inputs of tests.models.build_double: INPUT0 FP32 [rows, width] and ID INT64 [rows, 1]."""
    ids = triton.InferInput("ID", [rows, 1], "INT64")
    ids.set_data_from_numpy(np.arange(rows, dtype=np.int64).reshape(rows, 1))
    return [fp32_input(rows, width), ids]


def expect_error(code: str, call: Callable[[], object]) -> None:
    """Runs `call` and checks that it fails with this gRPC status code name."""
    try:
        call()
    except triton.InferenceServerException as error:
        assert error.status() == f"StatusCode.{code}", error
    else:
        raise AssertionError(f"expected {code}")
