"""The transport-independent operations every frontend serves: health, metadata, inference,
statistics, the repository, shared memory and log settings.

A frontend (gRPC unary, gRPC stream, HTTP) decodes its wire format into these calls and encodes
what they return; it holds no logic of its own beyond that. Inference outcomes are reported here
once, whichever frontend took the request and however it ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.errors import (
    CANCELLED,
    OK,
    InferenceServerError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from server.inference import InferenceRequest, InferenceResponse
from server.model import ModelVersion
from server.model_config import PLATFORM, TensorConfig
from server.observability.logs import SettingValue, log_settings, update_log_settings
from server.observability.statistics import Statistics, VersionStatistics
from server.repository.control import RepositoryControl
from server.repository.manager import ModelRepositoryManager
from server.repository.scanner import parse_version
from server.repository.states import VersionStatus
from server.shared_memory import Region, SharedMemoryRegistry

log = logging.getLogger(__name__)

SERVER_NAME = "onnxserve"
SERVER_VERSION = "0.1.0"

# Protocol extensions this server implements, as server metadata reports them.
EXTENSIONS = (
    "model_configuration",
    "parameters",
    "statistics",
    "model_repository",
    "logging",
    "system_shared_memory",
)


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]  # -1 for a variable dimension, the batch dimension included


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class DataPlane:
    def __init__(
        self,
        manager: ModelRepositoryManager,
        statistics: Statistics | None = None,
        control: RepositoryControl | None = None,
        strict_readiness: bool = False,
        shared_memory: SharedMemoryRegistry | None = None,
    ) -> None:
        self.manager = manager
        # Model control mode and the repository operations (index, load, unload).
        self.control = control or RepositoryControl(manager)
        # The frontend reports each request's outcome here (statistics.on_request).
        self.statistics = statistics or Statistics()
        # Registered system shared memory regions that requests may name for their tensors.
        self.shared_memory = shared_memory or SharedMemoryRegistry()
        self.accepting = True  # False once shutdown begins: readiness turns off first
        self.stopping = asyncio.Event()  # set with accepting = False: open streams wind down
        self.started = False  # True once the models that load at start have been tried
        self.strict_readiness = strict_readiness
        self._startup_models: frozenset[str] = frozenset()

    def finish_startup(self, models: list[str]) -> None:
        """The start-up load is over; strict readiness waits on these models from now on."""
        self._startup_models = frozenset(models)
        self.started = True

    def stop_accepting(self) -> None:
        """Shutdown begins: readiness turns off and open streams finish what they hold."""
        self.accepting = False
        self.stopping.set()

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        if not (self.started and self.accepting):
            return False
        if not self.strict_readiness:
            return True
        # A model unloaded or removed since start no longer counts; one still known must serve.
        known = set(self.manager.model_names())
        return all(self.manager.is_ready(n) for n in self._startup_models if n in known)

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.manager.is_ready(name, version)

    def model(self, name: str, version: str = "") -> ModelVersion:
        return self.manager.get(name, version)

    def ready_versions(self, name: str) -> list[str]:
        return [str(m.version) for m in self.manager.served_versions() if m.name == name]

    def repository_index(
        self, ready_only: bool = False, repository: str = ""
    ) -> list[VersionStatus]:
        return self.control.index(ready_only, repository)

    async def load_model(
        self, name: str, parameters: Mapping[str, Any], repository: str = ""
    ) -> None:
        await self.control.load(name, parameters, repository)

    async def unload_model(
        self, name: str, parameters: Mapping[str, Any], repository: str = ""
    ) -> None:
        await self.control.unload(name, parameters, repository)
        # An operator's unload is deliberate: it no longer holds strict readiness back.
        self._startup_models -= {name}

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self.manager.get(name, version)
        config = model.config
        batch = [-1] if config.batched else []

        def tensors(configs: tuple[TensorConfig, ...]) -> list[TensorMetadata]:
            return [TensorMetadata(t.name, t.datatype, batch + list(t.dims)) for t in configs]

        return ModelMetadata(
            model.name,
            self.ready_versions(model.name),
            PLATFORM,
            tensors(config.inputs),
            tensors(config.outputs),
        )

    # --- inference -------------------------------------------------------------------------

    async def infer(
        self, request: InferenceRequest, timeout: float | None = None
    ) -> InferenceResponse:
        """Runs one request and reports its outcome. `timeout` is what the transport allows
        (gRPC's deadline), in seconds; the request's `timeout` parameter may shorten it."""
        model: ModelVersion | None = None
        status = OK
        try:
            model = self.manager.get(request.model_name, request.model_version)
            request.deadline = resolve_deadline(request, timeout)
            if request.shared_inputs or request.output_regions:
                self.shared_memory.resolve(request)
            # No await between the lookup and the enqueue: a model swap cannot slip between.
            outputs = await model.infer(request)
            response = InferenceResponse(model.name, model.version_str, request.id, outputs)
            if request.output_placements:
                self.shared_memory.write_outputs(response, request.output_placements)
            return response
        except InferenceServerError as error:
            status = error.status
            raise
        except asyncio.CancelledError:  # the client went away
            status = CANCELLED
            raise
        except Exception as error:
            status = InternalError.status
            log.exception("model '%s': inference failed", request.model_name)
            raise InternalError(f"internal error: {error!r}") from error
        finally:
            self._report(request, model, status)

    def reject(
        self,
        error: InferenceServerError,
        model_name: str = "",
        model_version: str = "",
        arrival: float = 0.0,
        protocol: str = "grpc",
    ) -> None:
        """Counts a request the frontend could not decode into an InferenceRequest."""
        name, version = self.request_labels(model_name, model_version)
        seconds = time.monotonic() - arrival if arrival else 0.0
        self.statistics.on_request(name, version, error.status, seconds, protocol)

    def _report(self, request: InferenceRequest, model: ModelVersion | None, status: str) -> None:
        if model is not None:
            name, version = model.name, model.version_str
        else:
            name, version = self.request_labels(request.model_name, request.model_version)
        seconds = time.monotonic() - request.arrival if request.arrival else 0.0
        self.statistics.on_request(name, version, status, seconds, request.protocol)

    def model_statistics(self, name: str = "", version: str = "") -> list[VersionStatistics]:
        """Statistics of the served versions: all, one model's, or one version's."""
        if name and version:
            models = [self.manager.get(name, version)]
        else:
            served = self.manager.served_versions()
            models = [m for m in served if m.name == name] if name else served
            if name and not models:
                self.manager.get(name)  # raises NotFoundError or UnavailableError
        models.sort(key=lambda m: (m.name, m.version))
        stats = self.statistics
        return [
            stats.get(m.name, m.version_str) or VersionStatistics(m.name, m.version_str)
            for m in models
        ]

    # --- shared memory and log settings ------------------------------------------------------

    def shared_memory_status(self, name: str = "") -> list[Region]:
        return self.shared_memory.status(name)

    def register_shared_memory(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self.shared_memory.register(name, key, offset, byte_size)

    def unregister_shared_memory(self, name: str = "") -> None:
        self.shared_memory.unregister(name)

    def log_settings(
        self, changes: Mapping[str, SettingValue] | None = None
    ) -> dict[str, SettingValue]:
        """The log settings, after applying `changes` if any."""
        return update_log_settings(changes) if changes else log_settings()

    def request_labels(self, name: str, version: str) -> tuple[str, str]:
        """Metric labels for a request that failed: only names the repository knows, so that
        clients cannot create label values; "" stands for an unknown model or version."""
        try:
            model = self.manager.get(name, version)
        except NotFoundError:
            known = any(s.name == name for s in self.manager.index())
            return (name, "") if known else ("", "")
        except UnavailableError:
            # The version exists (loading, failed, unloading) or none was named.
            number = parse_version(version)
            return name, str(number) if number is not None else ""
        return model.name, model.version_str


def resolve_deadline(request: InferenceRequest, timeout: float | None) -> float | None:
    """The earlier of the transport's deadline and the `timeout` parameter (microseconds, as
    Triton reads it), on the event loop's monotonic clock."""
    parameters = request.parameters
    value = parameters.get("timeout") if parameters else None
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(
                f"model '{request.model_name}': parameter 'timeout': expected a non-negative "
                f"integer of microseconds, got {value!r}"
            )
        if value and (timeout is None or value / 1e6 < timeout):
            timeout = value / 1e6
    if timeout is None:
        return None
    return asyncio.get_running_loop().time() + timeout
