"""numpy <-> protocol messages on the client side, with the server's own datatype table and codec.

Inputs go out as raw contents (one buffer per input, BYTES length-prefixed by the server's
encoder in server/tensors.py); outputs come back through the server's tensor decoder, so both
sides agree by construction on every datatype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import Message

from clients.errors import InferenceServerError
from server import datatypes, tensors
from server.errors import InvalidArgumentError
from server.grpc import codec
from server.grpc.generated import grpc_service_pb2 as pb

Inputs = Mapping[str, Any]  # name -> np.ndarray (or anything np.asarray takes)
Outputs = dict[str, np.ndarray]

_Tensor = pb.ModelInferRequest.InferInputTensor
_Requested = pb.ModelInferRequest.InferRequestedOutputTensor


def infer_request(
    model: str,
    inputs: Inputs,
    outputs: Sequence[str] | None = None,
    version: str = "",
    id: str = "",
    parameters: Mapping[str, Any] | None = None,
) -> pb.ModelInferRequest:
    declared = []
    raw = []
    for name, value in inputs.items():
        array = np.asarray(value)
        if not array.dtype.isnative:  # e.g. a big-endian .npy file; the protocol is little-endian
            array = array.astype(array.dtype.newbyteorder("="))
        try:
            datatype = datatypes.from_numpy(array.dtype)
        except ValueError as error:
            raise ValueError(f"input '{name}': {error}") from None
        declared.append(_Tensor(name=name, datatype=datatype.name, shape=array.shape))
        raw.append(tensors.to_raw(array))
    return pb.ModelInferRequest(
        model_name=model,
        model_version=version,
        id=id,
        inputs=declared,
        outputs=[_Requested(name=n) for n in outputs or ()],
        raw_input_contents=raw,
        parameters=infer_parameters(parameters or {}),
    )


def infer_parameters(parameters: Mapping[str, Any]) -> dict[str, pb.InferParameter]:
    out = {}
    for key, value in parameters.items():
        if isinstance(value, bool):
            out[key] = pb.InferParameter(bool_param=value)
        elif isinstance(value, int):
            out[key] = pb.InferParameter(int64_param=value)
        elif isinstance(value, float):
            out[key] = pb.InferParameter(double_param=value)
        elif isinstance(value, str):
            out[key] = pb.InferParameter(string_param=value)
        else:
            raise ValueError(f"parameter '{key}': expected bool, int, float or str, got {value!r}")
    return out


def timeout_parameter(timeout: float) -> int:
    """Seconds -> the `timeout` request parameter (microseconds), at least 1."""
    return max(1, round(timeout * 1e6))


def infer_outputs(response: pb.ModelInferResponse) -> Outputs:
    raw = response.raw_output_contents
    outputs = {}
    try:
        for i, tensor in enumerate(response.outputs):
            contents = raw[i] if i < len(raw) else None
            outputs[tensor.name] = codec.decode_tensor(
                response.model_name, tensor, contents, kind="output"
            )
    except InvalidArgumentError as error:
        raise InferenceServerError(
            grpc.StatusCode.INTERNAL, f"malformed response: {error.message}"
        ) from None
    return outputs


def to_dict(message: Message) -> dict[str, Any]:
    """A message as plain Python values: the fields that are set, ints kept as ints."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        out[field.name] = _value(field, value)
    return out


def _value(field: Any, value: Any) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {k: _scalar(value_field, v) for k, v in value.items()}
    if field.is_repeated:
        return [_scalar(field, v) for v in value]
    return _scalar(field, value)


def _scalar(field: Any, value: Any) -> Any:
    if field.message_type is not None:
        return to_dict(value)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    return value
