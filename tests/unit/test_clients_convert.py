"""clients.convert against the server's codec, without a server: every datatype both ways."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from clients import InferenceServerError, StreamRequest
from clients.convert import infer_outputs, infer_request, to_dict
from clients.streaming import stream_result
from server import datatypes
from server.grpc import codec
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import model_config_pb2 as mc
from server.inference import InferenceResponse


def sample(name: str) -> np.ndarray:
    if name == "BYTES":
        return np.array([[b"a", b""], [b"\x00\xff", b"text"]], dtype=object)
    dtype = datatypes.BY_NAME[name].numpy
    return (np.arange(6) % 2 == 1 if name == "BOOL" else np.arange(6)).astype(dtype).reshape(2, 3)


@pytest.mark.parametrize("name", datatypes.NAMES)
def test_request_decodes_on_the_server_as_sent(name: str) -> None:
    array = sample(name)
    message = infer_request("m", {"x": array}, outputs=["y"], version="3", id="r1")
    decoded = codec.decode_request(pb.ModelInferRequest.FromString(message.SerializeToString()))
    assert (decoded.model_name, decoded.model_version, decoded.id) == ("m", "3", "r1")
    assert decoded.requested_outputs == ("y",)
    assert message.inputs[0].datatype == name
    assert decoded.inputs["x"].dtype == array.dtype
    assert decoded.inputs["x"].tolist() == array.tolist()


@pytest.mark.parametrize("name", datatypes.NAMES)
def test_server_response_decodes_on_the_client(name: str) -> None:
    array = sample(name)
    outputs = {"y": array, "z": np.zeros((0, 2), np.int8)}
    response = codec.encode_response(InferenceResponse("m", "1", "r", outputs))
    outputs = infer_outputs(pb.ModelInferResponse.FromString(response.SerializeToString()))
    assert list(outputs) == ["y", "z"]
    assert outputs["y"].dtype == array.dtype
    assert outputs["y"].tolist() == array.tolist()
    assert outputs["z"].shape == (0, 2)


def test_str_and_big_endian_inputs_are_converted() -> None:
    message = infer_request("m", {"s": np.array(["é", "b"]), "f": np.arange(3, dtype=">f4")})
    decoded = codec.decode_request(message)
    assert decoded.inputs["s"].tolist() == ["é".encode(), b"b"]
    assert decoded.inputs["f"].tolist() == [0.0, 1.0, 2.0]
    assert message.inputs[1].datatype == "FP32"


def test_parameters_and_unsupported_inputs() -> None:
    message = infer_request(
        "m", {"x": np.ones(1, np.float32)}, parameters={"a": True, "b": 5, "c": 0.5, "d": "s"}
    )
    assert to_dict(message)["parameters"] == {
        "a": {"bool_param": True},
        "b": {"int64_param": 5},
        "c": {"double_param": 0.5},
        "d": {"string_param": "s"},
    }
    with pytest.raises(ValueError, match="parameter 'x'"):
        infer_request("m", {}, parameters={"x": [1]})
    with pytest.raises(ValueError, match="input 'c': numpy dtype complex64"):
        infer_request("m", {"c": np.ones(2, np.complex64)})


def test_malformed_response_is_an_internal_error() -> None:
    response = pb.ModelInferResponse(
        model_name="m",
        outputs=[pb.ModelInferResponse.InferOutputTensor(name="y", datatype="FP32", shape=[2])],
        raw_output_contents=[b"\x00" * 7],
    )
    with pytest.raises(InferenceServerError) as raised:
        infer_outputs(response)
    assert raised.value.code == grpc.StatusCode.INTERNAL
    assert "model 'm': output 'y': raw content is 7 bytes, expected 8" in raised.value.message


def test_to_dict_keeps_ints_enums_and_maps() -> None:
    config = mc.ModelConfig(
        name="m",
        max_batch_size=4,
        input=[mc.ModelInput(name="x", data_type=mc.TYPE_FP32, dims=[-1, 3])],
        parameters={"k": mc.ModelParameter(string_value="v")},
    )
    assert to_dict(config) == {
        "name": "m",
        "max_batch_size": 4,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 3]}],
        "parameters": {"k": {"string_value": "v"}},
    }


def test_stream_results_and_request_timeout() -> None:
    ok = pb.ModelStreamInferResponse(
        infer_response=codec.encode_response(
            InferenceResponse("m", "2", "a", {"y": np.ones((1,), np.float32)})
        )
    )
    result = stream_result(ok)
    assert (result.id, result.model, result.version, result.error) == ("a", "m", "2", None)
    assert result.result()["y"].tolist() == [1.0]

    failed = pb.ModelStreamInferResponse(
        error_message="queue is full",
        infer_response=pb.ModelInferResponse(
            id="b", parameters={"error_code": pb.InferParameter(string_param="RESOURCE_EXHAUSTED")}
        ),
    )
    result = stream_result(failed)
    assert result.id == "b" and result.outputs is None
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "queue is full",
    )
    # A server that does not name the code (Triton) still gives an error, of unknown kind.
    no_code = pb.ModelStreamInferResponse(error_message="x", infer_response=pb.ModelInferResponse())
    assert stream_result(no_code).error.code == grpc.StatusCode.UNKNOWN

    message = StreamRequest("m", {"x": np.ones(1, np.float32)}, id="c", timeout=0.25).message()
    assert message.parameters["timeout"].int64_param == 250_000
