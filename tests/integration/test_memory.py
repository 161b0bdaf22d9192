"""Memory stays bounded under requests of varying batch size and length.

ONNX Runtime keeps memory per input shape unless told otherwise (memory patterns; an arena that
grows with each new size), and the batcher merges requests into ever new shapes. With the
default session settings, 2,000 requests of random batch size must not grow the server's RSS by
more than half over its level after warm-up.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests import models
from tests.harness import ServerProcess
from tests.integration.hostile import memory_kib, server_pid

MAX_BATCH = 16
MAX_LENGTH = 2048
REQUESTS = 2000
WINDOW = 8  # requests in flight, so the batcher merges them into still more shapes
WIDTH = 256
SESSION: dict = {}  # the defaults are under test


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_module_server) -> ServerProcess:
    repo = tmp_path_factory.mktemp("memory_repo")
    models.build_wide(repo, width=WIDTH, config={"session": SESSION} if SESSION else None)
    return start_module_server(repo)


def wide_request(rows: int, length: int, value: float) -> pb.ModelInferRequest:
    x = np.full((rows, length), value, np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="INPUT0", datatype="FP32", shape=[rows, length]
    )
    return pb.ModelInferRequest(
        model_name="wide", inputs=[tensor], raw_input_contents=[x.tobytes()]
    )


def expected_value(value: float) -> np.float32:
    scales = np.linspace(0.5, 1.5, WIDTH).astype(np.float32)
    return np.tanh(np.float32(value) * scales).sum(dtype=np.float32)


def check(response: pb.ModelInferResponse, rows: int, length: int, value: float) -> None:
    out = np.frombuffer(response.raw_output_contents[0], np.float32)
    assert tuple(response.outputs[0].shape) == (rows, length)
    np.testing.assert_allclose(out, expected_value(value), rtol=1e-4)


def test_random_batch_sizes_do_not_grow_memory(server: ServerProcess) -> None:
    rng = np.random.default_rng(3)
    pid = server_pid(server)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for rows, length in [(MAX_BATCH, MAX_LENGTH), (1, 1), (MAX_BATCH // 2, MAX_LENGTH)]:
            check(stub.ModelInfer(wide_request(rows, length, 0.5), timeout=60), rows, length, 0.5)
        warm = memory_kib(pid)["VmRSS"]

        highest = warm
        for start in range(0, REQUESTS, WINDOW):
            window = []
            for i in range(start, start + WINDOW):
                rows = int(rng.integers(1, MAX_BATCH + 1))
                length = int(rng.integers(1, MAX_LENGTH + 1))
                value = float(i % 7) / 7
                future = stub.ModelInfer.future(wide_request(rows, length, value), timeout=60)
                window.append((future, rows, length, value))
            for future, rows, length, value in window:
                check(future.result(), rows, length, value)
            if start % 400 == 0:
                highest = max(highest, memory_kib(pid)["VmRSS"])
        end = memory_kib(pid)["VmRSS"]

    mib = {"warm-up": warm // 1024, "highest": highest // 1024, "end": end // 1024}
    print(f"RSS (MiB): {mib}")
    assert end <= warm * 1.5, f"RSS grew from {warm / 1024:.0f} MiB to {end / 1024:.0f} MiB"
