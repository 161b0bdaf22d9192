"""A loaded model version: its completed config, instances and scheduler.

Loading is blocking (session creation, warm-up) and runs in a worker thread; serving and
unloading happen on the event loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.backends import onnxruntime as backend
from server.inference import InferenceRequest
from server.model_config import MODEL_FILE, ModelConfig, complete_config
from server.scheduling.observer import SchedulerObserver
from server.scheduling.policy import BatchPolicy
from server.scheduling.scheduler import Scheduler
from server.validation import RequestValidator

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedSessions:
    """What the blocking half of a load produces, before the model joins the event loop."""

    config: ModelConfig
    instances: list[backend.OrtInstance]
    providers: list[str]
    load_seconds: float  # the whole blocking half, warm-up included
    warmup_seconds: float = 0.0


def load_sessions(
    model_dir: Path, version: int, config: ModelConfig, config_source: str
) -> LoadedSessions:
    """Creates the sessions, completes the config from the model and warms up. Blocking.

    config_source names where the config came from, for the messages of a config that does
    not fit the model.
    """
    start = time.monotonic()
    model_file = model_dir / str(version) / MODEL_FILE
    instances, providers = backend.create_instances(model_file, config, str(model_file))
    signature = backend.read_signature(instances[0], str(model_file))
    completed = complete_config(config, signature, config_source)
    warmup_start = time.monotonic()
    for instance in instances:
        backend.warm_up(instance, completed)
    end = time.monotonic()
    return LoadedSessions(completed, instances, providers, end - start, end - warmup_start)


class ModelVersion:
    def __init__(
        self, version: int, loaded: LoadedSessions, observer: SchedulerObserver | None = None
    ) -> None:
        config = loaded.config
        self.name = config.name
        self.version = version
        self.version_str = str(version)
        self.config = config
        self.providers = loaded.providers
        self._validator = RequestValidator(config)
        self._has_bytes = any(t.datatype == "BYTES" for t in config.inputs)
        self.scheduler = Scheduler(
            model=config.name,
            instances=loaded.instances,
            policy=BatchPolicy.from_config(config),
            input_names=[t.name for t in config.inputs],
            output_names=[t.name for t in config.outputs],
            batched=config.batched,
            observer=observer,
        )

    def start(self) -> None:
        self.scheduler.start()

    async def infer(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        # Validation and enqueue run before the first await, so a model swap cannot slip between.
        self._validator.validate(request)
        if self._has_bytes:
            backend.prepare_inputs(self.config, request.inputs)
        return await self.scheduler.infer(request)

    async def unload(self, timeout: float | None = None) -> None:
        """Stops taking requests, finishes what is queued and running, then releases sessions."""
        await self.scheduler.close(timeout)
