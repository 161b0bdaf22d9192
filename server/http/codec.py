"""The inference request and response in their HTTP forms: JSON, and Triton's binary tensor
data extension (a JSON header of Inference-Header-Content-Length bytes, then the tensors' bytes
in order), decoded once into an InferenceRequest and encoded once from the outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from server import datatypes
from server.errors import InvalidArgumentError
from server.http.tensors import check_shape, from_binary, from_json, to_binary, to_json
from server.inference import InferenceRequest
from server.shared_memory import OutputPlacement, Region, SharedMemoryRegistry

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class OutputForm:
    """How the client wants the outputs back: binary by default or per output name."""

    binary_default: bool = False
    binary: dict[str, bool] | None = None

    def is_binary(self, name: str) -> bool:
        if self.binary is not None and name in self.binary:
            return self.binary[name]
        return self.binary_default


def parse_json(where: str, body: bytes | memoryview) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidArgumentError(f"{where}: request body is not valid JSON: {error}") from None


def decode_infer(
    model: str,
    version: str,
    body: bytes,
    header_length: int | None,
    regions: SharedMemoryRegistry,
) -> tuple[InferenceRequest, OutputForm]:
    """The request in numpy form; `header_length` is Inference-Header-Content-Length, if sent."""
    where = f"model '{model}'"
    if header_length is None:
        header_length = len(body)
    elif header_length > len(body):
        raise InvalidArgumentError(
            f"{where}: Inference-Header-Content-Length is {header_length}, "
            f"but the body holds only {len(body)} bytes"
        )
    view = memoryview(body)
    header = parse_json(where, view[:header_length])
    if not isinstance(header, dict):
        raise InvalidArgumentError(f"{where}: expected a JSON object, got {type(header).__name__}")
    inputs_json = header.get("inputs")
    if not isinstance(inputs_json, list) or not all(isinstance(t, dict) for t in inputs_json):
        raise InvalidArgumentError(f"{where}: expected 'inputs' as a list of tensor objects")
    offset = header_length
    inputs: dict[str, np.ndarray] = {}
    for tensor in inputs_json:
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidArgumentError(f"{where}: every input needs a 'name' string")
        there = f"{where}: input '{name}'"
        if name in inputs:
            raise InvalidArgumentError(f"{there}: is given twice")
        inputs[name], offset = _decode_input(there, tensor, view, offset, regions)
    if offset != len(body):
        raise InvalidArgumentError(
            f"{where}: the body holds {len(body) - offset} bytes more than the header's "
            f"binary_data_size values account for"
        )
    parameters = _object(where, header, "parameters")
    form = OutputForm(binary_default=parameters.pop("binary_data_output", False) is True)
    request = InferenceRequest(model, version, inputs, parameters=parameters)
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgumentError(f"{where}: expected 'id' as a string, got {request_id!r}")
    request.id = request_id
    outputs = header.get("outputs")
    if outputs is not None:
        _decode_outputs(where, outputs, request, form, regions)
    return request, form


def _object(where: str, holder: dict[str, Any], key: str) -> dict[str, Any]:
    value = holder.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{where}: expected '{key}' as a JSON object, got {value!r}")
    return value


def _decode_input(
    where: str,
    tensor: dict[str, Any],
    body: memoryview,
    offset: int,
    regions: SharedMemoryRegistry,
) -> tuple[np.ndarray, int]:
    """The input's array and where the next binary input starts in the body."""
    datatype = datatypes.BY_NAME.get(tensor.get("datatype"))  # type: ignore[arg-type]
    if datatype is None:
        raise InvalidArgumentError(
            f"{where}: expected a datatype of {list(datatypes.NAMES)}, "
            f"got {tensor.get('datatype')!r}"
        )
    shape, count = check_shape(where, tensor.get("shape"))
    params = _object(where, tensor, "parameters")
    size = params.get("binary_data_size")
    if "shared_memory_region" in params:
        region, at, length = _region(where, params, regions)
        return from_binary(where, datatype, region.read(at, length, where), shape, count), offset
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidArgumentError(
                f"{where}: expected binary_data_size as a non-negative integer, got {size!r}"
            )
        if offset + size > len(body):
            raise InvalidArgumentError(
                f"{where}: binary_data_size {size} runs past the end of the body "
                f"({len(body) - offset} bytes left)"
            )
        return from_binary(where, datatype, body[offset : offset + size], shape, count), (
            offset + size
        )
    if "data" not in tensor:
        raise InvalidArgumentError(f"{where}: expected 'data' or a binary_data_size parameter")
    return from_json(where, datatype, tensor["data"], shape, count), offset


def _decode_outputs(
    where: str,
    outputs: Any,
    request: InferenceRequest,
    form: OutputForm,
    regions: SharedMemoryRegistry,
) -> None:
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidArgumentError(f"{where}: expected 'outputs' as a list of objects")
    names = []
    binary: dict[str, bool] = {}
    for output in outputs:
        name = output.get("name")
        if not isinstance(name, str):
            raise InvalidArgumentError(f"{where}: every requested output needs a 'name' string")
        names.append(name)
        params = _object(f"{where}: output '{name}'", output, "parameters")
        if "binary_data" in params:
            binary[name] = params["binary_data"] is True
        if "classification" in params:
            raise InvalidArgumentError(
                f"{where}: output '{name}': the classification parameter is not supported"
            )
        if "shared_memory_region" in params:
            there = f"{where}: output '{name}'"
            if request.output_placements is None:
                request.output_placements = {}
            request.output_placements[name] = OutputPlacement(*_region(there, params, regions))
    request.requested_outputs = tuple(names)
    form.binary = binary


def _region(
    where: str, params: dict[str, Any], regions: SharedMemoryRegistry
) -> tuple[Region, int, int]:
    """The region, offset and byte size a tensor's parameters name, as Triton reads them."""
    name = params["shared_memory_region"]
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{where}: expected 'shared_memory_region' as a string")
    offset = params.get("shared_memory_offset", 0)
    size = params.get("shared_memory_byte_size")
    for key, value in (("shared_memory_offset", offset), ("shared_memory_byte_size", size)):
        if type(value) is not int or value < 0:
            raise InvalidArgumentError(
                f"{where}: expected '{key}' as a non-negative integer, got {value!r}"
            )
    region = regions.get(name, where)
    region.check(offset, size, where)
    return region, offset, size


def encode_infer(
    model: str,
    version: str,
    request: InferenceRequest,
    outputs: dict[str, np.ndarray],
    form: OutputForm,
) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary tensors, the JSON header's length."""
    tensors = []
    chunks: list[bytes] = []
    placements = request.output_placements
    for name, array in outputs.items():
        datatype = datatypes.from_numpy(array.dtype)
        is_bytes = datatype.name == "BYTES"
        tensor: dict[str, Any] = {"name": name, "datatype": datatype.name, "shape": array.shape}
        if placements is not None and name in placements:
            data = to_binary(np.ascontiguousarray(array), is_bytes)
            placements[name].write(data, f"model '{model}': output '{name}'")
            tensor["parameters"] = {
                "shared_memory_region": placements[name].region.name,
                "shared_memory_byte_size": len(data),
            }
        elif form.is_binary(name):
            data = to_binary(array, is_bytes)
            tensor["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            tensor["data"] = to_json(f"model '{model}': output '{name}'", array, is_bytes)
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model, "model_version": version}
    if request.id:
        response["id"] = request.id
    response["outputs"] = tensors
    header = orjson.dumps(response, option=_DUMPS_OPTIONS)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
