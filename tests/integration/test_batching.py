"""The dynamic batcher through the real server and tritonclient: rows, deadlines, queue, errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc.aio as triton_aio
import yaml
from onnx import helper, numpy_helper
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from tests.harness import ServerProcess
from tests.models import build_double, build_slow, make_model, tensor, tensor_config, write_model

GATHER_TABLE = np.array([10, 20, 30, 40], dtype=np.float32)


def build_slow_rows(repo: Path, name: str, milliseconds: float) -> None:
    """build_slow plus ROWS (INT64 [1]): every row holds the row count of the batch it ran in."""
    config = {"dynamic_batching": {"max_queue_delay_microseconds": 0}}
    model_dir = build_slow(repo, name, config=config, milliseconds=milliseconds)
    model = onnx.load(model_dir / "1" / "model.onnx")
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "rows_one"))
    graph.node.extend(
        [
            helper.make_node("Shape", ["INPUT0"], ["rows_count"], start=0, end=1),
            helper.make_node("Concat", ["rows_count", "rows_one"], ["rows_shape"], axis=0),
            helper.make_node("Expand", ["rows_count", "rows_shape"], ["ROWS"]),
        ]
    )
    graph.output.append(tensor("ROWS", "INT64", [1]))
    outputs = [tensor_config("OUTPUT0", "FP32", [-1]), tensor_config("ROWS", "INT64", [1])]
    config = yaml_config(model_dir) | {"outputs": outputs}
    write_model(repo, name, 1, model, config)


def build_gather(repo: Path) -> None:
    """OUTPUT0 = table[INDEX]; an index outside 0..3 makes onnxruntime fail at run time."""
    model = make_model(
        [helper.make_node("Gather", ["table", "INDEX"], ["OUTPUT0"], axis=0)],
        [tensor("INDEX", "INT64", [1])],
        [tensor("OUTPUT0", "FP32", [1])],
        [numpy_helper.from_array(GATHER_TABLE, "table")],
        "gather",
    )
    config = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": [tensor_config("INDEX", "INT64", [1])],
        "outputs": [tensor_config("OUTPUT0", "FP32", [1])],
        "dynamic_batching": {"max_queue_delay_microseconds": 0},
    }
    write_model(repo, "gather", 1, model, config)


def yaml_config(model_dir: Path) -> dict:
    return yaml.safe_load((model_dir / "config.yaml").read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("batching_repository")
    build_double(repo, config={"instance_group": {"count": 2}})
    # Long enough that a 0.3 s deadline passes while a request waits behind a running one, even
    # on a machine a few times faster than the one build_slow was measured on.
    build_slow_rows(repo, "slow_rows", milliseconds=1500)
    build_slow(
        repo,
        "small_queue",
        milliseconds=600,
        config={"dynamic_batching": {"max_queue_delay_microseconds": 0, "max_queue_size": 2}},
    )
    build_gather(repo)
    process = ServerProcess(repo, log_dir=tmp_path_factory.mktemp("batching_logs"))
    process.start()
    yield process
    process.stop()


def infer_input(name: str, array: np.ndarray) -> InferInput:
    datatype = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}[array.dtype]
    tensor_input = InferInput(name, list(array.shape), datatype)
    tensor_input.set_data_from_numpy(array)
    return tensor_input


def run(server: ServerProcess, scenario) -> object:
    async def main() -> object:
        client = triton_aio.InferenceServerClient(server.address)
        try:
            return await scenario(client)
        finally:
            await client.close()

    return asyncio.run(main())


def test_concurrent_requests_of_mixed_sizes_get_their_own_rows(server: ServerProcess) -> None:
    rng = random.Random(7)
    output_choices = [None, ["OUTPUT0"], ["ID_OUT"], ["ID_OUT", "OUTPUT0"]]
    specs = [
        (rid, rng.randint(1, 8), rng.choice([3, 5]), rng.choice(output_choices))
        for rid in range(80)
    ]

    async def one(client, rid: int, rows: int, width: int, outputs) -> None:
        values = np.arange(rows * width, dtype=np.float32).reshape(rows, width) + rid * 1000
        ids = np.full((rows, 1), rid, dtype=np.int64)
        requested = [InferRequestedOutput(n) for n in outputs] if outputs else None
        await asyncio.sleep(rng.random() * 0.02)
        result = await client.infer(
            "double",
            [infer_input("INPUT0", values), infer_input("ID", ids)],
            outputs=requested,
            request_id=str(rid),
        )
        names = [o["name"] for o in result.get_response(as_json=True)["outputs"]]
        assert names == (outputs or ["OUTPUT0", "ID_OUT"])
        if "OUTPUT0" in names:
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), values * 2)
        if "ID_OUT" in names:
            np.testing.assert_array_equal(result.as_numpy("ID_OUT"), ids)
        assert result.get_response().id == str(rid)

    async def scenario(client) -> None:
        await asyncio.gather(*(one(client, *spec) for spec in specs))

    run(server, scenario)


def slow_input(rows: int = 1) -> list[InferInput]:
    return [infer_input("INPUT0", np.full((rows, 3), 0.5, dtype=np.float32))]


async def expect_error(request: Awaitable[object], code: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        await request
    assert caught.value.status() == f"StatusCode.{code}", caught.value.message()
    return caught.value.message()


def test_queued_requests_are_dropped_on_deadline_timeout_or_cancel(server: ServerProcess) -> None:
    async def scenario(client) -> None:
        def send(**kwargs) -> asyncio.Future:
            return asyncio.ensure_future(client.infer("slow_rows", slow_input(), **kwargs))

        first = send()
        await asyncio.sleep(0.5)  # the first request is running now, for about 1.5 s
        by_grpc_deadline = send(client_timeout=0.3)
        by_parameter = send(timeout=300_000)
        cancelled = send()
        await asyncio.sleep(0.1)
        cancelled.cancel()
        last = send()
        await expect_error(by_grpc_deadline, "DEADLINE_EXCEEDED")
        message = await expect_error(by_parameter, "DEADLINE_EXCEEDED")
        assert "timed out after waiting in the queue" in message  # the server's answer
        assert (await first).as_numpy("ROWS").tolist() == [[1]]
        # Had any of the three stayed queued, it would have shared the last one's batch.
        assert (await last).as_numpy("ROWS").tolist() == [[1]]

    run(server, scenario)


def test_full_queue_answers_resource_exhausted(server: ServerProcess) -> None:
    async def scenario(client) -> None:
        first = asyncio.ensure_future(client.infer("small_queue", slow_input()))
        await asyncio.sleep(0.3)  # running
        queued = [asyncio.ensure_future(client.infer("small_queue", slow_input())) for _ in "ab"]
        await asyncio.sleep(0.1)
        message = await expect_error(
            client.infer("small_queue", slow_input()), "RESOURCE_EXHAUSTED"
        )
        assert "queue is full" in message
        for request in [first, *queued]:
            np.testing.assert_array_equal((await request).as_numpy("OUTPUT0"), np.full((1, 3), 0.5))
        await client.infer("small_queue", slow_input())  # room again

    run(server, scenario)


def test_runtime_failure_answers_internal_and_the_server_keeps_serving(
    server: ServerProcess,
) -> None:
    async def scenario(client) -> None:
        bad = np.array([[1], [7]], dtype=np.int64)
        message = await expect_error(
            client.infer("gather", [infer_input("INDEX", bad)]), "INTERNAL"
        )
        assert "indices element out of data bounds, idx=7" in message
        good = np.array([[3], [0]], dtype=np.int64)
        result = await client.infer("gather", [infer_input("INDEX", good)])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [[40.0], [10.0]])
        assert await client.is_server_ready()
        assert await client.is_model_ready("gather")

    run(server, scenario)
