"""Poll mode: rescan the repository and bring the served models in line with it.

A model folder is acted on only once two scans in a row saw the same fingerprint (names, sizes
and modification times of its files) and that fingerprint differs from the one it was last
loaded from: a folder still being copied is left alone until it is complete. After a scan that
saw a change, the confirming scan comes sooner than the poll interval. A failed load is
recorded with the fingerprint it was tried on, so it is retried on the folder's next change,
not on every scan. Nothing that happens to one model stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from server.repository.manager import ModelRepositoryManager
from server.repository.scanner import ModelFingerprint, fingerprint, list_models

log = logging.getLogger(__name__)

# Longest wait before the scan that confirms a change has settled.
CONFIRM_SECONDS = 1.0
_UNSEEN = object()


class RepositoryPoller:
    def __init__(self, manager: ModelRepositoryManager, interval: float) -> None:
        self._manager = manager
        self._repository: Path = manager.repository
        self._interval = interval
        self._seen: dict[str, ModelFingerprint | None] = {}  # the previous scan
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="repository-poller")

    async def close(self) -> None:
        """Stops polling; a load already under way finishes first."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def poll_once(self) -> bool:
        """One scan and the loads and unloads it calls for; True while a change is settling."""
        on_disk = set(list_models(self._repository))
        names = sorted(on_disk | set(self._manager.model_names()))
        settling = False
        for name in names:
            if self._stop.is_set():
                break
            try:
                settling |= await self._update(name, name in on_disk)
            except Exception:  # one model's trouble must never stop the poller
                log.exception("model '%s': error while polling the repository", name)
        for name in [n for n in self._seen if n not in names]:
            del self._seen[name]
        return settling

    async def _update(self, name: str, on_disk: bool) -> bool:
        current = fingerprint(self._repository / name) if on_disk else None
        previous = self._seen.get(name, _UNSEEN)
        self._seen[name] = current
        if current == self._manager.loaded_fingerprint(name):
            return False
        if current != previous:
            return True  # changed since the last scan: wait until it holds still
        if current is None:
            log.info("model '%s': folder removed, unloading", name)
            await self._manager.unload_model(name, forget=True)
        else:
            log.info("model '%s': folder changed, loading", name)
            await self._manager.load_model(name, keep_unchanged=True)
        return False

    async def _run(self) -> None:
        delay = self._interval
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                break
            except TimeoutError:
                pass
            try:
                settling = await self.poll_once()
            except Exception:  # e.g. the repository folder itself is unreadable for a while
                log.exception("error while polling the repository")
                settling = False
            delay = min(self._interval, CONFIRM_SECONDS) if settling else self._interval
