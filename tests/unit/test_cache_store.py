"""The local LRU against a reference model, and ResponseCache's guard around a failing store."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.cache import LocalStore, ResponseCache
from server.errors import ConfigError
from server.inference import InferenceRequest
from server.model_config import ModelConfig, ResponseCacheConfig

CACHED = ModelConfig(name="m", response_cache=ResponseCacheConfig(enable=True))

operations = st.lists(
    st.tuples(
        st.sampled_from(["insert", "lookup"]),
        st.binary(min_size=1, max_size=3),  # few distinct keys: hits, updates and evictions
        st.integers(min_value=0, max_value=40),  # value size
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(min_value=1, max_value=120), ops=operations)
def test_the_lru_matches_a_reference_and_never_holds_more_than_its_bytes(
    capacity: int, ops: list[tuple[str, bytes, int]]
) -> None:
    store = LocalStore(capacity)
    model: OrderedDict[bytes, bytes] = OrderedDict()  # least recently used first
    evictions = 0
    for op, key, size in ops:
        if op == "lookup":
            expected = model.get(key)
            if expected is not None:
                model.move_to_end(key)
            assert store.lookup(key) == expected
            continue
        value = bytes([len(model) % 256]) * size
        stored = store.insert(key, value)
        assert stored == (len(key) + size <= capacity)
        if not stored:
            continue
        model.pop(key, None)
        while sum(len(k) + len(v) for k, v in model.items()) + len(key) + size > capacity:
            model.popitem(last=False)
            evictions += 1
        model[key] = value
        assert store.bytes <= capacity
    assert store.keys() == list(model)
    assert store.bytes == sum(len(k) + len(v) for k, v in model.items())
    assert store.evictions == evictions


def test_eviction_takes_the_least_recently_used_first() -> None:
    store = LocalStore(30)
    for key in (b"a", b"b", b"c"):
        store.insert(key, b"x" * 9)  # 10 bytes each: full
    assert store.lookup(b"a") == b"x" * 9  # a becomes the most recent
    store.insert(b"d", b"y" * 9)
    assert store.keys() == [b"c", b"a", b"d"]
    assert (store.evictions, store.bytes, len(store)) == (1, 30, 3)


# --- the guard ------------------------------------------------------------------------------


class FlakyStore:
    """A store that fails while `down` is set; counts the calls that reached it."""

    kind = "flaky"

    def __init__(self) -> None:
        self.inner = LocalStore(1 << 20)
        self.down = False
        self.calls = 0

    async def get(self, key: bytes) -> bytes | None:
        self.calls += 1
        if self.down:
            raise ConnectionError("connection refused")
        return await self.inner.get(key)

    async def put(self, key: bytes, value: bytes) -> None:
        self.calls += 1
        if self.down:
            raise TimeoutError()
        await self.inner.put(key, value)

    async def close(self) -> None:
        pass


class Counts:
    def __init__(self) -> None:
        self.hits: list[float] = []
        self.misses: list[float] = []

    def on_cache_hit(self, seconds: float) -> None:
        self.hits.append(seconds)

    def on_cache_miss(self, seconds: float) -> None:
        self.misses.append(seconds)


def make_request(value: float = 1.0, **changes: object) -> InferenceRequest:
    inputs = {"A": np.full((1, 2), value, dtype=np.float32)}
    return InferenceRequest(model_name="m", model_version="", inputs=inputs, **changes)  # type: ignore[arg-type]


class Model:
    """What ModelVersion.infer hands the cache: a run that counts executions."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, request: InferenceRequest) -> dict[str, np.ndarray]:
        self.runs += 1
        return {"OUT": request.inputs["A"] * 2}


def test_hits_skip_the_run_and_are_counted_as_the_protocol_defines() -> None:
    counts, model = Counts(), Model()
    cache = ResponseCache(LocalStore(1 << 20), lambda name, version: counts)
    version = cache.for_version(CACHED, 1, b"f")
    assert version is not None

    async def scenario() -> list[dict[str, np.ndarray]]:
        return [await version.infer(make_request(v), model.run) for v in (1.0, 1.0, 2.0, 1.0)]

    results = asyncio.run(scenario())
    assert model.runs == 2
    assert (len(counts.hits), len(counts.misses)) == (2, 2)
    assert [r["OUT"].tolist() for r in results] == [[[2.0, 2.0]]] * 2 + [[[4.0, 4.0]]] + [
        [[2.0, 2.0]]
    ]


def test_bypassed_requests_run_every_time_and_count_neither() -> None:
    counts, model = Counts(), Model()
    version = ResponseCache(LocalStore(1 << 20), lambda n, v: counts).for_version(CACHED, 1, b"")
    assert version is not None

    async def scenario() -> None:
        for _ in range(2):
            await version.infer(make_request(parameters={"sequence_id": 1}), model.run)

    asyncio.run(scenario())
    assert model.runs == 2 and counts.hits == counts.misses == []


def test_a_failing_store_is_skipped_then_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    store, counts, model = FlakyStore(), Counts(), Model()
    now = [100.0]
    cache = ResponseCache(
        store, lambda n, v: counts, retry_seconds=1, warn_seconds=30, clock=lambda: now[0]
    )
    version = cache.for_version(CACHED, 1, b"")
    assert version is not None

    async def infer() -> dict[str, np.ndarray]:
        return await version.infer(make_request(), model.run)

    store.down = True
    with caplog.at_level(logging.WARNING, logger="server.cache.response_cache"):
        results = [asyncio.run(infer()) for _ in range(5)]
    assert all(r["OUT"].tolist() == [[2.0, 2.0]] for r in results)
    assert model.runs == 5
    assert store.calls == 1  # the first failure rests the store for retry_seconds
    assert cache.errors == 1 and cache.counters().errors == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [
        "response cache (flaky): 1 failure(s), the last: ConnectionError: connection refused;"
        " serving without the cache, trying it again every 1.0s"
    ]
    # Still down when the rest ends: one more call, one more error, no second warning yet.
    now[0] += 1.5
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="server.cache.response_cache"):
        asyncio.run(infer())
    assert (store.calls, cache.errors, caplog.records) == (2, 2, [])
    # Back up, and the rest is over: the miss is stored, and the next request is a hit.
    store.down = False
    now[0] += 1.5
    asyncio.run(infer())
    asyncio.run(infer())
    assert model.runs == 7 and len(counts.hits) == 1


def test_a_model_that_asks_for_the_cache_needs_one_on_the_server() -> None:
    with pytest.raises(ConfigError) as caught:
        ResponseCache().check(CACHED, "repo/m/config.yaml")
    assert str(caught.value) == (
        "repo/m/config.yaml: response_cache.enable: true needs a response cache on the server;"
        " start it with --cache local or --cache redis://HOST:PORT/DB"
    )
    ResponseCache().check(ModelConfig(name="m"), "x")  # not asked for: fine
    assert ResponseCache(LocalStore(10)).for_version(ModelConfig(name="m"), 1, b"") is None


def test_an_unloading_version_waits_for_requests_in_a_lookup_to_reach_the_queue() -> None:
    """A Redis lookup suspends; the version must not stop taking requests under it."""
    order: list[str] = []

    class GatedStore(LocalStore):
        async def get(self, key: bytes) -> bytes | None:
            entered.set()
            await gate.wait()
            return None

    async def run(request: InferenceRequest) -> dict[str, np.ndarray]:
        order.append("queued")
        return {"OUT": request.inputs["A"]}

    async def unload() -> None:
        await version.settle(timeout=30)
        order.append("settled")

    async def scenario() -> None:
        request = asyncio.create_task(version.infer(make_request(), run))
        await entered.wait()
        unloading = asyncio.create_task(unload())
        await asyncio.sleep(0)  # one loop turn: settle() starts waiting (the gate orders events)
        assert order == []
        gate.set()
        await asyncio.gather(request, unloading)

    entered, gate = asyncio.Event(), asyncio.Event()
    version = ResponseCache(GatedStore(1 << 20)).for_version(CACHED, 1, b"")
    assert version is not None
    asyncio.run(scenario())
    assert order == ["queued", "settled"]
