"""An in-process LRU of cached responses, bounded by the bytes it holds (keys and values).

Runs on the event loop only, so it needs no lock; its methods never await, which keeps a hit
from yielding the loop between a request's validation and its answer.
"""

from __future__ import annotations

from collections import OrderedDict


class LocalStore:
    kind = "local"

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError(
                f"cache size: expected a positive number of bytes, got {capacity_bytes}"
            )
        self.capacity = capacity_bytes
        self.bytes = 0  # len(key) + len(value) over the entries held
        self.evictions = 0
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[bytes]:
        """Least recently used first."""
        return list(self._entries)

    async def get(self, key: bytes) -> bytes | None:
        return self.lookup(key)

    async def put(self, key: bytes, value: bytes) -> None:
        self.insert(key, value)

    def lookup(self, key: bytes) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def insert(self, key: bytes, value: bytes) -> bool:
        """Stores the entry, evicting the least recently used ones until it fits; an entry larger
        than the whole cache is not stored (False)."""
        size = len(key) + len(value)
        if size > self.capacity:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old)
        while self.bytes + size > self.capacity:
            evicted, evicted_value = self._entries.popitem(last=False)
            self.bytes -= len(evicted) + len(evicted_value)
            self.evictions += 1
        self._entries[key] = value
        self.bytes += size
        return True

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0
