"""ModelStreamInfer through the real server with raw stubs: ids, in-band errors, concurrency,
deadlines, and a client that goes away."""

from __future__ import annotations

import queue
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from onnx import TensorProto, helper

from server.grpc.generated import grpc_service_pb2 as pb
from tests.harness import ServerProcess
from tests.integration import observability
from tests.models import build_double, build_slow, make_model, tensor, tensor_config, write_model

METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
SLOW_MS = 2000  # the running request outlasts the release of the queued ones


def build_batch_rows(repo: Path, name: str = "batch_rows") -> None:
    """ROWS (INT64 [1]): every row holds the number of rows of the batch it ran in.

    The batcher waits up to 10 s for 8 rows, so a batch of 8 means 8 requests were queued together.
    """
    nodes = [
        helper.make_node("Shape", ["INPUT0"], ["shape"]),
        helper.make_node("Shape", ["INPUT0"], ["rows"], start=0, end=1),
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["ones"],
            value=helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        ),
        helper.make_node("Mul", ["ones", "rows"], ["ROWS"]),
    ]
    model = make_model(nodes, [tensor("INPUT0", "FP32", [1])], [tensor("ROWS", "INT64", [1])])
    config = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": [tensor_config("INPUT0", "FP32", [1])],
        "outputs": [tensor_config("ROWS", "INT64", [1])],
        "dynamic_batching": {"max_queue_delay_microseconds": 10_000_000},
    }
    write_model(repo, name, 1, model, config)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_module_server) -> ServerProcess:
    repo = tmp_path_factory.mktemp("stream-repo")
    build_double(repo)
    build_batch_rows(repo)
    one_at_a_time = {"max_batch_size": 1, "dynamic_batching": {"max_queue_size": 2}}
    build_slow(repo, "slow_cancel", config=one_at_a_time, milliseconds=SLOW_MS)
    build_slow(repo, "slow_timeout", config=one_at_a_time, milliseconds=1000)
    # Shutdown need not wait for the slow request a cancelled stream left running.
    return start_module_server(repo, "--shutdown-timeout", "1")


@pytest.fixture
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as channel:
        yield channel


def double_request(value: float, id: str, model: str = "double") -> bytes:
    inputs = {"INPUT0": np.full((1, 3), value, np.float32), "ID": np.array([[7]], np.int64)}
    return request(model, inputs, id)


def request(model: str, inputs: dict[str, np.ndarray], id: str, **params: int) -> bytes:
    datatypes = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
    message = pb.ModelInferRequest(
        model_name=model,
        id=id,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=name, datatype=datatypes[a.dtype], shape=a.shape
            )
            for name, a in inputs.items()
        ],
        raw_input_contents=[a.tobytes() for a in inputs.values()],
        parameters={k: pb.InferParameter(int64_param=v) for k, v in params.items()},
    )
    return message.SerializeToString()


def output(response: pb.ModelInferResponse, name: str, dtype: type) -> np.ndarray:
    index = [o.name for o in response.outputs].index(name)
    shape = response.outputs[index].shape
    return np.frombuffer(response.raw_output_contents[index], dtype).reshape(shape)


def open_stream(channel: grpc.Channel, timeout: float = 60):
    """(send, responses): send(bytes) writes one message, send(None) ends the sending side;
    responses is the call: iterate it, or cancel() it."""
    outbox: queue.Queue[bytes | None] = queue.Queue()
    call = channel.stream_stream(
        METHOD,
        request_serializer=None,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )(iter(outbox.get, None), timeout=timeout)
    return outbox.put, call


def error_code(response: pb.ModelStreamInferResponse) -> str:
    return response.infer_response.parameters["error_code"].string_param


def test_every_response_matches_its_request_by_id(channel: grpc.Channel) -> None:
    count = 300
    requests = (double_request(float(i), f"r{i}") for i in range(count))
    stub = channel.stream_stream(
        METHOD,
        request_serializer=None,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )
    seen = {}
    for response in stub(requests, timeout=60):
        assert response.error_message == ""
        infer = response.infer_response
        assert (infer.model_name, infer.model_version) == ("double", "1")
        seen[infer.id] = output(infer, "OUTPUT0", np.float32)
    assert sorted(seen) == sorted(f"r{i}" for i in range(count))
    for i in range(count):
        np.testing.assert_array_equal(seen[f"r{i}"], np.full((1, 3), 2.0 * i, np.float32))


def test_in_band_errors_keep_the_stream_open(channel: grpc.Channel) -> None:
    send, responses = open_stream(channel)
    send(b"\xff\x00 not a protobuf message")
    response = next(responses)
    assert error_code(response) == "INVALID_ARGUMENT"
    assert "not a valid ModelInferRequest" in response.error_message

    send(double_request(1.0, "unknown", model="no_such_model"))
    response = next(responses)
    assert (response.infer_response.id, error_code(response)) == ("unknown", "NOT_FOUND")
    assert response.error_message == "unknown model 'no_such_model'"
    assert not response.infer_response.outputs

    wrong_type = {"INPUT0": np.ones((1, 3), np.int64), "ID": np.array([[1]], np.int64)}
    send(request("double", wrong_type, "wrong_type"))
    response = next(responses)
    assert (response.infer_response.id, error_code(response)) == ("wrong_type", "INVALID_ARGUMENT")
    assert "INPUT0" in response.error_message and "INT64" in response.error_message

    send(double_request(4.0, "after"))  # the same stream still serves
    response = next(responses)
    assert response.error_message == ""
    assert response.infer_response.id == "after"
    np.testing.assert_array_equal(output(response.infer_response, "OUTPUT0", np.float32), 8.0)
    send(None)
    assert list(responses) == []  # the server ends the stream cleanly once the client is done


def test_requests_on_one_stream_are_batched_together(channel: grpc.Channel) -> None:
    # The batcher holds a batch for up to 10 s until it has 8 rows: 8 rows per response means
    # the stream handed all 8 requests over without waiting for any answer.
    send, responses = open_stream(channel)
    for i in range(8):
        send(request("batch_rows", {"INPUT0": np.ones((1, 1), np.float32)}, f"b{i}"))
    send(None)
    rows = {r.infer_response.id: output(r.infer_response, "ROWS", np.int64) for r in responses}
    assert sorted(rows) == [f"b{i}" for i in range(8)]
    assert all(r.tolist() == [[8]] for r in rows.values())


def test_timeout_parameter_expires_a_queued_request(channel: grpc.Channel) -> None:
    send, responses = open_stream(channel)
    data = {"INPUT0": np.ones((1, 2), np.float32)}
    send(request("slow_timeout", data, "runs"))
    send(request("slow_timeout", data, "expires", timeout=200_000))  # 0.2 s, in microseconds
    send(None)
    first, second = list(responses)
    assert (first.infer_response.id, error_code(first)) == ("expires", "DEADLINE_EXCEEDED")
    assert (second.infer_response.id, second.error_message) == ("runs", "")


def test_a_client_that_goes_away_releases_its_queued_requests(
    channel: grpc.Channel, server: ServerProcess
) -> None:
    # slow_cancel runs one request at a time and queues at most 2 more.
    send, responses = open_stream(channel)
    data = {"INPUT0": np.ones((1, 2), np.float32)}
    observability.wait_held(server.metrics_port, "slow_cancel", queued=0, running=0)
    for i in range(3):  # one runs, two wait in the queue
        send(request("slow_cancel", data, f"held{i}"))
    send(request("slow_cancel", data, "refused"))
    refused = next(responses)
    assert (refused.infer_response.id, error_code(refused)) == ("refused", "RESOURCE_EXHAUSTED")
    responses.cancel()

    # The two queued requests must leave the server's queue now, while the running one
    # still runs: not when it ends.
    observability.wait_held(server.metrics_port, "slow_cancel", queued=0, running=1)


def test_shutdown_answers_what_a_stream_read_then_ends_it(start_server, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    build_double(repo)
    build_slow(repo, milliseconds=500)
    # A grace far longer than the test allows: an open stream must not hold the server for it.
    server = start_server(repo, "--shutdown-timeout", "120")
    with grpc.insecure_channel(server.address) as channel:
        send, responses = open_stream(channel)
        send(request("slow", {"INPUT0": np.ones((1, 2), np.float32)}, "held"))
        send(double_request(1.0, "probe"))
        assert next(responses).infer_response.id == "probe"  # so "held" was read before it

        server.signal(signal.SIGTERM)
        held = next(responses)
        assert (held.infer_response.id, held.error_message) == ("held", "")
        with pytest.raises(grpc.RpcError) as raised:
            next(responses)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert raised.value.details() == "the server is shutting down"
    assert server.process.wait(timeout=60) == 0
