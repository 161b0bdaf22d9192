"""Hostile bytes at the real server: every malformed request is a client error, never ours.

A few hundred malformed requests from a fixed seed (hand-made cases for each kind of mistake,
random mutations of a valid request, truncations, random bytes at every RPC) go out as raw bytes
beside good requests. Malformed ones must get a non-OK status other than UNKNOWN or INTERNAL;
good ones must get exact answers; the server must stay live and its memory bounded. A mutation
or random bytes may happen to be a valid request: its OK answer must then be exactly what this
test's own reading of the bytes (expected_for, expected_reply) says, never what the server's
decoder thinks.
"""

from __future__ import annotations

import queue
import random
import struct
from concurrent.futures import Future

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError

from server.grpc.generated import grpc_service_pb2 as pb
from tests import models
from tests.harness import ServerProcess
from tests.integration.hostile import (
    OUR_FAULTS,
    SERVICE,
    assert_outputs,
    double_request,
    memory_kib,
    raw_method,
    response_arrays,
    server_pid,
)

SEED = 20261123
MUTATIONS = 160
TRUNCATIONS = 40
RANDOM_BYTES = 80
GOOD_EVERY = 4  # one good request after every few malformed ones
WINDOW = 24  # requests in flight at once
Tensor = pb.ModelInferRequest.InferInputTensor
Contents = pb.InferTensorContents
UNARY_RPCS = [
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelConfig",
    "ModelInfer", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
    "RepositoryModelUnload", "SystemSharedMemoryStatus", "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister", "CudaSharedMemoryStatus", "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister", "TraceSetting", "LogSettings",
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_module_server) -> ServerProcess:
    repo = tmp_path_factory.mktemp("fuzz_repo")
    models.build_double(repo)
    models.build_identity(repo, datatype="BYTES")
    models.build_nonbatched(repo)
    return start_module_server(repo)


# --- wire-level helpers ----------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def with_input(request: pb.ModelInferRequest, **tensor: object) -> bytes:
    message = pb.ModelInferRequest()
    message.CopyFrom(request)
    message.inputs[0].CopyFrom(Tensor(**tensor))  # type: ignore[arg-type]
    return message.SerializeToString()


# --- the cases -------------------------------------------------------------------------------


def crafted_cases(rng: np.random.Generator) -> list[tuple[str, str, bytes]]:
    """(label, rpc, bytes) for each kind of mistake the issue lists, and a few more."""
    good, _ = double_request(rng, 2)
    valid = good.SerializeToString()
    x = good.raw_input_contents[0]
    cases: list[tuple[str, str, bytes]] = []

    def add(label: str, data: bytes | pb.ModelInferRequest, rpc: str = "ModelInfer") -> None:
        raw = data if isinstance(data, bytes) else data.SerializeToString()
        cases.append((label, rpc, raw))

    def variant(**changes: object) -> pb.ModelInferRequest:
        message = pb.ModelInferRequest()
        message.CopyFrom(good)
        for key, value in changes.items():
            if key == "raw":
                del message.raw_input_contents[:]
                message.raw_input_contents.extend(value)  # type: ignore[arg-type]
            elif key in ("inputs", "outputs"):
                del getattr(message, key)[:]
                getattr(message, key).extend(value)
            else:
                setattr(message, key, value)
        return message

    # Not protobuf at all, or broken framing.
    add("bad length prefix overruns", valid + b"\x3a" + varint(1000) + b"abc")
    add("length prefix of 4 GiB", valid + b"\x3a\xff\xff\xff\xff\x0f")
    add("varint longer than 10 bytes", valid + b"\x3a" + b"\xff" * 11 + b"\x01")
    add("invalid wire type 7", valid + b"\x0f")
    add("end group without start", valid + b"\x0c")
    add("nested message overruns", b"\x2a\x10" + b"\x0a\x02ab")
    add("non-UTF-8 model name", b"\x0a\x02\xff\xfe")
    add("non-UTF-8 model version", b"\x0a\x06double\x12\x01\xc3")
    add("non-UTF-8 tensor name", b"\x0a\x06double" + field(5, b"\x0a\x02\xc3\x28"))
    add("non-UTF-8 datatype", b"\x0a\x06double" + field(5, b"\x12\x03\xe2\x82\x28"))
    entry = field(1, b"timeout") + field(2, field(3, b"\xff"))
    add("non-UTF-8 string parameter", b"\x0a\x06double" + field(4, entry))
    add("non-UTF-8 parameter key", b"\x0a\x06double" + field(4, field(1, b"\x80")))
    for rpc in ("ModelMetadata", "ModelConfig", "ModelReady", "RepositoryModelLoad"):
        add(f"non-UTF-8 name to {rpc}", b"\x0a\x02\xff\xff", rpc)
        add(f"truncated {rpc}", b"\x0a\x09doub", rpc)

    # Shapes.
    add("negative dimension", with_input(good, name="INPUT0", datatype="FP32", shape=[2, -4]))
    add("-1 in a request shape", with_input(good, name="INPUT0", datatype="FP32", shape=[-1, 4]))
    overflowing = [2**62, 2**62, 4]
    add("overflowing shape", with_input(good, name="INPUT0", datatype="FP32", shape=overflowing))
    add("largest int64 dims", with_input(good, name="INPUT0", datatype="FP32", shape=[2**63 - 1]))
    gib = [1, 2**28]  # 1 GiB of FP32 claimed by 32 bytes of data
    add("forged 1 GiB shape, raw", with_input(good, name="INPUT0", datatype="FP32", shape=gib))
    forged_typed = variant(
        raw=[],
        inputs=[
            Tensor(name="INPUT0", datatype="FP32", shape=gib, contents=Contents(fp32_contents=[1])),
            Tensor(
                name="ID", datatype="INT64", shape=[1, 1], contents=Contents(int64_contents=[1])
            ),
        ],
    )
    add("forged 1 GiB shape, typed", forged_typed)
    bytes_gib = Tensor(name="INPUT0", datatype="BYTES", shape=[1, 2**28])
    add(
        "forged 1 GiB BYTES count",
        variant(model_name="identity_bytes", inputs=[bytes_gib], raw=[b"\0" * 8]),
    )
    add(
        "zero and huge dims",
        with_input(good, name="INPUT0", datatype="FP32", shape=[0, 2**62, 2**62]),
    )
    add(
        "zero dim, huge dims, typed",
        variant(
            raw=[],
            inputs=[
                Tensor(name="INPUT0", datatype="FP32", shape=[0, 2**62, 2**62]),
                Tensor(
                    name="ID", datatype="INT64", shape=[1, 1], contents=Contents(int64_contents=[1])
                ),
            ],
        ),
    )  # noqa: E501
    add("rank 65", with_input(good, name="INPUT0", datatype="FP32", shape=[1] * 63 + [2, 4]))
    add("rank 5000", with_input(good, name="INPUT0", datatype="FP32", shape=[1] * 4998 + [2, 4]))
    add(
        "batch above max_batch_size",
        with_input(good, name="INPUT0", datatype="FP32", shape=[16, 1]),
    )
    add(
        "empty batch",
        variant(
            raw=[b"", b""],
            inputs=[
                Tensor(name="INPUT0", datatype="FP32", shape=[0, 4]),
                Tensor(name="ID", datatype="INT64", shape=[0, 1]),
            ],
        ),
    )  # noqa: E501
    add(
        "rows differ between inputs", with_input(good, name="INPUT0", datatype="FP32", shape=[1, 8])
    )
    add("raw one byte short", variant(raw=[x[:-1], good.raw_input_contents[1]]))
    add("raw one byte long", variant(raw=[x + b"\0", good.raw_input_contents[1]]))
    add("wrong rank", with_input(good, name="INPUT0", datatype="FP32", shape=[8]))
    add(
        "non-batched wrong shape",
        pb.ModelInferRequest(
            model_name="nonbatched",
            inputs=[Tensor(name="INPUT0", datatype="FP32", shape=[3, 2])],
            raw_input_contents=[b"\0" * 24],
        ),
    )  # noqa: E501

    # Names, datatypes, contents.
    add("same input twice", variant(inputs=[good.inputs[0], good.inputs[0]], raw=[x, x]))
    add(
        "unknown input",
        variant(inputs=[good.inputs[0], Tensor(name="NOPE", datatype="INT64", shape=[2, 1])]),
    )  # noqa: E501
    add("missing input", variant(inputs=[good.inputs[0]], raw=[x]))
    add("no inputs at all", variant(inputs=[], raw=[]))
    add("unknown datatype", with_input(good, name="INPUT0", datatype="FLOAT", shape=[2, 4]))
    add("lower-case datatype", with_input(good, name="INPUT0", datatype="fp32", shape=[2, 4]))
    add("empty datatype", with_input(good, name="INPUT0", datatype="", shape=[2, 4]))
    add(
        "datatype differs from the model",
        with_input(good, name="INPUT0", datatype="INT32", shape=[2, 4]),
    )  # noqa: E501
    add("one raw buffer for two inputs", variant(raw=[x]))
    add("three raw buffers for two inputs", variant(raw=[x, x, x]))
    typed_input = Tensor(
        name="INPUT0", datatype="FP32", shape=[2, 4], contents=Contents(fp32_contents=[1.0] * 8)
    )  # noqa: E501
    add("raw and typed both", variant(inputs=[typed_input, good.inputs[1]]))
    typed_id = Tensor(
        name="ID", datatype="INT64", shape=[2, 1], contents=Contents(int64_contents=[1, 2])
    )  # noqa: E501

    def typed(contents: Contents, datatype: str = "FP32") -> pb.ModelInferRequest:
        return variant(
            raw=[],
            inputs=[
                Tensor(name="INPUT0", datatype=datatype, shape=[2, 4], contents=contents),
                typed_id,
            ],
        )  # noqa: E501

    add("typed contents in the wrong field", typed(Contents(int64_contents=[1] * 8)))
    add(
        "typed contents in two fields",
        typed(Contents(fp32_contents=[1.0] * 8, fp64_contents=[1.0] * 8)),
    )  # noqa: E501
    add("typed contents, too few", typed(Contents(fp32_contents=[1.0] * 7)))
    add("typed contents, too many", typed(Contents(fp32_contents=[1.0] * 9)))
    add("typed FP16 (raw only)", typed(Contents(fp32_contents=[1.0] * 8), "FP16"))
    add("typed INT8 out of range", typed(Contents(int_contents=[300] * 8), "INT8"))
    add("typed UINT8 out of range", typed(Contents(uint_contents=[2**32 - 1] * 8), "UINT8"))

    # BYTES raw contents (identity_bytes: INPUT0 BYTES [-1, -1]).
    def bytes_request(raw: bytes, shape: list[int]) -> pb.ModelInferRequest:
        return pb.ModelInferRequest(
            model_name="identity_bytes",
            inputs=[Tensor(name="INPUT0", datatype="BYTES", shape=shape)],
            raw_input_contents=[raw],
        )  # noqa: E501

    element = struct.pack("<I", 3) + b"abc"
    add("BYTES length prefix overruns", bytes_request(struct.pack("<I", 99) + b"abc", [1, 1]))
    add("BYTES trailing bytes", bytes_request(element + b"zz", [1, 1]))
    add("BYTES truncated length prefix", bytes_request(element + b"\x01\x00", [1, 2]))
    add("BYTES fewer elements than the shape", bytes_request(element * 2, [1, 3]))
    add("BYTES 4 GiB length", bytes_request(b"\xff\xff\xff\xff" + b"abcd", [1, 1]))
    add("BYTES element not UTF-8", bytes_request(struct.pack("<I", 2) + b"\xff\xfe", [1, 1]))

    # Parameters, outputs, model and version.
    def with_params(**params: pb.InferParameter) -> pb.ModelInferRequest:
        message = variant()
        for key, value in params.items():
            message.parameters[key].CopyFrom(value)
        return message

    add("timeout as a string", with_params(timeout=pb.InferParameter(string_param="10")))
    add("timeout negative", with_params(timeout=pb.InferParameter(int64_param=-5)))
    add("timeout as a bool", with_params(timeout=pb.InferParameter(bool_param=True)))
    add("timeout as a double", with_params(timeout=pb.InferParameter(double_param=1.5)))
    out = pb.ModelInferRequest.InferRequestedOutputTensor
    add("unknown output", variant(outputs=[out(name="NOPE")]))
    add("output asked twice", variant(outputs=[out(name="OUTPUT0"), out(name="OUTPUT0")]))
    shm = out(
        name="OUTPUT0", parameters={"shared_memory_region": pb.InferParameter(string_param="r")}
    )  # noqa: E501
    add("output in an unregistered shared memory region", variant(outputs=[shm]))

    # Shared memory: a region nobody registered, a tensor given twice, keys outside /dev/shm.
    in_shm = variant(raw=good.raw_input_contents[1:])
    in_shm.inputs[0].parameters["shared_memory_region"].string_param = "r"
    in_shm.inputs[0].parameters["shared_memory_byte_size"].int64_param = len(x)
    add("input in an unregistered shared memory region", in_shm)
    both = variant()
    both.inputs[0].parameters["shared_memory_region"].string_param = "r"
    add("input in shared memory and raw", both)
    for key in ["/../etc/passwd", "../etc/passwd", "/dev/shm/../../etc/passwd", "/proc/self/mem"]:
        register = pb.SystemSharedMemoryRegisterRequest(name="r", key=key, byte_size=8)
        add(f"register key {key}", register.SerializeToString(), "SystemSharedMemoryRegister")
    status = pb.SystemSharedMemoryStatusRequest(name="r")
    add("status of an unregistered region", status.SerializeToString(), "SystemSharedMemoryStatus")
    add("unknown model", variant(model_name="no_such_model"))
    add("empty model name", variant(model_name=""))
    add("unknown version", variant(model_version="7"))
    add("non-numeric version", variant(model_version="latest"))
    add("superscript digit version", variant(model_version="\u00b2"))
    add("huge version", variant(model_version="9" * 40))
    for rpc, message in [
        ("ModelMetadata", pb.ModelMetadataRequest(name="double", version="\u00b2")),
        ("ModelConfig", pb.ModelConfigRequest(name="double", version="9" * 40)),
    ]:
        add(f"bad version to {rpc}", message.SerializeToString(), rpc)
    return cases


def wire_accepted(rng: np.random.Generator) -> list[tuple[str, bytes, dict[str, np.ndarray]]]:
    """Valid requests in unusual wire form: unknown fields, a field repeated, fields reordered."""
    cases = []
    request, expected = double_request(rng, 3)
    valid = request.SerializeToString()
    unknown = varint(100 << 3 | 0) + varint(7) + field(101, b"future field") + b"\x9d\x06abcd"
    cases.append(("unknown fields", valid + unknown, expected))
    # A singular field repeated on the wire: the last one wins (protobuf's merge rule).
    cases.append(("model_name repeated", field(1, b"nonexistent") + valid, expected))
    request, expected = double_request(rng, 1)
    raw_first = b"".join(field(7, raw) for raw in request.raw_input_contents)
    del request.raw_input_contents[:]
    cases.append(("raw contents first", raw_first + request.SerializeToString(), expected))
    return cases


def mutate(data: bytes, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(5)
        pos = rnd.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip bits in one byte
            buf[min(pos, len(buf) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1:  # insert random bytes
            buf[pos:pos] = rnd.randbytes(rnd.randint(1, 8))
        elif op == 2:  # delete a range
            del buf[pos : pos + rnd.randint(1, 16)]
        elif op == 3:  # duplicate a range
            buf[pos:pos] = buf[pos : pos + rnd.randint(1, 32)]
        else:  # overwrite with 0xff (large varints, bad lengths)
            buf[pos : pos + rnd.randint(1, 4)] = b"\xff" * rnd.randint(1, 4)
    return bytes(buf)


# The double model as this test reads it, independently of the server's own decoder: INPUT0
# FP32 [rows, any width] and ID INT64 [rows, 1], rows 1..8 (max_batch_size), answered by
# OUTPUT0 = 2 * INPUT0 and ID_OUT = ID.
DOUBLE_INPUTS = {
    "INPUT0": ("FP32", np.float32, "fp32_contents"),
    "ID": ("INT64", np.int64, "int64_contents"),
}
DOUBLE_OUTPUTS = ("OUTPUT0", "ID_OUT")


def expected_for(raw: bytes) -> dict[str, np.ndarray] | None:
    """The exact answer the double model owes these bytes, or None when they are not a valid
    request for it. Read with the protobuf library and the protocol's rules only (raw contents
    are little-endian, row-major, one buffer per input; typed contents are the alternative), so
    the server's decoder cannot vouch for itself."""
    try:
        message = pb.ModelInferRequest.FromString(raw)
    except DecodeError:
        return None
    if message.model_name != "double" or message.model_version not in ("", "1"):
        return None
    raw_contents = list(message.raw_input_contents)
    if raw_contents and len(raw_contents) != len(message.inputs):
        return None
    arrays: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(message.inputs):
        if tensor.name not in DOUBLE_INPUTS or tensor.name in arrays or tensor.parameters:
            return None
        datatype, dtype, typed_field = DOUBLE_INPUTS[tensor.name]
        shape = list(tensor.shape)
        if tensor.datatype != datatype or len(shape) != 2 or not 1 <= shape[0] <= 8:
            return None
        if shape[1] < 0 or (tensor.name == "ID" and shape[1] != 1):
            return None
        count = shape[0] * shape[1]
        typed = tensor.contents.ListFields()
        if raw_contents:
            if typed or len(raw_contents[index]) != count * np.dtype(dtype).itemsize:
                return None
            values = np.frombuffer(raw_contents[index], dtype="<" + np.dtype(dtype).str[1:])
        else:
            if [f.name for f, _ in typed] != [typed_field] or len(typed[0][1]) != count:
                return None
            values = np.array(typed[0][1], dtype=dtype)
        arrays[tensor.name] = values.astype(dtype).reshape(shape)
    if set(arrays) != set(DOUBLE_INPUTS) or len({a.shape[0] for a in arrays.values()}) != 1:
        return None
    requested = [output.name for output in message.outputs]
    if any(output.parameters for output in message.outputs) or len(set(requested)) != len(
        requested
    ):
        return None
    if not set(requested) <= set(DOUBLE_OUTPUTS):
        return None
    answers = {"OUTPUT0": arrays["INPUT0"] * 2, "ID_OUT": arrays["ID"]}
    return {name: answers[name] for name in (requested or DOUBLE_OUTPUTS)}


def expected_reply(rpc: str, raw: bytes) -> bytes | None:
    """For the RPCs whose answer to any request is known in advance, the exact reply bytes;
    None when the bytes are not that RPC's request message."""
    request_type = getattr(pb, f"{rpc}Request")
    try:
        message = request_type.FromString(raw)
    except DecodeError:
        return None
    if rpc == "ServerLive":
        return pb.ServerLiveResponse(live=True).SerializeToString()
    if rpc == "ServerReady":
        return pb.ServerReadyResponse(ready=True).SerializeToString()
    if rpc == "ModelReady":
        served = {"double", "identity_bytes", "nonbatched"}
        ready = message.name in served and message.version in ("", "1")
        return pb.ModelReadyResponse(ready=ready).SerializeToString()
    return b""  # parses as the RPC's request; what it returns depends on the server's state


# --- the test --------------------------------------------------------------------------------


def test_malformed_requests_are_client_errors_and_the_server_carries_on(
    server: ServerProcess,
) -> None:
    rng = np.random.default_rng(SEED)
    rnd = random.Random(SEED)
    pid = server_pid(server)
    channel = grpc.insecure_channel(server.address)
    methods = {rpc: raw_method(channel, rpc) for rpc in UNARY_RPCS}
    infer = methods["ModelInfer"]

    def good() -> tuple[str, bytes, dict[str, np.ndarray]]:
        request, expected = double_request(rng, int(rng.integers(1, 9)))
        return "good", request.SerializeToString(), expected

    for _ in range(20):  # warm-up, so the memory baseline includes the working set
        _, raw, expected = good()
        assert_outputs(pb.ModelInferResponse.FromString(infer(raw, timeout=30)), expected)
    before = memory_kib(pid)

    malformed = crafted_cases(rng)
    template = double_request(rng, 2)[0].SerializeToString()
    for i in range(MUTATIONS):
        malformed.append((f"mutation {i}", "ModelInfer", mutate(template, rnd)))
    for i in sorted(rnd.sample(range(1, len(template)), TRUNCATIONS)):
        malformed.append((f"truncated to {i} bytes", "ModelInfer", template[:i]))
    for i in range(RANDOM_BYTES):
        rpc = rnd.choice(UNARY_RPCS)
        malformed.append((f"random bytes {i} to {rpc}", rpc, rnd.randbytes(rnd.randint(0, 300))))
    assert len(malformed) > 300

    failures: list[str] = []
    accepted = wire_accepted(rng)
    plan: list[tuple[str, str, bytes, dict[str, np.ndarray] | None]] = [
        (label, "ModelInfer", raw, expected) for label, raw, expected in accepted
    ]
    for n, (label, rpc, raw) in enumerate(malformed):
        plan.append((label, rpc, raw, None))
        if n % GOOD_EVERY == 0:
            label, raw, expected = good()
            plan.append((label, "ModelInfer", raw, expected))

    def check(label: str, rpc: str, raw: bytes, expected: dict | None, future: Future) -> None:
        try:
            response = future.result()
        except grpc.RpcError as error:
            code = error.code()
            if expected is not None:
                failures.append(f"{label}: good request failed: {code} {error.details()}")
            elif code in OUR_FAULTS:
                failures.append(f"{label} ({rpc}): {code.name} {error.details()}")
            return
        if expected is not None:
            assert_outputs(pb.ModelInferResponse.FromString(response), expected)
        elif label.startswith(("mutation", "random")) and rpc == "ModelInfer":
            # A mutation may still be a valid request; then the answer is exactly its outputs.
            must = expected_for(raw)
            if must is None:
                failures.append(f"{label}: OK for bytes that are not a valid request")
                return
            got = response_arrays(pb.ModelInferResponse.FromString(response))
            if sorted(got) != sorted(must):
                failures.append(f"{label}: outputs {sorted(got)}, expected {sorted(must)}")
            for name, array in must.items():
                if name in got and not (
                    got[name].dtype == array.dtype and np.array_equal(got[name], array)
                ):
                    failures.append(f"{label}: {name} is not the exact expected output")
        elif label.startswith("random"):
            must_bytes = expected_reply(rpc, raw)
            if must_bytes is None:
                failures.append(f"{label} ({rpc}): OK for bytes that are not its request")
            elif must_bytes and response != must_bytes:
                failures.append(f"{label} ({rpc}): reply {response!r}, expected {must_bytes!r}")
        else:
            failures.append(f"{label} ({rpc}): accepted, expected an error")

    for start in range(0, len(plan), WINDOW):
        window = plan[start : start + WINDOW]
        futures = [methods[rpc].future(raw, timeout=60) for _, rpc, raw, _ in window]
        for (label, rpc, raw, expected), future in zip(window, futures, strict=True):
            check(label, rpc, raw, expected, future)

    assert not failures, "\n".join(failures)
    live = pb.ServerLiveResponse.FromString(methods["ServerLive"](b"", timeout=10))
    assert live.live
    status = methods["SystemSharedMemoryStatus"](b"", timeout=10)
    regions = pb.SystemSharedMemoryStatusResponse.FromString(status).regions
    assert not regions, f"hostile requests registered shared memory: {dict(regions)}"
    _, raw, expected = good()
    assert_outputs(pb.ModelInferResponse.FromString(infer(raw, timeout=30)), expected)

    after = memory_kib(pid)
    channel.close()
    grown_rss = (after["VmRSS"] - before["VmRSS"]) / 1024
    grown_peak = (after["VmPeak"] - before["VmPeak"]) / 1024
    # A forged 1 GiB shape must not have reserved 1 GiB, even briefly.
    assert grown_peak < 256, f"VmPeak grew by {grown_peak:.0f} MiB: {before} -> {after}"
    assert grown_rss < 48, f"RSS grew by {grown_rss:.0f} MiB: {before} -> {after}"


def test_model_version_text_is_read_as_plain_digits(server: ServerProcess) -> None:
    """'²' passes str.isdigit() but int() rejects it: it must be NOT_FOUND, not INTERNAL."""
    with grpc.insecure_channel(server.address) as channel:
        metadata = raw_method(channel, "ModelMetadata")
        request = pb.ModelMetadataRequest(name="double", version="\u00b2").SerializeToString()
        with pytest.raises(grpc.RpcError) as caught:
            metadata(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "\u00b2" in caught.value.details()


def test_malformed_stream_messages_get_in_band_errors_on_an_open_stream(
    server: ServerProcess,
) -> None:
    """The same hostile bytes as ModelStreamInfer messages: each one is answered in-band with a
    client error, good requests between them are exact, and the stream stays open throughout."""
    rng = np.random.default_rng(SEED + 1)
    rnd = random.Random(SEED + 1)
    malformed = [raw for _, rpc, raw in crafted_cases(rng) if rpc == "ModelInfer"]
    template = double_request(rng, 2)[0].SerializeToString()
    malformed += [template[:i] for i in rnd.sample(range(1, len(template)), 20)]
    malformed += [rnd.randbytes(rnd.randint(0, 200)) for _ in range(30)]

    outbox: queue.Queue[bytes | None] = queue.Queue()
    expected: dict[str, dict[str, np.ndarray]] = {}
    for n, raw in enumerate(malformed):
        outbox.put(raw)
        if n % GOOD_EVERY == 0:
            request, outputs = double_request(rng, int(rng.integers(1, 9)))
            request.id = f"good-{n}"
            expected[request.id] = outputs
            outbox.put(request.SerializeToString())
    sent = len(malformed) + len(expected)

    with grpc.insecure_channel(server.address) as channel:
        call = channel.stream_stream(
            SERVICE + "ModelStreamInfer",
            request_serializer=None,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )(iter(outbox.get, None), timeout=120)
        failures, errors, answered = [], 0, set()
        for count, response in enumerate(call, start=1):
            infer = response.infer_response
            if response.error_message:
                errors += 1
                code = infer.parameters["error_code"].string_param
                if code in ("UNKNOWN", "INTERNAL", "") or infer.id.startswith("good-"):
                    failures.append(f"{infer.id!r}: {code} {response.error_message}")
            else:
                assert_outputs(infer, expected[infer.id])
                answered.add(infer.id)
            if count == sent:
                # Everything was answered on the open stream; one more good one, then close.
                last, outputs = double_request(rng, 3)
                last.id = "last"
                expected["last"] = outputs
                outbox.put(last.SerializeToString())
            elif count == sent + 1:
                outbox.put(None)
        assert call.code() == grpc.StatusCode.OK
    assert not failures, "\n".join(failures)
    assert errors == len(malformed)
    assert answered == set(expected)
