"""Builds ModelInferRequests and reads ModelInferResponses with our own stubs, independently of
the server's codec, so the tests check the wire format rather than the codec against itself."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

import grpc
import numpy as np
import pytest

from server.grpc.generated import grpc_service_pb2 as pb

# Protocol datatype -> (numpy dtype, InferTensorContents field or None when raw-only).
DATATYPES: dict[str, tuple[np.dtype, str | None]] = {
    "BOOL": (np.dtype(np.bool_), "bool_contents"),
    "UINT8": (np.dtype(np.uint8), "uint_contents"),
    "UINT16": (np.dtype(np.uint16), "uint_contents"),
    "UINT32": (np.dtype(np.uint32), "uint_contents"),
    "UINT64": (np.dtype(np.uint64), "uint64_contents"),
    "INT8": (np.dtype(np.int8), "int_contents"),
    "INT16": (np.dtype(np.int16), "int_contents"),
    "INT32": (np.dtype(np.int32), "int_contents"),
    "INT64": (np.dtype(np.int64), "int64_contents"),
    "FP16": (np.dtype(np.float16), None),
    "FP32": (np.dtype(np.float32), "fp32_contents"),
    "FP64": (np.dtype(np.float64), "fp64_contents"),
    "BYTES": (np.dtype(object), "bytes_contents"),
}
_BY_DTYPE = {dtype: name for name, (dtype, _) in DATATYPES.items()}

Tensor = pb.ModelInferRequest.InferInputTensor
Requested = pb.ModelInferRequest.InferRequestedOutputTensor


def pack_bytes(items: Iterable[bytes]) -> bytes:
    """BYTES in raw form: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def unpack_bytes(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    assert offset == len(raw), "BYTES output overruns its buffer"
    return items


def datatype_of(array: np.ndarray) -> str:
    return _BY_DTYPE[array.dtype]


def infer_request(
    model: str,
    inputs: Mapping[str, np.ndarray],
    *,
    typed: bool = False,
    outputs: Sequence[str] = (),
    version: str = "",
    request_id: str = "",
) -> pb.ModelInferRequest:
    """Inputs in raw_input_contents, or in typed `contents` when typed=True."""
    message = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, array in inputs.items():
        datatype = datatype_of(array)
        tensor = message.inputs.add(name=name, datatype=datatype, shape=array.shape)
        if typed:
            field = DATATYPES[datatype][1]
            assert field is not None, f"{datatype} has no typed contents"
            getattr(tensor.contents, field).extend(array.ravel().tolist())
        elif datatype == "BYTES":
            message.raw_input_contents.append(pack_bytes(array.ravel().tolist()))
        else:
            message.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    message.outputs.extend(Requested(name=name) for name in outputs)
    return message


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """The response's outputs, which must all come as raw_output_contents, in response order."""
    assert len(response.raw_output_contents) == len(response.outputs)
    result = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        assert not tensor.HasField("contents"), "outputs must go back as raw_output_contents"
        shape = tuple(tensor.shape)
        if tensor.datatype == "BYTES":
            items = unpack_bytes(raw)
            array = np.empty(len(items), dtype=object)
            array[:] = items
        else:
            array = np.frombuffer(raw, dtype=DATATYPES[tensor.datatype][0])
        result[tensor.name] = array.reshape(shape)
    return result


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    """The error a call fails with; the test fails if it succeeds."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value
