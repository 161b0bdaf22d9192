"""The clients package against the real server: every call, sync and asyncio, and streaming."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from clients import (
    AsyncInferenceServerClient,
    InferenceServerClient,
    InferenceServerError,
    StreamRequest,
)
from tests.harness import ServerProcess
from tests.models import build_add_constant, build_double, build_identity, build_slow

MODELS = ["double", "identity_bytes", "slow", "spare", "versioned"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_module_server) -> ServerProcess:
    repo = tmp_path_factory.mktemp("clients-repo")
    build_double(repo)
    build_identity(repo, datatype="BYTES")
    build_slow(repo, milliseconds=500, config={"dynamic_batching": None})
    build_add_constant(repo, "spare", addend=5.0)
    for version in (1, 2):
        config = {"version_policy": {"all": True}}
        build_add_constant(repo, "versioned", version, config, addend=float(version))
    # Explicit mode lets the tests unload and load; shutdown need not wait for `slow`.
    args = ["--model-control-mode", "explicit", "--load-model", "*", "--shutdown-timeout", "1"]
    return start_module_server(repo, *args)


@pytest.fixture(scope="module")
def client(server: ServerProcess):
    with InferenceServerClient(server.address, timeout=30) as client:
        yield client


def double_inputs(values: list[float], id: int = 0) -> dict[str, np.ndarray]:
    return {
        "INPUT0": np.array([values], np.float32),
        "ID": np.array([[id]], np.int64),
    }


# --- synchronous client --------------------------------------------------------------------


def test_health_and_metadata(client: InferenceServerClient) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.is_model_ready("double") is True
    assert client.is_model_ready("versioned", "2") is True
    assert client.is_model_ready("no_such_model") is False

    metadata = client.server_metadata()
    assert metadata["name"] == "onnxserve"
    assert "model_configuration" in metadata["extensions"]

    model = client.model_metadata("double")
    assert (model["name"], model["versions"], model["platform"]) == (
        "double",
        ["1"],
        "onnxruntime_onnx",
    )
    assert model["inputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "ID", "datatype": "INT64", "shape": [-1, 1]},
    ]
    assert [o["name"] for o in model["outputs"]] == ["OUTPUT0", "ID_OUT"]

    config = client.model_config("double")
    assert config["name"] == "double"
    assert config["max_batch_size"] == 8
    assert config["input"][0] == {"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 1000


def test_infer_returns_numpy_outputs(client: InferenceServerClient) -> None:
    outputs = client.infer("double", double_inputs([1.5, -2.0, 3.0], id=42))
    assert list(outputs) == ["OUTPUT0", "ID_OUT"]
    np.testing.assert_array_equal(outputs["OUTPUT0"], np.array([[3.0, -4.0, 6.0]], np.float32))
    assert outputs["OUTPUT0"].dtype == np.float32
    assert outputs["ID_OUT"].tolist() == [[42]]

    only = client.infer("double", double_inputs([1.0]), outputs=["ID_OUT"])
    assert list(only) == ["ID_OUT"]


def test_infer_bytes_and_versions(client: InferenceServerClient) -> None:
    texts = np.array([["hello", "", "grüße"]], dtype=object)
    outputs = client.infer("identity_bytes", {"INPUT0": texts})
    assert outputs["OUTPUT0"].tolist() == [[b"hello", b"", "grüße".encode()]]

    x = {"INPUT0": np.array([[10.0]], np.float32)}
    assert client.infer("versioned", x, version="1")["OUTPUT0"].tolist() == [[11.0]]
    assert client.infer("versioned", x, version="2")["OUTPUT0"].tolist() == [[12.0]]


def test_errors_carry_status_code_and_server_message(
    client: InferenceServerClient, server: ServerProcess
) -> None:
    with pytest.raises(InferenceServerError) as raised:
        client.infer("no_such_model", double_inputs([1.0]))
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.message == "unknown model 'no_such_model'"
    assert str(raised.value) == "NOT_FOUND: unknown model 'no_such_model'"

    with pytest.raises(InferenceServerError) as raised:
        client.infer("double", {"INPUT0": np.ones((1, 2), np.float64), "ID": np.ones((1, 1))})
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "INPUT0" in raised.value.message and "FP64" in raised.value.message

    with pytest.raises(InferenceServerError) as raised:
        client.model_metadata("versioned", "7")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_per_call_timeout(client: InferenceServerClient) -> None:
    with pytest.raises(InferenceServerError) as raised:
        client.infer("slow", {"INPUT0": np.ones((1, 4), np.float32)}, timeout=0.1)
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_unreachable_server_is_unavailable() -> None:
    with InferenceServerClient("127.0.0.1:1") as client:
        with pytest.raises(InferenceServerError) as raised:
            client.is_server_live(timeout=10)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_statistics(client: InferenceServerClient) -> None:
    client.infer("spare", {"INPUT0": np.ones((1, 2), np.float32)})
    stats = client.model_statistics("spare")
    assert [(s["name"], s["version"]) for s in stats] == [("spare", "1")]
    assert stats[0]["inference_count"] >= 1
    assert stats[0]["inference_stats"]["success"]["count"] >= 1


def test_repository_index_unload_and_load(client: InferenceServerClient) -> None:
    index = {m["name"]: m for m in client.repository_index()}
    assert sorted(index) == MODELS
    assert index["double"] == {"name": "double", "version": "1", "state": "READY", "reason": ""}

    client.unload_model("spare")
    assert client.is_model_ready("spare") is False
    states = {m["name"]: m["state"] for m in client.repository_index()}
    assert states["spare"] == "UNAVAILABLE"
    assert "spare" not in {m["name"] for m in client.repository_index(ready_only=True)}

    client.load_model("spare")
    assert client.is_model_ready("spare") is True
    x = {"INPUT0": np.array([[1.0]], np.float32)}
    assert client.infer("spare", x)["OUTPUT0"].tolist() == [[6.0]]


def test_stream_infer_matches_results_to_requests(client: InferenceServerClient) -> None:
    requests = [
        StreamRequest("double", double_inputs([float(i)], i), id=f"r{i}") for i in range(50)
    ]
    requests.insert(25, StreamRequest("no_such_model", double_inputs([0.0]), id="bad"))
    results = {r.id: r for r in client.stream_infer(requests)}
    assert sorted(results) == sorted(r.id for r in requests)
    bad = results.pop("bad")
    assert bad.outputs is None and bad.error is not None
    assert bad.error.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(InferenceServerError):
        bad.result()
    for i in range(50):
        result = results[f"r{i}"]
        assert (result.model, result.version, result.error) == ("double", "1", None)
        assert result.result()["OUTPUT0"].tolist() == [[2.0 * i]]


def test_stream_request_timeout_is_answered_in_band(client: InferenceServerClient) -> None:
    x = {"INPUT0": np.ones((1, 2), np.float32)}
    requests = [
        StreamRequest("slow", x, id="runs"),
        StreamRequest("slow", x, id="waits", timeout=0.1),
    ]
    results = {r.id: r for r in client.stream_infer(requests)}
    assert results["runs"].error is None
    assert results["waits"].error is not None
    assert results["waits"].error.code == grpc.StatusCode.DEADLINE_EXCEEDED


# --- asyncio client ------------------------------------------------------------------------


def test_async_client_calls(server: ServerProcess) -> None:
    async def main() -> None:
        async with AsyncInferenceServerClient(server.address, timeout=30) as client:
            assert await client.is_server_live() is True
            assert await client.is_server_ready() is True
            assert await client.is_model_ready("double") is True
            assert await client.is_model_ready("double", "9") is False
            assert (await client.server_metadata())["name"] == "onnxserve"
            assert (await client.model_metadata("double"))["versions"] == ["1"]
            assert (await client.model_config("double"))["max_batch_size"] == 8

            outputs = await client.infer("double", double_inputs([2.5], id=3))
            assert outputs["OUTPUT0"].tolist() == [[5.0]]
            assert outputs["ID_OUT"].tolist() == [[3]]

            with pytest.raises(InferenceServerError) as raised:
                await client.infer("no_such_model", double_inputs([1.0]))
            assert raised.value.code == grpc.StatusCode.NOT_FOUND
            with pytest.raises(InferenceServerError) as raised:
                await client.infer("slow", {"INPUT0": np.ones((1, 1), np.float32)}, timeout=0.1)
            assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED

            stats = await client.model_statistics("double")
            assert stats[0]["name"] == "double"
            index = await client.repository_index()
            assert sorted({m["name"] for m in index}) == MODELS
            await client.unload_model("spare")
            assert await client.is_model_ready("spare") is False
            await client.load_model("spare")
            assert await client.is_model_ready("spare") is True

    asyncio.run(main())


def test_async_stream_infer_iterates_results(server: ServerProcess) -> None:
    async def requests():
        for i in range(20):
            yield StreamRequest("double", double_inputs([float(i)], i), id=str(i))
            await asyncio.sleep(0)  # pacing: a yield between requests, the stream stays open

    async def main() -> dict[str, list]:
        async with AsyncInferenceServerClient(server.address) as client:
            results = client.stream_infer(requests())
            return {r.id: r.result()["OUTPUT0"].tolist() async for r in results}

    results = asyncio.run(main())
    assert results == {str(i): [[2.0 * i]] for i in range(20)}


def test_shared_stream_serves_many_coroutines(server: ServerProcess) -> None:
    async def main() -> None:
        async with AsyncInferenceServerClient(server.address) as client:
            async with client.stream() as stream:
                outputs = await asyncio.gather(
                    *(stream.infer("double", double_inputs([float(i)], i)) for i in range(200))
                )
                for i, out in enumerate(outputs):
                    assert out["OUTPUT0"].tolist() == [[2.0 * i]]
                    assert out["ID_OUT"].tolist() == [[i]]

                # A failed request raises for its caller only; the stream goes on.
                with pytest.raises(InferenceServerError) as raised:
                    await stream.infer("double", {"INPUT0": np.ones((1, 1), np.int32)})
                assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
                again = await stream.infer("double", double_inputs([21.0]), id="again")
                assert again["OUTPUT0"].tolist() == [[42.0]]

    asyncio.run(main())
