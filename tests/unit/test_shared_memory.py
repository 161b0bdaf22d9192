"""The shared memory registry on files in a temporary directory standing in for /dev/shm, and
requests decoded by the codec reading inputs from and writing outputs to its regions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from server.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from server.grpc import codec
from server.grpc.generated import grpc_service_pb2 as pb
from server.inference import InferenceRequest, InferenceResponse
from server.shared_memory import SharedMemoryRegistry

Tensor = pb.ModelInferRequest.InferInputTensor
Requested = pb.ModelInferRequest.InferRequestedOutputTensor


@pytest.fixture
def shm_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "shm"
    directory.mkdir()
    return directory


@pytest.fixture
def registry(shm_dir: Path):
    registry = SharedMemoryRegistry(shm_dir)
    yield registry
    registry.close()


def make(shm_dir: Path, name: str, data: bytes) -> str:
    (shm_dir / name).write_bytes(data)
    return f"/{name}"


def in_region(tensor: Tensor, region: str, size: int, offset: int = 0) -> Tensor:
    tensor.parameters["shared_memory_region"].string_param = region
    tensor.parameters["shared_memory_byte_size"].int64_param = size
    if offset:
        tensor.parameters["shared_memory_offset"].int64_param = offset
    return tensor


def resolved(message: pb.ModelInferRequest, registry: SharedMemoryRegistry) -> InferenceRequest:
    """The request as the data plane hands it on: decoded, then its regions read and located."""
    request = codec.decode_request(message)
    registry.resolve(request)
    return request


def test_register_maps_a_range_at_any_offset(shm_dir: Path, registry) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes: the offset crosses a page boundary
    key = make(shm_dir, "obj", data)
    region = registry.register("r", key, 5000, 100)
    assert region.read(10, 4, "x") == data[5010:5014]
    region.write(0, b"abcd", "x")
    assert (shm_dir / "obj").read_bytes()[5000:5004] == b"abcd"
    assert [(r.name, r.key, r.offset, r.byte_size) for r in registry.status()] == [
        ("r", "/obj", 5000, 100)
    ]


def test_a_read_is_a_copy(shm_dir: Path, registry) -> None:
    key = make(shm_dir, "obj", b"\x01" * 8)
    region = registry.register("r", key, 0, 8)
    copy = region.read(0, 8, "x")
    region.write(0, b"\x02" * 8, "x")
    assert copy == b"\x01" * 8


@pytest.mark.parametrize(
    "key", ["", "/", "/..", "/.", "..", "/a/b", "/../obj", "a/../obj", "/obj\0", "//obj"]
)
def test_keys_must_be_one_name_in_the_directory(shm_dir: Path, registry, key: str) -> None:
    make(shm_dir, "obj", b"\0" * 8)
    with pytest.raises(InvalidArgumentError, match="is not a POSIX shared memory name"):
        registry.register("r", key, 0, 8)
    assert registry.status() == []


def test_symlinks_and_non_files_are_refused(shm_dir: Path, tmp_path: Path, registry) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"\0" * 8)
    os.symlink(outside, shm_dir / "link")
    (shm_dir / "dir").mkdir()
    with pytest.raises(InvalidArgumentError, match="cannot open key '/link'"):
        registry.register("r", "/link", 0, 8)
    with pytest.raises(InvalidArgumentError, match="key '/dir'"):
        registry.register("r", "/dir", 0, 8)
    assert registry.status() == []


def test_register_checks_name_size_and_existence(shm_dir: Path, registry) -> None:
    key = make(shm_dir, "obj", b"\0" * 16)
    with pytest.raises(InvalidArgumentError, match="exceeds the 16 bytes of key '/obj'"):
        registry.register("r", key, 8, 9)
    with pytest.raises(InvalidArgumentError, match="expected a positive byte_size"):
        registry.register("r", key, 0, 0)
    with pytest.raises(InvalidArgumentError, match="expected a name"):
        registry.register("", key, 0, 8)
    with pytest.raises(InvalidArgumentError, match="key '/nope' does not exist"):
        registry.register("r", "/nope", 0, 8)
    registry.register("r", key, 0, 16)
    with pytest.raises(AlreadyExistsError, match="'r' is already registered"):
        registry.register("r", key, 0, 8)


def test_unregister_closes_and_status_of_unknown_is_not_found(shm_dir: Path, registry) -> None:
    key = make(shm_dir, "obj", b"\0" * 16)
    a = registry.register("a", key, 0, 8)
    registry.register("b", key, 8, 8)
    registry.unregister("a")
    assert a.closed
    with pytest.raises(NotFoundError, match="unknown shared memory region 'a'"):
        registry.status("a")
    with pytest.raises(NotFoundError, match="'a' was unregistered while in use"):
        a.read(0, 1, "x")
    registry.unregister("a")  # nothing to do
    registry.unregister()
    assert registry.status() == []


def test_decode_reads_inputs_from_regions_beside_raw_ones(shm_dir: Path, registry) -> None:
    x = np.arange(4, dtype=np.float32)
    key = make(shm_dir, "obj", b"\0" * 4 + x.tobytes())
    registry.register("r", key, 0, 20)
    y = np.ones(2, np.int64)
    message = pb.ModelInferRequest(
        model_name="m",
        inputs=[
            in_region(Tensor(name="X", datatype="FP32", shape=[4]), "r", 16, offset=4),
            Tensor(name="Y", datatype="INT64", shape=[2]),
        ],
        raw_input_contents=[y.tobytes()],  # one raw buffer: X is in shared memory
    )
    request = resolved(message, registry)
    np.testing.assert_array_equal(request.inputs["X"], x)
    np.testing.assert_array_equal(request.inputs["Y"], y)
    registry.get("r", "").write(4, b"\0" * 16, "")  # the client reuses the region
    np.testing.assert_array_equal(request.inputs["X"], x)


def test_decode_refuses_bad_shared_memory_inputs(shm_dir: Path, registry) -> None:
    registry.register("r", make(shm_dir, "obj", b"\0" * 16), 0, 16)

    def decode(tensor: Tensor, raw: list[bytes] | None = None):
        message = pb.ModelInferRequest(model_name="m", inputs=[tensor])
        message.raw_input_contents.extend(raw or [])
        return resolved(message, registry)

    with pytest.raises(InvalidArgumentError, match="shared_memory_byte_size is 12, expected 16"):
        decode(in_region(Tensor(name="X", datatype="FP32", shape=[4]), "r", 12))
    with pytest.raises(InvalidArgumentError, match="holds 16 bytes, got offset 8 and byte size 16"):
        decode(in_region(Tensor(name="X", datatype="FP32", shape=[4]), "r", 16, offset=8))
    with pytest.raises(InvalidArgumentError, match="also carries raw_input_contents"):
        decode(in_region(Tensor(name="X", datatype="FP32", shape=[4]), "r", 16), [b"\0" * 16])
    typed = in_region(Tensor(name="X", datatype="FP32", shape=[1]), "r", 4)
    typed.contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidArgumentError, match="also carries typed contents"):
        decode(typed)
    no_size = Tensor(name="X", datatype="FP32", shape=[4])
    no_size.parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(InvalidArgumentError, match="'shared_memory_byte_size' must be given"):
        decode(no_size)
    with pytest.raises(NotFoundError, match="input 'X': unknown shared memory region 'q'"):
        decode(in_region(Tensor(name="X", datatype="FP32", shape=[4]), "q", 16))


def test_encode_writes_placed_outputs_and_keeps_raw_contents_aligned(
    shm_dir: Path, registry
) -> None:
    registry.register("out", make(shm_dir, "obj", b"\0" * 32), 0, 32)
    message = pb.ModelInferRequest(
        model_name="m",
        outputs=[Requested(name="A"), in_region(Requested(name="B"), "out", 24, offset=8)],
    )
    placements = resolved(message, registry).output_placements
    assert placements is not None
    a, b = np.ones(2, np.float32), np.arange(6, dtype=np.int32).reshape(2, 3)
    answer = InferenceResponse("m", "1", "", {"A": a, "B": b})
    registry.write_outputs(answer, placements)
    response = codec.encode_response(answer)
    assert list(response.raw_output_contents) == [a.tobytes(), b""]
    assert (shm_dir / "obj").read_bytes()[8:32] == b.tobytes()
    params = response.outputs[1].parameters
    assert (params["shared_memory_region"].string_param, list(response.outputs[1].shape)) == (
        "out",
        [2, 3],
    )
    with pytest.raises(
        InvalidArgumentError, match="output 'B': the output is 28 bytes, .* was given 24"
    ):
        registry.write_outputs(
            InferenceResponse("m", "1", "", {"B": np.zeros(7, np.int32)}), placements
        )
