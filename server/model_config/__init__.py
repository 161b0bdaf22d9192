"""Model configuration: config.yaml -> one immutable, validated ModelConfig.

This is the only package that reads config files. The flow for one model version is:
  load_model_config(folder)            -> ModelConfig as the user wrote it (inputs may be empty)
  complete_config(config, signature)   -> ModelConfig with everything filled in from the ONNX model
Errors are ConfigError with messages of the form "<file>: <key.path[i]>: <what was expected>",
one line per problem.

  types.py       the frozen dataclasses (ModelConfig and its parts, ModelSignature), constants
  schema.py      the pydantic schema of config.yaml: key names and the limits of single keys
  plain.py       plain checks for the common documents, so a start need not import pydantic
  parsing.py     reading config.yaml into a ModelConfig
  checks.py      the checks that span several keys, run after parsing and after completion
  completion.py  complete_config: filling in and checking against the model's signature
  dump.py        config_to_dict and dump_yaml, back to config.yaml's layout
  pbtxt.py       Triton's config.pbtxt (or its JSON) read into the same ModelConfig
"""

from server.errors import ConfigError
from server.model_config.completion import complete_config
from server.model_config.dump import config_to_dict, dump_yaml
from server.model_config.parsing import load_model_config, parse_config_dict
from server.model_config.types import (
    CONFIG_FILE,
    DEFAULT_MAX_BATCH_SIZE,
    MODEL_FILE,
    PLATFORM,
    DynamicBatching,
    ExecutionProvider,
    InstanceGroup,
    ModelConfig,
    ModelSignature,
    ResponseCacheConfig,
    SessionConfig,
    TensorConfig,
    TensorSignature,
    VersionPolicy,
    Warmup,
    WarmupInput,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_MAX_BATCH_SIZE",
    "MODEL_FILE",
    "PLATFORM",
    "PROVIDER_SHORT_NAMES",
    "ConfigError",
    "DynamicBatching",
    "ExecutionProvider",
    "InstanceGroup",
    "ModelConfig",
    "ModelSignature",
    "ResponseCacheConfig",
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


def __getattr__(name: str) -> object:
    # The schema (and pydantic) load on first use, not when the package is imported.
    if name == "PROVIDER_SHORT_NAMES":
        from server.model_config.schema import PROVIDER_SHORT_NAMES

        return PROVIDER_SHORT_NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
