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
from server.cache import VersionCache
from server.cache.key import model_fingerprint
from server.inference import InferenceRequest
from server.model_config import MODEL_FILE, ModelConfig, complete_config
from server.scheduling.observer import SchedulerObserver
from server.scheduling.policy import BatchPolicy
from server.scheduling.scheduler import Scheduler
from server.validation import RequestValidator

log = logging.getLogger(__name__)
# How long a terminated run may take to notice it (onnxruntime checks between nodes).
_TERMINATE_GRACE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class LoadedSessions:
    """What the blocking half of a load produces, before the model joins the event loop."""

    config: ModelConfig
    instances: list[backend.OrtInstance]
    providers: list[str]
    load_seconds: float  # the whole blocking half, warm-up included
    warmup_seconds: float = 0.0
    fingerprint: bytes = b""  # the response cache's model identity; empty when it is off


def load_sessions(
    model_dir: Path, version: int, config: ModelConfig, config_source: str
) -> LoadedSessions:
    """Creates the sessions, completes the config from the model and warms up. Blocking.

    config_source names where the config came from, for the messages of a config that does
    not fit the model.
    """
    start = time.monotonic()
    model_file = model_dir / str(version) / MODEL_FILE
    instances, providers = backend.create_instances(model_file, config)
    signature = backend.read_signature(instances[0], str(model_file))
    completed = complete_config(config, signature, config_source)
    warmup_start = time.monotonic()
    for instance in instances:
        backend.warm_up(instance, completed)
    warmup_seconds = time.monotonic() - warmup_start
    cached = completed.response_cache.enable
    fingerprint = model_fingerprint(model_file, completed) if cached else b""
    return LoadedSessions(
        completed,
        instances,
        providers,
        time.monotonic() - start,
        warmup_seconds=warmup_seconds,
        fingerprint=fingerprint,
    )


class ModelVersion:
    def __init__(
        self,
        version: int,
        loaded: LoadedSessions,
        observer: SchedulerObserver | None = None,
        cache: VersionCache | None = None,
    ) -> None:
        config = loaded.config
        self.name = config.name
        self.version = version
        self.version_str = str(version)
        self.config = config
        self.providers = loaded.providers
        self._validator = RequestValidator(config)
        self._has_bytes = any(t.datatype == "BYTES" for t in config.inputs)
        self.cache = cache  # None: the model's responses are not cached
        self._instances = loaded.instances
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
        # Validation and enqueue run before the first await, so a model swap cannot slip between
        # (a local lookup never suspends; unload() lets requests in a Redis lookup reach the queue).
        self._validator.validate(request)
        if self._has_bytes:
            backend.prepare_inputs(self.config, request.inputs)
        if self.cache is not None:
            # A hit is answered here: no queue slot, no execution.
            return await self.cache.infer(request, self.scheduler.infer)
        return await self.scheduler.infer(request)

    async def unload(self, timeout: float | None = None) -> None:
        """Stops taking requests, finishes what is queued and running, then releases sessions."""
        if self.cache is not None:
            await self.cache.settle(timeout)
        await self.scheduler.close(timeout)
        if self.scheduler.executions_in_flight:
            # Runs past the timeout are stopped: a session still running while the process
            # exits makes onnxruntime abort it, and its batch has no one waiting any more.
            log.warning(
                "model '%s' version %d: stopping %d execution(s) still running after %.1fs",
                self.name,
                self.version,
                self.scheduler.executions_in_flight,
                timeout or 0.0,
            )
            for instance in self._instances:
                instance.terminate()
            await self.scheduler.close(_TERMINATE_GRACE_SECONDS)
