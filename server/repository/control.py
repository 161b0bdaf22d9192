"""Model control modes, as Triton names them, and the repository operations clients may call.

none      every model in the repository loads at start; the set never changes.
poll      as none, then the repository is rescanned every poll interval (poller.py).
explicit  only the models named at start (`*`: all) and those a client loads.
Clients may load and unload only in explicit mode: mixing their calls with the poller, or with
a fixed set, would leave the served set depending on who acted last.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from server.errors import (
    ConfigError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from server.model_config import ModelConfig
from server.repository.control_mode import ControlMode
from server.repository.manager import ModelRepositoryManager
from server.repository.names import check_model_name, model_folder
from server.repository.poller import RepositoryPoller
from server.repository.scanner import list_models
from server.repository.states import ModelState, VersionStatus

log = logging.getLogger(__name__)

ALL_MODELS = "*"
# Load parameters understood here; Triton's "file:<path>" uploads are not.
_LOAD_PARAMETERS = ("config",)
# Unload parameters understood here; there are no ensembles, so no dependents to unload.
_UNLOAD_PARAMETERS = ("unload_dependents",)


class RepositoryControl:
    def __init__(
        self,
        manager: ModelRepositoryManager,
        mode: ControlMode = ControlMode.NONE,
        poll_seconds: float = 5.0,
        startup_models: Sequence[str] = (),
        load_threads: int = 4,
    ) -> None:
        self.manager = manager
        self.mode = mode
        self._load_threads = load_threads  # models loading side by side at start
        self._startup_models = tuple(startup_models)
        self._poller = RepositoryPoller(manager, poll_seconds) if mode is ControlMode.POLL else None

    async def start(self) -> None:
        """Loads what the mode asks for at start; failed models are reported, never fatal."""
        if self.mode is not ControlMode.EXPLICIT or ALL_MODELS in self._startup_models:
            await self.manager.load_all(self._load_threads)
        else:
            names = []
            for name in self._startup_models:
                try:
                    model_folder(self.manager.repository, name)
                except (InvalidArgumentError, NotFoundError) as error:
                    log.error("--load-model %s: %s", name, error.message)
                    continue
                names.append(name)
            await self.manager.load_many(names, self._load_threads)
        if self._poller is not None:
            self._poller.start()

    async def close(self) -> None:
        if self._poller is not None:
            await self._poller.close()

    def index(self, ready_only: bool = False, repository: str = "") -> list[VersionStatus]:
        """Every model in the repository, one entry per version the server knows about."""
        self._check_repository(repository)
        statuses = self.manager.index()
        known = {s.name for s in statuses}
        statuses += [
            VersionStatus(name, None, ModelState.UNKNOWN, "not loaded")
            for name in list_models(self.manager.repository)
            if name not in known
        ]
        if ready_only:
            statuses = [s for s in statuses if s.state is ModelState.READY]
        return sorted(statuses, key=lambda s: (s.name, s.version or 0))

    async def load(self, name: str, parameters: Mapping[str, Any], repository: str = "") -> None:
        """Loads or reloads the model, from its folder or from a `config` parameter (JSON)."""
        self._check_repository(repository)
        model_folder(self.manager.repository, name)
        self._require_explicit("load")
        _check_parameters(parameters, _LOAD_PARAMETERS, "load")
        override: ModelConfig | None = None
        text = parameters.get("config")
        if text is not None:
            if not isinstance(text, str):
                raise InvalidArgumentError("load parameter 'config' must be a string of JSON")
            try:
                override = self.manager.configs.parse_override(name, text)
            except ConfigError as error:
                raise InvalidArgumentError(str(error)) from None
        failures = await self.manager.load_model(name, override)
        if failures:
            raise InvalidArgumentError(f"failed to load model '{name}': " + "; ".join(failures))

    async def unload(self, name: str, parameters: Mapping[str, Any], repository: str = "") -> None:
        self._check_repository(repository)
        check_model_name(name)
        if name not in self.manager.model_names():  # a loaded model's folder may be gone
            model_folder(self.manager.repository, name)
        self._require_explicit("unload")
        _check_parameters(parameters, _UNLOAD_PARAMETERS, "unload")
        await self.manager.unload_model(name)

    def _check_repository(self, repository: str) -> None:
        # One repository per server; a client may name it by its folder name, or leave it empty.
        if repository and repository != self.manager.repository.name:
            raise NotFoundError(
                f"unknown repository {repository!r}; this server serves one,"
                f" {self.manager.repository.name!r} (an empty name means it too)"
            )

    def _require_explicit(self, action: str) -> None:
        if self.mode is not ControlMode.EXPLICIT:
            raise UnavailableError(
                f"cannot {action} models: the server runs with --model-control-mode"
                f" {self.mode.value}; clients load and unload only in explicit mode"
            )


def _check_parameters(parameters: Mapping[str, Any], known: Sequence[str], action: str) -> None:
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise InvalidArgumentError(
            f"{action} parameter(s) not supported: {', '.join(unknown)};"
            f" supported: {', '.join(known)}"
        )
