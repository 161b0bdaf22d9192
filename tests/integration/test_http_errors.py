"""The errors of a busy or broken server over HTTP: a full queue is 429 with Retry-After, a
`timeout` that passes in the queue is 504, a model that failed to load is 503 with Retry-After,
each with the house message; accepted requests still get exact answers, also when SIGTERM
comes while they are in flight."""

from __future__ import annotations

import http.client
import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests import models
from tests.harness import ServerProcess
from tests.integration.observability import held

QUEUE = 2
SLOW_MS = 150
FULL_MS = 1500  # long enough that the queue stays full while the test sends one more
pytestmark = pytest.mark.server_errors("model 'broken' version 1: failed to load")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("models")
    queue = {"max_queue_delay_microseconds": 0, "max_queue_size": QUEUE}
    # One request per execution, so requests behind the first one wait in the queue.
    one = {"max_batch_size": 1, "dynamic_batching": queue}
    models.build_slow(repo, "slow", milliseconds=FULL_MS, config=one)
    models.build_slow(repo, "late", milliseconds=SLOW_MS, config={"max_batch_size": 1})
    models.build_double(repo)
    models.write_broken_model(repo)
    return start_module_server(repo, "--strict-readiness", "false")


def infer(port: int, model: str, value: float, **extra: Any) -> tuple[int, dict[str, str], Any]:
    body = {
        "inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "FP32", "data": [value]}],
        **extra,
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body=json.dumps(body))
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, json.loads(response.read())
    finally:
        conn.close()


def burst(port: int, model: str, count: int, **extra: Any) -> list[tuple[int, dict, Any]]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: infer(port, model, float(i), **extra), range(count)))


def running(server: ServerProcess) -> int:
    """Executions of model 'slow' in flight, from /metrics."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    found = re.search(r'^onnxserve_executions_in_flight{[^}]*model="slow"[^}]*} (\S+)$', text, re.M)
    assert found, "onnxserve_executions_in_flight is missing from /metrics"
    return int(float(found.group(1)))


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)  # pacing the /metrics polls


def test_a_full_queue_is_429_with_retry_after(server: ServerProcess) -> None:
    with ThreadPoolExecutor(1 + QUEUE) as pool:
        # One runs (seen on /metrics), then QUEUE wait behind it: the queue is full.
        accepted = [pool.submit(infer, server.http_port, "slow", 0.0)]
        wait_until(lambda: running(server) == 1, "the first request did not start")
        accepted += [
            pool.submit(infer, server.http_port, "slow", float(i)) for i in range(1, 1 + QUEUE)
        ]
        wait_until(
            lambda: sum(held(server.metrics_port, "slow")) == 1 + QUEUE, "the queue did not fill"
        )
        status, headers, body = infer(server.http_port, "slow", 99.0)
        served = [f.result() for f in accepted]
    assert status == 429 and headers["retry-after"] == "1"
    assert body == {
        "error": f"model 'slow': queue is full ({QUEUE} requests waiting, max_queue_size {QUEUE})"
    }
    assert [(s, b["outputs"][0]["data"]) for s, _, b in served] == [
        (200, [float(i)]) for i in range(1 + QUEUE)
    ]


def test_a_timeout_that_passes_in_the_queue_is_504(server: ServerProcess) -> None:
    results = burst(server.http_port, "late", 4, parameters={"timeout": 1000})
    late = [b for status, _, b in results if status == 504]
    # One execution at a time: whichever runs first, the others wait SLOW_MS >> 1 ms.
    assert len(late) >= 3, results
    for body in late:
        assert body == {"error": "model 'late': request timed out after waiting in the queue"}
    for status, _, body in results:
        if status == 200:
            assert body["outputs"][0]["data"][0] in (0.0, 1.0, 2.0, 3.0)


def test_a_model_that_failed_to_load_is_503(server: ServerProcess) -> None:
    status, headers, body = infer(server.http_port, "broken", 1.0)
    assert status == 503 and headers["retry-after"] == "1"
    assert body["error"].startswith("model 'broken' is not ready")
    status, _, body = infer(server.http_port, "double", 1.0)
    assert status == 400 and "missing input(s) ['ID']" in body["error"]


def test_sigterm_finishes_http_requests_in_flight_and_exits_0(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # One row per execution, so the requests queue up behind each other.
    models.build_slow(tmp_path, config={"max_batch_size": 1}, milliseconds=SLOW_MS)
    server = start_server(tmp_path)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(infer, server.http_port, "slow", float(i)) for i in range(6)]
        deadline = time.monotonic() + 30
        # Every request has reached the server: queued, running, or answered.
        while sum(held(server.metrics_port, "slow")) + sum(f.done() for f in futures) < 6:
            assert time.monotonic() < deadline, "the requests did not reach the server"
            time.sleep(0.01)  # pacing the /metrics polls
        server.signal(signal.SIGTERM)
        results = [f.result() for f in futures]
    assert [(status, body["outputs"][0]["data"]) for status, _, body in results] == [
        (200, [float(i)]) for i in range(6)
    ]
    assert server.stop() == 0
    assert "shutdown complete" in server.logs()
