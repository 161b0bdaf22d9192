"""Every protocol datatype round-trips through an identity model of its own, sent as
raw_input_contents, as typed contents (all but FP16), and through tritonclient."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests import models
from tests.harness import ServerProcess
from tests.integration.wire import DATATYPES, infer_request, outputs_of, pack_bytes, rpc_error

Stub = pb_grpc.GRPCInferenceServiceStub
TIMEOUT = 30


def strings(*items: str) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = [item.encode() for item in items]
    return array


# Two rows of three per datatype, with each type's extremes; BYTES with empty and multi-byte text.
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 1, 255], [7, 128, 254]], np.uint8),
    "UINT16": np.array([[0, 1, 2**16 - 1], [7, 2**15, 3]], np.uint16),
    "UINT32": np.array([[0, 1, 2**32 - 1], [7, 2**31, 3]], np.uint32),
    "UINT64": np.array([[0, 1, 2**64 - 1], [7, 2**63, 3]], np.uint64),
    "INT8": np.array([[-128, 0, 127], [-1, 1, 5]], np.int8),
    "INT16": np.array([[-(2**15), 0, 2**15 - 1], [-1, 1, 5]], np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1], [-1, 1, 5]], np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1], [-1, 1, 5]], np.int64),
    "FP16": np.array([[-65504.0, 6e-8, 65504.0], [0.5, -0.0, np.inf]], np.float16),
    "FP32": np.array([[-3.4e38, 1e-45, 3.4e38], [0.5, -0.0, np.inf]], np.float32),
    "FP64": np.array([[-1.7e308, 5e-324, 1.7e308], [0.5, -0.0, -np.inf]], np.float64),
    "BYTES": strings("", "abc", "", "héllo wörld", "日本語", " ").reshape(2, 3),
}
TYPED = [d for d in SAMPLES if DATATYPES[d][1] is not None]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("models")
    models.build_identity_all(repo)
    return start_module_server(repo)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[Stub]:
    with server.channel() as channel:
        yield server.stub(channel)


def model(datatype: str) -> str:
    return f"identity_{datatype.lower()}"


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind == "f":  # NaN-free samples: compare bit patterns, so -0.0 counts too
        assert got.tobytes() == want.tobytes()
    else:
        assert got.tolist() == want.tolist()


def test_samples_cover_every_datatype() -> None:
    assert set(SAMPLES) == set(DATATYPES)


@pytest.mark.parametrize("datatype", SAMPLES)
def test_raw_round_trip(stub: Stub, datatype: str) -> None:
    x = SAMPLES[datatype]
    response = stub.ModelInfer(infer_request(model(datatype), {"INPUT0": x}), timeout=TIMEOUT)
    assert [(t.name, t.datatype, list(t.shape)) for t in response.outputs] == [
        ("OUTPUT0", datatype, [2, 3])
    ]
    assert_same(outputs_of(response)["OUTPUT0"], x)


@pytest.mark.parametrize("datatype", TYPED)
def test_typed_round_trip(stub: Stub, datatype: str) -> None:
    x = SAMPLES[datatype]
    request = infer_request(model(datatype), {"INPUT0": x}, typed=True)
    response = stub.ModelInfer(request, timeout=TIMEOUT)
    assert_same(outputs_of(response)["OUTPUT0"], x)


def test_raw_bytes_layout_on_the_wire(stub: Stub) -> None:
    """BYTES in raw form both ways: 4-byte little-endian length, then the bytes."""
    x = strings("", "ab", "")
    request = infer_request("identity_bytes", {"INPUT0": x.reshape(1, 3)})
    assert request.raw_input_contents[0] == b"\0\0\0\0" + b"\2\0\0\0ab" + b"\0\0\0\0"
    response = stub.ModelInfer(request, timeout=TIMEOUT)
    assert response.raw_output_contents[0] == pack_bytes([b"", b"ab", b""])


def test_all_empty_bytes(stub: Stub) -> None:
    x = strings("", "", "", "").reshape(4, 1)
    response = stub.ModelInfer(infer_request("identity_bytes", {"INPUT0": x}), timeout=TIMEOUT)
    assert_same(outputs_of(response)["OUTPUT0"], x)


def test_fp16_is_raw_only(stub: Stub) -> None:
    request = infer_request("identity_fp16", {"INPUT0": np.zeros((1, 2), np.float32)}, typed=True)
    request.inputs[0].datatype = "FP16"
    error = rpc_error(stub.ModelInfer, request, timeout=TIMEOUT)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "model 'identity_fp16': input 'INPUT0': FP16 must be sent in raw_input_contents"
    )


def test_bool_raw_is_one_byte_per_element(stub: Stub) -> None:
    x = SAMPLES["BOOL"]
    response = stub.ModelInfer(infer_request("identity_bool", {"INPUT0": x}), timeout=TIMEOUT)
    assert response.raw_output_contents[0] == bytes([1, 0, 1, 0, 0, 1])


@pytest.mark.parametrize("datatype", SAMPLES)
def test_tritonclient_round_trip(server: ServerProcess, datatype: str) -> None:
    x = SAMPLES[datatype]
    tensor = triton.InferInput("INPUT0", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    with triton.InferenceServerClient(server.address) as client:
        result = client.infer(model(datatype), [tensor], client_timeout=60)
    got = result.as_numpy("OUTPUT0")
    if datatype == "BYTES":
        assert got.tolist() == x.tolist()
    else:
        assert_same(got, x)
