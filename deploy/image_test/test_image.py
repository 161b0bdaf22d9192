"""Smoke tests of the built image (`make image-test`): size, start to ready, exact inference on
the example models through tritonclient, non-root on a read-only root filesystem, arguments
after the image name, /metrics, SIGTERM under load, and the CPU limit seen by onnxruntime."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.image_test.containers import IMAGE, Container, docker, readable_copy
from tests.models import build_slow
from tests.slow_requests import SlowRequests

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "model_repository"
SIZE_LIMIT_MB = 250.0  # decimal MB, as docker reports
READY_LIMIT_S = 1.5
START_ATTEMPTS = 3  # the best of three: the machine may be shared, a regression shows in all


@pytest.fixture
def started() -> Iterator[list[Container]]:
    containers: list[Container] = []
    yield containers
    for container in containers:
        container.remove()
    names = docker("ps", "--all", "--format", "{{.Names}}").split()
    assert not {c.name for c in containers} & set(names), "a test container was left behind"


def run(started: list[Container], repository: Path, *args: str, **options) -> Container:
    container = Container(repository, *args, **options)
    started.append(container)
    return container.start()


def example_input(name: str) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(7)
    if name == "tabular":
        return "features", rng.standard_normal((5, 16)).astype(np.float32)
    return "image", rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)


def assert_exact_inference(address: str, name: str) -> None:
    """The container's answer equals onnxruntime's on this host for the same model file."""
    input_name, x = example_input(name)
    session = ort.InferenceSession(str(EXAMPLES / name / "1" / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(None, {input_name: x}), strict=True))
    datatype = "FP32" if x.dtype == np.float32 else "UINT8"
    tensor = triton.InferInput(input_name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    with triton.InferenceServerClient(address) as client:
        result = client.infer(name, [tensor], client_timeout=30)
    for output, want in expected.items():
        got = result.as_numpy(output)
        assert got.dtype == want.dtype and got.shape == want.shape, output
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, want)


def health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def metrics(container: Container) -> str:
    url = f"http://127.0.0.1:{container.ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_image_size_is_within_the_target() -> None:
    size_mb = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE)) / 1e6
    print(f"\nimage {IMAGE}: {size_mb:.1f} MB (target <= {SIZE_LIMIT_MB:.0f} MB)")
    assert size_mb <= SIZE_LIMIT_MB


def test_image_config() -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", IMAGE))
    assert config["User"] == "10001:10001"
    # The exec form: the server is PID 1 and the arguments after the image name are appended.
    assert config["Entrypoint"] == [
        "/opt/onnxserve/bin/onnxserve", "serve", "--model-repository", "/models",
    ]  # fmt: skip
    assert config.get("Cmd") is None
    assert sorted(config["ExposedPorts"]) == ["8000/tcp", "8001/tcp", "8002/tcp"]
    labels = config["Labels"]
    version = re.search(r'^version = "(.*)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    assert version and labels["org.opencontainers.image.version"] == version.group(1)
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert "org.opencontainers.image.source" in labels


def test_ready_within_the_target_then_exact_inference(started, tmp_path) -> None:
    repo = readable_copy(EXAMPLES, tmp_path / "shared" / "models")
    busy = os.getloadavg()[0] / len(os.sched_getaffinity(0))
    walls, cpus = [], []
    for _ in range(START_ATTEMPTS):
        container = run(started, repo)
        ready_at = container.wait_ready()
        cpus.append(container.cpu_seconds())
        walls.append(ready_at - container.started_at())
    print(
        f"\nstart to ready, {START_ATTEMPTS} starts (machine load {busy:.1f} per core): wall "
        + ", ".join(f"{w:.2f}" for w in walls)
        + " s; CPU time of the server until ready "
        + ", ".join(f"{c:.2f}" for c in cpus)
        + " s"
    )
    # CPU time does not grow when other processes share the cores; wall time does, so it is
    # held to the target only on a quiet machine.
    assert min(cpus) <= READY_LIMIT_S, cpus
    if busy < 0.5:
        assert min(walls) <= READY_LIMIT_S, walls
    address = started[-1].grpc_address
    for name in ("tabular", "image"):
        assert_exact_inference(address, name)
    assert health(address, "") == health_pb2.HealthCheckResponse.SERVING
    assert health(address, "liveness") == health_pb2.HealthCheckResponse.SERVING
    logs = started[-1].logs()
    assert "serving 2 model(s): image, tabular; server ready" in logs
    assert "telemetry" not in logs  # ORT_DISABLE_TELEMETRY is set in the image


def test_non_root_read_only_metrics_and_http(started, tmp_path) -> None:
    container = run(started, readable_copy(EXAMPLES, tmp_path / "shared" / "models"))
    container.wait_ready()
    assert docker("exec", container.name, "id", "-u").strip() == "10001"
    assert container.inspect()["HostConfig"]["ReadonlyRootfs"] is True
    for path in ("/opt/onnxserve/new-file", "/models/new-file"):
        done = docker("exec", container.name, "sh", "-c", f"touch {path} 2>&1 || true")
        assert "Read-only file system" in done, (path, done)
    # PID 1 is the server itself (exec form), so SIGTERM reaches it.
    assert "onnxserve" in docker("exec", container.name, "cat", "/proc/1/cmdline")
    text = metrics(container)
    assert re.search(r"^onnxserve_models_loaded(\{[^}]*\})? 2\.0$", text, re.M), text[:2000]
    if "HTTP listening" not in container.logs():
        pytest.skip("this build has no HTTP frontend (no 'HTTP listening' in the log)")
    for route in ("/v2/health/live", "/v2/health/ready"):
        url = f"http://127.0.0.1:{container.ports['http']}{route}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200, route


def test_arguments_after_the_image_name_reach_serve(started, tmp_path) -> None:
    # Poll mode, given after the image name, picks up a model copied into the mounted folder.
    repo = tmp_path / "shared" / "models"
    readable_copy(EXAMPLES / "tabular", repo / "tabular")
    container = run(started, repo, "--model-control-mode", "poll", "--repository-poll-secs", "0.5")
    container.wait_ready()
    with triton.InferenceServerClient(container.grpc_address) as client:
        assert client.is_model_ready("tabular") and not client.is_model_ready("image")
        readable_copy(EXAMPLES / "image", tmp_path / "staging" / "image")
        # Moved in whole, so the poller never sees a half-copied folder.
        (tmp_path / "staging" / "image").rename(repo / "image")
        deadline = time.monotonic() + 60
        while not client.is_model_ready("image"):
            assert time.monotonic() < deadline, container.logs()
            time.sleep(0.1)  # pacing between polls of the observable state
    assert_exact_inference(container.grpc_address, "image")


@pytest.mark.parametrize("layout", ["repository", "model folder", "model file"])
def test_kserve_entrypoint_serves_each_storage_layout(started, tmp_path, layout) -> None:
    # What KServe's storage initializer may leave in /mnt/models, served by the ServingRuntime's
    # command (deploy/kserve/servingruntime.yaml) under the InferenceService's name.
    mnt = tmp_path / "shared" / "mnt"
    if layout == "repository":
        readable_copy(EXAMPLES, mnt)
    elif layout == "model folder":
        readable_copy(EXAMPLES / "tabular", mnt)
    else:
        mnt.mkdir(parents=True)
        shutil.copy(EXAMPLES / "tabular" / "1" / "model.onnx", mnt / "model.onnx")
        readable_copy(mnt, tmp_path / "shared" / "file")
        mnt = tmp_path / "shared" / "file"
    entrypoint = ("--entrypoint", "/opt/onnxserve/bin/onnxserve-kserve")
    args = ("--model-name=tabular", "--grpc-port=8001")
    container = run(started, mnt, *args, docker_options=entrypoint, mount="/mnt/models")
    container.wait_ready()
    assert_exact_inference(container.grpc_address, "tabular")


def test_sigterm_under_load_exits_0_with_no_failed_request(started, tmp_path) -> None:
    requests = 8
    repo = tmp_path / "shared" / "models"
    build_slow(tmp_path / "built", config={"max_batch_size": 1}, milliseconds=150.0)
    readable_copy(tmp_path / "built", repo)
    container = run(started, repo)
    container.wait_ready()
    load = SlowRequests(container.grpc_address, container.ports["metrics"], requests)
    load.start_and_wait_arrived()
    docker("kill", "--signal", "SIGTERM", container.name)
    assert load.join() == [float(i) for i in range(requests)]
    assert container.wait_exit() == 0
    assert "shutdown complete" in container.logs()


THREADS = (
    "from server.backends.onnxruntime import session_options;"
    "from server.model_config.types import SessionConfig;"
    "print(session_options(SessionConfig(), 1).intra_op_num_threads)"
)


def test_intra_op_threads_follow_the_cpu_limit() -> None:
    host_cores = len(os.sched_getaffinity(0))
    if host_cores < 2:
        pytest.skip("one core here: a limit cannot lower the default below it")
    python = ["--rm", "--entrypoint", "/opt/onnxserve/bin/python"]
    unlimited = docker("run", *python, IMAGE, "-c", THREADS).strip()
    limited = docker("run", "--cpus", "1", *python, IMAGE, "-c", THREADS).strip()
    print(f"\nintra-op threads: {unlimited} without a limit, {limited} with --cpus 1")
    assert unlimited == str(host_cores)
    assert limited == "1"
