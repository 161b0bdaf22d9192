"""Connections that misbehave, and messages over the size limit, against the real server.

200 idle HTTP/2 connections, 32 clients stalled halfway through sending a request and 32 that
never read a large response must not keep a normal client from being served exactly, nor hold
memory once they are gone; a message over --max-message-bytes is refused with
RESOURCE_EXHAUSTED and the server goes on. (How much they slow a client is the bench's
question, not a test's.)
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from onnx import helper, numpy_helper

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests import models
from tests.harness import ServerProcess
from tests.integration import observability
from tests.integration.h2raw import RawConnection, grpc_message
from tests.integration.hostile import assert_outputs, double_request, memory_kib, server_pid

MAX_MESSAGE = 4 * 1024 * 1024
EXPAND = 512 * 1024  # FP32 values in an `expand` response: 2 MiB
EXPAND_BIG = 2 * 1024 * 1024  # 8 MiB: over the limit
INFER = "/inference.GRPCInferenceService/ModelInfer"
# The client's own receive limit is lifted, so any refusal seen here is the server's.
CLIENT_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def build_expand(repo: Path, name: str, count: int) -> None:
    """Non-batched: INPUT0 FP32 [1] -> OUTPUT0 FP32 [count], every value INPUT0[0]."""
    model = models.make_model(
        [helper.make_node("Expand", ["INPUT0", "size"], ["OUTPUT0"])],
        [models.tensor("INPUT0", "FP32", [1], batched=False)],
        [models.tensor("OUTPUT0", "FP32", [count], batched=False)],
        [numpy_helper.from_array(np.array([count], np.int64), "size")],
        name,
    )
    config = {
        "backend": "onnxruntime",
        "max_batch_size": 0,
        "inputs": [models.tensor_config("INPUT0", "FP32", [1])],
        "outputs": [models.tensor_config("OUTPUT0", "FP32", [count])],
    }
    models.write_model(repo, name, 1, model, config)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_module_server) -> ServerProcess:
    repo = tmp_path_factory.mktemp("connections_repo")
    models.build_double(repo)
    build_expand(repo, "expand", EXPAND)
    build_expand(repo, "expand_big", EXPAND_BIG)
    return start_module_server(repo, "--max-message-bytes", str(MAX_MESSAGE))


def expand_request(model: str, value: float) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[1])
    raw = np.array([value], np.float32).tobytes()
    return pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[raw])


def normal_client(address: str, runs: int = 40) -> None:
    """A normal client on a fresh connection: every small request answered exactly."""
    rng = np.random.default_rng(runs)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(runs):
            request, expected = double_request(rng, 2)
            assert_outputs(stub.ModelInfer(request, timeout=30), expected)


def executions(server: ServerProcess, model: str) -> float:
    samples = observability.scrape(server.metrics_port)
    found = observability.value(samples, "onnxserve_executions_total", model=model, version="1")
    return found or 0.0


def test_idle_stalled_and_unread_connections_do_not_keep_a_normal_client_waiting(
    server: ServerProcess,
) -> None:
    normal_client(server.address, 10)  # the server's first requests are behind it
    rss_before = memory_kib(server_pid(server))["VmRSS"]
    expanded = executions(server, "expand")
    rng = np.random.default_rng(1)
    opened: list[RawConnection] = []
    try:
        for _ in range(200):
            opened.append(RawConnection(server.address))
        for _ in range(32):  # the gRPC frame claims a whole request; half of it comes
            stalled = RawConnection(server.address)
            opened.append(stalled)
            message = grpc_message(double_request(rng, 8, width=256)[0].SerializeToString())
            stalled.start_call(INFER)
            stalled.send_data(message[: len(message) // 2], end=False)
        for i in range(32):  # a whole request for 2 MiB back, and then never a read
            unread = RawConnection(server.address, receive_buffer=4096)
            opened.append(unread)
            unread.start_call(INFER)
            unread.send_data(
                grpc_message(expand_request("expand", i).SerializeToString()), end=True
            )
        # The server has run every unread one and holds its response (flow control).
        deadline = time.monotonic() + 30
        while executions(server, "expand") < expanded + 32:
            assert time.monotonic() < deadline, "the unread requests did not all run"
            time.sleep(0.02)  # pacing the poll of /metrics

        normal_client(server.address)
        with grpc.insecure_channel(server.address, options=CLIENT_OPTIONS) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            response = stub.ModelInfer(expand_request("expand", 2.5), timeout=30)
            values = np.frombuffer(response.raw_output_contents[0], np.float32)
            assert values.shape == (EXPAND,) and (values == 2.5).all()
        rss_during = memory_kib(server_pid(server))["VmRSS"]
    finally:
        for connection in opened:
            connection.close()

    # What the unread responses held is released once the server sees their clients gone.
    deadline = time.monotonic() + 30
    while (rss_after := memory_kib(server_pid(server))["VmRSS"]) - rss_before >= 32 * 1024:
        mib = [rss_before // 1024, rss_during // 1024, rss_after // 1024]
        assert time.monotonic() < deadline, f"RSS before, during, after: {mib} MiB"
        time.sleep(0.1)  # pacing the poll of the server's memory
    normal_client(server.address, 10)


def test_a_request_over_the_limit_is_refused_and_the_server_goes_on(
    server: ServerProcess,
) -> None:
    rng = np.random.default_rng(2)
    big, _ = double_request(rng, 1, width=MAX_MESSAGE // 4 + 16)
    assert big.ByteSize() > MAX_MESSAGE
    with grpc.insecure_channel(server.address, options=CLIENT_OPTIONS) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(big, timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        request, expected = double_request(rng, 4)
        assert_outputs(stub.ModelInfer(request, timeout=30), expected)
        # Just under the limit is served.
        fits, expected = double_request(rng, 1, width=(MAX_MESSAGE - 4096) // 4)
        assert_outputs(stub.ModelInfer(fits, timeout=30), expected)


def test_a_response_over_the_limit_fails_cleanly_and_the_server_goes_on(
    server: ServerProcess,
) -> None:
    with grpc.insecure_channel(server.address, options=CLIENT_OPTIONS) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(expand_request("expand_big", 1.0), timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        response = stub.ModelInfer(expand_request("expand", 3.0), timeout=30)
        assert (np.frombuffer(response.raw_output_contents[0], np.float32) == 3.0).all()
