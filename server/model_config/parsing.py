"""Reading config.yaml and validating one config document into a ModelConfig.

This is the only module that reads config files. Errors are ConfigError with messages of the
form "<file>: <key.path[i]>: <what was expected>", one line per problem. Key names and single
values are checked by the schema in server/model_config/schema.py (or, for the plain documents
most repositories hold, by plain.py without it); checks that span several keys are in checks.py
(completion.py runs them again once the model has filled the config in).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from server.errors import ConfigError
from server.model_config.checks import (
    check_batching,
    check_unique_names,
    check_warmup,
    raise_if_any,
)
from server.model_config.plain import build_plain
from server.model_config.types import (
    CONFIG_FILE,
    DynamicBatching,
    ExecutionProvider,
    InstanceGroup,
    ModelConfig,
    ResponseCacheConfig,
    SessionConfig,
    TensorConfig,
    VersionPolicy,
    Warmup,
    WarmupInput,
)

if TYPE_CHECKING:
    from server.model_config.schema import (
        ConfigDocument,
        DynamicBatchingSchema,
        TensorSchema,
        VersionPolicySchema,
        WarmupSchema,
    )


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
    if isinstance(data, Mapping) and (config := build_plain(data, name)) is not None:
        declared = data.get("name")  # plain checks only: no pydantic import (plain.py)
    else:
        # Imported here: pydantic costs a tenth of a start, and most documents never need it.
        from server.model_config import schema as config_schema

        if not isinstance(data, Mapping):
            got = config_schema.show(data)
            raise ConfigError(f"{source}: expected a mapping of config keys at the top, got {got}")
        document = config_schema.validate_document(data, source)
        declared = document.name
        config = _build(document, name)
    problems: list[str] = []
    if declared is not None and declared != name:
        problems.append(f"name: expected the model folder name {name!r}, got {declared!r}")
    problems += check_unique_names(config)
    problems += check_batching(config)
    problems += check_warmup(config)
    raise_if_any(problems, source)
    return config


def _build(document: ConfigDocument, name: str) -> ModelConfig:
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
        response_cache=ResponseCacheConfig(
            **document.response_cache.model_dump(exclude_unset=True)
        ),
    )


def _tensor(tensor: TensorSchema) -> TensorConfig:
    return TensorConfig(tensor.name, tensor.datatype, tuple(tensor.dims))


def _dynamic_batching(batching: DynamicBatchingSchema) -> DynamicBatching:
    given = batching.model_dump(exclude_unset=True)
    if "preferred_batch_size" in given:
        given["preferred_batch_size"] = tuple(given["preferred_batch_size"])
    return DynamicBatching(**given)


def _version_policy(policy: VersionPolicySchema | None) -> VersionPolicy:
    if policy is None:
        return VersionPolicy()
    if policy.all:
        return VersionPolicy(latest=None, all=True)
    if policy.specific:
        return VersionPolicy(latest=None, specific=tuple(policy.specific))
    return VersionPolicy(latest=policy.latest)


def _warmup(warmup: WarmupSchema) -> Warmup:
    inputs = tuple(WarmupInput(i.name, i.datatype, tuple(i.dims), i.fill) for i in warmup.inputs)
    return Warmup(warmup.name, warmup.batch_size, warmup.count, inputs)
