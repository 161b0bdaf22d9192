"""Protobuf <-> numpy at the edge: decode a ModelInferRequest once, encode the outputs once.

Every size a client claims is checked with Python integers against the bytes that actually came
before anything is allocated from it, so a forged shape cannot reserve memory.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from server import datatypes
from server.errors import InvalidArgumentError
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.shared_memory_params import mark_placed, output_placement, tensor_region
from server.inference import InferenceRequest
from server.shared_memory import OutputPlacement, SharedMemoryRegistry

_LENGTH = struct.Struct("<I")
_MAX_RANK = 64  # numpy's limit on dimensions (NPY_MAXDIMS)
_MAX_BYTES = np.iinfo(np.intp).max
_TYPED_FIELDS = frozenset(d.contents_field for d in datatypes.BY_NAME.values() if d.contents_field)


def parse_infer_request(raw: bytes) -> pb.ModelInferRequest:
    try:
        return pb.ModelInferRequest.FromString(raw)
    except Exception as error:  # DecodeError, or invalid UTF-8 in a string field
        raise InvalidArgumentError(f"request is not a valid ModelInferRequest: {error}") from None


def decode_request(
    message: pb.ModelInferRequest, regions: SharedMemoryRegistry | None = None
) -> InferenceRequest:
    """The request in numpy form; tensors that name a shared memory region are read from
    `regions` (None: shared memory is refused)."""
    model = message.model_name
    raw_contents: Any = message.raw_input_contents
    if raw_contents and len(raw_contents) != len(message.inputs):
        # Inputs in shared memory take no raw buffer; every other input takes one.
        raw_contents = _raw_by_input(model, message)
    inputs: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(message.inputs):
        name = tensor.name
        if name in inputs:
            raise InvalidArgumentError(f"model '{model}': input '{name}' is given twice")
        raw = raw_contents[i] if raw_contents else None
        inputs[name] = decode_tensor(model, tensor, raw, "input", regions)

    requested = None
    placements = None
    if message.outputs:
        requested = tuple(o.name for o in message.outputs)
        for o in message.outputs:
            if "shared_memory_region" in o.parameters:
                where = f"model '{model}': output '{o.name}'"
                if placements is None:
                    placements = {}
                placements[o.name] = output_placement(where, o.parameters, regions)
    parameters = _parameters(message.parameters) if message.parameters else {}
    request = InferenceRequest(
        model_name=model,
        model_version=message.model_version,
        inputs=inputs,
        requested_outputs=requested,
        id=message.id,
        parameters=parameters,
    )
    if placements is not None:
        request.output_placements = placements
    return request


def _raw_by_input(model: str, message: pb.ModelInferRequest) -> list[bytes | None]:
    raw_contents = message.raw_input_contents
    in_memory = ["shared_memory_region" in t.parameters for t in message.inputs]
    wanted = in_memory.count(False)
    if len(raw_contents) != wanted:
        raise InvalidArgumentError(
            f"model '{model}': {len(raw_contents)} raw_input_contents for "
            f"{wanted} inputs; give one raw buffer per input, or none"
            + (" (inputs in shared memory take none)" if wanted != len(in_memory) else "")
        )
    buffers = iter(raw_contents)
    return [None if shared else next(buffers) for shared in in_memory]


def decode_tensor(
    model: str,
    tensor: pb.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    kind: str = "input",
    regions: SharedMemoryRegistry | None = None,
) -> np.ndarray:
    """One tensor to numpy; clients decode response outputs with it too (kind="output")."""
    name = tensor.name
    where = f"model '{model}': {kind} '{name}'"
    datatype = datatypes.BY_NAME.get(tensor.datatype)
    if datatype is None:
        raise InvalidArgumentError(
            f"{where}: unknown datatype '{tensor.datatype}'; "
            f"expected one of {', '.join(datatypes.NAMES)}"
        )
    shape = tuple(tensor.shape)
    if len(shape) > _MAX_RANK:
        raise InvalidArgumentError(
            f"{where}: shape has {len(shape)} dimensions, at most {_MAX_RANK} are supported"
        )
    for d in shape:
        if d < 0:
            raise InvalidArgumentError(f"{where}: shape {list(shape)} has a negative dimension")
    count = math.prod(shape)  # Python integers: no overflow, checked against the data below
    # numpy refuses such a shape even when a 0 makes it empty; say so instead of failing later.
    extent = math.prod(d for d in shape if d) * datatype.numpy.itemsize
    if extent > _MAX_BYTES:
        raise InvalidArgumentError(
            f"{where}: shape {list(shape)} is too large for {datatype.name}: expected at most "
            f"{_MAX_BYTES} bytes across its non-zero dimensions, got {extent}"
        )
    if "shared_memory_region" in tensor.parameters:
        if regions is None:
            raise InvalidArgumentError(f"{where}: shared memory is not supported")
        if raw is not None or tensor.HasField("contents"):
            raise InvalidArgumentError(
                f"{where}: names a shared memory region and also carries "
                f"{'raw_input_contents' if raw is not None else 'typed contents'}; give one"
            )
        region, offset, size = tensor_region(where, tensor.parameters, regions)
        if datatype.name == "BYTES":
            return _decode_raw_bytes(where, region.read(offset, size, where), count, shape)
        expected = count * datatype.itemsize
        if size != expected:
            raise InvalidArgumentError(
                f"{where}: shared_memory_byte_size is {size}, expected {expected} "
                f"for shape {list(shape)} of {datatype.name}"
            )
        # A copy: the client may reuse the region as soon as the request is decoded.
        data = region.read(offset, size, where)
        return np.frombuffer(data, dtype=datatype.numpy).reshape(shape)

    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidArgumentError(f"{where}: both raw_input_contents and typed contents given")
        if datatype.name == "BYTES":
            return _decode_raw_bytes(where, raw, count, shape)
        expected = count * datatype.itemsize
        if len(raw) != expected:
            raise InvalidArgumentError(
                f"{where}: raw content is {len(raw)} bytes, expected {expected} "
                f"for shape {list(shape)} of {datatype.name}"
            )
        return np.frombuffer(raw, dtype=datatype.numpy).reshape(shape)

    field = datatype.contents_field
    if field is None:
        raise InvalidArgumentError(f"{where}: {datatype.name} must be sent in raw_input_contents")
    contents = tensor.contents
    present = [f.name for f, _ in contents.ListFields()]
    for other in present:
        if other != field:
            raise InvalidArgumentError(
                f"{where}: datatype {datatype.name} expects contents.{field}, got contents.{other}"
            )
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidArgumentError(
            f"{where}: contents.{field} holds {len(values)} values, expected {count} "
            f"for shape {list(shape)}"
        )
    if datatype.name == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    try:
        return np.array(values, dtype=datatype.numpy).reshape(shape)
    except OverflowError:
        raise InvalidArgumentError(f"{where}: a value does not fit in {datatype.name}") from None


def _decode_raw_bytes(where: str, raw: bytes, count: int, shape: tuple[int, ...]) -> np.ndarray:
    # Each element needs at least its 4-byte length prefix: bound the count before allocating.
    if count * 4 > len(raw):
        raise InvalidArgumentError(
            f"{where}: raw content of {len(raw)} bytes cannot hold {count} BYTES elements "
            f"for shape {list(shape)}"
        )
    items = []
    offset = 0
    end = len(raw)
    view = memoryview(raw)
    for i in range(count):
        if offset + 4 > end:
            raise InvalidArgumentError(f"{where}: BYTES element {i}: length prefix is truncated")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgumentError(
                f"{where}: BYTES element {i}: length {length} overruns the {end}-byte buffer"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != end:
        raise InvalidArgumentError(
            f"{where}: {end - offset} trailing bytes after {count} BYTES elements"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def _parameters(params: Any) -> dict[str, Any]:
    out = {}
    for key, p in params.items():
        kind = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, kind) if kind else None
    return out


def timeout_seconds(parameters: dict[str, Any], model: str) -> float | None:
    """The `timeout` request parameter (microseconds), as Triton reads it."""
    value = parameters.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(
            f"model '{model}': parameter 'timeout' must be a non-negative integer of microseconds"
        )
    return value / 1e6 if value else None


def encode_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.ravel():
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str,
    outputs: dict[str, np.ndarray],
    placements: dict[str, OutputPlacement] | None = None,
) -> pb.ModelInferResponse:
    """The response; outputs with a placement are written to shared memory instead."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id
    )
    # Filled in place: building each InferOutputTensor apart and copying it in costs more.
    add_tensor = response.outputs.add
    raw = response.raw_output_contents
    for name, array in outputs.items():
        datatype = datatypes.from_numpy(array.dtype)
        if placements is not None and name in placements:
            tensor = add_tensor(name=name, datatype=datatype.name, shape=array.shape)
            _place(model_name, tensor, placements[name], array, datatype.name == "BYTES")
            # As Triton does: an empty raw buffer keeps raw_output_contents aligned with outputs.
            raw.append(b"")
            continue
        add_tensor(name=name, datatype=datatype.name, shape=array.shape)
        raw.append(encode_bytes(array) if datatype.name == "BYTES" else array.tobytes())
    return response


def _place(
    model: str,
    tensor: pb.ModelInferResponse.InferOutputTensor,
    placement: OutputPlacement,
    array: np.ndarray,
    is_bytes: bool,
) -> None:
    """Writes one output into its shared memory region and says so in the tensor's parameters."""
    if is_bytes:
        data: bytes | memoryview = encode_bytes(array)
    else:
        data = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    placement.write(data, f"model '{model}': output '{tensor.name}'")
    mark_placed(tensor, placement, len(data))
