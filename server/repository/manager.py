"""Which model versions are served, and their states.

A (re)load builds the new version beside the serving one; only when it is READY does it replace
the old one, which then drains and is released. A model that fails to load is reported and the
others keep serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from server.cache import ResponseCache
from server.errors import ConfigError, NotFoundError, UnavailableError
from server.model import ModelVersion, load_sessions
from server.model_config import ModelConfig, VersionPolicy
from server.repository.configs import ConfigSource
from server.repository.scanner import (
    FileStat,
    ModelFingerprint,
    fingerprint,
    list_models,
    list_versions,
    parse_version,
    select_versions,
)
from server.repository.states import ModelState, VersionStatus
from server.scheduling.observer import SchedulerObserver

log = logging.getLogger(__name__)

ObserverFactory = Callable[[str, int], SchedulerObserver | None]
# What a served version was built from: its config (version policy aside) and its files.
_Source = tuple[ModelConfig, tuple[FileStat, ...] | None]


@dataclass
class _ModelEntry:
    served: dict[int, ModelVersion] = field(default_factory=dict)
    statuses: dict[int | None, VersionStatus] = field(default_factory=dict)
    latest: ModelVersion | None = None  # the highest READY version, looked up per request
    fingerprint: ModelFingerprint | None = None  # the folder as of the last load
    sources: dict[int, _Source] = field(default_factory=dict)

    def refresh_latest(self) -> None:
        self.latest = self.served[max(self.served)] if self.served else None


class ModelRepositoryManager:
    def __init__(
        self,
        repository: Path,
        observer_factory: ObserverFactory | None = None,
        unload_timeout: float = 30.0,
        configs: ConfigSource | None = None,
        on_released: Callable[[str, int], None] | None = None,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self.repository = repository
        self.configs = configs or ConfigSource()  # config.yaml, plus config.pbtxt when given
        self._observer_factory = observer_factory or (lambda name, version: None)
        # Told when a version is gone for good (not replaced by a reload of the same version).
        self._on_released = on_released or (lambda name, version: None)
        self._unload_timeout = unload_timeout
        # Without a store it still refuses models that ask for the cache.
        self.response_cache = response_cache or ResponseCache()
        self._models: dict[str, _ModelEntry] = {}
        # One load or unload at a time per model keeps swaps simple; models load independently.
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()  # replaced versions still draining
        self._closing = False

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
        number = parse_version(version) or -1
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

    def model_names(self) -> list[str]:
        return list(self._models)

    def loaded_fingerprint(self, name: str) -> ModelFingerprint | None:
        """The model folder as it was when the model was last loaded (or tried)."""
        entry = self._models.get(name)
        return entry.fingerprint if entry is not None else None

    # --- loading and unloading ----------------------------------------------------------

    async def load_all(self, parallel: int = 1) -> None:
        await self.load_many(list_models(self.repository), parallel)

    async def load_many(self, names: Sequence[str], parallel: int = 1) -> None:
        """Loads the models, `parallel` at a time; the index keeps them in the order given."""
        for name in names:
            self._models.setdefault(name, _ModelEntry())
        slots = asyncio.Semaphore(max(1, parallel))

        async def load(name: str) -> None:
            async with slots:
                await self.load_model(name)

        await asyncio.gather(*(load(name) for name in names))

    async def load_model(
        self, name: str, config: ModelConfig | None = None, *, keep_unchanged: bool = False
    ) -> list[str]:
        """Loads or reloads every version the policy selects; returns the failures.

        A failure leaves what served before serving. keep_unchanged keeps a serving version
        whose files and config (version policy aside) are as they were when it was loaded.
        """
        if self._closing:
            raise UnavailableError("the server is shutting down")
        async with self._lock_for(name):
            try:
                return await self._load(name, config, keep_unchanged)
            except OSError as error:  # e.g. a folder the server may not read: never fatal
                entry = self._models.setdefault(name, _ModelEntry())
                reason = f"cannot read {self.repository / name}: {error}"
                return [self._fail(entry, name, None, reason)]

    async def unload_model(self, name: str, *, forget: bool = False) -> None:
        """Stops serving the model; requests already queued or running finish first.

        The model then shows as UNAVAILABLE "unloaded", or, with forget (its folder is gone),
        disappears.
        """
        async with self._lock_for(name):
            entry = self._models.get(name)
            if entry is None:
                return
            served, entry.served, entry.latest = entry.served, {}, None
            entry.sources.clear()
            for version in served:
                entry.statuses[version] = VersionStatus(name, version, ModelState.UNLOADING)
            await asyncio.gather(*(self._retire(m) for m in served.values()))
            if forget:
                del self._models[name]
            else:
                entry.statuses = {
                    None: VersionStatus(name, None, ModelState.UNAVAILABLE, "unloaded")
                }

    async def close(self, timeout: float | None = None) -> None:
        """Finishes queued and running requests (bounded by timeout) and releases every model."""
        self._closing = True
        for lock in list(self._locks.values()):
            async with lock:  # lets a load or unload in progress finish
                pass
        models = self.served_versions()
        self._models.clear()
        await asyncio.gather(*(self._retire(m, timeout) for m in models), *self._retiring)

    def _lock_for(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _load(
        self, name: str, override: ModelConfig | None, keep_unchanged: bool
    ) -> list[str]:
        entry = self._models.setdefault(name, _ModelEntry())
        model_dir = self.repository / name
        entry.fingerprint = fingerprint(model_dir)
        try:
            config = override or self.configs.read(model_dir)
        except ConfigError as error:
            return [self._fail(entry, name, None, str(error))]
        available = list_versions(model_dir)
        versions = select_versions(available, config.version_policy)
        failures: list[str] = []
        if versions:
            entry.statuses.pop(None, None)
        else:
            reason = (
                f"{model_dir}: no version folder (e.g. 1/model.onnx) matches the version policy"
            )
            failures.append(self._fail(entry, name, None, reason))
        basis = dataclasses.replace(config, version_policy=VersionPolicy())
        for version in versions:
            files = entry.fingerprint.version(version) if entry.fingerprint else None
            source = (basis, files)
            if keep_unchanged and version in entry.served and entry.sources.get(version) == source:
                entry.statuses[version] = VersionStatus(name, version, ModelState.READY)
                continue
            failure = await self._load_version(
                entry, name, model_dir, version, config, source, override is not None
            )
            if failure is not None:
                failures.append(failure)
        # Versions the policy dropped drain once every selected version serves, so a broken
        # new version leaves the old one serving; a version whose folder is gone drains now.
        complete = all(v in entry.served for v in versions)
        for version in [v for v in entry.served if v not in versions]:
            if complete or version not in available:
                self._retire_later(entry.served.pop(version), entry)
        for version in [v for v in entry.statuses if v is not None]:
            status = entry.statuses[version]
            if (
                version not in versions
                and version not in entry.served
                and status.state
                in (
                    ModelState.UNAVAILABLE,
                    ModelState.LOADING,
                )
            ):
                del entry.statuses[version]  # a failed version the policy no longer selects
        entry.refresh_latest()
        return failures

    async def _load_version(
        self,
        entry: _ModelEntry,
        name: str,
        model_dir: Path,
        version: int,
        config: ModelConfig,
        source: _Source,
        overridden: bool,
    ) -> str | None:
        """Loads one version beside the one serving and swaps them; returns the failure."""
        current = entry.statuses.get(version)
        if current is None or current.state is not ModelState.READY:
            entry.statuses[version] = VersionStatus(name, version, ModelState.LOADING)
        log.info("model '%s' version %d: loading", name, version)
        try:
            origin = (
                f"model '{name}': the load request's config"
                if overridden
                else self.configs.describe(model_dir)
            )
            self.response_cache.check(config, origin)
            loaded = await asyncio.to_thread(load_sessions, model_dir, version, config, origin)
        except ConfigError as error:
            return self._fail(entry, name, version, str(error))
        except Exception as error:  # never let one model stop the others
            return self._fail(entry, name, version, f"unexpected error while loading: {error!r}")
        cache = self.response_cache.for_version(loaded.config, version, loaded.fingerprint)
        model = ModelVersion(version, loaded, self._observer_factory(name, version), cache)
        model.start()
        # The swap: from here on every lookup gets the new version; nothing awaits in between.
        old = entry.served.get(version)
        entry.served[version] = model
        entry.sources[version] = source
        entry.statuses[version] = VersionStatus(name, version, ModelState.READY)
        entry.refresh_latest()
        log.info(
            "model '%s' version %d: ready in %.2fs (warm-up %.2fs) on %s",
            name,
            version,
            loaded.load_seconds,
            loaded.warmup_seconds,
            ", ".join(loaded.providers),
            extra={
                "model": name,
                "version": str(version),
                "load_seconds": round(loaded.load_seconds, 4),
                "warmup_seconds": round(loaded.warmup_seconds, 4),
            },
        )
        if old is not None:
            self._retire_later(old)
        return None

    def _retire_later(self, model: ModelVersion, entry: _ModelEntry | None = None) -> None:
        """Drains and releases a version that no longer takes requests, in the background.

        With `entry`, the version shows as UNLOADING until it is released.
        """
        status = VersionStatus(model.name, model.version, ModelState.UNLOADING)
        if entry is not None:
            entry.sources.pop(model.version, None)
            entry.statuses[model.version] = status
        task = asyncio.get_running_loop().create_task(self._retire(model))
        self._retiring.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._retiring.discard(task)
            if entry is not None and entry.statuses.get(model.version) is status:
                del entry.statuses[model.version]

        task.add_done_callback(done)

    async def _retire(self, model: ModelVersion, timeout: float | None = None) -> None:
        """Drains a version no longer served (its queue and running batches), then releases it."""
        start = time.monotonic()
        try:
            await model.unload(self._unload_timeout if timeout is None else timeout)
        except Exception:  # a retiring version must not take the manager down with it
            log.exception("model '%s' version %d: error while unloading", model.name, model.version)
            return
        finally:
            entry = self._models.get(model.name)
            if entry is None or model.version not in entry.served:
                self._on_released(model.name, model.version)
        log.info(
            "model '%s' version %d: unloaded (drained in %.2fs)",
            model.name,
            model.version,
            time.monotonic() - start,
        )

    def _fail(self, entry: _ModelEntry, name: str, version: int | None, reason: str) -> str:
        log.error("model '%s'%s: failed to load: %s", name, _v(version), reason)
        kept = (
            list(entry.served) if version is None else [v for v in (version,) if v in entry.served]
        )
        for v in kept:
            # The loaded version keeps serving; the failed reload is reported beside it.
            note = f"still serving the previous load; reload failed: {reason}"
            entry.statuses[v] = VersionStatus(name, v, ModelState.READY, note)
        if not kept:
            entry.statuses[version] = VersionStatus(name, version, ModelState.UNAVAILABLE, reason)
        return f"model '{name}'{_v(version)}: {reason}"

    @staticmethod
    def _reason(entry: _ModelEntry) -> str:
        reasons = [s.reason or s.state.value for s in entry.statuses.values()]
        return "; ".join(reasons) or "no version loaded"


def _v(version: int | None) -> str:
    return f" version {version}" if version is not None else ""
