"""server/grpc/codec.py on its own: protobuf <-> numpy, and every size check before allocation."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest

from server import datatypes, tensors
from server.errors import InvalidArgumentError
from server.grpc import codec
from server.grpc.generated import grpc_service_pb2 as pb
from server.inference import InferenceResponse
from server.shared_memory import RegionRef, SharedInput

Tensor = pb.ModelInferRequest.InferInputTensor

# One sample array per datatype, with the extremes of each integer type.
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 1, 255]], np.uint8),
    "UINT16": np.array([[0, 1, 65535]], np.uint16),
    "UINT32": np.array([[0, 1, 2**32 - 1]], np.uint32),
    "UINT64": np.array([[0, 1, 2**64 - 1]], np.uint64),
    "INT8": np.array([[-128, 0, 127]], np.int8),
    "INT16": np.array([[-(2**15), 0, 2**15 - 1]], np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], np.int64),
    "FP16": np.array([[-1.5, 0.0, 65504.0]], np.float16),
    "FP32": np.array([[-1.5, 0.0, 3.4e38]], np.float32),
    "FP64": np.array([[-1.5, 0.0, 1e300]], np.float64),
}


def lengths_prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def decode(
    datatype: str, shape: list[int], raw: bytes | None = None, **contents: list
) -> np.ndarray:
    tensor = Tensor(name="x", datatype=datatype, shape=shape)
    if contents:
        tensor.contents.CopyFrom(pb.InferTensorContents(**contents))
    return codec.decode_tensor("m", tensor, raw)


def assert_invalid(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(InvalidArgumentError, match=match) as info:
        call(*args, **kwargs)
    return info.value.message


# --- raw and typed contents, per datatype --------------------------------------------------


@pytest.mark.parametrize("datatype", SAMPLES)
def test_raw_contents_decode_to_the_exact_array(datatype: str) -> None:
    sample = SAMPLES[datatype]
    array = decode(datatype, [1, 3], sample.tobytes())
    assert array.dtype == datatypes.BY_NAME[datatype].numpy
    assert array.shape == (1, 3)
    np.testing.assert_array_equal(array, sample)


@pytest.mark.parametrize("datatype", [d for d in SAMPLES if d != "FP16"])
def test_typed_contents_decode_to_the_exact_array(datatype: str) -> None:
    sample = SAMPLES[datatype]
    field = datatypes.BY_NAME[datatype].contents_field
    assert field is not None
    array = decode(datatype, [1, 3], **{field: sample.ravel().tolist()})
    assert array.dtype == sample.dtype
    np.testing.assert_array_equal(array, sample)


def test_fp16_has_no_typed_field() -> None:
    message = assert_invalid("FP16 must be sent in raw_input_contents", decode, "FP16", [1])
    assert "input 'x'" in message


def test_typed_value_out_of_range() -> None:
    assert_invalid("a value does not fit in INT8", decode, "INT8", [1], int_contents=[300])
    assert_invalid("does not fit in UINT8", decode, "UINT8", [2], uint_contents=[1, 256])


def test_typed_contents_of_another_datatype() -> None:
    message = assert_invalid(
        r"datatype FP32 expects contents.fp32_contents, got contents.int_contents",
        decode,
        "FP32",
        [1],
        int_contents=[1],
    )
    assert message.startswith("model 'm': input 'x': ")


def test_typed_count_differs_from_shape() -> None:
    assert_invalid(
        r"contents.fp32_contents holds 3 values, expected 4 for shape \[2, 2\]",
        decode,
        "FP32",
        [2, 2],
        fp32_contents=[1.0, 2.0, 3.0],
    )


def test_raw_and_typed_together() -> None:
    with pytest.raises(InvalidArgumentError, match="both raw_input_contents and typed contents"):
        decode("FP32", [1], np.zeros(1, np.float32).tobytes(), fp32_contents=[0.0])


# --- BYTES ---------------------------------------------------------------------------------


def test_raw_bytes_with_empty_and_binary_elements() -> None:
    items = [b"", b"abc", b"\x00\xff", b""]
    array = decode("BYTES", [2, 2], lengths_prefixed(*items))
    assert array.dtype == object and array.shape == (2, 2)
    assert array.ravel().tolist() == items


def test_typed_bytes() -> None:
    array = decode("BYTES", [3], bytes_contents=[b"", b"x", "é".encode()])
    assert array.tolist() == [b"", b"x", "é".encode()]


@pytest.mark.parametrize(
    ("raw", "shape", "match"),
    [
        (lengths_prefixed(b"ab") + b"\x01\x00", [2], "element 1: length prefix is truncated"),
        (struct.pack("<I", 10) + b"abc", [1], "element 0: length 10 overruns the 7-byte buffer"),
        (lengths_prefixed(b"ab") + b"zz", [1], "2 trailing bytes after 1 BYTES elements"),
        (lengths_prefixed(b"a", b"b"), [3], "raw content of 10 bytes cannot hold 3 BYTES elements"),
    ],
)
def test_raw_bytes_framing_errors(raw: bytes, shape: list[int], match: str) -> None:
    message = assert_invalid(match, decode, "BYTES", shape, raw)
    assert message.startswith("model 'm': input 'x': ")


def test_encode_bytes_prefixes_each_element() -> None:
    array = np.array([["", "é"], [b"\x00", b""]], dtype=object)
    assert tensors.encode_bytes(array) == lengths_prefixed(b"", "é".encode(), b"\x00", b"")


# --- sizes: checked with Python integers before anything is allocated ----------------------


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "contents"),
    [
        ("FP32", [2**32, 2**32], b"", {}),
        ("INT8", [2**62, 2**62], b"", {}),
        ("BYTES", [2**32, 2**32], b"", {}),
        ("FP32", [2**32, 2**32], None, {"fp32_contents": [1.0]}),
        ("BYTES", [2**32, 2**32], None, {"bytes_contents": [b"a"]}),
        ("FP32", [0, 2**62], b"", {}),
        ("BYTES", [2**40, 2**40, 0], b"", {}),
        ("INT64", [2**31, 2**31], b"\x00" * 8, {}),
    ],
)
def test_huge_shapes_fail_without_allocating(
    datatype: str, shape: list[int], raw: bytes | None, contents: dict
) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(InvalidArgumentError) as info:
            decode(datatype, shape, raw, **contents)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"decoding allocated {peak} bytes"
    assert info.value.message.startswith("model 'm': input 'x': ")
    assert str(shape[0]) in info.value.message  # the shape that came


def test_raw_size_mismatch_names_expected_and_got() -> None:
    message = assert_invalid("raw content", decode, "FP32", [2, 3], b"\x00" * 20)
    assert message == (
        "model 'm': input 'x': raw content is 20 bytes, expected 24 for shape [2, 3] of FP32"
    )


def test_overflowing_shape_with_empty_raw_content() -> None:
    message = assert_invalid("raw content|too large", decode, "FP32", [2**32, 2**32], b"")
    assert "[4294967296, 4294967296]" in message


def test_negative_dimension() -> None:
    assert_invalid(r"shape \[1, -3\] has a negative dimension", decode, "FP32", [1, -3], b"")


def test_unknown_datatype() -> None:
    message = assert_invalid("unknown datatype 'FLOAT32'", decode, "FLOAT32", [1], b"")
    assert "FP32" in message and "BYTES" in message  # lists what is expected


def test_zero_elements_decode_to_an_empty_array() -> None:
    array = decode("FP32", [0, 4], b"")
    assert array.shape == (0, 4) and array.dtype == np.float32


# --- whole requests ------------------------------------------------------------------------


def infer_request(**fields) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="m", **fields)


def test_parse_refuses_malformed_bytes() -> None:
    assert_invalid("not a valid ModelInferRequest", codec.parse_infer_request, b"\xff\xff\xff")


def test_decode_request_reads_names_versions_outputs_and_parameters() -> None:
    message = infer_request(
        model_version="3",
        id="req-1",
        inputs=[Tensor(name="A", datatype="INT32", shape=[1, 2])],
        raw_input_contents=[np.array([[5, -6]], np.int32).tobytes()],
        outputs=[
            pb.ModelInferRequest.InferRequestedOutputTensor(name="Y"),
            pb.ModelInferRequest.InferRequestedOutputTensor(name="X"),
        ],
    )
    message.parameters["timeout"].int64_param = 2500
    message.parameters["tag"].string_param = "t"
    request = codec.decode_request(codec.parse_infer_request(message.SerializeToString()))
    assert (request.model_name, request.model_version, request.id) == ("m", "3", "req-1")
    assert request.requested_outputs == ("Y", "X")
    assert request.parameters == {"timeout": 2500, "tag": "t"}
    np.testing.assert_array_equal(request.inputs["A"], [[5, -6]])


def test_no_outputs_means_every_output() -> None:
    request = codec.decode_request(infer_request())
    assert request.requested_outputs is None and request.inputs == {}


def test_raw_buffer_count_must_match_inputs() -> None:
    message = infer_request(
        inputs=[Tensor(name="A", datatype="FP32", shape=[1]), Tensor(name="B", datatype="FP32")],
        raw_input_contents=[b"\x00" * 4],
    )
    assert_invalid("1 raw_input_contents for 2 inputs", codec.decode_request, message)


def test_input_given_twice() -> None:
    message = infer_request(
        inputs=[Tensor(name="A", datatype="FP32", shape=[1])] * 2,
        raw_input_contents=[b"\x00" * 4] * 2,
    )
    assert_invalid("input 'A' is given twice", codec.decode_request, message)


def test_shared_memory_inputs_are_named_not_read() -> None:
    tensor = Tensor(name="A", datatype="FP32", shape=[2])
    tensor.parameters["shared_memory_region"].string_param = "r"
    tensor.parameters["shared_memory_byte_size"].int64_param = 8
    tensor.parameters["shared_memory_offset"].uint64_param = 16
    request = codec.decode_request(infer_request(inputs=[tensor]))
    assert request.inputs == {}
    assert request.shared_inputs == {
        "A": SharedInput(datatypes.BY_NAME["FP32"], (2,), RegionRef("r", 16, 8))
    }
    tensor.parameters["shared_memory_byte_size"].string_param = "8"
    assert_invalid(
        "input 'A': 'shared_memory_byte_size' must be a non-negative integer",
        codec.decode_request,
        infer_request(inputs=[tensor]),
    )


# --- responses -----------------------------------------------------------------------------


def test_encode_response_sends_raw_outputs_in_order() -> None:
    outputs = {
        "B": np.array([[True, False]]),
        "A": np.array([[1.5, -2.0]], np.float16),
        "S": np.array([["ab", ""]], dtype=object),
    }
    response = codec.encode_response(InferenceResponse("m", "2", "id-9", outputs))
    assert (response.model_name, response.model_version, response.id) == ("m", "2", "id-9")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("B", "BOOL", [1, 2]),
        ("A", "FP16", [1, 2]),
        ("S", "BYTES", [1, 2]),
    ]
    assert list(response.raw_output_contents) == [
        b"\x01\x00",
        np.array([1.5, -2.0], np.float16).tobytes(),
        lengths_prefixed(b"ab", b""),
    ]
    assert all(not o.HasField("contents") for o in response.outputs)
