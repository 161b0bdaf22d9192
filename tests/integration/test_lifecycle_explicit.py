"""Explicit model control through tritonclient: index, load (with config overrides), unload,
name checks, Triton config.pbtxt, and reloads under load without one failed request."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from server.grpc.generated import grpc_service_pb2 as pb
from tests.harness import ServerProcess
from tests.integration.observability import scrape
from tests.models import build_add_constant, build_add_sub, build_versioned

STREAMS = 16
RELOADS = 10

TRITON_PBTXT = """
name: "from_triton"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 16 ] },
        { name: "INPUT1", data_type: TYPE_FP32, dims: [ 16 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 16 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
"""


# Each test loads, unloads or rewrites models: each gets its own repository and server, so
# that any order or subset of the tests passes.
@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "explicit"
    repository = root / "models"
    build_versioned(repository, versions=(1,))
    build_add_constant(repository, "swapped", addend=0.0)
    build_add_sub(repository)
    build_add_sub(repository, "unload_me")
    build_add_sub(repository, "counted")
    shutil.copytree(repository / "add_sub", root / "staging")
    (root / "staging" / "config.yaml").unlink()
    (root / "staging" / "config.pbtxt").write_text(TRITON_PBTXT)
    shutil.move(root / "staging", repository / "from_triton")
    # A loadable model outside the repository, and a symlink that leads to it.
    build_add_sub(root, "outside")
    os.symlink(root / "outside", repository / "escape")
    return repository


@pytest.fixture
def server(start_server: Callable[..., ServerProcess], repo: Path) -> ServerProcess:
    return start_server(
        repo, "--model-control-mode", "explicit", "--load-model", "versioned",
        "--load-model", "swapped",
    )  # fmt: skip


@pytest.fixture
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address)


def add_constant_input(value: float = 0.0) -> list[triton.InferInput]:
    tensor = triton.InferInput("INPUT0", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.full((1, 1), value, np.float32))
    return [tensor]


def add_sub_inputs() -> list[triton.InferInput]:
    inputs = []
    for name, value in (("INPUT0", 3.0), ("INPUT1", 1.0)):
        tensor = triton.InferInput(name, [1, 16], "FP32")
        tensor.set_data_from_numpy(np.full((1, 16), value, np.float32))
        inputs.append(tensor)
    return inputs


def index(client: triton.InferenceServerClient) -> dict[tuple[str, str], tuple[str, str]]:
    response = client.get_model_repository_index()
    return {(m.name, m.version): (m.state, m.reason) for m in response.models}


def status_of(call: Callable[[], object]) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status()


def test_the_index_lists_every_model_folder(
    client: triton.InferenceServerClient, server: ServerProcess
) -> None:
    models = index(client)
    assert models[("versioned", "1")] == ("READY", "")
    assert models[("add_sub", "")] == ("UNKNOWN", "not loaded")
    assert models[("from_triton", "")] == ("UNKNOWN", "not loaded")
    assert ("escape", "") in models  # listed, as the operator put it there, but not loadable
    with server.channel() as channel:
        ready = server.stub(channel).RepositoryIndex(pb.RepositoryIndexRequest(ready=True))
    assert {(m.name, m.state) for m in ready.models} == {
        ("versioned", "READY"),
        ("swapped", "READY"),
    }
    assert "model_repository" in client.get_server_metadata().extensions


def test_load_and_unload(client: triton.InferenceServerClient) -> None:
    assert not client.is_model_ready("unload_me")
    client.load_model("unload_me")
    assert client.is_model_ready("unload_me")
    result = client.infer("unload_me", add_sub_inputs())
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 4.0))
    client.unload_model("unload_me")
    assert not client.is_model_ready("unload_me")
    assert index(client)[("unload_me", "")] == ("UNAVAILABLE", "unloaded")
    assert (
        status_of(lambda: client.infer("unload_me", add_sub_inputs())) == "StatusCode.UNAVAILABLE"
    )
    client.unload_model("unload_me")  # unloading twice is fine
    assert status_of(lambda: client.unload_model("no_such_model")) == "StatusCode.NOT_FOUND"


def test_metric_series_follow_the_version_through_reload_and_unload(
    client: triton.InferenceServerClient, server: ServerProcess
) -> None:
    def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Version 1's series (the model itself stays listed, in state UNAVAILABLE)."""
        version = {("model", "counted"), ("version", "1")}
        return {k: v for k, v in scrape(server.metrics_port).items() if version <= k[1]}

    ok = (
        "onnxserve_requests_total",
        frozenset({("model", "counted"), ("version", "1"), ("code", "OK"), ("protocol", "grpc")}),
    )
    client.load_model("counted")
    client.infer("counted", add_sub_inputs())
    assert counted()[ok] == 1
    client.load_model("counted")  # a reload of the same version keeps its counters
    client.infer("counted", add_sub_inputs())
    assert counted()[ok] == 2
    client.unload_model("counted")  # returns once the version is released
    assert counted() == {}
    client.load_model("counted")  # loaded again later: counting starts over
    client.infer("counted", add_sub_inputs())
    assert counted()[ok] == 1


def test_a_config_override_in_either_layout(client: triton.InferenceServerClient) -> None:
    client.load_model("add_sub", config=json.dumps({"max_batch_size": 2}))
    assert client.get_model_config("add_sub").config.max_batch_size == 2
    triton_layout = {"max_batch_size": 3, "instance_group": [{"count": 2, "kind": "KIND_CPU"}]}
    client.load_model("add_sub", config=json.dumps(triton_layout))
    config = client.get_model_config("add_sub").config
    assert (config.max_batch_size, config.instance_group[0].count) == (3, 2)

    bad = json.dumps({"max_batch_size": 2, "sequence_batching": {}})
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("add_sub", config=bad)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "sequence_batching: not supported" in caught.value.message()
    # A refused override leaves the model as it was; a plain load reads config.yaml again.
    assert client.get_model_config("add_sub").config.max_batch_size == 3
    client.load_model("add_sub")
    assert client.get_model_config("add_sub").config.max_batch_size == 8
    result = client.infer("add_sub", add_sub_inputs())
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.full((1, 16), 2.0))


def test_a_triton_config_pbtxt_is_served(client: triton.InferenceServerClient) -> None:
    client.load_model("from_triton")
    config = client.get_model_config("from_triton").config
    assert config.max_batch_size == 4
    assert [o.name for o in config.output] == ["OUTPUT0"]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    result = client.infer("from_triton", add_sub_inputs())
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 4.0))


@pytest.mark.parametrize(
    "name", ["..", "../outside", "escape", "/etc", "add_sub/../add_sub", ".", "", "_hidden"]
)
def test_names_outside_the_repository_are_refused(
    client: triton.InferenceServerClient, name: str
) -> None:
    assert status_of(lambda: client.load_model(name)) == "StatusCode.INVALID_ARGUMENT"
    assert status_of(lambda: client.unload_model(name)) == "StatusCode.INVALID_ARGUMENT"
    assert index(client)[("escape", "")] == ("UNKNOWN", "not loaded")
    assert not any(n == "outside" for n, _ in index(client))


@pytest.mark.server_errors(r"model 'versioned' version 1: failed to load: .*INVALID_PROTOBUF")
def test_a_failed_load_reports_and_keeps_the_old_version(
    client: triton.InferenceServerClient, repo: Path
) -> None:
    model_file = repo / "versioned" / "1" / "model.onnx"
    good = model_file.read_bytes()
    model_file.write_bytes(b"truncated")
    try:
        assert status_of(lambda: client.load_model("versioned")) == "StatusCode.INVALID_ARGUMENT"
        state, reason = index(client)[("versioned", "1")]
        assert state == "READY" and "reload failed" in reason
        result = client.infer("versioned", add_constant_input(1.0))
        assert result.as_numpy("OUTPUT0")[0, 0] == 2.0
    finally:
        model_file.write_bytes(good)
    client.load_model("versioned")
    assert index(client)[("versioned", "1")] == ("READY", "")


def test_reloads_and_a_new_version_under_load_fail_no_request(
    client: triton.InferenceServerClient, server: ServerProcess, repo: Path
) -> None:
    stop = threading.Event()
    seen: list[list[tuple[float, str]]] = [[] for _ in range(STREAMS)]
    errors: list[BaseException] = []

    def stream(index: int) -> None:
        with triton.InferenceServerClient(server.address) as own:
            while not stop.is_set():
                try:
                    result = own.infer("swapped", add_constant_input())
                except BaseException as error:  # noqa: BLE001 - every failure counts
                    errors.append(error)
                    return
                value = float(result.as_numpy("OUTPUT0")[0, 0])
                seen[index].append((value, result.get_response().model_version))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(STREAMS)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while not all(seen) and not errors and time.monotonic() < deadline:
            time.sleep(0.01)  # pacing the wait until every stream is under way
        for generation in range(1, RELOADS + 1):
            build_add_constant(repo, "swapped", 1, addend=float(generation))
            client.load_model("swapped")
            # Traffic has switched once the load returns; the server stayed ready throughout.
            assert client.infer("swapped", add_constant_input()).as_numpy("OUTPUT0")[0, 0] == (
                generation
            )
            assert client.is_server_ready()
        build_add_constant(repo, "swapped", 2, addend=100.0)
        client.load_model("swapped")
        final = client.infer("swapped", add_constant_input()).get_response()
        assert final.model_version == "2"
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    total = sum(len(s) for s in seen)
    print(f"{total} requests over {RELOADS} reloads and a new version")
    assert total > STREAMS * 5, f"only {total} requests completed"
    allowed = {(float(g), "1") for g in range(RELOADS + 1)} | {(100.0, "2")}
    for responses in seen:
        assert set(responses) <= allowed
        values = [v for v, _ in responses]
        assert values == sorted(values), "a stream saw an older model after a newer one"
    assert {v for s in seen for v, _ in s} >= {0.0, float(RELOADS), 100.0}
    # Version 1 left the policy (latest 1): it drained and went; version 2 takes explicit calls.
    assert client.is_model_ready("swapped", "2")
    assert not client.is_model_ready("swapped", "1")
    metadata = client.get_model_metadata("swapped", "2")
    assert metadata.versions == ["2"]
