"""Model configuration: config.yaml -> one immutable, validated ModelConfig.

This is the only module that reads config files. The flow for one model version is:
  load_model_config(folder)            -> ModelConfig as the user wrote it (inputs may be empty)
  complete_config(config, signature)   -> ModelConfig with everything filled in from the ONNX model
Errors are ConfigError with messages of the form "<file>: <key.path[i]>: <what was expected>".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from server.errors import ConfigError

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.onnx"


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
    enable_mem_pattern: bool = True
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


def load_model_config(model_dir: Path) -> ModelConfig:
    """Reads <model_dir>/config.yaml (or defaults when absent); the model name is the folder name."""
    raise NotImplementedError


def complete_config(config: ModelConfig, signature: ModelSignature, source: str) -> ModelConfig:
    """Fills inputs, outputs and max_batch_size from the model and checks declared ones against it."""
    raise NotImplementedError


__all__ = [
    "CONFIG_FILE",
    "MODEL_FILE",
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
    "load_model_config",
]
