"""The immutable model configuration: ModelConfig and its parts, and the model's signature.

Built by parsing.py from config.yaml and filled in by completion.py from the ONNX model; the
rest of the server only reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.onnx"
# The one platform served, as Triton names it (model metadata, config, config.pbtxt).
PLATFORM = "onnxruntime_onnx"
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
    # Idle intra-op threads spin before sleeping: lower latency, a busy core while idle.
    intra_op_allow_spinning: bool = True


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
class ResponseCacheConfig:
    # Answer repeated identical requests from the server's response cache (--cache); the
    # model's outputs must depend on its inputs alone. Triton's name for the key.
    enable: bool = False


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
    response_cache: ResponseCacheConfig = ResponseCacheConfig()

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
