"""Tensors in their raw wire form, the same for every frontend: shape checks, bytes <-> numpy.

gRPC's raw_input_contents, the HTTP binary data extension and system shared memory all carry a
tensor as its elements back to back (BYTES elements each behind a 4-byte little-endian length).
Every size a client claims is checked with Python integers against the bytes that actually came
before anything is allocated from it, so a forged shape cannot reserve memory.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from server.datatypes import Datatype
from server.errors import InvalidArgumentError

_LENGTH = struct.Struct("<I")
MAX_RANK = 64  # numpy's limit on dimensions (NPY_MAXDIMS)
_MAX_BYTES = np.iinfo(np.intp).max


def check_shape(where: str, datatype: Datatype, shape: Sequence[int]) -> int:
    """The element count of `shape`, after checking that numpy could hold such an array."""
    if len(shape) > MAX_RANK:
        raise InvalidArgumentError(
            f"{where}: shape has {len(shape)} dimensions, at most {MAX_RANK} are supported"
        )
    for d in shape:
        if d < 0:
            raise InvalidArgumentError(f"{where}: shape {list(shape)} has a negative dimension")
    # numpy refuses such a shape even when a 0 makes it empty; say so instead of failing later.
    extent = math.prod(d for d in shape if d) * datatype.numpy.itemsize
    if extent > _MAX_BYTES:
        raise InvalidArgumentError(
            f"{where}: shape {list(shape)} is too large for {datatype.name}: expected at most "
            f"{_MAX_BYTES} bytes across its non-zero dimensions, got {extent}"
        )
    return math.prod(shape)  # Python integers: no overflow, checked against the data later


def from_raw(
    where: str, datatype: Datatype, shape: tuple[int, ...], raw: bytes | memoryview
) -> np.ndarray:
    """One tensor from its raw bytes; `shape` must have passed check_shape. Fixed-size types
    are views on `raw` (no copy); BYTES elements are copied out."""
    count = math.prod(shape)
    if datatype.name == "BYTES":
        return _bytes_from_raw(where, raw, count, shape)
    expected = count * datatype.itemsize
    if len(raw) != expected:
        raise InvalidArgumentError(
            f"{where}: raw content is {len(raw)} bytes, expected {expected} "
            f"for shape {list(shape)} of {datatype.name}"
        )
    return np.frombuffer(raw, dtype=datatype.numpy).reshape(shape)


def _bytes_from_raw(
    where: str, raw: bytes | memoryview, count: int, shape: tuple[int, ...]
) -> np.ndarray:
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
        (length,) = _LENGTH.unpack_from(view, offset)
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


def encode_bytes(array: np.ndarray) -> bytes:
    """A BYTES tensor's raw form: each element behind its length; str elements as UTF-8."""
    parts = []
    for item in array.ravel():
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def to_raw(array: np.ndarray) -> bytes:
    """One tensor's raw bytes, as every frontend sends them."""
    if array.dtype.kind in "OSU":  # BYTES, as datatypes.from_numpy maps them
        return encode_bytes(array)
    return array.tobytes()
