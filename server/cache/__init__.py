"""The response cache: identical requests answered without running the model.

  key.py             what makes two requests the same: a BLAKE2b-256 digest
  value.py           a response's outputs as one bytes object, and back
  local.py           the in-process LRU bounded by bytes (--cache local)
  redis_store.py     Redis shared by replicas (--cache redis://HOST:PORT/DB)
  response_cache.py  ResponseCache (guards the store) and VersionCache (one model version's view)

Hooked into ModelVersion.infer after validation and before the scheduler's queue, so every
frontend gets it and a hit takes no queue slot and no execution. It never sees a transport.
"""

from server.cache.local import LocalStore
from server.cache.response_cache import (
    CacheCounters,
    CacheObserver,
    ResponseCache,
    Store,
    VersionCache,
)

__all__ = [
    "CacheCounters",
    "CacheObserver",
    "LocalStore",
    "ResponseCache",
    "Store",
    "VersionCache",
]
