"""The protocol through our own stubs against one real server: health, metadata, config,
inference with raw and typed contents, output selection, versions, and RPCs not offered."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from server.dataplane import SERVER_NAME, SERVER_VERSION
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from server.grpc.generated import model_config_pb2 as mc
from tests import models
from tests.harness import ServerProcess
from tests.integration.wire import infer_request, outputs_of, rpc_error

Stub = pb_grpc.GRPCInferenceServiceStub
TIMEOUT = 30


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("models")
    models.build_add_sub(repo)
    models.build_nonbatched(repo)
    models.build_double(repo)
    models.build_versioned(repo, versions=(1, 2, 3), config={"version_policy": {"latest": 2}})
    return start_module_server(repo)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[Stub]:
    with server.channel() as channel:
        yield server.stub(channel)


def add_sub_inputs(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    return {
        "INPUT0": rng.standard_normal((rows, 16), dtype=np.float32),
        "INPUT1": rng.standard_normal((rows, 16), dtype=np.float32),
    }


# --- health and metadata -------------------------------------------------------------------


def test_live_and_ready(stub: Stub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=TIMEOUT).live is True
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=TIMEOUT).ready is True


@pytest.mark.parametrize(
    ("name", "version", "ready"),
    [
        ("add_sub", "", True),
        ("add_sub", "1", True),
        ("add_sub", "2", False),
        ("nosuch", "", False),
        ("versioned", "1", False),  # not selected by latest: 2
        ("versioned", "2", True),
        ("versioned", "3", True),
    ],
)
def test_model_ready(stub: Stub, name: str, version: str, ready: bool) -> None:
    request = pb.ModelReadyRequest(name=name, version=version)
    assert stub.ModelReady(request, timeout=TIMEOUT).ready is ready


def test_server_metadata(stub: Stub) -> None:
    metadata = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=TIMEOUT)
    assert (metadata.name, metadata.version) == (SERVER_NAME, SERVER_VERSION)
    assert SERVER_NAME == "onnxserve"
    extensions = set(metadata.extensions)
    assert {"model_configuration", "parameters", "system_shared_memory"} <= extensions
    # No GPU: CUDA shared memory is refused, so it must not be reported.
    assert "cuda_shared_memory" not in extensions


def tensors(metadata: list) -> list[tuple[str, str, list[int]]]:
    return [(t.name, t.datatype, list(t.shape)) for t in metadata]


def test_model_metadata_of_a_batched_model(stub: Stub) -> None:
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="add_sub"), timeout=TIMEOUT)
    assert (metadata.name, list(metadata.versions), metadata.platform) == (
        "add_sub",
        ["1"],
        "onnxruntime_onnx",
    )
    assert tensors(metadata.inputs) == [("INPUT0", "FP32", [-1, 16]), ("INPUT1", "FP32", [-1, 16])]
    assert tensors(metadata.outputs) == [
        ("OUTPUT0", "FP32", [-1, 16]),
        ("OUTPUT1", "FP32", [-1, 16]),
    ]


def test_model_metadata_of_an_unbatched_model(stub: Stub) -> None:
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="nonbatched"), timeout=TIMEOUT)
    assert tensors(metadata.inputs) == [("INPUT0", "FP32", [2, 3])]
    assert tensors(metadata.outputs) == [("OUTPUT0", "FP32", [3, 2])]


def test_model_metadata_lists_the_served_versions(stub: Stub) -> None:
    for version in ("", "2", "3"):
        request = pb.ModelMetadataRequest(name="versioned", version=version)
        assert sorted(stub.ModelMetadata(request, timeout=TIMEOUT).versions) == ["2", "3"]


def test_model_config(stub: Stub) -> None:
    config = stub.ModelConfig(pb.ModelConfigRequest(name="add_sub"), timeout=TIMEOUT).config
    assert (config.name, config.platform, config.backend) == (
        "add_sub",
        "onnxruntime_onnx",
        "onnxruntime",
    )
    assert config.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("INPUT0", mc.TYPE_FP32, [16]),
        ("INPUT1", mc.TYPE_FP32, [16]),
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("OUTPUT0", mc.TYPE_FP32, [16]),
        ("OUTPUT1", mc.TYPE_FP32, [16]),
    ]
    assert not config.HasField("dynamic_batching")
    assert config.version_policy.latest.num_versions == 1


def test_model_config_with_dynamic_batching(stub: Stub) -> None:
    config = stub.ModelConfig(pb.ModelConfigRequest(name="double"), timeout=TIMEOUT).config
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("INPUT0", mc.TYPE_FP32, [-1]),
        ("ID", mc.TYPE_INT64, [1]),
    ]


# --- inference -----------------------------------------------------------------------------


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
@pytest.mark.parametrize("rows", [1, 8])
def test_infer_add_sub(stub: Stub, typed: bool, rows: int) -> None:
    inputs = add_sub_inputs(rows)
    request = infer_request("add_sub", inputs, typed=typed, request_id=f"req-{rows}")
    response = stub.ModelInfer(request, timeout=TIMEOUT)
    assert (response.model_name, response.model_version, response.id) == (
        "add_sub",
        "1",
        f"req-{rows}",
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in response.outputs] == [
        ("OUTPUT0", "FP32", [rows, 16]),
        ("OUTPUT1", "FP32", [rows, 16]),
    ]
    outputs = outputs_of(response)
    np.testing.assert_array_equal(outputs["OUTPUT0"], inputs["INPUT0"] + inputs["INPUT1"])
    np.testing.assert_array_equal(outputs["OUTPUT1"], inputs["INPUT0"] - inputs["INPUT1"])


@pytest.mark.parametrize("selected", [["OUTPUT1"], ["OUTPUT1", "OUTPUT0"], ["OUTPUT0"]])
def test_requested_outputs_select_a_subset_in_order(stub: Stub, selected: list[str]) -> None:
    inputs = add_sub_inputs(2)
    response = stub.ModelInfer(infer_request("add_sub", inputs, outputs=selected), timeout=TIMEOUT)
    outputs = outputs_of(response)
    assert list(outputs) == selected
    expected = {
        "OUTPUT0": inputs["INPUT0"] + inputs["INPUT1"],
        "OUTPUT1": inputs["INPUT0"] - inputs["INPUT1"],
    }
    for name in selected:
        np.testing.assert_array_equal(outputs[name], expected[name])


def test_infer_unbatched_model_keeps_its_own_shapes(stub: Stub) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    response = stub.ModelInfer(infer_request("nonbatched", {"INPUT0": x}), timeout=TIMEOUT)
    outputs = outputs_of(response)
    assert outputs["OUTPUT0"].shape == (3, 2)
    np.testing.assert_array_equal(outputs["OUTPUT0"], x.T)


def test_infer_variable_length_with_ids(stub: Stub) -> None:
    x = np.linspace(-3, 3, 14, dtype=np.float32).reshape(2, 7)
    ids = np.array([[11], [-(2**40)]], np.int64)
    response = stub.ModelInfer(infer_request("double", {"INPUT0": x, "ID": ids}), timeout=TIMEOUT)
    outputs = outputs_of(response)
    np.testing.assert_array_equal(outputs["OUTPUT0"], 2 * x)
    np.testing.assert_array_equal(outputs["ID_OUT"], ids)


@pytest.mark.parametrize(("version", "addend"), [("", 3.0), ("3", 3.0), ("2", 2.0)])
def test_infer_picks_the_requested_version(stub: Stub, version: str, addend: float) -> None:
    x = np.array([[0.5, -1.0]], np.float32)
    response = stub.ModelInfer(
        infer_request("versioned", {"INPUT0": x}, version=version), timeout=TIMEOUT
    )
    assert response.model_version == (version or "3")
    np.testing.assert_array_equal(outputs_of(response)["OUTPUT0"], x + addend)


# --- RPCs this server does not offer -------------------------------------------------------


@pytest.mark.parametrize(
    ("rpc", "request_message"),
    [
        ("CudaSharedMemoryRegister", pb.CudaSharedMemoryRegisterRequest(name="r")),
        ("CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest()),
        ("CudaSharedMemoryUnregister", pb.CudaSharedMemoryUnregisterRequest()),
        ("TraceSetting", pb.TraceSettingRequest()),
    ],
)
def test_rpcs_not_offered_answer_unimplemented(stub: Stub, rpc: str, request_message) -> None:
    error = rpc_error(getattr(stub, rpc), request_message, timeout=TIMEOUT)
    assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == f"{rpc} is not implemented by this server"
