"""Every way a request can be wrong, against one real server: the exact status code, and a
message that names the model, the tensor, what was expected and what came."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests import models
from tests.harness import ServerProcess
from tests.integration.wire import Tensor, infer_request, outputs_of, pack_bytes, rpc_error

Stub = pb_grpc.GRPCInferenceServiceStub
TIMEOUT = 30
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("models")
    models.build_add_sub(repo)
    models.build_nonbatched(repo)
    models.build_identity(repo, datatype="BYTES")
    # A long batching window, so good and bad requests sent together meet in the queue.
    models.build_double(repo, config={"dynamic_batching": {"max_queue_delay_microseconds": 50_000}})
    return start_module_server(repo)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[Stub]:
    with server.channel() as channel:
        yield server.stub(channel)


ONE_ROW = np.ones((1, 16), np.float32).tobytes()


def add_sub(*tensors: Tensor, raw: list[bytes] | None = None, **fields) -> pb.ModelInferRequest:
    """An add_sub request; raw defaults to one good FP32 row per tensor."""
    return pb.ModelInferRequest(
        model_name="add_sub",
        inputs=tensors,
        raw_input_contents=[ONE_ROW] * len(tensors) if raw is None else raw,
        **fields,
    )


def good(name: str, shape: tuple[int, ...] = (1, 16), datatype: str = "FP32") -> Tensor:
    return Tensor(name=name, datatype=datatype, shape=shape)


# (request, status code, the exact message)
CASES = {
    "unknown model": (
        pb.ModelInferRequest(model_name="nosuch"),
        NOT_FOUND,
        "unknown model 'nosuch'",
    ),
    "unknown version": (
        add_sub(good("INPUT0"), good("INPUT1"), model_version="7"),
        NOT_FOUND,
        "model 'add_sub' has no version '7'",
    ),
    "unknown input": (
        add_sub(good("INPUT0"), good("INPUT1"), good("INPUT2")),
        INVALID,
        "model 'add_sub': unknown input 'INPUT2'; the model's inputs are ['INPUT0', 'INPUT1']",
    ),
    "missing input": (
        add_sub(good("INPUT0")),
        INVALID,
        "model 'add_sub': missing input(s) ['INPUT1']; "
        "expected inputs ['INPUT0', 'INPUT1'], got ['INPUT0']",
    ),
    "wrong datatype": (
        add_sub(good("INPUT0"), good("INPUT1", datatype="INT32")),
        INVALID,
        "model 'add_sub': input 'INPUT1': expected datatype FP32, got INT32",
    ),
    "wrong shape": (
        add_sub(good("INPUT0"), good("INPUT1", (1, 8)), raw=[ONE_ROW, ONE_ROW[:32]]),
        INVALID,
        "model 'add_sub': input 'INPUT1': expected shape [-1, 16], got [1, 8]",
    ),
    "wrong rank": (
        add_sub(good("INPUT0", (16,)), good("INPUT1")),
        INVALID,
        "model 'add_sub': input 'INPUT0': expected shape [-1] + [16] "
        "(rank 2 with the batch dimension), got [16]",
    ),
    "wrong rank, unbatched model": (
        pb.ModelInferRequest(
            model_name="nonbatched",
            inputs=[good("INPUT0", (1, 2, 3))],
            raw_input_contents=[bytes(24)],
        ),
        INVALID,
        "model 'nonbatched': input 'INPUT0': expected shape [2, 3], got [1, 2, 3]",
    ),
    "inputs disagree on the batch size": (
        add_sub(good("INPUT0"), good("INPUT1", (2, 16)), raw=[ONE_ROW, ONE_ROW * 2]),
        INVALID,
        "model 'add_sub': input 'INPUT1': batch size 2 differs from the other inputs' 1",
    ),
    "raw content too short": (
        add_sub(good("INPUT0"), good("INPUT1"), raw=[ONE_ROW, ONE_ROW[:-1]]),
        INVALID,
        "model 'add_sub': input 'INPUT1': raw content is 63 bytes, expected 64 "
        "for shape [1, 16] of FP32",
    ),
    "raw content too long": (
        add_sub(good("INPUT0"), good("INPUT1"), raw=[ONE_ROW * 2, ONE_ROW]),
        INVALID,
        "model 'add_sub': input 'INPUT0': raw content is 128 bytes, expected 64 "
        "for shape [1, 16] of FP32",
    ),
    "batch larger than max_batch_size": (
        add_sub(good("INPUT0", (9, 16)), good("INPUT1", (9, 16)), raw=[ONE_ROW * 9] * 2),
        INVALID,
        "model 'add_sub': input 'INPUT0': expected a batch size of 1..8 (max_batch_size), "
        "got 9 in shape [9, 16]",
    ),
    "negative dimension": (
        add_sub(good("INPUT0", (-1, 16)), good("INPUT1")),
        INVALID,
        "model 'add_sub': input 'INPUT0': shape [-1, 16] has a negative dimension",
    ),
    "overflowing shape": (
        add_sub(good("INPUT0"), good("INPUT1", (2**32, 2**32)), raw=[ONE_ROW, b""]),
        INVALID,
        "model 'add_sub': input 'INPUT1': shape [4294967296, 4294967296] is too large for "
        "FP32: expected at most 9223372036854775807 bytes across its non-zero dimensions, "
        "got 73786976294838206464",
    ),
    "overflowing shape, no element": (
        add_sub(good("INPUT0"), good("INPUT1", (0, 2**62)), raw=[ONE_ROW, b""]),
        INVALID,
        "model 'add_sub': input 'INPUT1': shape [0, 4611686018427387904] is too large for "
        "FP32: expected at most 9223372036854775807 bytes across its non-zero dimensions, "
        "got 18446744073709551616",
    ),
    "typed contents count": (
        pb.ModelInferRequest(
            model_name="add_sub",
            inputs=[
                Tensor(
                    name="INPUT0",
                    datatype="FP32",
                    shape=[1, 16],
                    contents=pb.InferTensorContents(fp32_contents=[1.0] * 15),
                ),
                Tensor(
                    name="INPUT1",
                    datatype="FP32",
                    shape=[1, 16],
                    contents=pb.InferTensorContents(fp32_contents=[1.0] * 16),
                ),
            ],
        ),
        INVALID,
        "model 'add_sub': input 'INPUT0': contents.fp32_contents holds 15 values, "
        "expected 16 for shape [1, 16]",
    ),
    "unknown datatype": (
        add_sub(good("INPUT0", datatype="FLOAT"), good("INPUT1")),
        INVALID,
        "model 'add_sub': input 'INPUT0': unknown datatype 'FLOAT'; expected one of "
        "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES",
    ),
    "unknown requested output": (
        add_sub(
            good("INPUT0"),
            good("INPUT1"),
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="OUTPUT9")],
        ),
        INVALID,
        "model 'add_sub': unknown output 'OUTPUT9'; the model's outputs are ['OUTPUT0', 'OUTPUT1']",
    ),
    "BYTES length prefix overruns": (
        pb.ModelInferRequest(
            model_name="identity_bytes",
            inputs=[good("INPUT0", (1, 2), "BYTES")],
            raw_input_contents=[pack_bytes([b"ok"]) + b"\x09\x00\x00\x00abc"],
        ),
        INVALID,
        "model 'identity_bytes': input 'INPUT0': BYTES element 1: length 9 overruns "
        "the 13-byte buffer",
    ),
    "BYTES not UTF-8": (
        pb.ModelInferRequest(
            model_name="identity_bytes",
            inputs=[good("INPUT0", (1, 1), "BYTES")],
            raw_input_contents=[pack_bytes([b"\xff\xfe"])],
        ),
        INVALID,
        "model 'identity_bytes': input 'INPUT0': BYTES element is not valid UTF-8 "
        "(invalid start byte at byte 0); onnxruntime string tensors hold text",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_request(stub: Stub, case: str) -> None:
    request, code, message = CASES[case]
    error = rpc_error(stub.ModelInfer, request, timeout=TIMEOUT)
    assert (error.code(), error.details()) == (code, message)


@pytest.mark.parametrize(
    ("rpc", "request_message"),
    [
        ("ModelMetadata", pb.ModelMetadataRequest(name="nosuch")),
        ("ModelConfig", pb.ModelConfigRequest(name="nosuch")),
    ],
)
def test_unknown_model_in_metadata_and_config(stub: Stub, rpc: str, request_message) -> None:
    error = rpc_error(getattr(stub, rpc), request_message, timeout=TIMEOUT)
    assert (error.code(), error.details()) == (NOT_FOUND, "unknown model 'nosuch'")


def test_unknown_version_in_metadata(stub: Stub) -> None:
    request = pb.ModelMetadataRequest(name="add_sub", version="2")
    error = rpc_error(stub.ModelMetadata, request, timeout=TIMEOUT)
    assert (error.code(), error.details()) == (NOT_FOUND, "model 'add_sub' has no version '2'")


@pytest.mark.parametrize("rpc", ["ModelInfer", "ModelMetadata", "ModelConfig", "ModelReady"])
def test_malformed_protobuf_bytes(server: ServerProcess, rpc: str) -> None:
    """Bytes that do not parse as the request message are the client's fault, not UNKNOWN."""
    message_name = {"ModelReady": "ModelReadyRequest"}.get(rpc, f"{rpc}Request")
    with server.channel() as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{rpc}")
        for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05ab"):  # bad tag; truncated string
            error = rpc_error(call, garbage, timeout=TIMEOUT)
            assert error.code() is INVALID
            assert error.details().startswith(f"request is not a valid {message_name}: ")


def test_a_bad_request_leaves_concurrent_good_ones_exact(stub: Stub) -> None:
    """Good and bad requests sent together: each good one gets exactly its own rows back."""
    rng = np.random.default_rng(7)
    goods = []
    for i in range(12):
        x = rng.standard_normal((1 + i % 3, 5), dtype=np.float32)
        ids = np.full((x.shape[0], 1), 1000 + i, np.int64)
        goods.append((x, ids))
    bads = [
        infer_request("double", {"INPUT0": np.zeros((1, 5), np.float64), "ID": np.ones((1, 1))}),
        infer_request("double", {"INPUT0": np.zeros((9, 5), np.float32)}),
        infer_request(
            "double",
            {"INPUT0": np.zeros((2, 5), np.float32), "ID": np.zeros((3, 1), np.int64)},
        ),
    ]
    requests = [infer_request("double", {"INPUT0": x, "ID": ids}) for x, ids in goods]
    mixed = [r for pair in zip(requests, bads * 4, strict=True) for r in pair]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(stub.ModelInfer, r, timeout=TIMEOUT) for r in mixed]
        results = [(f.result() if f.exception() is None else f.exception()) for f in futures]
    good_results, bad_results = results[0::2], results[1::2]
    for (x, ids), response in zip(goods, good_results, strict=True):
        outputs = outputs_of(response)
        np.testing.assert_array_equal(outputs["OUTPUT0"], 2 * x)
        np.testing.assert_array_equal(outputs["ID_OUT"], ids)
    for error in bad_results:
        assert isinstance(error, grpc.RpcError) and error.code() is INVALID
        assert error.details().startswith("model 'double': ")


def test_the_server_still_serves_and_logged_no_traceback(server: ServerProcess, stub: Stub) -> None:
    x = np.arange(32, dtype=np.float32).reshape(2, 16)
    response = stub.ModelInfer(
        infer_request("add_sub", {"INPUT0": x, "INPUT1": x}), timeout=TIMEOUT
    )
    np.testing.assert_array_equal(outputs_of(response)["OUTPUT0"], 2 * x)
    assert "Traceback" not in server.logs()
