"""Helpers for the hardening tests: raw-bytes calls, the server's memory, `double` requests."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np

from server.grpc.generated import grpc_service_pb2 as pb
from tests.harness import ServerProcess

SERVICE = "/inference.GRPCInferenceService/"
# Status codes a client mistake must never get.
OUR_FAULTS = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def raw_method(channel: grpc.Channel, rpc: str) -> grpc.UnaryUnaryMultiCallable:
    """A unary call that sends bytes as they are and returns the response's bytes."""
    return channel.unary_unary(SERVICE + rpc)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, VmPeak... of a process from /proc, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key.startswith("Vm"):
            values[key] = int(rest.split()[0])
    return values


def server_pid(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


def double_request(
    rng: np.random.Generator, rows: int, width: int = 4, model: str = "double"
) -> tuple[pb.ModelInferRequest, dict[str, np.ndarray]]:
    """A request for tests/models.py's `double` model and the outputs it must get back."""
    x = rng.standard_normal((rows, width)).astype(np.float32)
    ids = rng.integers(0, 2**40, (rows, 1), dtype=np.int64)
    tensor = pb.ModelInferRequest.InferInputTensor
    request = pb.ModelInferRequest(
        model_name=model,
        inputs=[
            tensor(name="INPUT0", datatype="FP32", shape=[rows, width]),
            tensor(name="ID", datatype="INT64", shape=[rows, 1]),
        ],
        raw_input_contents=[x.tobytes(), ids.tobytes()],
    )
    return request, {"OUTPUT0": x * 2, "ID_OUT": ids}


def response_arrays(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    dtypes = {"FP32": np.float32, "INT64": np.int64}
    return {
        out.name: np.frombuffer(raw, dtype=dtypes[out.datatype]).reshape(tuple(out.shape))
        for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


def assert_outputs(response: pb.ModelInferResponse, expected: dict[str, np.ndarray]) -> None:
    got = response_arrays(response)
    assert sorted(got) == sorted(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
