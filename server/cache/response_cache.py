"""The response cache as the request path sees it: look up before the queue, store after a run.

ResponseCache wraps the store the server was started with (--cache) and makes it safe to lean
on: every store call is guarded, and a store that fails (Redis down, slow, or returning
something unreadable) is left alone for `retry_seconds` and then tried again, with one warning
per `warn_seconds` and every failure counted. An inference never fails because of the cache.

VersionCache is one loaded model version's view: its key prefix and its statistics.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from server.cache.key import bypass_reason, request_key, version_hasher
from server.cache.value import decode_outputs, encode_outputs
from server.errors import ConfigError
from server.inference import InferenceRequest
from server.model_config import ModelConfig

log = logging.getLogger(__name__)


class Store(Protocol):
    kind: str  # "local" or "redis", for logs and metrics

    async def get(self, key: bytes) -> bytes | None: ...

    async def put(self, key: bytes, value: bytes) -> None: ...

    async def close(self) -> None: ...


class CacheObserver(Protocol):
    """Where a version's hits and misses are counted (the version's statistics)."""

    def on_cache_hit(self, seconds: float) -> None: ...

    def on_cache_miss(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class CacheCounters:
    kind: str  # "none" without --cache
    bytes: int | None  # held by a local cache; None where the server cannot know (Redis)
    entries: int | None
    evictions: int | None
    errors: int


class ResponseCache:
    def __init__(
        self,
        store: Store | None = None,
        observer_factory: Callable[[str, int], CacheObserver | None] | None = None,
        retry_seconds: float = 1.0,
        warn_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._observer_factory = observer_factory or (lambda name, version: None)
        self.retry_seconds = retry_seconds
        self.warn_seconds = warn_seconds
        self._clock = clock
        self.errors = 0
        self._down_until = 0.0  # monotonic time before which the store is not called
        self._next_warning = 0.0
        self._unreported = 0  # failures since the last warning

    def check(self, config: ModelConfig, source: str) -> None:
        """Refuses a model that asks for the cache on a server started without one."""
        if config.response_cache.enable and self.store is None:
            raise ConfigError(
                f"{source}: response_cache.enable: true needs a response cache on the server;"
                " start it with --cache local or --cache redis://HOST:PORT/DB"
            )

    def for_version(
        self, config: ModelConfig, version: int, fingerprint: bytes
    ) -> VersionCache | None:
        """The cache of one loaded version, or None if its config leaves the cache off."""
        if self.store is None or not config.response_cache.enable:
            return None
        base = version_hasher(config.name, version, fingerprint)
        return VersionCache(self, base, self._observer_factory(config.name, version))

    async def get(self, key: bytes) -> bytes | None:
        if self.store is None or self.resting():
            return None
        try:
            value = await self.store.get(key)
        except Exception as error:  # the cache must never fail an inference
            self.failed(error)
            return None
        self._recovered()
        return value

    async def put(self, key: bytes, value: bytes) -> None:
        if self.store is None or self.resting():
            return
        try:
            await self.store.put(key, value)
        except Exception as error:
            self.failed(error)
            return
        self._recovered()

    def failed(self, error: BaseException) -> None:
        """Counts a failure and rests the store; warns at most once per warn_seconds."""
        now = self._clock()
        self.errors += 1
        self._unreported += 1
        self._down_until = now + self.retry_seconds
        if now >= self._next_warning:
            kind = self.store.kind if self.store is not None else "none"
            log.warning(
                "response cache (%s): %d failure(s), the last: %s; serving without the cache,"
                " trying it again every %.1fs",
                kind,
                self._unreported,
                _describe(error),
                self.retry_seconds,
            )
            self._unreported = 0
            self._next_warning = now + self.warn_seconds

    def resting(self) -> bool:
        """True while a failed store is left alone."""
        return bool(self._down_until) and self._clock() < self._down_until

    def _recovered(self) -> None:
        if self._down_until:
            self._down_until = 0.0
            kind = self.store.kind if self.store is not None else "none"
            log.info("response cache (%s): reachable again", kind)

    def counters(self) -> CacheCounters:
        store = self.store
        if store is None:
            return CacheCounters("none", 0, 0, 0, self.errors)
        return CacheCounters(
            store.kind,
            getattr(store, "bytes", None),
            len(store) if hasattr(store, "__len__") else None,
            getattr(store, "evictions", None),
            self.errors,
        )

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class VersionCache:
    def __init__(
        self, cache: ResponseCache, base: hashlib.blake2b, observer: CacheObserver | None
    ) -> None:
        self._cache = cache
        self._base = base
        self._observer = observer
        # Requests past validation, waiting on a lookup that may suspend (Redis), not queued yet.
        self._lookups = 0
        self._no_lookups = asyncio.Event()
        self._no_lookups.set()

    def key(self, request: InferenceRequest) -> bytes | None:
        """The request's key, or None when it must bypass the cache."""
        if bypass_reason(request) is not None:
            return None
        return request_key(self._base, request)

    async def infer(
        self,
        request: InferenceRequest,
        run: Callable[[InferenceRequest], Awaitable[dict[str, np.ndarray]]],
    ) -> dict[str, np.ndarray]:
        """Answers from the cache, or runs the request and stores what it returns."""
        key = self.key(request)
        if key is None:
            return await run(request)
        start = time.perf_counter()
        self._lookups += 1
        self._no_lookups.clear()
        try:
            outputs = await self._lookup(key)
        finally:
            self._lookups -= 1
            if not self._lookups:
                self._no_lookups.set()
        # No await from here to run()'s enqueue: a version that waited in settle() and then
        # stopped taking requests has every looked-up request queued already.
        if outputs is not None:
            if self._observer is not None:
                self._observer.on_cache_hit(time.perf_counter() - start)
            return outputs
        lookup = time.perf_counter() - start
        outputs = await run(request)
        start = time.perf_counter()
        if not self._cache.resting():  # no copy into a value a resting store would not take
            await self._cache.put(key, encode_outputs(outputs))
        if self._observer is not None:
            self._observer.on_cache_miss(lookup + time.perf_counter() - start)
        return outputs

    async def settle(self, timeout: float | None = None) -> None:
        """Waits until no request of this version is between its lookup and the queue (each
        lookup is bounded by the store's timeout); the version unloads after."""
        if self._lookups:
            try:
                await asyncio.wait_for(self._no_lookups.wait(), timeout)
            except TimeoutError:
                log.warning("response cache: lookups still pending after %ss", timeout)

    async def _lookup(self, key: bytes) -> dict[str, np.ndarray] | None:
        value = await self._cache.get(key)
        if value is None:
            return None
        try:
            return decode_outputs(value)
        except ValueError as error:  # written by something else, or cut short
            self._cache.failed(error)
            return None
