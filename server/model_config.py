"""Model configuration: config.yaml -> one immutable, validated ModelConfig.

This is the only module that reads config files. The flow for one model version is:
  load_model_config(folder)            -> ModelConfig as the user wrote it (inputs may be empty)
  complete_config(config, signature)   -> ModelConfig with everything filled in from the ONNX model
Errors are ConfigError with messages of the form "<file>: <key.path[i]>: <what was expected>",
one line per problem. Key names and single values are checked by the schema in
server/config_schema.py; the checks here span several keys or compare against the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from server import config_schema
from server.config_schema import PROVIDER_SHORT_NAMES
from server.errors import ConfigError

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.onnx"
# max_batch_size given to a model whose every input and output has a dynamic first dimension.
DEFAULT_MAX_BATCH_SIZE = 8


@dataclass(frozen=True, slots=True)
class TensorConfig:
    name: str
    datatype: str  # protocol name, see server/datatypes.py
    # Without the batch dimension when max_batch_size > 0; -1 means any size.
    dims: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ExecutionProvider:
    name: str  # onnxruntime's own name, e.g. "CUDAExecutionProvider"
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    intra_op_num_threads: int = 0  # 0: the server picks cores / instances
    inter_op_num_threads: int = 1
    graph_optimization_level: str = "all"  # disable | basic | extended | all
    execution_mode: str = "sequential"  # sequential | parallel
    enable_cpu_mem_arena: bool = True
    # Off: ORT plans memory per input shape, so varying batch sizes grew RSS by half (README).
    enable_mem_pattern: bool = False
    arena_extend_strategy: str = "next_power_of_two"  # next_power_of_two | same_as_requested


@dataclass(frozen=True, slots=True)
class InstanceGroup:
    count: int = 1
    kind: str = "auto"  # auto | cpu | gpu


@dataclass(frozen=True, slots=True)
class DynamicBatching:
    max_queue_delay_microseconds: int = 0
    preferred_batch_size: tuple[int, ...] = ()
    max_queue_size: int = 0  # 0: unbounded
    default_timeout_microseconds: int = 0  # 0: none


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    latest: int | None = 1  # serve the N highest versions
    all: bool = False
    specific: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class WarmupInput:
    name: str
    datatype: str
    dims: tuple[int, ...]  # without the batch dimension when max_batch_size > 0
    fill: str = "zeros"  # zeros | random


@dataclass(frozen=True, slots=True)
class Warmup:
    name: str
    batch_size: int = 1
    count: int = 1
    inputs: tuple[WarmupInput, ...] = ()  # empty: every model input, zero-filled


@dataclass(frozen=True, slots=True)
class ModelConfig:
    name: str
    backend: str = "onnxruntime"
    max_batch_size: int | None = None  # None until completed from the model
    inputs: tuple[TensorConfig, ...] = ()
    outputs: tuple[TensorConfig, ...] = ()
    execution_providers: tuple[ExecutionProvider, ...] = ()  # empty: CPU only
    session: SessionConfig = SessionConfig()
    instance_group: InstanceGroup = InstanceGroup()
    dynamic_batching: DynamicBatching | None = None
    version_policy: VersionPolicy = VersionPolicy()
    model_warmup: tuple[Warmup, ...] = ()
    parameters: Mapping[str, str] = field(default_factory=dict)

    @property
    def batched(self) -> bool:
        return bool(self.max_batch_size)


# What the backend reads from an ONNX file; None in a shape is a dynamic (symbolic) dimension.
@dataclass(frozen=True, slots=True)
class TensorSignature:
    name: str
    datatype: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True, slots=True)
class ModelSignature:
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]


# ------------------------------------------------------------------------------ reading the file


def load_model_config(model_dir: Path) -> ModelConfig:
    """Reads <model_dir>/config.yaml (defaults when absent); the model name is the folder name."""
    name = model_dir.name or model_dir.resolve().name
    path = model_dir / CONFIG_FILE
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ModelConfig(name=name)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the file: {exc}") from None
    data = _load_yaml(text, source)
    return parse_config_dict({} if data is None else data, name, source)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first_line = first_lines.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first_line is not None:
                raise yaml.constructor.ConstructorError(
                    problem=f"key {key!r} is given twice (first on line {first_line + 1})",
                    problem_mark=key_node.start_mark,
                )
            first_lines[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context
        if exc.problem and exc.context and not exc.context.startswith("while "):
            what = f"{exc.context}, {exc.problem}"  # "expected a single document..., but..."
        raise ConfigError(f"{source}: {where}invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None


# ------------------------------------------------------------------------- validating the document


def parse_config_dict(data: Mapping[str, Any], name: str, source: str) -> ModelConfig:
    """Validates one config document (parsed config.yaml, or a JSON override) for model `name`.

    `source` names the document in error messages. Problems found by the schema are reported
    together; the checks that span several keys run once the schema is satisfied.
    """
    if not isinstance(data, Mapping):
        got = config_schema.show(data)
        raise ConfigError(f"{source}: expected a mapping of config keys at the top, got {got}")
    document = config_schema.validate_document(data, source)
    problems: list[str] = []
    if document.name is not None and document.name != name:
        problems.append(f"name: expected the model folder name {name!r}, got {document.name!r}")
    config = _build(document, name)
    problems += _check_unique_names(config)
    problems += _check_batching(config)
    problems += _check_warmup(config)
    _raise_if_any(problems, source)
    return config


def _build(document: config_schema.ConfigDocument, name: str) -> ModelConfig:
    batching = document.dynamic_batching
    return ModelConfig(
        name=name,
        max_batch_size=document.max_batch_size,
        inputs=tuple(_tensor(t) for t in document.inputs),
        outputs=tuple(_tensor(t) for t in document.outputs),
        execution_providers=tuple(
            ExecutionProvider(p.name, dict(p.options)) for p in document.execution_providers
        ),
        # Only the keys the user gave: the dataclass defaults are the single source of defaults.
        session=SessionConfig(**document.session.model_dump(exclude_unset=True)),
        instance_group=InstanceGroup(**document.instance_group.model_dump(exclude_unset=True)),
        dynamic_batching=None if batching is None else _dynamic_batching(batching),
        version_policy=_version_policy(document.version_policy),
        model_warmup=tuple(_warmup(w) for w in document.model_warmup),
        parameters=dict(document.parameters),
    )


def _tensor(tensor: config_schema.TensorSchema) -> TensorConfig:
    return TensorConfig(tensor.name, tensor.datatype, tuple(tensor.dims))


def _dynamic_batching(batching: config_schema.DynamicBatchingSchema) -> DynamicBatching:
    given = batching.model_dump(exclude_unset=True)
    if "preferred_batch_size" in given:
        given["preferred_batch_size"] = tuple(given["preferred_batch_size"])
    return DynamicBatching(**given)


def _version_policy(policy: config_schema.VersionPolicySchema | None) -> VersionPolicy:
    if policy is None:
        return VersionPolicy()
    if policy.all:
        return VersionPolicy(latest=None, all=True)
    if policy.specific:
        return VersionPolicy(latest=None, specific=tuple(policy.specific))
    return VersionPolicy(latest=policy.latest)


def _warmup(warmup: config_schema.WarmupSchema) -> Warmup:
    inputs = tuple(WarmupInput(i.name, i.datatype, tuple(i.dims), i.fill) for i in warmup.inputs)
    return Warmup(warmup.name, warmup.batch_size, warmup.count, inputs)


def _check_unique_names(config: ModelConfig) -> list[str]:
    problems = _duplicates("inputs", [t.name for t in config.inputs])
    problems += _duplicates("outputs", [t.name for t in config.outputs])
    problems += _duplicates("execution_providers", [p.name for p in config.execution_providers])
    problems += _duplicates("model_warmup", [w.name for w in config.model_warmup])
    for index, warmup in enumerate(config.model_warmup):
        problems += _duplicates(f"model_warmup[{index}].inputs", [i.name for i in warmup.inputs])
    return problems


def _duplicates(path: str, names: list[str]) -> list[str]:
    problems: list[str] = []
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            problems.append(
                f"{path}[{index}].name: {name!r} is already used by {path}[{first[name]}]"
            )
        else:
            first[name] = index
    return problems


def _check_batching(config: ModelConfig, origin: str = "") -> list[str]:
    """The keys bounded by max_batch_size; nothing to check while it is not known yet.

    `origin` follows "max_batch_size N" in messages when N was completed from the model.
    """
    max_batch = config.max_batch_size
    if max_batch is None:
        return []
    unbatched = f"needs max_batch_size > 0 (a batched model), but max_batch_size is 0{origin}"
    problems: list[str] = []
    batching = config.dynamic_batching
    if batching is not None and max_batch == 0:
        problems.append(f"dynamic_batching: {unbatched}")
    elif batching is not None:
        seen: set[int] = set()
        for index, size in enumerate(batching.preferred_batch_size):
            path = f"dynamic_batching.preferred_batch_size[{index}]"
            if size > max_batch:
                problems.append(f"{path}: {size} is larger than max_batch_size {max_batch}{origin}")
            elif size in seen:
                problems.append(f"{path}: {size} is listed twice")
            seen.add(size)
    for index, warmup in enumerate(config.model_warmup):
        path, size = f"model_warmup[{index}].batch_size", warmup.batch_size
        if max_batch == 0 and size > 1:
            problems.append(f"{path}: {size} {unbatched}")
        elif 0 < max_batch < size:
            problems.append(f"{path}: {size} is larger than max_batch_size {max_batch}{origin}")
    return problems


def _check_warmup(config: ModelConfig) -> list[str]:
    """Warm-up inputs against the inputs, once those are known (declared or completed)."""
    if not config.inputs:
        return []
    inputs = {t.name: t for t in config.inputs}
    problems: list[str] = []
    for w_index, warmup in enumerate(config.model_warmup):
        for index, given in enumerate(warmup.inputs):
            path = f"model_warmup[{w_index}].inputs[{index}]"
            tensor = inputs.get(given.name)
            if tensor is None:
                problems.append(
                    f"{path}.name: {given.name!r} is not an input of the model;"
                    f" inputs: {_names(config.inputs)}"
                )
                continue
            what = f"input {tensor.name!r}"
            if given.datatype != tensor.datatype:
                problems.append(
                    f"{path}.datatype: expected {tensor.datatype} as in {what},"
                    f" got {given.datatype}"
                )
            problems += _compare_dims(f"{path}.dims", given.dims, tensor.dims, what)
    return problems


def _compare_dims(
    path: str, given: tuple[int, ...], expected: tuple[int, ...], what: str, hint: str = ""
) -> list[str]:
    """-1 on either side matches any size."""
    if len(given) != len(expected):
        return [
            f"{path}: expected {len(expected)} dimensions as in {what} {list(expected)},"
            f" got {len(given)}: {list(given)}{hint}"
        ]
    return [
        f"{path}[{index}]: expected {want} as in {what} {list(expected)}, got {got}"
        for index, (got, want) in enumerate(zip(given, expected, strict=True))
        if -1 not in (got, want) and got != want
    ]


def _names(tensors: tuple[TensorConfig, ...] | tuple[TensorSignature, ...]) -> str:
    return ", ".join(repr(t.name) for t in tensors) or "none"


def _raise_if_any(problems: list[str], source: str) -> None:
    if problems:
        raise ConfigError("\n".join(f"{source}: {problem}" for problem in problems))


# --------------------------------------------------------------------- completing from the model


def complete_config(config: ModelConfig, signature: ModelSignature, source: str) -> ModelConfig:
    """Fills inputs, outputs and max_batch_size from the model and checks declared ones against it.

    max_batch_size left out: DEFAULT_MAX_BATCH_SIZE (with dynamic batching, delay 0, unless
    configured) when every input and output has a dynamic first dimension, else 0. Inputs and
    outputs left out: all of the model's. Declared ones must match the model; every input must
    be declared, outputs may be a subset. A declared -1 where the model has a fixed size is
    narrowed to that size, as no other size can run.
    """
    max_batch = config.max_batch_size
    batching = config.dynamic_batching
    origin = ""
    problems: list[str] = []
    if max_batch is None:
        blocker = _batch_blocker(signature)
        if blocker is None:
            max_batch, origin = DEFAULT_MAX_BATCH_SIZE, " (completed from the model)"
            batching = batching or DynamicBatching()
        else:
            max_batch, origin = 0, f" (completed from the model: {blocker})"
    elif max_batch > 0:
        problems += _check_batch_dimension(config, signature)
    batched = max_batch > 0
    hint = ""
    if batched:
        hint = f"; dims leave out the batch dimension, as max_batch_size is {max_batch}{origin}"
    inputs = _complete_tensors("inputs", config.inputs, signature.inputs, batched, hint, problems)
    outputs = _complete_tensors(
        "outputs", config.outputs, signature.outputs, batched, hint, problems
    )
    completed = dataclasses.replace(
        config,
        max_batch_size=max_batch,
        inputs=inputs,
        outputs=outputs,
        dynamic_batching=batching,
    )
    problems += _check_batching(completed, origin)
    if not problems:  # warm-up inputs are compared with inputs that are known to be right
        problems += _check_warmup(completed)
    _raise_if_any(problems, source)
    return completed


def _dynamic_first(tensor: TensorSignature) -> bool:
    return bool(tensor.shape) and (tensor.shape[0] is None or tensor.shape[0] < 0)


def _batch_blocker(signature: ModelSignature) -> str | None:
    """Why the model cannot be batched, or None when it can."""
    if not signature.inputs:
        return "it has no inputs"
    for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        for tensor in tensors:
            if not _dynamic_first(tensor):
                return (
                    f"{kind} {tensor.name!r} has shape {_shape(tensor)}, no dynamic first dimension"
                )
    return None


def _check_batch_dimension(config: ModelConfig, signature: ModelSignature) -> list[str]:
    """A given max_batch_size > 0 needs a dynamic first dimension in every tensor served."""
    served_outputs = {t.name for t in config.outputs}
    problems: list[str] = []
    for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        for tensor in tensors:
            if kind == "output" and served_outputs and tensor.name not in served_outputs:
                continue
            if not _dynamic_first(tensor):
                problems.append(
                    f"max_batch_size: {config.max_batch_size} needs a dynamic first (batch)"
                    f" dimension, but the model's {kind} {tensor.name!r} has shape"
                    f" {_shape(tensor)}; set max_batch_size: 0 to serve the model unbatched"
                )
    return problems


def _complete_tensors(
    section: str,
    declared: tuple[TensorConfig, ...],
    model: tuple[TensorSignature, ...],
    batched: bool,
    hint: str,
    problems: list[str],
) -> tuple[TensorConfig, ...]:
    """The tensors of one section, completed; problems are appended to `problems`."""
    if not declared:
        return tuple(TensorConfig(t.name, t.datatype, _model_dims(t, batched)) for t in model)
    kind = section.removesuffix("s")
    by_name = {t.name: t for t in model}
    completed: list[TensorConfig] = []
    for index, tensor in enumerate(declared):
        path = f"{section}[{index}]"
        found = by_name.get(tensor.name)
        if found is None:
            problems.append(
                f"{path}.name: {tensor.name!r} is not an {kind} of the model;"
                f" the model's {section}: {_names(model)}"
            )
            continue
        what = f"the model's {kind} {found.name!r}"
        if tensor.datatype != found.datatype:
            problems.append(
                f"{path}.datatype: expected {found.datatype} as in {what}, got {tensor.datatype}"
            )
        expected = _model_dims(found, batched)
        problems += _compare_dims(f"{path}.dims", tensor.dims, expected, what, hint)
        completed.append(dataclasses.replace(tensor, dims=_narrow(tensor.dims, expected)))
    if section == "inputs":  # a session cannot run without every input
        names = {t.name for t in declared}
        problems += [
            f"inputs: the model's input {t.name!r} is not declared;"
            " when inputs are given, every input must be listed"
            for t in model
            if t.name not in names
        ]
    return tuple(completed)


def _model_dims(tensor: TensorSignature, batched: bool) -> tuple[int, ...]:
    shape = tensor.shape[1:] if batched else tensor.shape
    return tuple(-1 if d is None or d < 0 else d for d in shape)


def _narrow(given: tuple[int, ...], expected: tuple[int, ...]) -> tuple[int, ...]:
    if len(given) != len(expected):
        return given
    return tuple(want if got == -1 else got for got, want in zip(given, expected, strict=True))


def _shape(tensor: TensorSignature) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in tensor.shape) + "]"


# ---------------------------------------------------------------------------------- printing


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """Plain data (dict, list, str, int, bool) in config.yaml's layout; parse_config_dict reads it
    back to an equal ModelConfig. Keys whose value is not known (None) are left out."""
    data = {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    data["version_policy"] = _version_policy_dict(config.version_policy)
    return {key: value for key, value in data.items() if value is not None}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _version_policy_dict(policy: VersionPolicy) -> dict[str, Any]:
    if policy.all:
        return {"all": True}
    if policy.specific:
        return {"specific": list(policy.specific)}
    return {"latest": policy.latest or 1}


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for lists of plain values: dims: [3, 224, 224]."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.SequenceNode:
    flow = all(not isinstance(item, (dict, list)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


# YAML 1.1 line breaks besides \n and \r. PyYAML writes them raw inside single quotes, where
# reading folds them (\x85 came back as a space); double quotes escape them instead.
_UNICODE_BREAKS = ("\x85", "\u2028", "\u2029")


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if any(c in data for c in _UNICODE_BREAKS) else None  # escaped as \N, \L, \P
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)


def dump_yaml(config: ModelConfig) -> str:
    """config_to_dict(config) as config.yaml text."""
    return yaml.dump(
        config_to_dict(config),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


__all__ = [
    "CONFIG_FILE",
    "DEFAULT_MAX_BATCH_SIZE",
    "MODEL_FILE",
    "PROVIDER_SHORT_NAMES",
    "ConfigError",
    "DynamicBatching",
    "ExecutionProvider",
    "InstanceGroup",
    "ModelConfig",
    "ModelSignature",
    "SessionConfig",
    "TensorConfig",
    "TensorSignature",
    "VersionPolicy",
    "Warmup",
    "WarmupInput",
    "complete_config",
    "config_to_dict",
    "dump_yaml",
    "load_model_config",
    "parse_config_dict",
]
