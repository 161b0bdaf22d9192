"""The dynamic batcher through the real server and tritonclient: rows, deadlines, queue, errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from tests.harness import ServerProcess
from tests.integration import observability
from tests.models import (
    SLOW_MICROSECONDS_PER_ITERATION,
    build_double,
    make_model,
    tensor,
    tensor_config,
    write_model,
)

GATHER_TABLE = np.array([10, 20, 30, 40], dtype=np.float32)
LONG_MS = 2000.0  # the request that keeps the instance busy; 3 times faster still takes 0.67 s


def build_busy(repo: Path, name: str, dynamic_batching: dict, max_batch_size: int = 8) -> None:
    """OUTPUT0 = INPUT0 after about max(INPUT0) milliseconds of work; ROWS (INT64 [1]) holds, in
    every row, the row count of the batch the request ran in.

    The work is build_slow's loop of MatMul + Tanh steps, its trip count taken from the input,
    so one request can hold the instance for seconds while the others take a millisecond.
    """
    rows, width = 16, 128
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["state_in", "weights"], ["product"]),
            helper.make_node("Tanh", ["product"], ["state_out"]),
        ],
        "busy_body",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [rows, width]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [rows, width]),
        ],
    )
    nodes = [
        helper.make_node("ReduceMax", ["INPUT0"], ["most_ms"], keepdims=0),
        helper.make_node("Mul", ["most_ms", "iterations_per_ms"], ["iterations_f"]),
        helper.make_node("Cast", ["iterations_f"], ["iterations"], to=TensorProto.INT64),
        helper.make_node("Shape", ["INPUT0"], ["rows_count"], start=0, end=1),
        helper.make_node("Cast", ["rows_count"], ["rows_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["rows_f", "start_scale"], ["start_value"]),
        helper.make_node("Expand", ["start_value", "state_shape"], ["start_state"]),
        helper.make_node("Loop", ["iterations", "true", "start_state"], ["end_state"], body=body),
        helper.make_node("ReduceSum", ["end_state"], ["total"], keepdims=0),
        # tanh keeps |total| <= rows * width: OUTPUT0 is INPUT0, but only after the loop.
        helper.make_node("Greater", ["total", "never"], ["impossible"]),
        helper.make_node("Where", ["impossible", "zero", "INPUT0"], ["OUTPUT0"]),
        helper.make_node("Concat", ["rows_count", "one"], ["rows_shape"], axis=0),
        helper.make_node("Expand", ["rows_count", "rows_shape"], ["ROWS"]),
    ]
    rng = np.random.default_rng(0)
    constants = {
        "iterations_per_ms": np.array(1000 / SLOW_MICROSECONDS_PER_ITERATION, np.float32),
        "true": np.array(True),
        "start_scale": np.array(0.01, np.float32),
        "state_shape": np.array([rows, width], np.int64),
        "weights": rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32),
        "never": np.array(2.0 * rows * width, np.float32),
        "zero": np.array(0, np.float32),
        "one": np.array([1], np.int64),
    }
    model = make_model(
        nodes,
        [tensor("INPUT0", "FP32", [1])],
        [tensor("OUTPUT0", "FP32", [1]), tensor("ROWS", "INT64", [1])],
        [numpy_helper.from_array(value, key) for key, value in constants.items()],
        name,
    )
    config = {
        "backend": "onnxruntime",
        "max_batch_size": max_batch_size,
        "inputs": [tensor_config("INPUT0", "FP32", [1])],
        "outputs": [tensor_config("OUTPUT0", "FP32", [1]), tensor_config("ROWS", "INT64", [1])],
        "session": {"intra_op_num_threads": 1},
        "dynamic_batching": dynamic_batching,
    }
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


@pytest.fixture(scope="module")
def server(
    start_module_server: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("batching_repository")
    build_double(repo, config={"instance_group": {"count": 2}})
    build_busy(repo, "busy", {"max_queue_delay_microseconds": 0})
    build_busy(repo, "busy_small_queue", {"max_queue_size": 2}, max_batch_size=1)
    build_gather(repo)
    return start_module_server(repo)


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
        await asyncio.sleep(rng.random() * 0.02)  # pacing: spreads the arrivals over batches
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


def busy_input(milliseconds: float = 0.0) -> list[InferInput]:
    return [infer_input("INPUT0", np.array([[milliseconds]], dtype=np.float32))]


async def expect_error(request: Awaitable[object], code: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        await request
    assert caught.value.status() == f"StatusCode.{code}", caught.value.message()
    return caught.value.message()


async def wait_held(server: ServerProcess, model: str, queued: int, running: int = 1) -> None:
    await asyncio.to_thread(observability.wait_held, server.metrics_port, model, queued, running)


def test_queued_requests_are_dropped_on_deadline_timeout_or_cancel(server: ServerProcess) -> None:
    # Each drop is seen in the server's own queue gauge while the first request still runs
    # (running stays 1), so neither the client's deadline nor a finished run can satisfy it.
    async def scenario(client) -> None:
        def send(milliseconds: float = 0.0, **kwargs) -> asyncio.Future:
            return asyncio.ensure_future(client.infer("busy", busy_input(milliseconds), **kwargs))

        first = send(1.5 * LONG_MS)  # long enough for the five waits below
        await wait_held(server, "busy", queued=0)
        cancelled = send()
        await wait_held(server, "busy", queued=1)
        cancelled.cancel()
        await wait_held(server, "busy", queued=0)
        by_grpc_deadline = send(client_timeout=0.3)
        await expect_error(by_grpc_deadline, "DEADLINE_EXCEEDED")
        await wait_held(server, "busy", queued=0)
        by_parameter = send(timeout=200_000)
        message = await expect_error(by_parameter, "DEADLINE_EXCEEDED")
        assert "timed out after waiting in the queue" in message  # the server's answer
        await wait_held(server, "busy", queued=0)
        last = send()
        assert (await first).as_numpy("ROWS").tolist() == [[1]]
        # Had any of the three stayed queued, it would have shared the last one's batch.
        assert (await last).as_numpy("ROWS").tolist() == [[1]]

    run(server, scenario)


def test_full_queue_answers_resource_exhausted(server: ServerProcess) -> None:
    async def scenario(client) -> None:
        def send(milliseconds: float = 0.0) -> asyncio.Future:
            return asyncio.ensure_future(client.infer("busy_small_queue", busy_input(milliseconds)))

        first = send(LONG_MS)
        await wait_held(server, "busy_small_queue", queued=0)
        burst = [send(float(n)) for n in range(6)]
        outcomes = await asyncio.gather(first, *burst, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, InferenceServerException)]
        # One request runs and two wait; the rest are refused (a run finishing mid-burst
        # could make room for one more).
        assert len(refused) >= 3
        for error in refused:
            assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
            assert "queue is full" in error.message()
        for n, outcome in enumerate(outcomes):
            if not isinstance(outcome, Exception):
                expected = LONG_MS if n == 0 else n - 1.0
                assert outcome.as_numpy("OUTPUT0").tolist() == [[expected]]
        await client.infer("busy_small_queue", busy_input())  # room again

    run(server, scenario)


@pytest.mark.server_errors(r"model 'gather': a batch of 1 request\(s\) failed")
def test_runtime_failure_answers_internal_and_the_server_keeps_serving(
    server: ServerProcess,
) -> None:
    async def scenario(client) -> None:
        bad = np.array([[1], [7]], dtype=np.int64)
        message = await expect_error(
            client.infer("gather", [infer_input("INDEX", bad)]), "INTERNAL"
        )
        assert "indices element out of data bounds, idx=7" in message
        # Logged once, in the server's format; ORT's own stderr copy is silenced.
        logs = server.logs()
        assert "model 'gather': a batch of 1 request(s) failed: " in logs
        assert "[E:onnxruntime" not in logs
        good = np.array([[3], [0]], dtype=np.int64)
        result = await client.infer("gather", [infer_input("INDEX", good)])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [[40.0], [10.0]])
        assert await client.is_server_ready()
        assert await client.is_model_ready("gather")

    run(server, scenario)
