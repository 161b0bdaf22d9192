"""Overload and cancellation through real gRPC: a bounded queue refuses the excess quickly,
serves what it accepted exactly, and frees each slot exactly once whatever the client does.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests import models
from tests.harness import ServerProcess
from tests.integration import observability
from tests.integration.hostile import memory_kib, server_pid

FLOOD_QUEUE = 8
STORM_QUEUE = 32
STORM_MS = 400  # one execution of the storm model; long enough to fill its queue meanwhile


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_module_server) -> ServerProcess:
    repo = tmp_path_factory.mktemp("overload_repo")
    flood_queue = {"max_queue_delay_microseconds": 0, "max_queue_size": FLOOD_QUEUE}
    models.build_slow(repo, "flood", milliseconds=50, config={"dynamic_batching": flood_queue})
    storm_queue = {"max_queue_delay_microseconds": 0, "max_queue_size": STORM_QUEUE}
    models.build_slow(
        repo, "storm", milliseconds=STORM_MS, config={"dynamic_batching": storm_queue}
    )
    return start_module_server(repo)


def request(model: str, value: float) -> pb.ModelInferRequest:
    x = np.full((1, 2), value, np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[1, 2])
    return pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[x.tobytes()])


def output_value(response: pb.ModelInferResponse) -> float:
    values = np.frombuffer(response.raw_output_contents[0], np.float32)
    assert values.shape == (2,) and values[0] == values[1]
    return float(values[0])


def inferences(server: ServerProcess, model: str) -> int:
    """Rows the server's executions of the model computed so far."""
    samples = observability.scrape(server.metrics_port)
    rows = observability.value(samples, "onnxserve_inferences_total", model=model, version="1")
    return int(rows or 0)


def test_a_flood_gets_fast_refusals_exact_answers_and_leaves_no_trace(
    server: ServerProcess,
) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        observability.wait_held(server.metrics_port, "flood", queued=0, running=0)
        rows_before = inferences(server, "flood")

        flood = 400  # 50x what the queue holds
        done_at: dict[int, float] = {}
        sent = time.monotonic()
        futures = []
        for i in range(flood):
            future = stub.ModelInfer.future(request("flood", i), timeout=60)
            future.add_done_callback(lambda _, i=i: done_at.__setitem__(i, time.monotonic()))
            futures.append(future)
        ok, refusal_seconds, other = 0, [], []
        for i, future in enumerate(futures):
            try:
                assert output_value(future.result()) == i
                ok += 1
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert "queue is full" in error.details()
                    refusal_seconds.append(done_at[i] - sent)
                else:
                    other.append(f"{error.code().name}: {error.details()}")
        refused = len(refusal_seconds)
        assert not other, other
        assert ok + refused == flood
        assert refused >= flood // 2, f"only {refused} of {flood} refused"
        assert ok >= FLOOD_QUEUE
        print(
            f"flood: {ok} served, {refused} refused; refusals after "
            f"median {statistics.median(refusal_seconds):.3f}s, max {max(refusal_seconds):.3f}s"
        )

        # No trace: nothing left queued or running, and the refused requests never ran.
        observability.wait_held(server.metrics_port, "flood", queued=0, running=0)
        assert inferences(server, "flood") - rows_before == ok
        assert output_value(stub.ModelInfer(request("flood", 7), timeout=30)) == 7


def burst_against_busy_instance(
    stub: pb_grpc.GRPCInferenceServiceStub, metrics_port: int, extra: int
) -> tuple[int, int]:
    """Occupies the storm model's instance, then sends queue size + extra requests at once.

    Returns (accepted, refused). With every slot free exactly STORM_QUEUE are accepted: fewer
    means slots leaked, more means a slot was freed twice.
    """
    observability.wait_held(metrics_port, "storm", queued=0, running=0)
    blocker = stub.ModelInfer.future(request("storm", -1), timeout=60)
    observability.wait_held(metrics_port, "storm", queued=0, running=1)
    futures = [
        stub.ModelInfer.future(request("storm", i), timeout=60) for i in range(STORM_QUEUE + extra)
    ]
    accepted = refused = 0
    for i, future in enumerate(futures):
        try:
            assert output_value(future.result()) == i
            accepted += 1
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            refused += 1
    assert output_value(blocker.result()) == -1
    return accepted, refused


def test_a_cancellation_storm_leaks_no_slot_and_leaves_nothing_behind(
    server: ServerProcess,
) -> None:
    rnd = random.Random(7)
    pid = server_pid(server)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert burst_against_busy_instance(stub, server.metrics_port, 4) == (STORM_QUEUE, 4)
        memory_before = memory_kib(pid)["VmRSS"]

        # Requests arrive steadily for 2 s; nine in ten are cancelled 0-0.5 s after they were
        # sent (queued, running or refused by then), some expire while they wait.
        storm = 300
        events = []
        for i in range(storm):
            at = i * 2.0 / storm
            events.append((at, 0, i))
            if rnd.random() < 0.9:
                events.append((at + rnd.uniform(0, 0.5), 1, i))
        events.sort()
        futures: dict[int, grpc.Future] = {}
        start = time.monotonic()
        for at, cancel, i in events:
            time.sleep(max(0.0, start + at - time.monotonic()))  # pacing the storm's schedule
            if cancel:
                futures[i].cancel()
            else:
                timeout = rnd.choice([60, 60, 60, 0.4])
                futures[i] = stub.ModelInfer.future(request("storm", i), timeout=timeout)
        codes: dict[str, int] = {}
        for i, future in futures.items():
            try:
                assert output_value(future.result()) == i
                code = "OK"
            except grpc.FutureCancelledError:
                code = "CANCELLED"
            except grpc.RpcError as error:
                code = error.code().name
            codes[code] = codes.get(code, 0) + 1
        allowed = {"OK", "CANCELLED", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}
        assert set(codes) <= allowed, codes
        assert codes.get("CANCELLED", 0) > storm // 3, codes
        print(f"storm: {codes}")

        # Nothing is left behind, and the model still answers exactly.
        observability.wait_held(server.metrics_port, "storm", queued=0, running=0)
        assert output_value(stub.ModelInfer(request("storm", 5), timeout=30)) == 5
        # Every slot is free again, exactly once.
        assert burst_against_busy_instance(stub, server.metrics_port, 4) == (STORM_QUEUE, 4)
        grown = (memory_kib(pid)["VmRSS"] - memory_before) / 1024
        assert grown < 32, f"RSS grew by {grown:.0f} MiB over the storm"


def test_streams_that_go_away_release_everything(server: ServerProcess) -> None:
    """60 streams each queue requests on the storm model and are dropped at random moments:
    afterwards every queue slot is free exactly once, nothing left behind runs, memory is back."""
    rnd = random.Random(11)
    pid = server_pid(server)
    done_sending = threading.Event()

    def held_open(stream: int) -> Iterator[pb.ModelInferRequest]:
        # Eight requests, then the stream stays open without more: the client never says done.
        for i in range(8):
            yield request("storm", stream * 100 + i)
        done_sending.wait(60)

    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        open_stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        memory_before = memory_kib(pid)["VmRSS"]
        try:
            calls = [open_stream(held_open(s), timeout=60) for s in range(60)]
            cancel_at = sorted((rnd.uniform(0, 1.5), n) for n in range(len(calls)))
            start = time.monotonic()
            for at, n in cancel_at:
                time.sleep(max(0.0, start + at - time.monotonic()))  # pacing the cancels
                calls[n].cancel()
            for call in calls:
                with pytest.raises(grpc.RpcError):
                    list(call)
                assert call.code() == grpc.StatusCode.CANCELLED
        finally:
            done_sending.set()

        observability.wait_held(server.metrics_port, "storm", queued=0, running=0)
        assert output_value(stub.ModelInfer(request("storm", 5), timeout=30)) == 5
        assert burst_against_busy_instance(stub, server.metrics_port, 4) == (STORM_QUEUE, 4)
        grown = (memory_kib(pid)["VmRSS"] - memory_before) / 1024
        assert grown < 32, f"RSS grew by {grown:.0f} MiB over the abandoned streams"
