"""One tensor between its HTTP forms (JSON `data`, binary bytes, shared memory) and numpy.

Every size a client claims is checked with Python integers against what actually came before
anything is allocated from it, so a forged shape reserves no memory: the same rule as the gRPC
codec's.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from server.datatypes import Datatype
from server.errors import InvalidArgumentError

_LENGTH = struct.Struct("<I")
_MAX_RANK = 64  # numpy's limit on dimensions (NPY_MAXDIMS)
# Dtypes orjson writes straight from an array (the others go through tolist()).
JSON_NATIVE = frozenset(
    np.dtype(t)
    for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64,
    )
)  # fmt: skip


def check_shape(where: str, shape: Any) -> tuple[tuple[int, ...], int]:
    """The shape as a tuple and its element count; raises on anything but non-negative ints."""
    if not isinstance(shape, list) or len(shape) > _MAX_RANK:
        raise InvalidArgumentError(
            f"{where}: expected 'shape' as a list of at most {_MAX_RANK} integers, got {shape!r}"
        )
    for d in shape:
        if type(d) is not int or d < 0:
            raise InvalidArgumentError(
                f"{where}: expected non-negative integer dimensions, got shape {shape}"
            )
    return tuple(shape), math.prod(shape)


def from_binary(
    where: str, datatype: Datatype, raw: bytes | memoryview, shape: tuple[int, ...], count: int
) -> np.ndarray:
    if datatype.name == "BYTES":
        return _bytes_from_binary(where, raw, count, shape)
    expected = count * datatype.itemsize
    if len(raw) != expected:
        raise InvalidArgumentError(
            f"{where}: binary data is {len(raw)} bytes, expected {expected} "
            f"for shape {list(shape)} of {datatype.name}"
        )
    return np.frombuffer(raw, dtype=datatype.numpy).reshape(shape)


def _bytes_from_binary(
    where: str, raw: bytes | memoryview, count: int, shape: tuple[int, ...]
) -> np.ndarray:
    # Each element needs at least its 4-byte length prefix: bound the count before allocating.
    end = len(raw)
    if count * 4 > end:
        raise InvalidArgumentError(
            f"{where}: binary data of {end} bytes cannot hold {count} BYTES elements "
            f"for shape {list(shape)}"
        )
    items = []
    offset = 0
    for i in range(count):
        if offset + 4 > end:
            raise InvalidArgumentError(f"{where}: BYTES element {i}: length prefix is truncated")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgumentError(
                f"{where}: BYTES element {i}: length {length} overruns the {end}-byte buffer"
            )
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    if offset != end:
        raise InvalidArgumentError(
            f"{where}: {end - offset} trailing bytes after {count} BYTES elements"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def from_json(
    where: str, datatype: Datatype, data: Any, shape: tuple[int, ...], count: int
) -> np.ndarray:
    """JSON `data`, flat or nested row-major, as an array of `shape`."""
    if not isinstance(data, list):
        raise InvalidArgumentError(f"{where}: expected 'data' as a JSON array, got {data!r}")
    if datatype.name == "BYTES":
        items = _flatten(data)
        if len(items) != count:
            raise _count_error(where, len(items), count, shape)
        array = np.empty(count, dtype=object)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise InvalidArgumentError(
                    f"{where}: expected BYTES elements as JSON strings, got {item!r}"
                )
            array[i] = item.encode()
        return array.reshape(shape)
    try:
        values = np.array(data)
    except (ValueError, OverflowError):  # ragged nesting, or an integer past 64 bits
        raise InvalidArgumentError(
            f"{where}: 'data' is not a regular array of {datatype.name} values"
        ) from None
    if values.size != count:
        raise _count_error(where, values.size, count, shape)
    return _cast(where, datatype, data, values).reshape(shape)


def _cast(where: str, datatype: Datatype, data: list[Any], values: np.ndarray) -> np.ndarray:
    """`values` (numpy's own reading of `data`) as the datatype, refusing what does not fit."""
    kind = values.dtype.kind
    target = datatype.numpy
    if values.size == 0:
        return values.astype(target)
    if target.kind == "b":
        ok = kind == "b"
    elif target.kind in "iu":
        # Read again straight into the target: numpy refuses out-of-range integers there, and
        # a mix of huge unsigned and small values that numpy's own reading made float is exact.
        ok = kind in "iuf"
        if ok:
            try:
                exact = np.array(data, dtype=target)
            except OverflowError:
                raise InvalidArgumentError(
                    f"{where}: a value does not fit in {datatype.name}"
                ) from None
            if kind == "f" and not np.array_equal(exact, values):
                ok = False  # a fraction
            else:
                return exact
    else:
        ok = kind in "iuf"
    if not ok:
        expected = {"b": "true/false", "i": "integers", "u": "integers"}.get(target.kind, "numbers")
        raise InvalidArgumentError(
            f"{where}: expected {datatype.name} values as JSON {expected}, "
            f"got {values.ravel()[0]!r}"
        )
    return values.astype(target, copy=False)


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(item, list) for item in data):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else (item,))
    return out


def _count_error(where: str, got: int, count: int, shape: tuple[int, ...]) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{where}: 'data' holds {got} values, expected {count} for shape {list(shape)}"
    )


def to_binary(array: np.ndarray, is_bytes: bool) -> bytes:
    if not is_bytes:
        return array.tobytes()
    parts = []
    for item in array.ravel():
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def to_json(where: str, array: np.ndarray, is_bytes: bool) -> Any:
    """What orjson writes as `data`: a flat array (numpy's own for plain dtypes)."""
    flat = array.ravel()
    if is_bytes:
        try:
            return [i.decode() if isinstance(i, bytes) else str(i) for i in flat]
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                f"{where}: holds bytes that are not UTF-8 text; request it as binary_data"
            ) from None
    if flat.dtype in JSON_NATIVE and flat.dtype.isnative:
        return np.ascontiguousarray(flat)
    return flat.tolist()
