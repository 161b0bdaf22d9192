"""Plain checks for the config documents most repositories hold, without the pydantic schema.

Importing pydantic and building the schema's models costs about 65 ms of CPU, a tenth of a
server's start. Most config.yaml files use a handful of keys with plain values, and for those
this module builds the ModelConfig directly. It is deliberately narrow: anything it does not
recognise with certainty (another key, an empty value, a value of another type, a limit
crossed) makes it return None, and the schema (schema.py) then validates the document and words
the errors. So it never accepts a document the schema would refuse, and for every document it
accepts it builds what the schema's path builds (a property test compares the two).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.datatypes import NAMES as DATATYPE_NAMES
from server.model_config.types import (
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    TensorConfig,
    Warmup,
)

_TOP_KEYS = frozenset(
    {"name", "backend", "max_batch_size", "inputs", "outputs", "instance_group"}
    | {"dynamic_batching", "model_warmup"}
)
_TENSOR_KEYS = frozenset({"name", "datatype", "dims"})
_GROUP_KINDS = ("auto", "cpu", "gpu")
_BATCHING_KEYS = frozenset(
    {"max_queue_delay_microseconds", "preferred_batch_size", "max_queue_size"}
    | {"default_timeout_microseconds"}
)
_WARMUP_KEYS = frozenset({"name", "batch_size", "count"})
_LARGEST = 2**62  # beyond this the schema decides (it may have limits of its own)
_BACKEND = "onnxruntime"  # schema.BACKEND, the only backend


class _Unsure(Exception):
    """The document holds something these checks do not cover: the schema takes over."""


def build_plain(data: Mapping[str, Any], name: str) -> ModelConfig | None:
    """The ModelConfig of a document within the plain subset, or None: ask the schema."""
    try:
        return _build(data, name)
    except _Unsure:
        return None


def _build(data: Mapping[str, Any], name: str) -> ModelConfig:
    _keys(data, _TOP_KEYS)
    if "name" in data:
        _string(data["name"], allow_empty=True)
    if "backend" in data and _string(data["backend"]) != _BACKEND:
        raise _Unsure
    fields: dict[str, Any] = {}
    if "max_batch_size" in data:
        fields["max_batch_size"] = _integer(data["max_batch_size"], 0)
    for key in ("inputs", "outputs"):
        if key in data:
            fields[key] = tuple(_tensor(t) for t in _list(data[key]))
    if "instance_group" in data:
        fields["instance_group"] = _instance_group(data["instance_group"])
    if "dynamic_batching" in data:
        fields["dynamic_batching"] = _dynamic_batching(data["dynamic_batching"])
    if "model_warmup" in data:
        fields["model_warmup"] = tuple(_warmup(w) for w in _list(data["model_warmup"]))
    return ModelConfig(name=name, **fields)


def _keys(data: Any, allowed: frozenset[str], required: frozenset[str] = frozenset()) -> None:
    if type(data) is not dict or not required <= data.keys():
        raise _Unsure
    for key, value in data.items():
        if type(key) is not str or key not in allowed or value is None:
            raise _Unsure  # an empty value means "left out" to the schema: let it say so


def _string(value: Any, allow_empty: bool = False) -> str:
    if type(value) is not str or not (value or allow_empty):
        raise _Unsure
    return value


def _integer(value: Any, least: int) -> int:
    if type(value) is not int or not least <= value <= _LARGEST:
        raise _Unsure
    return value


def _list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise _Unsure
    return value


def _tensor(data: Any) -> TensorConfig:
    _keys(data, _TENSOR_KEYS, _TENSOR_KEYS)
    datatype = _string(data["datatype"])
    if datatype not in DATATYPE_NAMES:
        raise _Unsure
    dims = tuple(_dim(d) for d in _list(data["dims"]))
    return TensorConfig(_string(data["name"]), datatype, dims)


def _dim(value: Any) -> int:
    if type(value) is not int or not (0 < value <= _LARGEST or value == -1):
        raise _Unsure
    return value


def _instance_group(data: Any) -> InstanceGroup:
    _keys(data, frozenset({"count", "kind"}))
    given: dict[str, Any] = {}
    if "count" in data:
        given["count"] = _integer(data["count"], 1)
    if "kind" in data:
        if _string(data["kind"]) not in _GROUP_KINDS:
            raise _Unsure
        given["kind"] = data["kind"]
    return InstanceGroup(**given)


def _dynamic_batching(data: Any) -> DynamicBatching:
    _keys(data, _BATCHING_KEYS)
    given: dict[str, Any] = {}
    for key, value in data.items():
        if key == "preferred_batch_size":
            given[key] = tuple(_integer(v, 1) for v in _list(value))
        else:
            given[key] = _integer(value, 0)
    return DynamicBatching(**given)


def _warmup(data: Any) -> Warmup:
    _keys(data, _WARMUP_KEYS, frozenset({"name"}))
    return Warmup(
        _string(data["name"]),
        _integer(data.get("batch_size", 1), 1),
        _integer(data.get("count", 1), 1),
        (),
    )
