"""The local response cache in the real server: exact hits answered byte for byte, counted as
ModelStatistics and /metrics define them; bypass cases; no stale answers after a reload or a new
version; the byte bound and LRU eviction; and a model that asks for a cache the server lacks."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from server.cache.key import DIGEST_BYTES
from server.cache.value import encode_outputs
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests.harness import ServerProcess
from tests.integration.observability import scrape, value, wait_for_metric
from tests.integration.wire import infer_request, outputs_of
from tests.models import build_add_constant, build_slow, build_versioned

CACHE_ON = {"response_cache": {"enable": True}}
ROW = 4  # FP32 values per request


def one_row(x: float) -> np.ndarray:
    return np.full((1, ROW), x, dtype=np.float32)


# What one cached response of add_constant holds: the 32-byte key and the encoded outputs.
ENTRY_BYTES = DIGEST_BYTES + len(encode_outputs({"OUTPUT0": one_row(0.0)}))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("cache-local")
    build_add_constant(repository, "cached", addend=1.0, config=CACHE_ON)
    build_add_constant(repository, "plain", addend=1.0)
    build_add_constant(repository, "reloaded", addend=1.0, config=CACHE_ON)
    build_versioned(repository, "versioned", versions=(1,), config=CACHE_ON)
    return repository


@pytest.fixture(scope="module")
def server(start_module_server, repo: Path) -> ServerProcess:
    return start_module_server(
        repo, "--cache", "local", "--cache-size", "1M",
        "--model-control-mode", "explicit", "--load-model", "*",
    )  # fmt: skip


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.address) as client:
        yield client


def counts(client: triton.InferenceServerClient, model: str, version: str = "1") -> dict[str, int]:
    (s,) = client.get_inference_statistics(model, version, as_json=True)["model_stats"]
    infer: dict[str, Any] = s.get("inference_stats", {})
    return {
        "hits": int(infer.get("cache_hit", {}).get("count", 0)),
        "misses": int(infer.get("cache_miss", {}).get("count", 0)),
        "executions": int(s.get("execution_count", 0)),
        "inferences": int(s.get("inference_count", 0)),
        "queued": int(infer.get("queue", {}).get("count", 0)),
    }


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before}


def infer(stub: pb_grpc.GRPCInferenceServiceStub, model: str, x: float, **kw: Any) -> float:
    response = stub.ModelInfer(infer_request(model, {"INPUT0": one_row(x)}, **kw), timeout=30)
    (out,) = outputs_of(response).values()
    assert np.all(out == out.flat[0])
    return float(out.flat[0])


def test_a_repeated_request_is_answered_from_the_cache_byte_for_byte(stub, client) -> None:
    before = counts(client, "cached")
    request = infer_request("cached", {"INPUT0": one_row(10.5)}, request_id="first")
    fresh = stub.ModelInfer(request, timeout=30)
    request.id = "second"
    cached = stub.ModelInfer(request, timeout=30)
    assert (fresh.id, cached.id) == ("first", "second")
    assert outputs_of(cached)["OUTPUT0"].tolist() == [[11.5] * ROW]
    fresh.id = cached.id = ""
    assert cached.SerializeToString() == fresh.SerializeToString()
    # Triton's meanings: one miss (lookup + store), one hit; the hit neither queued nor ran.
    assert delta(before, counts(client, "cached")) == {
        "hits": 1, "misses": 1, "executions": 1, "inferences": 1, "queued": 1,
    }  # fmt: skip


def test_stream_requests_share_the_cache_with_unary_ones(stub, client) -> None:
    before = counts(client, "cached")
    request = infer_request("cached", {"INPUT0": one_row(15.0)})
    unary = stub.ModelInfer(request, timeout=30)
    answers = list(stub.ModelStreamInfer(iter([request, request]), timeout=30))
    assert [a.error_message for a in answers] == ["", ""]
    assert [a.infer_response.SerializeToString() for a in answers] == [
        unary.SerializeToString()
    ] * 2
    assert delta(before, counts(client, "cached")) == {
        "hits": 2, "misses": 1, "executions": 1, "inferences": 1, "queued": 1,
    }  # fmt: skip


def test_requested_outputs_and_inputs_are_part_of_the_key(stub, client) -> None:
    before = counts(client, "cached")
    assert infer(stub, "cached", 20.0) == 21.0
    assert infer(stub, "cached", 20.0, outputs=["OUTPUT0"]) == 21.0  # another key
    assert infer(stub, "cached", 20.25) == 21.25
    assert infer(stub, "cached", 20.0, outputs=["OUTPUT0"]) == 21.0  # now a hit
    assert delta(before, counts(client, "cached"))["hits"] == 1
    assert delta(before, counts(client, "cached"))["misses"] == 3


def test_sequence_requests_and_uncached_models_always_run(stub, client) -> None:
    before = counts(client, "cached")
    for _ in range(2):
        request = infer_request("cached", {"INPUT0": one_row(30.0)})
        request.parameters["sequence_id"].int64_param = 7
        assert outputs_of(stub.ModelInfer(request, timeout=30))["OUTPUT0"][0, 0] == 31.0
    assert delta(before, counts(client, "cached")) == {
        "hits": 0, "misses": 0, "executions": 2, "inferences": 2, "queued": 2,
    }  # fmt: skip
    plain = counts(client, "plain")
    assert [infer(stub, "plain", 30.0) for _ in range(2)] == [31.0, 31.0]
    assert delta(plain, counts(client, "plain"))["executions"] == 2
    assert counts(client, "plain")["hits"] == counts(client, "plain")["misses"] == 0


def test_a_reload_with_a_new_model_file_never_answers_from_the_old_entries(
    stub, client, repo: Path
) -> None:
    assert [infer(stub, "reloaded", 40.0) for _ in range(2)] == [41.0, 41.0]
    before = counts(client, "reloaded")
    build_add_constant(repo, "reloaded", addend=5.0, config=CACHE_ON)
    client.load_model("reloaded")
    assert infer(stub, "reloaded", 40.0) == 45.0
    assert infer(stub, "reloaded", 40.0) == 45.0
    assert delta(before, counts(client, "reloaded"))["misses"] == 1
    assert delta(before, counts(client, "reloaded"))["hits"] == 1


def test_a_new_version_never_answers_from_the_previous_one(stub, client, repo: Path) -> None:
    assert [infer(stub, "versioned", 50.0) for _ in range(2)] == [51.0, 51.0]
    build_versioned(repo, "versioned", versions=(2,), config=CACHE_ON)
    client.load_model("versioned")
    assert infer(stub, "versioned", 50.0) == 52.0  # version 2 adds 2
    assert counts(client, "versioned", "2") == {
        "hits": 0, "misses": 1, "executions": 1, "inferences": 1, "queued": 1,
    }  # fmt: skip


def test_metrics_count_what_the_statistics_count(server: ServerProcess, stub, client) -> None:
    infer(stub, "cached", 60.0)
    infer(stub, "cached", 60.0)
    samples = scrape(server.metrics_port)
    stats = counts(client, "cached")
    assert (
        value(samples, "onnxserve_cache_hits_total", model="cached", version="1") == stats["hits"]
    )
    assert (
        value(samples, "onnxserve_cache_misses_total", model="cached", version="1")
        == stats["misses"]
    )
    assert value(samples, "onnxserve_cache_hits_total", model="plain", version="1") == 0
    assert value(samples, "onnxserve_cache_errors_total", cache="local") == 0
    assert value(samples, "onnxserve_cache_evictions_total", cache="local") == 0
    entries = value(samples, "onnxserve_cache_entries", cache="local")
    assert entries is not None and entries >= 1
    assert value(samples, "onnxserve_cache_bytes", cache="local") == entries * ENTRY_BYTES


def test_the_byte_bound_evicts_the_least_recently_used(start_server, tmp_path: Path) -> None:
    build_add_constant(tmp_path, "cached", addend=1.0, config=CACHE_ON)
    server = start_server(tmp_path, "--cache", "local", "--cache-size", str(2 * ENTRY_BYTES))
    with (
        grpc.insecure_channel(server.address) as channel,
        triton.InferenceServerClient(server.address) as client,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for x in (1.0, 2.0, 1.0, 3.0):  # 3.0 evicts 2.0, the least recently used
            infer(stub, "cached", x)
        samples = scrape(server.metrics_port)
        assert value(samples, "onnxserve_cache_evictions_total", cache="local") == 1
        assert value(samples, "onnxserve_cache_entries", cache="local") == 2
        assert value(samples, "onnxserve_cache_bytes", cache="local") == 2 * ENTRY_BYTES
        before = counts(client, "cached")
        assert [infer(stub, "cached", x) for x in (1.0, 3.0, 2.0)] == [2.0, 4.0, 3.0]
        assert delta(before, counts(client, "cached"))["hits"] == 2  # 2.0 was evicted


def test_a_hit_takes_no_queue_slot(start_server, tmp_path: Path) -> None:
    """With the queue full, a miss is refused and a hit is still answered."""
    batching = {"max_queue_delay_microseconds": 0, "max_queue_size": 1}
    build_slow(tmp_path, milliseconds=1000, config={"dynamic_batching": batching, **CACHE_ON})
    server = start_server(tmp_path, "--cache", "local")
    port = server.metrics_port
    with (
        grpc.insecure_channel(server.address) as channel,
        ThreadPoolExecutor(2) as pool,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def call(x: float, timeout: float = 60) -> pb.ModelInferResponse:
            return stub.ModelInfer(infer_request("slow", {"INPUT0": one_row(x)}), timeout=timeout)

        stored = call(1.0)  # a miss: runs, then is stored
        running = pool.submit(call, 2.0)
        wait_for_metric(port, "onnxserve_executions_in_flight", 1, model="slow", version="1")
        queued = pool.submit(call, 3.0)
        wait_for_metric(port, "onnxserve_queue_depth", 1, model="slow", version="1")
        with pytest.raises(grpc.RpcError) as refused:
            call(4.0)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        hit = call(1.0, timeout=30)
        assert hit.SerializeToString() == stored.SerializeToString()
        assert value(scrape(port), "onnxserve_queue_depth", model="slow", version="1") == 1
        assert [f.result().raw_output_contents for f in (running, queued)] == [
            [one_row(2.0).tobytes()],
            [one_row(3.0).tobytes()],
        ]


@pytest.mark.server_errors("needs a response cache on the server")
def test_a_model_that_asks_for_the_cache_fails_to_load_without_one(
    start_server, tmp_path: Path
) -> None:
    build_add_constant(tmp_path, "cached", addend=1.0, config=CACHE_ON)
    build_add_constant(tmp_path, "plain", addend=1.0)
    server = start_server(tmp_path, "--strict-readiness", "false")
    with triton.InferenceServerClient(server.address) as client:
        assert client.is_model_ready("plain")
        assert not client.is_model_ready("cached")
        index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index["cached"]["state"] == "UNAVAILABLE"
    assert index["cached"]["reason"] == (
        f"{tmp_path / 'cached' / 'config.yaml'}: response_cache.enable: true needs a response"
        " cache on the server; start it with --cache local or --cache redis://HOST:PORT/DB"
    )
