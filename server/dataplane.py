"""The transport-independent operations a frontend serves: health, metadata, inference.

A frontend decodes its wire format into these calls and encodes what they return; it holds no
logic of its own beyond that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np

from server.errors import NotFoundError, UnavailableError
from server.inference import InferenceRequest
from server.model import ModelVersion
from server.observability.statistics import Statistics, VersionStatistics
from server.repository.control import RepositoryControl
from server.repository.manager import ModelRepositoryManager
from server.repository.scanner import parse_version
from server.repository.states import VersionStatus
from server.shared_memory import SharedMemoryRegistry

SERVER_NAME = "onnxserve"
SERVER_VERSION = "0.1.0"


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

    async def infer(self, request: InferenceRequest) -> tuple[ModelVersion, dict[str, np.ndarray]]:
        model = self.manager.get(request.model_name, request.model_version)
        return model, await model.infer(request)

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
