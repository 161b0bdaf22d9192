"""ONNX Runtime: the only module that imports onnxruntime.

Builds sessions from a model config (providers tried in order, unavailable ones skipped with a
log line), reads the model's signature for config completion, warms instances up, and runs
batches in the scheduler's worker threads (ORT releases the GIL while it computes).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from server import datatypes
from server.backends.cpu_limits import usable_cores
from server.errors import ConfigError, InvalidArgumentError, UnavailableError
from server.model_config import (
    ModelConfig,
    ModelSignature,
    SessionConfig,
    TensorSignature,
    Warmup,
    WarmupInput,
)

log = logging.getLogger(__name__)

_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}
# ORT's ArenaExtendStrategy values.
_ARENA_STRATEGY = {"next_power_of_two": 0, "same_as_requested": 1}
_shared_arena_lock = threading.Lock()
_shared_arena = False  # registered with ORT's environment, once per process


class OrtInstance:
    """One InferenceSession; the scheduler gives it one batch at a time."""

    def __init__(self, session: ort.InferenceSession, model: str = "") -> None:
        self.session = session
        self._model = model
        self._run = session.run
        # A failed run reaches the scheduler as an exception, which it logs in the server's own
        # format; ORT's copy of it on stderr would print every failure twice.
        self._options = ort.RunOptions()
        self._options.log_severity_level = 4  # fatal only

    def run(self, output_names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._run(list(output_names), feeds, self._options)
        except Exception:
            if not self._options.terminate:
                raise
        # Stopped on purpose (see terminate): the client hears why, the log has the warning.
        raise UnavailableError(
            f"model '{self._model}': the run was stopped because the model was unloaded "
            "(the shutdown timeout passed)"
        )

    def terminate(self) -> None:
        """Makes a run in progress (and any later one) fail at its next node: unload only."""
        self._options.terminate = True


def choose_providers(config: ModelConfig) -> list[tuple[str, dict[str, str]]]:
    """The configured providers that this onnxruntime build has, in order; CPU is always last."""
    available = set(ort.get_available_providers())
    chosen: list[tuple[str, dict[str, str]]] = []
    for provider in config.execution_providers:
        if provider.name in available:
            chosen.append((provider.name, dict(provider.options)))
        else:
            log.warning(
                "model '%s': execution provider %s is not available in this onnxruntime "
                "(available: %s); skipping it",
                config.name,
                provider.name,
                ", ".join(sorted(available)),
            )
    if not any(name == "CPUExecutionProvider" for name, _ in chosen):
        chosen.append(("CPUExecutionProvider", {}))
    return chosen


def session_options(
    session: SessionConfig, instance_count: int, spinning: bool | None = None
) -> ort.SessionOptions:
    """spinning None: the config's session.intra_op_allow_spinning (bench/ort_threads.py
    compares both)."""
    options = ort.SessionOptions()
    threads = session.intra_op_num_threads
    if threads == 0:
        # Instances run side by side: share the cores between them rather than oversubscribe.
        threads = max(1, usable_cores() // max(1, instance_count))
    options.intra_op_num_threads = threads
    if spinning is None:
        spinning = session.intra_op_allow_spinning
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.inter_op_num_threads = session.inter_op_num_threads
    options.graph_optimization_level = _OPTIMIZATION_LEVELS[session.graph_optimization_level]
    options.execution_mode = _EXECUTION_MODES[session.execution_mode]
    options.enable_cpu_mem_arena = session.enable_cpu_mem_arena
    options.enable_mem_pattern = session.enable_mem_pattern
    options.log_severity_level = 3  # warnings from ORT's graph optimizer are noise to operators
    if session.enable_cpu_mem_arena and session.arena_extend_strategy == "same_as_requested":
        _use_shared_arena(options)
    return options


def _use_shared_arena(options: ort.SessionOptions) -> None:
    """Points the session at one process-wide CPU arena that grows by what is requested.

    A session's own CPU arena always grows by powers of two: the Python API sets another
    strategy only on an arena registered with ORT's environment, which the sessions of every
    model configured with same_as_requested then share.
    """
    global _shared_arena
    with _shared_arena_lock:  # models load in worker threads, possibly side by side
        if not _shared_arena:
            info = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            strategy = _ARENA_STRATEGY["same_as_requested"]
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, strategy, -1, -1))
            _shared_arena = True
    options.add_session_config_entry("session.use_env_allocators", "1")


def create_instances(model_file: Path, config: ModelConfig) -> tuple[list[OrtInstance], list[str]]:
    """Builds instance_group.count sessions; returns them and the providers ORT actually uses."""
    providers = choose_providers(config)
    names = [name for name, _ in providers]
    opts = [_provider_options(name, o, config.session) for name, o in providers]
    count = config.instance_group.count
    options = session_options(config.session, count)
    instances = []
    try:
        model_bytes = model_file.read_bytes()
        for _ in range(count):
            session = ort.InferenceSession(
                model_bytes, sess_options=options, providers=names, provider_options=opts
            )
            instances.append(OrtInstance(session, config.name))
    except OSError as error:
        raise ConfigError(f"{model_file}: cannot read the model: {error.strerror}") from error
    except Exception as error:  # ORT raises its own exception types for broken models
        raise ConfigError(f"{model_file}: onnxruntime cannot load the model: {error}") from error
    return instances, instances[0].session.get_providers()


def _provider_options(name: str, options: dict[str, str], session: SessionConfig) -> dict[str, str]:
    if name == "CUDAExecutionProvider" and "arena_extend_strategy" not in options:
        return {**options, "arena_extend_strategy": _kname(session.arena_extend_strategy)}
    return options


def _kname(strategy: str) -> str:
    return "kSameAsRequested" if strategy == "same_as_requested" else "kNextPowerOfTwo"


def read_signature(instance: OrtInstance, source: str) -> ModelSignature:
    session = instance.session
    return ModelSignature(
        inputs=tuple(_signature(arg, source) for arg in session.get_inputs()),
        outputs=tuple(_signature(arg, source) for arg in session.get_outputs()),
    )


def _signature(arg: ort.NodeArg, source: str) -> TensorSignature:
    datatype = datatypes.BY_ONNX.get(arg.type)
    if datatype is None:
        raise ConfigError(f"{source}: tensor '{arg.name}' has type {arg.type}, not servable")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSignature(arg.name, datatype.name, shape)


def prepare_inputs(config: ModelConfig, inputs: dict[str, np.ndarray]) -> None:
    """ORT's Python binding takes string tensors as str objects: BYTES must be valid UTF-8."""
    for name, array in inputs.items():
        if array.dtype.kind != "O":
            continue
        try:
            inputs[name] = np.array(
                [b.decode("utf-8") if isinstance(b, bytes) else str(b) for b in array.ravel()],
                dtype=object,
            ).reshape(array.shape)
        except UnicodeDecodeError as error:
            raise InvalidArgumentError(
                f"model '{config.name}': input '{name}': BYTES element is not valid UTF-8 "
                f"({error.reason} at byte {error.start}); onnxruntime string tensors hold text"
            ) from None


def warm_up(instance: OrtInstance, config: ModelConfig) -> None:
    """Runs the config's warm-up samples so the first real request is not slow."""
    rng = np.random.default_rng(0)
    output_names = [t.name for t in config.outputs]
    for sample in config.model_warmup:
        feeds = warmup_feeds(sample, config, rng)
        for _ in range(sample.count):
            instance.run(output_names, feeds)


def warmup_feeds(
    sample: Warmup, config: ModelConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    specs = sample.inputs or tuple(WarmupInput(t.name, t.datatype, t.dims) for t in config.inputs)
    feeds = {}
    for spec in specs:
        dims = tuple(1 if d == -1 else d for d in spec.dims)
        shape = ((sample.batch_size,) if config.batched else ()) + dims
        dtype = datatypes.BY_NAME[spec.datatype]
        if dtype.name == "BYTES":
            feeds[spec.name] = np.full(shape, "", dtype=object)
        elif spec.fill == "random":
            feeds[spec.name] = rng.random(shape).astype(dtype.numpy)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype.numpy)
    return feeds
