"""The pydantic schema of config.yaml: key names, value types and the limits of single keys.

Internal to server/model_config/: parsing.py turns a validated ConfigDocument into the frozen
ModelConfig dataclasses and adds the checks that span several keys. Validation problems come
back as ConfigError lines "<source>: <key.path[i]>: expected ..., got ...", all of them at once.

Types are strict: a quoted "8" or a `true` is not an integer, and `1` is not a string. An empty
value (`session:` followed by nothing) means the key was left out, except for dynamic_batching,
whose mere presence turns the server-side batcher on.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from server.datatypes import NAMES as DATATYPE_NAMES
from server.errors import ConfigError

BACKEND = "onnxruntime"

# Short names accepted in execution_providers; onnxruntime's own names are accepted as they are.
PROVIDER_SHORT_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "cann": "CANNExecutionProvider",
    "vitisai": "VitisAIExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
    "azure": "AzureExecutionProvider",
}
_PROVIDER_SUFFIX = "ExecutionProvider"


def _positive_or_any(value: int) -> int:
    if value > 0 or value == -1:
        return value
    raise PydanticCustomError("dim", "expected a positive integer or -1")


def _datatype(value: str) -> str:
    if value in DATATYPE_NAMES:
        return value
    raise PydanticCustomError(
        "datatype", "expected a datatype, one of " + ", ".join(DATATYPE_NAMES)
    )


def _backend(value: str) -> str:
    if value == BACKEND:
        return value
    raise PydanticCustomError("backend", f"expected '{BACKEND}' (the only backend)")


def _provider(value: str) -> str:
    if value.endswith(_PROVIDER_SUFFIX):
        return value
    full = PROVIDER_SHORT_NAMES.get(value.lower())
    if full is None:
        raise PydanticCustomError(
            "provider",
            "expected an execution provider: one of "
            + ", ".join(PROVIDER_SHORT_NAMES)
            + f" or onnxruntime's own name (ending in {_PROVIDER_SUFFIX})",
        )
    return full


def _true(value: bool) -> bool:
    if value:
        return value
    raise PydanticCustomError("all_true", "expected true (serve every version)")


def _scalar_to_str(value: Any) -> str:
    """onnxruntime takes provider options as strings; parameters are a string map as well."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise PydanticCustomError("scalar", "expected a string, number or boolean")


NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
Bool = Annotated[bool, Strict()]
Name = Annotated[str, Strict(), Field(min_length=1)]
Dim = Annotated[int, Strict(), AfterValidator(_positive_or_any)]
Datatype = Annotated[str, Strict(), AfterValidator(_datatype)]
ScalarString = Annotated[Any, PlainValidator(_scalar_to_str)]
StringMap = dict[Annotated[str, Strict()], ScalarString]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # Keys whose empty value means an empty mapping rather than "left out".
    null_means_empty: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_empty_values(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        cleaned: dict[Any, Any] = {}
        for key, value in data.items():
            if value is not None:
                cleaned[key] = value
            elif key in cls.null_means_empty:
                cleaned[key] = {}
        return cleaned


class TensorSchema(_Schema):
    name: Name
    datatype: Datatype
    dims: list[Dim]


class ProviderSchema(_Schema):
    name: Annotated[str, Strict(), AfterValidator(_provider)]
    options: StringMap = {}


class SessionSchema(_Schema):
    intra_op_num_threads: NonNegativeInt = 0
    inter_op_num_threads: NonNegativeInt = 1
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    enable_cpu_mem_arena: Bool = True
    enable_mem_pattern: Bool = False  # see SessionConfig
    arena_extend_strategy: Literal["next_power_of_two", "same_as_requested"] = "next_power_of_two"
    intra_op_allow_spinning: Bool = True


class InstanceGroupSchema(_Schema):
    count: PositiveInt = 1
    kind: Literal["auto", "cpu", "gpu"] = "auto"


class DynamicBatchingSchema(_Schema):
    max_queue_delay_microseconds: NonNegativeInt = 0
    preferred_batch_size: list[PositiveInt] = []
    max_queue_size: NonNegativeInt = 0
    default_timeout_microseconds: NonNegativeInt = 0


class VersionPolicySchema(_Schema):
    latest: PositiveInt | None = None
    all: Annotated[bool, Strict(), AfterValidator(_true)] | None = None
    specific: Annotated[list[PositiveInt], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicySchema:
        given = [key for key in ("latest", "all", "specific") if getattr(self, key) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none of them"
            raise ValueError(f"expected exactly one of latest, all or specific, got {got}")
        return self


class WarmupInputSchema(_Schema):
    name: Name
    datatype: Datatype
    dims: list[PositiveInt]  # a warmup tensor is real data: every size is concrete
    fill: Literal["zeros", "random"] = "zeros"


class WarmupSchema(_Schema):
    name: Name
    batch_size: PositiveInt = 1
    count: PositiveInt = 1
    inputs: list[WarmupInputSchema] = []


class ResponseCacheSchema(_Schema):
    enable: Bool = False


class ConfigDocument(_Schema):
    null_means_empty: ClassVar[frozenset[str]] = frozenset({"dynamic_batching"})

    name: Annotated[str, Strict()] | None = None
    backend: Annotated[str, Strict(), AfterValidator(_backend)] | None = None
    max_batch_size: NonNegativeInt | None = None
    inputs: list[TensorSchema] = []
    outputs: list[TensorSchema] = []
    execution_providers: list[ProviderSchema] = []
    session: SessionSchema = SessionSchema()
    instance_group: InstanceGroupSchema = InstanceGroupSchema()
    dynamic_batching: DynamicBatchingSchema | None = None
    version_policy: VersionPolicySchema | None = None
    model_warmup: list[WarmupSchema] = []
    parameters: StringMap = {}
    response_cache: ResponseCacheSchema = ResponseCacheSchema()


def validate_document(data: Mapping[str, Any], source: str) -> ConfigDocument:
    """The validated document, or ConfigError with one line per problem."""
    try:
        return ConfigDocument.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(error) for error in exc.errors(include_url=False)]
        raise ConfigError("\n".join(f"{source}: {line}" for line in lines)) from None


_EXPECTED_BY_TYPE = {
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _format_error(error: ErrorDetails) -> str:
    loc = error["loc"]
    kind = error["type"]
    ctx = error.get("ctx", {})
    got = show(error["input"])
    if loc and loc[-1] == "[key]":  # a mapping key of the wrong type
        return f"{key_path(loc[:-2])}: key {got}: expected a string key"
    path = key_path(loc)
    prefix = f"{path}: " if path else ""
    if kind == "missing":
        return f"{prefix}required key is missing"
    if kind == "extra_forbidden":
        return f"{prefix}{_unknown_key(loc)}"
    if kind in _EXPECTED_BY_TYPE:
        return f"{prefix}expected {_EXPECTED_BY_TYPE[kind]}, got {got}"
    if kind == "literal_error":
        return f"{prefix}expected one of {ctx['expected']}, got {got}"
    if kind == "greater_than_equal":
        return f"{prefix}expected an integer >= {ctx['ge']}, got {got}"
    if kind == "too_short":
        return f"{prefix}expected at least {ctx['min_length']} item(s), got {got}"
    if kind == "string_too_short":
        return f"{prefix}expected a non-empty string, got {got}"
    if kind == "value_error":
        return f"{prefix}{ctx['error']}"
    message = error["msg"]
    return f"{prefix}{message[:1].lower()}{message[1:]}, got {got}"


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    schema = _schema_at(loc[:-1])
    if schema is None:
        return "unknown key"
    valid = list(schema.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key; {hint}valid keys here: {', '.join(valid)}"


def _schema_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The schema class that validates the mapping at loc (list indexes pass through)."""
    schema: type[BaseModel] | None = ConfigDocument
    for part in loc:
        if schema is None:
            return None
        if isinstance(part, str):
            field = schema.model_fields.get(part)
            schema = _schema_in(field.annotation) if field else None
    return schema


def _schema_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _schema_in(arg)
        if found is not None:
            return found
    return None


def key_path(loc: tuple[int | str, ...]) -> str:
    """('inputs', 0, 'dims', 2) -> 'inputs[0].dims[2]'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def show(value: Any, limit: int = 60) -> str:
    """A value as it reads in YAML, shortened: 'text', 3, true, null, [1, 2], {a: 1}."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}: {show(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(v, limit) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
