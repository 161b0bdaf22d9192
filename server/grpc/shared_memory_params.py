"""The shared memory parameters of a tensor, as Triton reads them, and as it answers them."""

from __future__ import annotations

from typing import Any

from server.errors import InvalidArgumentError
from server.grpc.generated import grpc_service_pb2 as pb
from server.shared_memory import OutputPlacement, Region, SharedMemoryRegistry


def tensor_region(
    where: str, params: Any, regions: SharedMemoryRegistry | None
) -> tuple[Region, int, int]:
    """The region, offset and byte size a tensor's parameters name, as Triton reads them."""
    if regions is None:
        raise InvalidArgumentError(f"{where}: shared memory is not supported")
    name = params["shared_memory_region"]
    if name.WhichOneof("parameter_choice") != "string_param":
        raise InvalidArgumentError(f"{where}: 'shared_memory_region' must be a string_param")
    values = []
    for key, required in (("shared_memory_offset", False), ("shared_memory_byte_size", True)):
        if key not in params:
            if required:
                raise InvalidArgumentError(
                    f"{where}: '{key}' must be given along with 'shared_memory_region'"
                )
            values.append(0)
            continue
        param = params[key]
        kind = param.WhichOneof("parameter_choice")
        if kind not in ("int64_param", "uint64_param") or getattr(param, kind) < 0:
            raise InvalidArgumentError(f"{where}: '{key}' must be a non-negative int64_param")
        values.append(getattr(param, kind))
    offset, size = values
    region = regions.get(name.string_param, where)
    region.check(offset, size, where)
    return region, offset, size


def output_placement(
    where: str, params: Any, regions: SharedMemoryRegistry | None
) -> OutputPlacement:
    region, offset, size = tensor_region(where, params, regions)
    return OutputPlacement(region, offset, size)


def mark_placed(
    tensor: pb.ModelInferResponse.InferOutputTensor, placement: OutputPlacement, byte_size: int
) -> None:
    """Tells the client where an output was written instead of raw_output_contents."""
    params = tensor.parameters
    params["shared_memory_region"].string_param = placement.region.name
    params["shared_memory_byte_size"].int64_param = byte_size
    if placement.offset:
        params["shared_memory_offset"].int64_param = placement.offset
