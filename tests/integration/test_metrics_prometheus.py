"""A real Prometheus scrapes the server while known traffic runs; its HTTP API must then report
exactly that traffic: requests per outcome code, rows, executions and histogram counts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from tests.conftest import REPO_ROOT
from tests.harness import ServerProcess
from tests.integration.observability import (
    build_reshape,
    double_inputs,
    expect_error,
    fp32_input,
    wait_for_metric,
)
from tests.models import build_double, build_slow, write_broken_model

SCRAPE_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: onnxserve
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


# A broken model and a model that fails at run time, on purpose.
pytestmark = pytest.mark.server_errors(
    "failed to load: .*INVALID_PROTOBUF", "model 'reshape': a batch of 1 request\\(s\\) failed"
)


def _prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        message = "the prometheus binary is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must run this test")
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, binary: str, folder: Path, target_port: int) -> None:
        config = folder / "prometheus.yml"
        config.write_text(SCRAPE_CONFIG.format(port=target_port))
        self.port = _free_port()
        self.log = open(folder / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = folder / "prometheus.log"

    def get(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.port}{path}{query}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # pacing the readiness poll

    def query(self, expression: str) -> dict[frozenset[tuple[str, str]], float]:
        """An instant query; each series keyed by its labels without __name__, job and instance."""
        body = self.get("/api/v1/query", query=expression)
        assert body["status"] == "success", body
        skip = {"__name__", "job", "instance"}
        return {
            frozenset((k, v) for k, v in r["metric"].items() if k not in skip): float(r["value"][1])
            for r in body["data"]["result"]
        }

    def wait_for_scrape_after(self, moment: float, timeout: float = 30.0) -> None:
        """Waits until a scrape that started after `moment` (time.time()) has been stored."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.query('timestamp(up{job="onnxserve"})')
            if (
                seen
                and min(seen.values()) > moment
                and self.query('up{job="onnxserve"}') == {frozenset(): 1.0}
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no successful scrape after {moment}: {seen}")
            time.sleep(0.2)  # pacing the poll of the stored scrapes

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def labels(**values: str) -> frozenset[tuple[str, str]]:
    # Prometheus stores an empty label value as no label at all.
    return frozenset((k, v) for k, v in values.items() if v)


@pytest.fixture(scope="module")
def server(start_module_server, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    repo = tmp_path_factory.mktemp("repo")
    # Four 2-row requests meet in one execution: the batch is sent when 8 rows are reached,
    # long before the 10 s delay runs out.
    build_double(
        repo,
        "batched",
        config={
            "dynamic_batching": {
                "max_queue_delay_microseconds": 10_000_000,
                "preferred_batch_size": [8],
            }
        },
    )
    build_double(repo, "plain", config={"dynamic_batching": None})
    build_slow(
        repo,
        milliseconds=1000,
        config={"dynamic_batching": {"max_queue_delay_microseconds": 0, "max_queue_size": 1}},
    )
    build_reshape(repo)
    write_broken_model(repo)
    return start_module_server(repo)


@pytest.fixture(scope="module")
def prometheus(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    instance = Prometheus(
        _prometheus_binary(), tmp_path_factory.mktemp("prometheus"), server.metrics_port
    )
    try:
        instance.wait_ready()
        # Targets are picked up some seconds after start: let the first scrape precede the
        # traffic, so that rates over it have samples on both sides.
        instance.wait_for_scrape_after(0)
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def traffic(server: ServerProcess, prometheus: Prometheus) -> None:
    """Known traffic; returns once Prometheus has scraped the server after all of it."""
    client = triton.InferenceServerClient(server.address)

    def infer(model: str, rows: int, width: int = 3) -> None:
        with triton.InferenceServerClient(server.address) as own:
            own.infer(model, double_inputs(rows, width))

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(infer, "batched", 2) for _ in range(4)]:
            future.result()
    for rows in (1, 2, 3):
        infer("plain", rows)

    wrong_type = [triton.InferInput("INPUT0", [1, 3], "INT32")]
    wrong_type[0].set_data_from_numpy(np.zeros((1, 3), np.int32))
    expect_error("INVALID_ARGUMENT", lambda: client.infer("plain", wrong_type))
    expect_error("INVALID_ARGUMENT", lambda: client.infer("plain", double_inputs(9)))
    with grpc.insecure_channel(server.address) as channel:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as error:
            raw(b"\x0a\xff")  # a length-delimited field that runs past the end
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    expect_error("NOT_FOUND", lambda: client.infer("no_such_model", double_inputs(1)))
    expect_error("NOT_FOUND", lambda: client.infer("plain", double_inputs(1), model_version="7"))
    expect_error("UNAVAILABLE", lambda: client.infer("broken", double_inputs(1)))
    client.infer("reshape", [fp32_input(2, 4)])
    expect_error("INTERNAL", lambda: client.infer("reshape", [fp32_input(1, 3)]))

    # slow: one running, one expiring in the queue, one queued, one refused by the full queue.
    port = server.metrics_port
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(lambda: client.infer("slow", [fp32_input(1)]))
        wait_for_metric(port, "onnxserve_executions_in_flight", 1, model="slow", version="1")
        expect_error("DEADLINE_EXCEEDED", lambda: client.infer("slow", [fp32_input(1)], timeout=1))
        second = pool.submit(lambda: client.infer("slow", [fp32_input(1)]))
        wait_for_metric(port, "onnxserve_queue_depth", 1, model="slow", version="1")
        expect_error("RESOURCE_EXHAUSTED", lambda: client.infer("slow", [fp32_input(1)]))
        first.result()
        second.result()
    client.close()
    prometheus.wait_for_scrape_after(time.time())


def test_requests_by_outcome_code(prometheus: Prometheus, traffic: None) -> None:
    assert prometheus.query("onnxserve_requests_total") == {
        labels(model="batched", version="1", code="OK", protocol="grpc"): 4,
        labels(model="plain", version="1", code="OK", protocol="grpc"): 3,
        labels(model="plain", version="1", code="INVALID_ARGUMENT", protocol="grpc"): 2,
        labels(model="", version="", code="INVALID_ARGUMENT", protocol="grpc"): 1,  # did not parse
        labels(
            model="", version="", code="NOT_FOUND", protocol="grpc"
        ): 1,  # unknown names are not labels
        labels(model="plain", version="", code="NOT_FOUND", protocol="grpc"): 1,
        labels(model="broken", version="", code="UNAVAILABLE", protocol="grpc"): 1,
        labels(model="reshape", version="1", code="OK", protocol="grpc"): 1,
        labels(model="reshape", version="1", code="INTERNAL", protocol="grpc"): 1,
        labels(model="slow", version="1", code="OK", protocol="grpc"): 2,
        labels(model="slow", version="1", code="DEADLINE_EXCEEDED", protocol="grpc"): 1,
        labels(model="slow", version="1", code="RESOURCE_EXHAUSTED", protocol="grpc"): 1,
        # Each served version's OK series of the other protocol starts at 0.
        **{
            labels(model=m, version="1", code="OK", protocol="http"): 0
            for m in ("batched", "plain", "reshape", "slow")
        },
    }


def test_rows_and_executions(prometheus: Prometheus, traffic: None) -> None:
    rows = {
        labels(model="batched", version="1"): 8,
        labels(model="plain", version="1"): 6,
        labels(model="reshape", version="1"): 2,  # the failed execution counts no rows
        labels(model="slow", version="1"): 2,
    }
    executions = {
        labels(model="batched", version="1"): 1,
        labels(model="plain", version="1"): 3,
        labels(model="reshape", version="1"): 1,
        labels(model="slow", version="1"): 2,
    }
    assert prometheus.query("onnxserve_inferences_total") == rows
    assert prometheus.query("onnxserve_executions_total") == executions
    assert prometheus.query("onnxserve_batch_size_rows_sum") == rows
    assert prometheus.query('onnxserve_batch_size_rows_bucket{le="4.0"}') == {
        labels(model="batched", version="1", le="4.0"): 0,
        labels(model="plain", version="1", le="4.0"): 3,
        labels(model="reshape", version="1", le="4.0"): 1,
        labels(model="slow", version="1", le="4.0"): 2,
    }
    for family in ("input", "infer", "output"):
        name = f"onnxserve_compute_{family}_duration_seconds_count"
        assert prometheus.query(name) == executions, name


def test_request_histograms_count_successes(prometheus: Prometheus, traffic: None) -> None:
    successes = {
        labels(model="batched", version="1"): 4,
        labels(model="plain", version="1"): 3,
        labels(model="reshape", version="1"): 1,
        labels(model="slow", version="1"): 2,
    }
    for family in ("request", "queue"):
        name = f"onnxserve_{family}_duration_seconds"
        assert prometheus.query(f"{name}_count") == successes, name
        inf = {key | {("le", "+Inf")}: count for key, count in successes.items()}
        assert prometheus.query(f'{name}_bucket{{le="+Inf"}}') == inf, name
    # The 1 s model's requests cannot have finished within 100 ms.
    fast = prometheus.query('onnxserve_request_duration_seconds_bucket{model="slow",le="0.1"}')
    assert list(fast.values()) == [0]


def test_gauges(prometheus: Prometheus, traffic: None) -> None:
    assert prometheus.query("onnxserve_models_loaded") == {frozenset(): 4}
    assert set(prometheus.query("onnxserve_queue_depth").values()) == {0}
    states = prometheus.query("onnxserve_model_state == 1")
    assert states == {
        labels(model=name, version="1", state="READY"): 1
        for name in ("batched", "plain", "reshape", "slow")
    } | {labels(model="broken", version="1", state="UNAVAILABLE"): 1}


def test_process_metrics(prometheus: Prometheus, traffic: None) -> None:
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        series = prometheus.query(name)
        assert len(series) == 1 and next(iter(series.values())) > 0, name


def test_every_dashboard_query_runs(prometheus: Prometheus, traffic: None) -> None:
    dashboard = json.loads((REPO_ROOT / "dashboards" / "onnxserve.json").read_text())
    targets = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert len(targets) >= 10
    for title, expr in targets:
        query = expr.replace("$__rate_interval", "5m").replace("$model", ".*").replace("$job", ".*")
        assert prometheus.query(query), f"{title}: {query} returned nothing"
