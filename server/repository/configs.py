"""Where a model's config comes from: its folder, or a load request's override.

config.yaml is read by server/model_config/. Another format (Triton's config.pbtxt, read by
server/model_config/pbtxt.py through the generated message class of the gRPC frontend) is
handed in by the entry points as a ForeignFormat, so the core never imports the frontend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.errors import ConfigError
from server.model_config import CONFIG_FILE, ModelConfig, load_model_config, parse_config_dict


@dataclass(frozen=True)
class ForeignFormat:
    file_name: str  # read when a model folder has this file and no config.yaml
    load: Callable[[Path], ModelConfig]  # (model folder) -> config; raises ConfigError
    # (parsed JSON, model name, source) -> config, or None when the JSON is not this format
    parse_json: Callable[[Any, str, str], ModelConfig | None]


class ConfigSource:
    def __init__(self, foreign: ForeignFormat | None = None) -> None:
        self.foreign = foreign

    def read(self, model_dir: Path) -> ModelConfig:
        """config.yaml; else the foreign format's file; else the defaults (all from the model)."""
        foreign = self._foreign_for(model_dir)
        return foreign.load(model_dir) if foreign else load_model_config(model_dir)

    def describe(self, model_dir: Path) -> str:
        """The file read() takes the config from, as error messages name it."""
        foreign = self._foreign_for(model_dir)
        return str(model_dir / (foreign.file_name if foreign else CONFIG_FILE))

    def _foreign_for(self, model_dir: Path) -> ForeignFormat | None:
        foreign = self.foreign
        if (
            foreign is not None
            and not (model_dir / CONFIG_FILE).is_file()
            and (model_dir / foreign.file_name).is_file()
        ):
            return foreign
        return None

    def parse_override(self, name: str, text: str) -> ModelConfig:
        """A load request's `config` parameter: JSON in config.yaml's layout or the foreign one."""
        source = f"model '{name}': the load request's 'config' parameter"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{source}: invalid JSON: {error}") from None
        try:
            return parse_config_dict(data, name, source)
        except ConfigError as ours:
            config = self.foreign.parse_json(data, name, source) if self.foreign else None
            if config is None:  # not the foreign layout either: report against ours
                raise ours from None
            return config
