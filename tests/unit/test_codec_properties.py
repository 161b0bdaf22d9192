"""Properties of the request decoder alone, on generated requests and on arbitrary bytes.

Whatever comes in, the decoder either returns arrays whose bytes are exactly the bytes (or typed
values) that were sent, or raises InvalidArgumentError. Nothing else: no other exception, no
silent truncation, no reinterpretation.
"""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import datatypes
from server import tensors as raw_tensors
from server.errors import InvalidArgumentError
from server.grpc import codec
from server.grpc.generated import grpc_service_pb2 as pb

Tensor = pb.ModelInferRequest.InferInputTensor
CONTENT_FIELDS = [f.name for f in pb.InferTensorContents.DESCRIPTOR.fields]
# Values every typed field can hold on the wire (per its protobuf type).
FIELD_VALUES = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32, allow_nan=True),
    "fp64_contents": st.floats(allow_nan=True),
    "bytes_contents": st.binary(max_size=8),
}
DIMS = st.one_of(
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(-3, -1),
    st.sampled_from([2**31, 2**40, 2**62, 2**63 - 1]),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def length_prefixed(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


@st.composite
def tensors(draw: st.DrawFn, index: int) -> tuple[Tensor, bytes | None]:
    """One input tensor, consistent or not, with its raw content (None: typed or nothing)."""
    datatype = draw(st.sampled_from([*datatypes.NAMES, "FLOAT", "", "fp32"]))
    shape = draw(st.lists(DIMS, max_size=4))
    tensor = Tensor(name=draw(st.sampled_from(["a", "b", f"t{index}"])), datatype=datatype)
    tensor.shape.extend(shape)
    known = datatypes.BY_NAME.get(datatype)
    count = int(np.prod(shape)) if shape and all(0 <= d <= 4 for d in shape) else 1
    mode = draw(st.sampled_from(["raw", "raw_random", "typed", "typed_random", "both", "none"]))
    raw: bytes | None = None
    if mode in ("raw", "both") and known is not None:
        if known.name == "BYTES":
            raw = length_prefixed(
                draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
            )  # noqa: E501
        else:
            raw = draw(st.binary(min_size=count * known.itemsize, max_size=count * known.itemsize))
    elif mode == "raw_random":
        raw = draw(st.binary(max_size=40))
    if mode in ("typed", "both") and known is not None and known.contents_field:
        field = known.contents_field
        values = draw(st.lists(FIELD_VALUES[field], min_size=count, max_size=count))
        getattr(tensor.contents, field).extend(values)
    elif mode == "typed_random":
        field = draw(st.sampled_from(CONTENT_FIELDS))
        getattr(tensor.contents, field).extend(draw(st.lists(FIELD_VALUES[field], max_size=6)))
    return tensor, raw


@st.composite
def requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    drawn = [draw(tensors(i)) for i in range(draw(st.integers(0, 3)))]
    message = pb.ModelInferRequest(model_name="m", inputs=[t for t, _ in drawn])
    raws = [raw for _, raw in drawn]
    if any(raw is not None for raw in raws) and draw(st.booleans()):
        # The protocol has one raw buffer per input or none; sometimes break that rule too.
        message.raw_input_contents.extend(raw or b"" for raw in raws)
    elif draw(st.booleans()):
        message.raw_input_contents.extend(draw(st.lists(st.binary(max_size=16), max_size=3)))
    return message


def assert_exact(message: pb.ModelInferRequest, inputs: dict[str, np.ndarray]) -> None:
    """Every decoded array holds exactly what the message carried, in its declared shape."""
    assert list(inputs) == [t.name for t in message.inputs]
    raws = list(message.raw_input_contents)
    for i, tensor in enumerate(message.inputs):
        array = inputs[tensor.name]
        datatype = datatypes.BY_NAME[tensor.datatype]
        assert array.shape == tuple(tensor.shape)
        assert array.dtype == datatype.numpy
        if raws:
            if datatype.name == "BYTES":
                assert raw_tensors.encode_bytes(array) == raws[i]
            else:
                assert array.tobytes() == raws[i]
            continue
        values = list(getattr(tensor.contents, datatype.contents_field))
        if datatype.name == "BYTES":
            assert list(array.ravel()) == values
        elif datatype.numpy.kind in "biu":
            assert array.ravel().tolist() == values  # Python integers: no wrap-around
        else:
            np.testing.assert_array_equal(array.ravel(), np.array(values, datatype.numpy))


@SETTINGS
@given(requests())
def test_decoded_arrays_equal_what_was_sent_or_invalid_argument(
    message: pb.ModelInferRequest,
) -> None:
    wire = message.SerializeToString()
    try:
        decoded = codec.decode_request(codec.parse_infer_request(wire))
    except InvalidArgumentError:
        return
    assert_exact(message, decoded.inputs)


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_exactly_or_invalid_argument(wire: bytes) -> None:
    try:
        message = codec.parse_infer_request(wire)
        decoded = codec.decode_request(message)
    except InvalidArgumentError:
        return
    assert_exact(message, decoded.inputs)


@SETTINGS
@given(requests(), st.data())
def test_mutated_requests_decode_exactly_or_invalid_argument(
    message: pb.ModelInferRequest, data: st.DataObject
) -> None:
    wire = bytearray(message.SerializeToString())
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(wire)))
        wire[position : position + 1] = data.draw(st.binary(max_size=3))
    try:
        parsed = codec.parse_infer_request(bytes(wire))
        decoded = codec.decode_request(parsed)
    except InvalidArgumentError:
        return
    assert_exact(parsed, decoded.inputs)
