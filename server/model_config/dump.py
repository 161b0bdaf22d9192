"""Printing a ModelConfig: plain data in config.yaml's layout, and config.yaml text."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from server.model_config.types import ModelConfig, VersionPolicy


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


def dump_yaml(config: ModelConfig | dict[str, Any]) -> str:
    """config_to_dict(config) as config.yaml text (or plain data in that layout, as it is)."""
    data = config if isinstance(config, dict) else config_to_dict(config)
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
