"""One tensor between its JSON form (`data`, flat or nested) and numpy.

The binary and shared memory forms are every frontend's raw form (server/tensors.py). JSON
values are counted against the shape before an array of the shape is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from server.datatypes import Datatype
from server.errors import InvalidArgumentError
from server.tensors import check_shape

# Dtypes orjson writes straight from an array (the others go through tolist()).
JSON_NATIVE = frozenset(
    np.dtype(t)
    for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64,
    )
)  # fmt: skip


def json_shape(where: str, datatype: Datatype, shape: Any) -> tuple[tuple[int, ...], int]:
    """The JSON `shape` as a tuple and its element count; refuses anything but integers."""
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise InvalidArgumentError(
            f"{where}: expected 'shape' as a list of integers, got {shape!r}"
        )
    return tuple(shape), check_shape(where, datatype, shape)


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
    elif target.kind in "iu" and kind in "iu":
        info = np.iinfo(target)
        if int(values.min()) < info.min or int(values.max()) > info.max:
            raise InvalidArgumentError(f"{where}: a value does not fit in {datatype.name}")
        ok = True
    elif target.kind in "iu":
        # Read again straight into the target: numpy refuses out-of-range integers there, and
        # a mix of huge unsigned and small values that numpy's own reading made float is exact.
        ok = kind == "f"
        if ok:
            try:
                exact = np.array(data, dtype=target)
            except OverflowError:
                raise InvalidArgumentError(
                    f"{where}: a value does not fit in {datatype.name}"
                ) from None
            if np.array_equal(exact, values):
                return exact
            ok = False  # a fraction
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
