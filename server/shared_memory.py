"""System shared memory regions (Triton's system_shared_memory extension).

A client creates a POSIX shared memory object, registers a byte range of it under a name, and
then names that region instead of sending a tensor's bytes. Only objects directly in /dev/shm
are accepted, so a client cannot make the server map any other file. The data plane copies
inputs out before a request is validated (a later write by the client cannot change a queued
request) and writes outputs in after inference. Everything here runs on the event loop thread.
"""

from __future__ import annotations

import math
import mmap
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from server import tensors
from server.datatypes import Datatype
from server.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError

if TYPE_CHECKING:  # inference.py imports this module for its field types
    from server.inference import InferenceRequest, InferenceResponse

SHM_DIRECTORY = Path("/dev/shm")
_OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(eq=False)
class Region:
    name: str
    key: str
    offset: int  # into the shared memory object
    byte_size: int
    _map: mmap.mmap = field(repr=False)
    _start: int = field(repr=False)  # where the region begins in _map (mmap offsets are aligned)

    @property
    def closed(self) -> bool:
        return self._map.closed

    def read(self, offset: int, size: int, where: str) -> bytes:
        """A copy of `size` bytes at `offset` into the region."""
        start = self._bounds(offset, size, where)
        return self._map[start : start + size]

    def write(self, offset: int, data: bytes | memoryview, where: str) -> None:
        start = self._bounds(offset, len(data), where)
        self._map[start : start + len(data)] = data

    def check(self, offset: int, size: int, where: str) -> None:
        self._bounds(offset, size, where)

    def _bounds(self, offset: int, size: int, where: str) -> int:
        if self._map.closed:
            raise NotFoundError(
                f"{where}: shared memory region '{self.name}' was unregistered while in use"
            )
        if offset < 0 or size < 0 or offset + size > self.byte_size:
            raise InvalidArgumentError(
                f"{where}: shared memory region '{self.name}' holds {self.byte_size} bytes, "
                f"got offset {offset} and byte size {size}"
            )
        return self._start + offset


@dataclass(frozen=True, slots=True)
class RegionRef:
    """A byte range of a registered region as a request names it; resolved by `locate`."""

    name: str
    offset: int
    byte_size: int


@dataclass(frozen=True, slots=True)
class SharedInput:
    """An input tensor whose bytes are in a region: its datatype and shape, and where."""

    datatype: Datatype
    shape: tuple[int, ...]
    ref: RegionRef


@dataclass(frozen=True, slots=True)
class OutputPlacement:
    """Where a requested output goes: `byte_size` bytes at `offset` into a region."""

    region: Region
    offset: int
    byte_size: int

    def write(self, data: bytes | memoryview, where: str) -> None:
        if len(data) > self.byte_size:
            raise InvalidArgumentError(
                f"{where}: the output is {len(data)} bytes, shared memory region "
                f"'{self.region.name}' was given {self.byte_size} (shared_memory_byte_size)"
            )
        self.region.write(self.offset, data, where)


class SharedMemoryRegistry:
    """The registered regions, by name."""

    def __init__(self, directory: Path = SHM_DIRECTORY) -> None:
        self.directory = directory
        self._regions: dict[str, Region] = {}

    def register(self, name: str, key: str, offset: int, byte_size: int) -> Region:
        where = f"system shared memory region '{name}'"
        if not name:
            raise InvalidArgumentError("system shared memory region: expected a name, got ''")
        if name in self._regions:
            raise AlreadyExistsError(f"{where} is already registered")
        if byte_size <= 0 or offset < 0:
            raise InvalidArgumentError(
                f"{where}: expected a positive byte_size and an offset >= 0, "
                f"got byte_size {byte_size} and offset {offset}"
            )
        path = self._path(key, where)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            raise InvalidArgumentError(f"{where}: key '{key}' does not exist ({path})") from None
        except OSError as error:
            raise InvalidArgumentError(
                f"{where}: cannot open key '{key}' ({path}): {error.strerror}"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgumentError(
                    f"{where}: key '{key}' is not a shared memory object ({path})"
                )
            if offset + byte_size > info.st_size:
                raise InvalidArgumentError(
                    f"{where}: offset {offset} + byte_size {byte_size} exceeds the "
                    f"{info.st_size} bytes of key '{key}'"
                )
            start = offset % mmap.ALLOCATIONGRANULARITY
            mapped = mmap.mmap(fd, start + byte_size, offset=offset - start)
        except OSError as error:
            raise InvalidArgumentError(f"{where}: cannot map key '{key}': {error}") from None
        finally:
            os.close(fd)
        region = Region(name, key, offset, byte_size, mapped, start)
        self._regions[name] = region
        return region

    def get(self, name: str, where: str) -> Region:
        region = self._regions.get(name)
        if region is None:
            raise NotFoundError(f"{where}: unknown shared memory region '{name}'")
        return region

    def resolve(self, request: InferenceRequest) -> None:
        """Reads the request's shared memory inputs into `inputs` and checks where its outputs
        go, so that a bad region fails the request before it is queued."""
        model = request.model_name
        if request.shared_inputs:
            for name, tensor in request.shared_inputs.items():
                where = f"model '{model}': input '{name}'"
                request.inputs[name] = self.read_input(where, tensor)
        if request.output_regions:
            request.output_placements = {
                name: self.locate(ref, f"model '{model}': output '{name}'")
                for name, ref in request.output_regions.items()
            }

    @staticmethod
    def write_outputs(response: InferenceResponse, placements: dict[str, OutputPlacement]) -> None:
        """Writes the outputs that have a placement into their regions, and says so in
        response.placed (how many bytes each took)."""
        placed = {}
        for name, placement in placements.items():
            array = response.outputs.get(name)
            if array is None:
                continue
            if array.dtype.kind in "OSU":
                data: bytes | memoryview = tensors.encode_bytes(array)
            else:
                data = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
            placement.write(data, f"model '{response.model_name}': output '{name}'")
            placed[name] = (placement, len(data))
        response.placed = placed

    def locate(self, ref: RegionRef, where: str) -> OutputPlacement:
        """Where an output goes, checked against the region's bounds before the request runs."""
        region = self.get(ref.name, where)
        region.check(ref.offset, ref.byte_size, where)
        return OutputPlacement(region, ref.offset, ref.byte_size)

    def read_input(self, where: str, tensor: SharedInput) -> np.ndarray:
        """A copy of an input's bytes (the client may reuse the region once the request is
        decoded), checked against its datatype and shape."""
        ref = tensor.ref
        region = self.get(ref.name, where)
        data = region.read(ref.offset, ref.byte_size, where)
        if tensor.datatype.name != "BYTES":
            expected = math.prod(tensor.shape) * tensor.datatype.itemsize
            if ref.byte_size != expected:
                raise InvalidArgumentError(
                    f"{where}: shared_memory_byte_size is {ref.byte_size}, expected {expected} "
                    f"for shape {list(tensor.shape)} of {tensor.datatype.name}"
                )
        return tensors.from_raw(where, tensor.datatype, tensor.shape, data)

    def status(self, name: str = "") -> list[Region]:
        """Every region, or the one named (NotFoundError if it is not registered)."""
        if not name:
            return list(self._regions.values())
        return [self.get(name, "system shared memory status")]

    def unregister(self, name: str = "") -> None:
        """Unregisters one region, or all with name ""; an unknown name is not an error."""
        names = [name] if name else list(self._regions)
        for n in names:
            region = self._regions.pop(n, None)
            if region is not None:
                region._map.close()

    def close(self) -> None:
        self.unregister()

    def _path(self, key: str, where: str) -> Path:
        # A POSIX shm name: "/name" or "name", one component, nothing that leaves the directory.
        base = key[1:] if key.startswith("/") else key
        if not base or "/" in base or "\0" in base or base in (".", ".."):
            raise InvalidArgumentError(
                f"{where}: key '{key}' is not a POSIX shared memory name; expected '/name', "
                f"a single name in {self.directory}"
            )
        return self.directory / base


def region_ref(where: str, parameters: Mapping[str, Any]) -> RegionRef:
    """The region a tensor's parameters name, read as Triton reads them: shared_memory_region
    (a string), shared_memory_byte_size (required) and shared_memory_offset (default 0)."""
    name = parameters["shared_memory_region"]
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{where}: 'shared_memory_region' must be a string")
    values = []
    for key, required in (("shared_memory_offset", False), ("shared_memory_byte_size", True)):
        value = parameters.get(key)
        if value is None:
            if required:
                raise InvalidArgumentError(
                    f"{where}: '{key}' must be given along with 'shared_memory_region'"
                )
            values.append(0)
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"{where}: '{key}' must be a non-negative integer")
        values.append(value)
    offset, size = values
    return RegionRef(name, offset, size)
