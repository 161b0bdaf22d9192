"""Which model versions are served, and their states.

A (re)load builds the new version beside the serving one; only when it is READY does it replace
the old one, which then drains and is released. A model that fails to load is reported and the
others keep serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from server.errors import ConfigError, NotFoundError, UnavailableError
from server.model import ModelVersion, load_sessions
from server.model_config import ModelConfig, load_model_config
from server.repository.scanner import list_models, list_versions, select_versions
from server.repository.states import ModelState, VersionStatus
from server.scheduling.observer import SchedulerObserver

log = logging.getLogger(__name__)

ObserverFactory = Callable[[str, int], SchedulerObserver | None]


@dataclass
class _ModelEntry:
    served: dict[int, ModelVersion] = field(default_factory=dict)
    statuses: dict[int | None, VersionStatus] = field(default_factory=dict)
    latest: ModelVersion | None = None  # the highest READY version, looked up per request

    def refresh_latest(self) -> None:
        self.latest = self.served[max(self.served)] if self.served else None


class ModelRepositoryManager:
    def __init__(
        self,
        repository: Path,
        observer_factory: ObserverFactory | None = None,
        unload_timeout: float = 30.0,
    ) -> None:
        self.repository = repository
        self._observer_factory = observer_factory or (lambda name, version: None)
        self._unload_timeout = unload_timeout
        self._models: dict[str, _ModelEntry] = {}
        self._lock = asyncio.Lock()  # one load or unload at a time keeps swaps simple

    # --- serving ------------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version that serves a request; raises NotFoundError or UnavailableError."""
        entry = self._models.get(name)
        if entry is None:
            raise NotFoundError(f"unknown model '{name}'")
        if not version:
            if entry.latest is None:
                raise UnavailableError(f"model '{name}' is not ready: {self._reason(entry)}")
            return entry.latest
        # isdigit() alone admits '²', which int() rejects; a version is plain ASCII digits.
        number = int(version) if version.isascii() and version.isdigit() else -1
        model = entry.served.get(number)
        if model is None:
            status = entry.statuses.get(number)
            if status is None:
                raise NotFoundError(f"model '{name}' has no version '{version}'")
            raise UnavailableError(
                f"model '{name}' version {version} is {status.state.value}"
                + (f": {status.reason}" if status.reason else "")
            )
        return model

    def is_ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except (NotFoundError, UnavailableError):
            return False
        return True

    def index(self) -> list[VersionStatus]:
        return [s for entry in self._models.values() for s in entry.statuses.values()]

    def served_versions(self) -> list[ModelVersion]:
        return [m for entry in self._models.values() for m in entry.served.values()]

    # --- loading and unloading ----------------------------------------------------------

    async def load_all(self) -> None:
        for name in list_models(self.repository):
            await self.load_model(name)

    async def load_model(self, name: str, config: ModelConfig | None = None) -> None:
        """Loads or reloads every version the policy selects; failures leave the old serving."""
        async with self._lock:
            await self._load(name, config)

    async def unload_model(self, name: str) -> None:
        async with self._lock:
            entry = self._models.pop(name, None)
            if entry is not None:
                await asyncio.gather(*(self._retire(m) for m in entry.served.values()))

    async def close(self, timeout: float | None = None) -> None:
        """Finishes queued and running requests (bounded by timeout) and releases every model."""
        async with self._lock:
            models = self.served_versions()
            self._models.clear()
            await asyncio.gather(*(m.unload(timeout) for m in models))

    async def _load(self, name: str, override: ModelConfig | None) -> None:
        entry = self._models.setdefault(name, _ModelEntry())
        model_dir = self.repository / name
        try:
            config = override or load_model_config(model_dir)
        except ConfigError as error:
            self._fail(entry, name, None, str(error))
            return
        versions = select_versions(list_versions(model_dir), config.version_policy)
        if not versions:
            reason = (
                f"{model_dir}: no version folder (e.g. 1/model.onnx) matches the version policy"
            )
            self._fail(entry, name, None, reason)
            return
        entry.statuses.pop(None, None)
        for version in versions:
            await self._load_version(entry, name, model_dir, version, config)
        for version in [v for v in entry.served if v not in versions]:
            await self._retire(entry.served.pop(version))
            entry.statuses.pop(version, None)
            entry.refresh_latest()

    async def _load_version(
        self, entry: _ModelEntry, name: str, model_dir: Path, version: int, config: ModelConfig
    ) -> None:
        current = entry.statuses.get(version)
        if current is None or current.state is not ModelState.READY:
            entry.statuses[version] = VersionStatus(name, version, ModelState.LOADING)
        log.info("model '%s' version %d: loading", name, version)
        try:
            loaded = await asyncio.to_thread(load_sessions, model_dir, version, config)
        except ConfigError as error:
            self._fail(entry, name, version, str(error))
            return
        except Exception as error:  # never let one model stop the others
            self._fail(entry, name, version, f"unexpected error while loading: {error!r}")
            return
        model = ModelVersion(version, loaded, self._observer_factory(name, version))
        model.start()
        old = entry.served.get(version)
        entry.served[version] = model
        entry.statuses[version] = VersionStatus(name, version, ModelState.READY)
        entry.refresh_latest()
        log.info(
            "model '%s' version %d: ready in %.2fs on %s",
            name,
            version,
            loaded.load_seconds,
            ", ".join(loaded.providers),
        )
        if old is not None:
            await self._retire(old)

    async def _retire(self, model: ModelVersion) -> None:
        await model.unload(self._unload_timeout)
        log.info("model '%s' version %d: unloaded", model.name, model.version)

    def _fail(self, entry: _ModelEntry, name: str, version: int | None, reason: str) -> None:
        log.error("model '%s'%s: failed to load: %s", name, _v(version), reason)
        if version is not None and version in entry.served:
            # The old version keeps serving; the failed reload is reported beside it.
            entry.statuses[version] = VersionStatus(name, version, ModelState.READY, reason)
        else:
            entry.statuses[version] = VersionStatus(name, version, ModelState.UNAVAILABLE, reason)

    @staticmethod
    def _reason(entry: _ModelEntry) -> str:
        reasons = [s.reason or s.state.value for s in entry.statuses.values()]
        return "; ".join(reasons) or "no version loaded"


def _v(version: int | None) -> str:
    return f" version {version}" if version is not None else ""
