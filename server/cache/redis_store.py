"""Cached responses in Redis, shared by every replica that points at the same database.

Each call is bounded by a short timeout and never retried here: a slow or absent Redis costs a
request at most that timeout, and ResponseCache then leaves the store alone for a while. Keys are
"onnxserve:rc:" and the hex digest, so they read well in redis-cli and share a database safely.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

KEY_PREFIX = b"onnxserve:rc:"
# Connections open at once: requests beyond it wait (within the timeout) for a free one.
MAX_CONNECTIONS = 64


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        timeout: float,
        ttl: float = 0.0,
        password_file: Path | None = None,
        tls_ca: Path | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.ttl_ms = int(ttl * 1000) or None  # None: entries stay until Redis evicts them
        options: dict[str, object] = {}
        if password_file is not None:
            options["password"] = password_file.read_text(encoding="utf-8").strip()
        if tls_ca is not None:
            options["ssl_ca_certs"] = str(tls_ca)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            **options,
        )
        self._client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))

    async def get(self, key: bytes) -> bytes | None:
        value = await asyncio.wait_for(
            self._client.get(KEY_PREFIX + key.hex().encode()), self.timeout
        )
        return value if value is None else bytes(value)

    async def put(self, key: bytes, value: bytes) -> None:
        await asyncio.wait_for(
            self._client.set(KEY_PREFIX + key.hex().encode(), value, px=self.ttl_ms), self.timeout
        )

    async def close(self) -> None:
        await self._client.aclose()
        await self._client.connection_pool.disconnect()
