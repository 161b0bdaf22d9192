"""Triton's config.pbtxt (or its JSON form) -> ModelConfig, for repositories moved from Triton.

The text is parsed into Triton's own ModelConfig message, rewritten in config.yaml's layout and
validated by model_config.parse_config_dict, so both formats share every check. A field with no
equivalent here is reported by its name and stops the load: serving a model without something
its config asks for (sequence batching, an ensemble, ...) would be a silent surprise.
The generated ModelConfig message class belongs to the gRPC frontend, so it is handed in
(TritonConfigReader(message_type)) and enums are read by name through the message's
descriptor: this package stays a leaf. server/grpc/config_proto.py builds TRITON_FORMAT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.message import Message

from server import datatypes
from server.errors import ConfigError
from server.model_config.parsing import parse_config_dict
from server.model_config.types import MODEL_FILE, PLATFORM, ModelConfig

TRITON_CONFIG_FILE = "config.pbtxt"

# Field paths (message field names joined by '.', without indices) that are converted. A path
# names a whole subtree; any other field that is set is reported.
_SUPPORTED = frozenset(
    {
        "name",
        "platform",
        "backend",
        "max_batch_size",
        "default_model_filename",
        "version_policy.latest.num_versions",
        "version_policy.all",
        "version_policy.specific.versions",
        "input.name",
        "input.data_type",
        "input.dims",
        "output.name",
        "output.data_type",
        "output.dims",
        "instance_group.name",
        "instance_group.kind",
        "instance_group.count",
        "dynamic_batching.preferred_batch_size",
        "dynamic_batching.max_queue_delay_microseconds",
        "dynamic_batching.default_queue_policy.max_queue_size",
        "dynamic_batching.default_queue_policy.default_timeout_microseconds",
        # A request's own timeout is always honoured here.
        "dynamic_batching.default_queue_policy.allow_timeout_override",
        "parameters",
        "response_cache.enable",
        "model_warmup.name",
        "model_warmup.batch_size",
        "model_warmup.count",
        "model_warmup.inputs.data_type",
        "model_warmup.inputs.dims",
        "model_warmup.inputs.zero_data",
        "model_warmup.inputs.random_data",
        "optimization.graph.level",
        "optimization.execution_accelerators.gpu_execution_accelerator.name",
        "optimization.execution_accelerators.gpu_execution_accelerator.parameters",
        "optimization.execution_accelerators.cpu_execution_accelerator.name",
        "optimization.execution_accelerators.cpu_execution_accelerator.parameters",
    }
)
_KINDS = {"KIND_AUTO": "auto", "KIND_CPU": "cpu", "KIND_GPU": "gpu"}
# Triton's onnxruntime backend: optimization.graph.level -> graph_optimization_level.
_GRAPH_LEVELS = {-1: "basic", 0: "all", 1: "extended", 2: "disable"}
# The onnxruntime backend's model parameters that are session settings here.
_INT_PARAMETERS = {
    "intra_op_thread_count": "intra_op_num_threads",
    "inter_op_thread_count": "inter_op_num_threads",
}
_SWITCH_PARAMETERS = {
    "enable_mem_arena": "enable_cpu_mem_arena",
    "enable_mem_pattern": "enable_mem_pattern",
}
_EXECUTION_MODES = {"0": "sequential", "1": "parallel"}


class TritonConfigReader:
    """Reads Triton's ModelConfig (text or JSON) through the given generated message class."""

    def __init__(self, message_type: type[Message]) -> None:
        self.message_type = message_type

    def load(self, model_dir: Path) -> ModelConfig:
        """Reads <model_dir>/config.pbtxt; the model name is the folder name."""
        path = model_dir / TRITON_CONFIG_FILE
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read the file: {exc}") from None
        message = self.message_type()
        try:
            text_format.Parse(text, message)
        except text_format.ParseError as exc:
            raise ConfigError(f"{source}: invalid protobuf text format: {exc}") from None
        return from_triton(message, model_dir.name, source)

    def parse_json(self, data: Any, name: str, source: str) -> ModelConfig | None:
        """A Triton ModelConfig in JSON form (as Triton's load request takes it), or None if
        `data` is not one."""
        message = self.message_type()
        try:
            json_format.ParseDict(data, message)
        except (json_format.ParseError, TypeError, AttributeError):
            return None
        return from_triton(message, name, source)


def _enum_name(message: Any, field: str) -> str:
    """The name of an enum field's value (e.g. 'TYPE_FP32'), read from the message's schema."""
    value = getattr(message, field)
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number.get(value)
    return enum.name if enum is not None else str(value)


def from_triton(message: Any, name: str, source: str) -> ModelConfig:
    """The message as a validated ModelConfig; every problem is reported at once."""
    problems = unsupported_fields(message)
    data = _to_document(message, problems)
    lines = [f"{source}: {problem}" for problem in problems]
    try:
        config = parse_config_dict(data, name, source)
    except ConfigError as error:
        lines += str(error).splitlines()
        config = None
    if lines or config is None:
        raise ConfigError("\n".join(lines))
    return config


def unsupported_fields(message: Message, prefix: str = "", label: str = "") -> list[str]:
    """'<field>: not supported' for every field that is set but has no equivalent here."""
    found: list[str] = []
    for field, value in message.ListFields():
        path = prefix + field.name
        where = label + field.name
        if path in _SUPPORTED:
            continue
        if not any(s.startswith(path + ".") for s in _SUPPORTED):
            found.append(f"{where}: not supported by this server")
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key in sorted(value):
                found += unsupported_fields(value[key], path + ".", f"{where}[{key!r}].")
        elif field.is_repeated:
            for index, item in enumerate(value):
                found += unsupported_fields(item, path + ".", f"{where}[{index}].")
        else:
            found += unsupported_fields(value, path + ".", where + ".")
    return found


def _to_document(m: Any, problems: list[str]) -> dict[str, Any]:
    """config.yaml's layout; values that have no equivalent are added to `problems`."""
    data: dict[str, Any] = {}
    if m.name:
        data["name"] = m.name
    if m.platform and m.platform != PLATFORM:
        problems.append(f"platform: expected '{PLATFORM}' (the only platform), got {m.platform!r}")
    if m.backend:
        data["backend"] = m.backend
    if m.default_model_filename and m.default_model_filename != MODEL_FILE:
        problems.append(
            f"default_model_filename: expected '{MODEL_FILE}' (the only model file name),"
            f" got {m.default_model_filename!r}"
        )
    # Triton completes a max_batch_size of 0 from the model when nothing else is declared.
    if m.max_batch_size or m.input or m.output:
        data["max_batch_size"] = m.max_batch_size
    data["inputs"] = [_tensor("input", i, t, problems) for i, t in enumerate(m.input)]
    data["outputs"] = [_tensor("output", i, t, problems) for i, t in enumerate(m.output)]
    _instance_group(m, data, problems)
    if m.HasField("dynamic_batching"):
        data["dynamic_batching"] = _dynamic_batching(m.dynamic_batching)
    policy = _version_policy(m.version_policy)
    if policy:
        data["version_policy"] = policy
    data["model_warmup"] = [_warmup(i, w, problems) for i, w in enumerate(m.model_warmup)]
    _parameters(m, data, problems)
    _optimization(m, data, problems)
    if m.HasField("response_cache"):
        data["response_cache"] = {"enable": m.response_cache.enable}
    return data


def _datatype(path: str, holder: Any, problems: list[str]) -> str:
    enum_name = _enum_name(holder, "data_type")
    datatype = datatypes.BY_CONFIG_ENUM.get(enum_name)
    if datatype is None:
        problems.append(f"{path}: {enum_name} is not supported")
        return enum_name
    return datatype.name


def _tensor(kind: str, index: int, tensor: Any, problems: list[str]) -> dict[str, Any]:
    path = f"{kind}[{index}].data_type"
    return {
        "name": tensor.name,
        "datatype": _datatype(path, tensor, problems),
        "dims": list(tensor.dims),
    }


def _instance_group(m: Any, data: dict[str, Any], problems: list[str]) -> None:
    if len(m.instance_group) > 1:
        problems.append(f"instance_group: only one group is supported, got {len(m.instance_group)}")
    if not m.instance_group:
        return
    group = m.instance_group[0]
    kind_name = _enum_name(group, "kind")
    kind = _KINDS.get(kind_name)
    if kind is None:
        problems.append(f"instance_group[0].kind: {kind_name} is not supported")
        kind = "auto"
    data["instance_group"] = {"kind": kind}
    if group.count:  # 0 is Triton's default of one instance
        data["instance_group"]["count"] = group.count


def _dynamic_batching(batching: Any) -> dict[str, Any]:
    queue = batching.default_queue_policy
    return {
        "max_queue_delay_microseconds": batching.max_queue_delay_microseconds,
        "preferred_batch_size": list(batching.preferred_batch_size),
        "max_queue_size": queue.max_queue_size,
        "default_timeout_microseconds": queue.default_timeout_microseconds,
    }


def _version_policy(policy: Any) -> dict[str, Any] | None:
    choice = policy.WhichOneof("policy_choice")
    if choice == "latest":
        return {"latest": policy.latest.num_versions}
    if choice == "all":
        return {"all": True}
    if choice == "specific":
        return {"specific": list(policy.specific.versions)}
    return None


def _warmup(index: int, warmup: Any, problems: list[str]) -> dict[str, Any]:
    sample: dict[str, Any] = {"name": warmup.name}
    if warmup.batch_size:
        sample["batch_size"] = warmup.batch_size
    if warmup.count:
        sample["count"] = warmup.count
    inputs = []
    for name in sorted(warmup.inputs):
        given = warmup.inputs[name]
        path = f"model_warmup[{index}].inputs[{name!r}].data_type"
        inputs.append(
            {
                "name": name,
                "datatype": _datatype(path, given, problems),
                "dims": list(given.dims),
                "fill": "random" if given.random_data else "zeros",
            }
        )
    sample["inputs"] = inputs
    return sample


def _parameters(m: Any, data: dict[str, Any], problems: list[str]) -> None:
    session: dict[str, Any] = {}
    parameters: dict[str, str] = {}
    for key in sorted(m.parameters):
        value = m.parameters[key].string_value
        path = f"parameters[{key!r}]"
        if key in _INT_PARAMETERS:
            try:
                session[_INT_PARAMETERS[key]] = int(value)
            except ValueError:
                problems.append(f"{path}: expected an integer, got {value!r}")
        elif key in _SWITCH_PARAMETERS:
            if value not in ("0", "1"):
                problems.append(f"{path}: expected '0' or '1', got {value!r}")
            session[_SWITCH_PARAMETERS[key]] = value == "1"
        elif key == "execution_mode":
            mode = _EXECUTION_MODES.get(value)
            if mode is None:
                problems.append(f"{path}: expected '0' (sequential) or '1' (parallel)")
            else:
                session["execution_mode"] = mode
        else:
            parameters[key] = value
    if session:
        data["session"] = session
    if parameters:
        data["parameters"] = parameters


def _optimization(m: Any, data: dict[str, Any], problems: list[str]) -> None:
    optimization = m.optimization
    level = optimization.graph.level
    if level:
        if level in _GRAPH_LEVELS:
            data.setdefault("session", {})["graph_optimization_level"] = _GRAPH_LEVELS[level]
        else:
            problems.append(f"optimization.graph.level: expected -1, 1 or 2, got {level}")
    accelerators = optimization.execution_accelerators
    providers = [
        {"name": a.name, "options": dict(a.parameters)}
        for a in (*accelerators.gpu_execution_accelerator, *accelerators.cpu_execution_accelerator)
    ]
    # On a GPU instance Triton runs CUDA beneath any accelerator it is given.
    on_gpu = any(_enum_name(g, "kind") == "KIND_GPU" for g in m.instance_group)
    if on_gpu and not any(p["name"].lower() == "cuda" for p in providers):
        providers.append({"name": "cuda", "options": {}})
    if providers:
        data["execution_providers"] = providers
