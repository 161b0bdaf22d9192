"""Starting on a repository with broken models: each is reported in one readable log line and
stays unready, the others serve; a folder with only 1/model.onnx is served with a config
completed from the model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from server.grpc.generated import model_config_pb2 as mc
from tests import models
from tests.harness import ServerProcess
from tests.integration.wire import infer_request, outputs_of, rpc_error

Stub = pb_grpc.GRPCInferenceServiceStub
TIMEOUT = 30
GOOD = ["add_sub", "bare_batched", "bare_unbatched"]
BROKEN = ["bad_datatype", "bad_key", "bad_yaml", "garbage_model", "no_version"]


# Every model but the good ones is broken on purpose.
pytestmark = pytest.mark.server_errors("failed to load")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("models")
    models.build_add_sub(repo)
    # Only 1/model.onnx: everything comes from the model.
    for name, build in (("bare_batched", models.build_double), ("bare_unbatched", None)):
        folder = build(repo, name) if build else models.build_nonbatched(repo, name)
        (folder / "config.yaml").unlink()
    models.build_add_sub(repo, "bad_yaml")
    models.write_config(repo, "bad_yaml", "max_batch_size: [8\ninputs: []\n")
    models.build_add_sub(repo, "bad_key")
    models.write_config(repo, "bad_key", "max_batch_sise: 8\n")
    models.build_add_sub(repo, "bad_datatype", config={"inputs": None, "outputs": None})
    models.write_config(
        repo,
        "bad_datatype",
        "max_batch_size: 8\ninputs:\n- {name: INPUT0, datatype: INT32, dims: [16]}\n"
        "- {name: INPUT1, datatype: FP32, dims: [16]}\n",
    )
    models.write_broken_model(repo, "garbage_model")
    models.write_config(repo, "no_version", {"max_batch_size": 4})
    return repo


@pytest.fixture(scope="module")
def server(repo: Path, start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(repo)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[Stub]:
    with server.channel() as channel:
        yield server.stub(channel)


def test_the_good_models_serve_but_strict_readiness_holds_the_server(
    server: ServerProcess, stub: Stub
) -> None:
    for name in GOOD:
        assert stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=TIMEOUT).ready, name
    assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=TIMEOUT).ready
    assert f"startup finished: serving 3 model(s): {', '.join(GOOD)}; server not ready" in (
        server.logs()
    )


def test_without_strict_readiness_the_server_is_ready(
    repo: Path, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server(repo, "--strict-readiness", "false")
    with server.channel() as channel:
        assert server.stub(channel).ServerReady(pb.ServerReadyRequest(), timeout=TIMEOUT).ready


@pytest.mark.parametrize("name", BROKEN)
def test_broken_models_are_not_ready(stub: Stub, name: str) -> None:
    assert not stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=TIMEOUT).ready


def failure_lines(server: ServerProcess) -> dict[str, str]:
    """The log line of each model that failed to load, from "model 'NAME'" on."""
    lines = {}
    for line in server.logs().splitlines():
        if "failed to load" in line and "model '" in line:
            text = line[line.index("model '") :]
            lines[text.split("'")[1]] = text
    return lines


def test_each_failure_is_one_readable_log_line(server: ServerProcess, repo: Path) -> None:
    lines = failure_lines(server)
    assert sorted(lines) == BROKEN
    assert lines["bad_yaml"] == (
        f"model 'bad_yaml': failed to load: {repo}/bad_yaml/config.yaml: line 2, column 7: "
        "invalid YAML: expected ',' or ']', but got ':'"
    )
    assert lines["bad_key"].startswith(
        f"model 'bad_key': failed to load: {repo}/bad_key/config.yaml: max_batch_sise: "
        "unknown key; did you mean 'max_batch_size'? valid keys here: name, backend, "
    )
    assert lines["bad_datatype"] == (
        f"model 'bad_datatype' version 1: failed to load: {repo}/bad_datatype/config.yaml: "
        "inputs[0].datatype: expected FP32 as in the model's input 'INPUT0', got INT32"
    )
    assert lines["garbage_model"].startswith(
        f"model 'garbage_model' version 1: failed to load: {repo}/garbage_model/1/model.onnx: "
        "onnxruntime cannot load the model: "
    )
    assert lines["no_version"] == (
        f"model 'no_version': failed to load: {repo}/no_version: "
        "no version folder (e.g. 1/model.onnx) matches the version policy"
    )
    assert "Traceback" not in server.logs()


def test_a_broken_model_answers_unavailable_with_its_reason(stub: Stub, repo: Path) -> None:
    request = pb.ModelInferRequest(model_name="garbage_model")
    error = rpc_error(stub.ModelInfer, request, timeout=TIMEOUT)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details().startswith(
        f"model 'garbage_model' is not ready: {repo}/garbage_model/1/model.onnx: "
        "onnxruntime cannot load the model"
    )
    error = rpc_error(stub.ModelMetadata, pb.ModelMetadataRequest(name="bad_key"), timeout=TIMEOUT)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "max_batch_sise: unknown key" in error.details()


def test_the_good_model_beside_them_serves(stub: Stub) -> None:
    x = np.arange(16, dtype=np.float32).reshape(1, 16)
    response = stub.ModelInfer(
        infer_request("add_sub", {"INPUT0": x, "INPUT1": x}), timeout=TIMEOUT
    )
    outputs = outputs_of(response)
    np.testing.assert_array_equal(outputs["OUTPUT0"], 2 * x)
    np.testing.assert_array_equal(outputs["OUTPUT1"], 0 * x)


def test_model_without_config_is_completed_as_batched(stub: Stub) -> None:
    """Every input and output has a dynamic first dimension: batched, dynamic batching on."""
    config = stub.ModelConfig(pb.ModelConfigRequest(name="bare_batched"), timeout=TIMEOUT).config
    assert (config.name, config.backend, config.max_batch_size) == (
        "bare_batched",
        "onnxruntime",
        8,
    )
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("INPUT0", mc.TYPE_FP32, [-1]),
        ("ID", mc.TYPE_INT64, [1]),
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("OUTPUT0", mc.TYPE_FP32, [-1]),
        ("ID_OUT", mc.TYPE_INT64, [1]),
    ]
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    x = np.array([[1.0, -2.5, 3.0]], np.float32)
    ids = np.array([[42]], np.int64)
    response = stub.ModelInfer(
        infer_request("bare_batched", {"INPUT0": x, "ID": ids}), timeout=TIMEOUT
    )
    outputs = outputs_of(response)
    np.testing.assert_array_equal(outputs["OUTPUT0"], 2 * x)
    np.testing.assert_array_equal(outputs["ID_OUT"], ids)


def test_model_without_config_is_completed_as_unbatched(stub: Stub) -> None:
    """Fixed first dimensions: max_batch_size 0, shapes as in the model, no batcher."""
    name = "bare_unbatched"
    config = stub.ModelConfig(pb.ModelConfigRequest(name=name), timeout=TIMEOUT).config
    assert config.max_batch_size == 0
    assert [(i.name, list(i.dims)) for i in config.input] == [("INPUT0", [2, 3])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("OUTPUT0", [3, 2])]
    assert not config.HasField("dynamic_batching")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    response = stub.ModelInfer(infer_request(name, {"INPUT0": x}), timeout=TIMEOUT)
    np.testing.assert_array_equal(outputs_of(response)["OUTPUT0"], x.T)
