"""The one table that maps tensor datatypes between the protocol, numpy, ONNX and Triton configs.

Both the server and the clients package read it, so the two sides agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Datatype:
    name: str  # protocol name, e.g. "FP32"
    numpy: np.dtype  # dtype of decoded arrays (object for BYTES)
    onnx: str  # onnxruntime's type string, e.g. "tensor(float)"
    config_enum: str  # Triton ModelConfig DataType, e.g. "TYPE_FP32"
    contents_field: str | None  # InferTensorContents field for typed contents; None: raw only
    itemsize: int  # bytes per element in raw form; 0 for BYTES (length-prefixed)


_TABLE = (
    Datatype("BOOL", np.dtype(np.bool_), "tensor(bool)", "TYPE_BOOL", "bool_contents", 1),
    Datatype("UINT8", np.dtype(np.uint8), "tensor(uint8)", "TYPE_UINT8", "uint_contents", 1),
    Datatype("UINT16", np.dtype(np.uint16), "tensor(uint16)", "TYPE_UINT16", "uint_contents", 2),
    Datatype("UINT32", np.dtype(np.uint32), "tensor(uint32)", "TYPE_UINT32", "uint_contents", 4),
    Datatype("UINT64", np.dtype(np.uint64), "tensor(uint64)", "TYPE_UINT64", "uint64_contents", 8),
    Datatype("INT8", np.dtype(np.int8), "tensor(int8)", "TYPE_INT8", "int_contents", 1),
    Datatype("INT16", np.dtype(np.int16), "tensor(int16)", "TYPE_INT16", "int_contents", 2),
    Datatype("INT32", np.dtype(np.int32), "tensor(int32)", "TYPE_INT32", "int_contents", 4),
    Datatype("INT64", np.dtype(np.int64), "tensor(int64)", "TYPE_INT64", "int64_contents", 8),
    Datatype("FP16", np.dtype(np.float16), "tensor(float16)", "TYPE_FP16", None, 2),
    Datatype("FP32", np.dtype(np.float32), "tensor(float)", "TYPE_FP32", "fp32_contents", 4),
    Datatype("FP64", np.dtype(np.float64), "tensor(double)", "TYPE_FP64", "fp64_contents", 8),
    Datatype("BYTES", np.dtype(np.object_), "tensor(string)", "TYPE_STRING", "bytes_contents", 0),
)

BY_NAME: dict[str, Datatype] = {d.name: d for d in _TABLE}
BY_ONNX: dict[str, Datatype] = {d.onnx: d for d in _TABLE}
BY_CONFIG_ENUM: dict[str, Datatype] = {d.config_enum: d for d in _TABLE}
NAMES: tuple[str, ...] = tuple(d.name for d in _TABLE)


# Looked up for every input and output of every request: a dict, not a scan of the table.
_BY_NUMPY: dict[np.dtype, Datatype] = {d.numpy: d for d in _TABLE if d.name != "BYTES"}


def from_numpy(dtype: np.dtype) -> Datatype:
    """The protocol datatype of a numpy dtype (str/bytes/object arrays map to BYTES)."""
    found = _BY_NUMPY.get(dtype)
    if found is not None:
        return found
    if dtype.kind in "OSU":
        return BY_NAME["BYTES"]
    raise ValueError(f"numpy dtype {dtype} has no protocol datatype")
