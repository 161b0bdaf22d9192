"""The Redis response cache with a real redis-server (Debian's package; .ci/run installs it):
shared by two server processes, bounded by its timeout when Redis hangs, and never failing a
request when Redis dies mid-load, with hits back once it returns."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
import tritonclient.grpc as triton

from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests.harness import ServerProcess
from tests.integration.observability import scrape, value
from tests.integration.test_tls import make_ca, make_leaf
from tests.integration.wire import infer_request, outputs_of
from tests.models import build_add_constant

CACHE_ON = {"response_cache": {"enable": True}}


class RedisServer:
    """A redis-server in a temp folder on a free loopback port, without persistence."""

    def __init__(self, binary: str, directory: Path, *extra: str, **client_options: object) -> None:
        self.binary = binary
        self.directory = directory
        self.extra = extra  # more redis-server options
        self.client_options = client_options  # what a client needs to connect (TLS, password)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.directory), "--save", "", "--appendonly", "no",
            "--logfile", str(self.directory / "redis.log"), *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(command)
        deadline = time.monotonic() + 30
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server did not start:\n{log}") from None
                time.sleep(0.02)  # pacing while redis-server opens its port

    def client(self, timeout: float | None = None) -> redis.Redis:
        options = self.client_options
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout, **options)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def redis_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
    return binary


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(redis_binary(), directory).start()
    yield server
    server.stop()


@pytest.fixture
def tls_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """TLS only (no plain port) and a password; the CA and password files sit in tmp_path."""
    binary = redis_binary()
    directory = tmp_path / "redis-tls"
    directory.mkdir()
    ca, ca_cert, ca_key = make_ca(directory, "redis-ca")
    leaf = make_leaf(directory, "redis", (ca_cert, ca_key), server=True)
    (tmp_path / "password").write_text("s3cret\n")
    server = RedisServer(binary, directory, ssl=True, ssl_ca_certs=str(ca.cert), password="s3cret")
    server.extra = (
        "--port", "0", "--tls-port", str(server.port),
        "--tls-cert-file", str(leaf.cert), "--tls-key-file", str(leaf.key),
        "--tls-ca-cert-file", str(ca.cert), "--tls-auth-clients", "no",
        "--requirepass", "s3cret",
    )  # fmt: skip
    yield server.start()
    server.stop()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repository = tmp_path / "models"
    build_add_constant(repository, "cached", addend=1.0, config=CACHE_ON)
    return repository


def one_row(x: float) -> np.ndarray:
    return np.full((1, 4), x, dtype=np.float32)


def cache_counts(server: ServerProcess) -> tuple[int, int]:
    with triton.InferenceServerClient(server.address) as client:
        (s,) = client.get_inference_statistics("cached", "1", as_json=True)["model_stats"]
    infer = s.get("inference_stats", {})
    hits = int(infer.get("cache_hit", {}).get("count", 0))
    return hits, int(s.get("execution_count", 0))


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    found = value(scrape(server.metrics_port), name, **labels)
    assert found is not None, f"{name}{labels} is not exported"
    return found


def wait_until(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # pacing between polls of the server's metrics


def test_a_response_computed_by_one_replica_is_a_hit_on_the_other(
    start_server, repo: Path, redis_server: RedisServer
) -> None:
    args = ("--cache", redis_server.url, "--cache-ttl", "600", "--cache-timeout-ms", "2000")
    first, second = start_server(repo, *args), start_server(repo, *args)
    request = infer_request("cached", {"INPUT0": one_row(2.5)})
    with grpc.insecure_channel(first.address) as a, grpc.insecure_channel(second.address) as b:
        fresh = pb_grpc.GRPCInferenceServiceStub(a).ModelInfer(request, timeout=30)
        cached = pb_grpc.GRPCInferenceServiceStub(b).ModelInfer(request, timeout=30)
    assert outputs_of(fresh)["OUTPUT0"].tolist() == [[3.5] * 4]
    assert cached.SerializeToString() == fresh.SerializeToString()
    assert cache_counts(first) == (0, 1)
    assert cache_counts(second) == (1, 0)  # answered from Redis: nothing ran there
    with redis_server.client() as client:
        keys = client.keys("onnxserve:rc:*")
        assert len(keys) == 1
        assert 0 < client.pttl(keys[0]) <= 600_000


def test_rediss_with_a_ca_and_a_password_file(
    start_server, repo: Path, tmp_path: Path, tls_redis_server: RedisServer
) -> None:
    url = f"rediss://127.0.0.1:{tls_redis_server.port}/0"
    ca = tls_redis_server.directory / "redis-ca.crt"
    server = start_server(
        repo, "--cache", url, "--cache-tls-ca", str(ca),
        "--cache-password-file", str(tmp_path / "password"), "--cache-timeout-ms", "2000",
    )  # fmt: skip
    request = infer_request("cached", {"INPUT0": one_row(7.0)})
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answers = [stub.ModelInfer(request, timeout=30) for _ in range(2)]
    assert answers[0].SerializeToString() == answers[1].SerializeToString()
    assert cache_counts(server) == (1, 1)
    assert metric(server, "onnxserve_cache_errors_total", cache="redis") == 0
    with tls_redis_server.client() as client:
        assert len(client.keys("onnxserve:rc:*")) == 1
    # A wrong password: every request still answered, each failure counted, nothing cached.
    (tmp_path / "password").write_text("wrong\n")
    refused = start_server(
        repo, "--cache", url, "--cache-tls-ca", str(ca),
        "--cache-password-file", str(tmp_path / "password"),
    )  # fmt: skip
    with grpc.insecure_channel(refused.address) as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert outputs_of(response)["OUTPUT0"].tolist() == [[8.0] * 4]
    assert cache_counts(refused) == (0, 1)
    assert metric(refused, "onnxserve_cache_errors_total", cache="redis") >= 1


def test_a_hung_redis_costs_a_request_its_timeout_not_its_answer(
    start_server, repo: Path, redis_server: RedisServer
) -> None:
    server = start_server(repo, "--cache", redis_server.url, "--cache-timeout-ms", "200")
    stub_channel = grpc.insecure_channel(server.address)
    stub = pb_grpc.GRPCInferenceServiceStub(stub_channel)
    stub.ModelInfer(infer_request("cached", {"INPUT0": one_row(1.0)}), timeout=30)
    with redis_server.client() as client:
        # Every client's commands wait from the moment this returns, for the next 5 s.
        assert client.execute_command("CLIENT", "PAUSE", "5000", "ALL")
    # A lookup waiting on Redis would miss this 2 s deadline; the 200 ms cache timeout does not.
    response = stub.ModelInfer(infer_request("cached", {"INPUT0": one_row(1.0)}), timeout=2)
    assert outputs_of(response)["OUTPUT0"].tolist() == [[2.0] * 4]
    assert metric(server, "onnxserve_cache_errors_total", cache="redis") >= 1
    assert "response cache (redis): 1 failure(s), the last: TimeoutError" in server.logs()
    stub_channel.close()


def test_redis_killed_mid_load_fails_nothing_and_hits_resume_after_restart(
    start_server, repo: Path, redis_server: RedisServer
) -> None:
    server = start_server(repo, "--cache", redis_server.url, "--cache-timeout-ms", "500")
    stop = threading.Event()
    answered: list[int] = [0]
    wrong: list[str] = []

    def load() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while not stop.is_set():
                x = float(answered[0] % 5)
                try:
                    response = stub.ModelInfer(
                        infer_request("cached", {"INPUT0": one_row(x)}), timeout=30
                    )
                    got = outputs_of(response)["OUTPUT0"].tolist()
                    if got != [[x + 1] * 4]:
                        wrong.append(f"{x}: {got}")
                except grpc.RpcError as error:
                    wrong.append(f"{x}: {error.code()} {error.details()}")
                answered[0] += 1

    def hits() -> float:
        return metric(server, "onnxserve_cache_hits_total", model="cached", version="1")

    worker = threading.Thread(target=load)
    worker.start()
    try:
        wait_until(lambda: hits() >= 10, "hits from Redis")
        redis_server.kill()
        wait_until(
            lambda: metric(server, "onnxserve_cache_errors_total", cache="redis") >= 1,
            "a cache error after Redis died",
        )
        down_at = answered[0]
        wait_until(lambda: answered[0] >= down_at + 50, "requests served while Redis is down")
        hits_while_down = hits()
        redis_server.start()
        wait_until(lambda: hits() >= hits_while_down + 10, "hits after Redis came back")
    finally:
        stop.set()
        worker.join(timeout=60)
    assert wrong == []
    assert "response cache (redis): reachable again" in server.logs()
