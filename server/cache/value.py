"""The cached value: a response's outputs (name, datatype, shape, bytes) in one bytes object.

One form for every store: the local LRU counts exactly the bytes it holds and Redis stores it
as it is. Decoding makes read-only numpy views of the stored bytes (no copy), so a hit costs
one small parse whatever the tensor sizes. A frontend encodes the decoded outputs exactly as it
encodes fresh ones, so a cached response is byte-identical to the one first computed.

Layout, little-endian: u32 outputs, then per output u16 name length, name, u8 datatype length,
datatype (protocol name), u8 rank, i64 dims, u64 data length, data. BYTES data is the protocol's
raw form: each element as a u32 length and its bytes.
"""

from __future__ import annotations

import struct

import numpy as np

from server import datatypes

_HEAD = struct.Struct("<I")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def encode_outputs(outputs: dict[str, np.ndarray]) -> bytes:
    parts: list[bytes] = [_HEAD.pack(len(outputs))]
    for name, array in outputs.items():
        datatype = datatypes.from_numpy(array.dtype).name
        data = _bytes_elements(array) if datatype == "BYTES" else array.tobytes()
        encoded = name.encode()
        parts += (
            _U16.pack(len(encoded)),
            encoded,
            bytes((len(datatype),)),
            datatype.encode(),
            bytes((array.ndim,)),
            struct.pack(f"<{array.ndim}q", *array.shape),
            _U64.pack(len(data)),
            data,
        )
    return b"".join(parts)


def decode_outputs(value: bytes) -> dict[str, np.ndarray]:
    """The inverse of encode_outputs; ValueError if `value` is not in this form."""
    try:
        return _decode(memoryview(value))
    except (struct.error, KeyError, UnicodeDecodeError, IndexError) as error:
        raise ValueError(f"not a cached response: {error}") from None


def _decode(view: memoryview) -> dict[str, np.ndarray]:
    (count,) = _HEAD.unpack_from(view, 0)
    offset = _HEAD.size
    outputs: dict[str, np.ndarray] = {}
    for _ in range(count):
        (length,) = _U16.unpack_from(view, offset)
        offset += _U16.size
        name = bytes(view[offset : offset + length]).decode()
        offset += length
        length = view[offset]
        datatype = datatypes.BY_NAME[bytes(view[offset + 1 : offset + 1 + length]).decode()]
        offset += 1 + length
        rank = view[offset]
        shape = struct.unpack_from(f"<{rank}q", view, offset + 1)
        offset += 1 + 8 * rank
        (size,) = _U64.unpack_from(view, offset)
        offset += _U64.size
        data = view[offset : offset + size]
        if len(data) != size:
            raise ValueError(f"output '{name}': {len(data)} of {size} data bytes")
        offset += size
        if datatype.name == "BYTES":
            outputs[name] = _bytes_array(data, shape)
        else:
            outputs[name] = np.frombuffer(data, dtype=datatype.numpy).reshape(shape)
    if offset != len(view):
        raise ValueError(f"{len(view) - offset} trailing bytes")
    return outputs


def _bytes_elements(array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for item in array.ravel():
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        parts += (_U32.pack(len(data)), data)
    return b"".join(parts)


def _bytes_array(data: memoryview, shape: tuple[int, ...]) -> np.ndarray:
    items: list[bytes] = []
    offset = 0
    while offset < len(data):
        (length,) = _U32.unpack_from(data, offset)
        items.append(bytes(data[offset + _U32.size : offset + _U32.size + length]))
        offset += _U32.size + length
    array = np.empty(len(items), dtype=object)
    array[:] = items
    array = array.reshape(shape)
    array.flags.writeable = False  # like the other outputs: a hit is shared, never changed
    return array
