"""Protobuf <-> the core's request form at the edge: decode a ModelInferRequest once, encode
the response once. Raw tensor bytes and their size checks are server/tensors.py's, shared with
the other frontends.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from server import datatypes, tensors
from server.errors import InvalidArgumentError
from server.grpc.generated import grpc_service_pb2 as pb
from server.inference import InferenceRequest, InferenceResponse
from server.shared_memory import OutputPlacement, SharedInput, region_ref


def parse_infer_request(raw: bytes) -> pb.ModelInferRequest:
    try:
        return pb.ModelInferRequest.FromString(raw)
    except Exception as error:  # DecodeError, or invalid UTF-8 in a string field
        raise InvalidArgumentError(f"request is not a valid ModelInferRequest: {error}") from None


def decode_request(message: pb.ModelInferRequest) -> InferenceRequest:
    """The request in numpy form; tensors that name a shared memory region are only noted (the
    data plane reads and checks them)."""
    model = message.model_name
    raw_contents: Any = message.raw_input_contents
    if raw_contents and len(raw_contents) != len(message.inputs):
        # Inputs in shared memory take no raw buffer; every other input takes one.
        raw_contents = _raw_by_input(model, message)
    inputs: dict[str, np.ndarray] = {}
    shared: dict[str, SharedInput] | None = None
    for i, tensor in enumerate(message.inputs):
        name = tensor.name
        if name in inputs or (shared is not None and name in shared):
            raise InvalidArgumentError(f"model '{model}': input '{name}' is given twice")
        raw = raw_contents[i] if raw_contents else None
        if "shared_memory_region" in tensor.parameters:
            if shared is None:
                shared = {}
            shared[name] = _shared_input(model, tensor, raw)
        else:
            inputs[name] = decode_tensor(model, tensor, raw)

    requested = None
    regions = None
    if message.outputs:
        requested = tuple(o.name for o in message.outputs)
        for o in message.outputs:
            if "shared_memory_region" in o.parameters:
                where = f"model '{model}': output '{o.name}'"
                if regions is None:
                    regions = {}
                regions[o.name] = region_ref(where, _parameters(o.parameters))
    parameters = _parameters(message.parameters) if message.parameters else {}
    return InferenceRequest(
        model_name=model,
        model_version=message.model_version,
        inputs=inputs,
        requested_outputs=requested,
        id=message.id,
        parameters=parameters,
        shared_inputs=shared,
        output_regions=regions,
    )


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


def _datatype_and_shape(
    where: str, tensor: pb.ModelInferRequest.InferInputTensor
) -> tuple[datatypes.Datatype, tuple[int, ...]]:
    datatype = datatypes.BY_NAME.get(tensor.datatype)
    if datatype is None:
        raise InvalidArgumentError(
            f"{where}: unknown datatype '{tensor.datatype}'; "
            f"expected one of {', '.join(datatypes.NAMES)}"
        )
    shape = tuple(tensor.shape)
    tensors.check_shape(where, datatype, shape)
    return datatype, shape


def _shared_input(
    model: str, tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None
) -> SharedInput:
    where = f"model '{model}': input '{tensor.name}'"
    datatype, shape = _datatype_and_shape(where, tensor)
    if raw is not None or tensor.HasField("contents"):
        raise InvalidArgumentError(
            f"{where}: names a shared memory region and also carries "
            f"{'raw_input_contents' if raw is not None else 'typed contents'}; give one"
        )
    return SharedInput(datatype, shape, region_ref(where, _parameters(tensor.parameters)))


def decode_tensor(
    model: str,
    tensor: pb.ModelInferRequest.InferInputTensor,
    raw: bytes | None,
    kind: str = "input",
) -> np.ndarray:
    """One tensor to numpy; clients decode response outputs with it too (kind="output")."""
    where = f"model '{model}': {kind} '{tensor.name}'"
    datatype, shape = _datatype_and_shape(where, tensor)
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidArgumentError(f"{where}: both raw_input_contents and typed contents given")
        return tensors.from_raw(where, datatype, shape, raw)

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
    count = math.prod(shape)
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


def _parameters(params: Any) -> dict[str, Any]:
    out = {}
    for key, p in params.items():
        kind = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, kind) if kind else None
    return out


def encode_response(response: InferenceResponse) -> pb.ModelInferResponse:
    """The response message; outputs written to shared memory say where instead of raw bytes."""
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    # Filled in place: building each InferOutputTensor apart and copying it in costs more.
    add_tensor = message.outputs.add
    raw = message.raw_output_contents
    placed = response.placed
    for name, array in response.outputs.items():
        datatype = datatypes.from_numpy(array.dtype)
        tensor = add_tensor(name=name, datatype=datatype.name, shape=array.shape)
        if placed is not None and name in placed:
            placement, byte_size = placed[name]
            _mark_placed(tensor, placement, byte_size)
            # As Triton does: an empty raw buffer keeps raw_output_contents aligned with outputs.
            raw.append(b"")
            continue
        raw.append(tensors.to_raw(array))
    return message


def _mark_placed(
    tensor: pb.ModelInferResponse.InferOutputTensor, placement: OutputPlacement, byte_size: int
) -> None:
    """Tells the client where an output was written instead of raw_output_contents."""
    params = tensor.parameters
    params["shared_memory_region"].string_param = placement.region.name
    params["shared_memory_byte_size"].int64_param = byte_size
    if placement.offset:
        params["shared_memory_offset"].int64_param = placement.offset
