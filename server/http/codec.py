"""The inference request and response in their HTTP forms: JSON, and Triton's binary tensor
data extension (a JSON header of Inference-Header-Content-Length bytes, then the tensors' bytes
in order), decoded once into an InferenceRequest and encoded once from the InferenceResponse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from server import datatypes, tensors
from server.errors import InvalidArgumentError
from server.http.tensors import from_json, json_shape, to_json
from server.inference import InferenceRequest, InferenceResponse
from server.shared_memory import RegionRef, SharedInput, region_ref

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
    model: str, version: str, body: bytes, header_length: int | None
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
    request = InferenceRequest(model, version, {}, protocol="http")
    offset = header_length
    for tensor in inputs_json:
        offset = _decode_input(where, tensor, view, offset, request)
    if offset != len(body):
        raise InvalidArgumentError(
            f"{where}: the body holds {len(body) - offset} bytes more than the header's "
            f"binary_data_size values account for"
        )
    parameters = _object(where, header, "parameters")
    form = OutputForm(binary_default=parameters.pop("binary_data_output", False) is True)
    request.parameters = parameters
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgumentError(f"{where}: expected 'id' as a string, got {request_id!r}")
    request.id = request_id
    outputs = header.get("outputs")
    if outputs is not None:
        _decode_outputs(where, outputs, request, form)
    return request, form


def _object(where: str, holder: dict[str, Any], key: str) -> dict[str, Any]:
    value = holder.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{where}: expected '{key}' as a JSON object, got {value!r}")
    return value


def _decode_input(
    model: str, tensor: dict[str, Any], body: memoryview, offset: int, request: InferenceRequest
) -> int:
    """Adds one input to the request; returns where the next binary input starts in the body."""
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{model}: every input needs a 'name' string")
    where = f"{model}: input '{name}'"
    if name in request.inputs or (request.shared_inputs and name in request.shared_inputs):
        raise InvalidArgumentError(f"{where}: is given twice")
    datatype = datatypes.BY_NAME.get(tensor.get("datatype"))  # type: ignore[arg-type]
    if datatype is None:
        raise InvalidArgumentError(
            f"{where}: expected a datatype of {list(datatypes.NAMES)}, "
            f"got {tensor.get('datatype')!r}"
        )
    shape, count = json_shape(where, datatype, tensor.get("shape"))
    params = _object(where, tensor, "parameters")
    if "shared_memory_region" in params:
        if request.shared_inputs is None:
            request.shared_inputs = {}
        request.shared_inputs[name] = SharedInput(datatype, shape, region_ref(where, params))
        return offset
    size = params.get("binary_data_size")
    if size is None:
        if "data" not in tensor:
            raise InvalidArgumentError(f"{where}: expected 'data' or a binary_data_size parameter")
        request.inputs[name] = from_json(where, datatype, tensor["data"], shape, count)
        return offset
    if type(size) is not int or size < 0:
        raise InvalidArgumentError(
            f"{where}: expected binary_data_size as a non-negative integer, got {size!r}"
        )
    end = offset + size
    if end > len(body):
        raise InvalidArgumentError(
            f"{where}: binary_data_size {size} runs past the end of the body "
            f"({len(body) - offset} bytes left)"
        )
    request.inputs[name] = tensors.from_raw(where, datatype, shape, body[offset:end])
    return end


def _decode_outputs(where: str, outputs: Any, request: InferenceRequest, form: OutputForm) -> None:
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidArgumentError(f"{where}: expected 'outputs' as a list of objects")
    names = []
    binary: dict[str, bool] = {}
    for output in outputs:
        name = output.get("name")
        if not isinstance(name, str):
            raise InvalidArgumentError(f"{where}: every requested output needs a 'name' string")
        names.append(name)
        there = f"{where}: output '{name}'"
        params = _object(there, output, "parameters")
        if "binary_data" in params:
            binary[name] = params["binary_data"] is True
        if "classification" in params:
            raise InvalidArgumentError(f"{there}: the classification parameter is not supported")
        if "shared_memory_region" in params:
            regions: dict[str, RegionRef] = request.output_regions or {}
            regions[name] = region_ref(there, params)
            request.output_regions = regions
    request.requested_outputs = tuple(names)
    form.binary = binary


def encode_infer(response: InferenceResponse, form: OutputForm) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary tensors, the JSON header's length."""
    tensors_json = []
    chunks: list[bytes] = []
    placed = response.placed
    for name, array in response.outputs.items():
        datatype = datatypes.from_numpy(array.dtype)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype.name, "shape": array.shape}
        if placed is not None and name in placed:
            placement, byte_size = placed[name]
            tensor["parameters"] = {
                "shared_memory_region": placement.region.name,
                "shared_memory_byte_size": byte_size,
            }
            if placement.offset:
                tensor["parameters"]["shared_memory_offset"] = placement.offset
        elif form.is_binary(name):
            data = tensors.to_raw(array)
            tensor["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            where = f"model '{response.model_name}': output '{name}'"
            tensor["data"] = to_json(where, array, datatype.name == "BYTES")
        tensors_json.append(tensor)
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
    }
    if response.id:
        body["id"] = response.id
    body["outputs"] = tensors_json
    header = orjson.dumps(body, option=_DUMPS_OPTIONS)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
