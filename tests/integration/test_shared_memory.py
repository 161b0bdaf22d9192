"""System shared memory with tritonclient and its own shm helpers, unchanged: register, status,
unregister, inputs read from and outputs written to regions, unary and streamed, and the
mistakes a client can make with them."""

from __future__ import annotations

import os
import queue
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from tests import models
from tests.harness import ServerProcess

SHM = Path("/dev/shm")
VECTOR = 16 * 4  # one row of add_sub: 16 FP32


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("models")
    models.build_add_sub(repo)
    models.build_identity(repo, datatype="BYTES")
    return start_module_server(repo)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.address) as client:
        yield client
        client.unregister_system_shared_memory()  # every region this test registered
        assert client.get_system_shared_memory_status().regions == {}


@pytest.fixture
def create() -> Iterator[Callable[[int], shm.SharedMemoryRegion]]:
    """create(byte_size) -> a new shm object under a unique key; all are destroyed after."""
    handles: list[shm.SharedMemoryRegion] = []

    def make(byte_size: int) -> shm.SharedMemoryRegion:
        key = f"/onnxserve-test-{uuid.uuid4().hex[:12]}"
        handle = shm.create_shared_memory_region(key[1:], key, byte_size, create_only=True)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        shm.destroy_shared_memory_region(handle)
        assert not (SHM / handle._shm_key[1:]).exists()


def key_of(handle: shm.SharedMemoryRegion) -> str:
    return handle._shm_key


def vectors(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((1, 16), dtype=np.float32),
        rng.standard_normal((1, 16), dtype=np.float32),
    )


def shm_input(name: str, region: str, byte_size: int, offset: int = 0) -> triton.InferInput:
    tensor = triton.InferInput(name, [1, 16], "FP32")
    tensor.set_shared_memory(region, byte_size, offset)
    return tensor


def shm_output(name: str, region: str, byte_size: int, offset: int = 0):
    output = triton.InferRequestedOutput(name)
    output.set_shared_memory(region, byte_size, offset)
    return output


def error_of(call: Callable, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    return info.value


def test_server_offers_system_shared_memory(client: triton.InferenceServerClient) -> None:
    extensions = client.get_server_metadata().extensions
    assert "system_shared_memory" in extensions
    assert "cuda_shared_memory" not in extensions


def test_inputs_and_outputs_in_shared_memory(client, create) -> None:
    x0, x1 = vectors()
    inputs = create(2 * VECTOR + 8)
    outputs = create(2 * VECTOR)
    # Both inputs in one object: INPUT1 at an offset into the region, the region at 8 bytes.
    shm.set_shared_memory_region(inputs, [x0, x1], offset=8)
    client.register_system_shared_memory("in", key_of(inputs), 2 * VECTOR, offset=8)
    client.register_system_shared_memory("out", key_of(outputs), 2 * VECTOR)

    result = client.infer(
        "add_sub",
        [shm_input("INPUT0", "in", VECTOR), shm_input("INPUT1", "in", VECTOR, offset=VECTOR)],
        outputs=[
            shm_output("OUTPUT0", "out", VECTOR),
            shm_output("OUTPUT1", "out", VECTOR, VECTOR),
        ],
    )

    got0 = shm.get_contents_as_numpy(outputs, np.float32, [1, 16])
    got1 = shm.get_contents_as_numpy(outputs, np.float32, [1, 16], offset=VECTOR)
    np.testing.assert_array_equal(got0, x0 + x1)
    np.testing.assert_array_equal(got1, x0 - x1)
    # As Triton: the outputs are described, their raw buffers left empty but kept in order.
    response = result.get_response()
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("OUTPUT0", "FP32", [1, 16]),
        ("OUTPUT1", "FP32", [1, 16]),
    ]
    assert list(response.raw_output_contents) == [b"", b""]
    params = result.get_output("OUTPUT1").parameters
    assert params["shared_memory_region"].string_param == "out"
    assert params["shared_memory_byte_size"].int64_param == VECTOR
    assert params["shared_memory_offset"].int64_param == VECTOR


def test_input_in_shared_memory_output_in_the_response(client, create) -> None:
    x0, x1 = vectors(1)
    region = create(VECTOR)
    shm.set_shared_memory_region(region, [x0])
    client.register_system_shared_memory("in0", key_of(region), VECTOR)
    raw_input = triton.InferInput("INPUT1", [1, 16], "FP32").set_data_from_numpy(x1)

    result = client.infer("add_sub", [shm_input("INPUT0", "in0", VECTOR), raw_input])

    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x0 + x1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), x0 - x1)


def test_an_input_is_copied_when_the_request_is_read(client, create) -> None:
    x0, x1 = vectors(2)
    region = create(VECTOR)
    shm.set_shared_memory_region(region, [x0])
    client.register_system_shared_memory("in0", key_of(region), VECTOR)
    raw_input = triton.InferInput("INPUT1", [1, 16], "FP32").set_data_from_numpy(x1)
    first = client.infer("add_sub", [shm_input("INPUT0", "in0", VECTOR), raw_input])
    shm.set_shared_memory_region(region, [x0 * 3])  # the client reuses the region
    second = client.infer("add_sub", [shm_input("INPUT0", "in0", VECTOR), raw_input])
    np.testing.assert_array_equal(first.as_numpy("OUTPUT0"), x0 + x1)
    np.testing.assert_array_equal(second.as_numpy("OUTPUT0"), x0 * 3 + x1)


def test_bytes_input_through_shared_memory(client, create) -> None:
    text = np.array([["α", "", "tritonclient"]], dtype=object)
    serialized = triton.serialize_byte_tensor(text)
    size = len(serialized.item())
    region = create(size)
    shm.set_shared_memory_region(region, [serialized])
    client.register_system_shared_memory("text", key_of(region), size)
    tensor = triton.InferInput("INPUT0", [1, 3], "BYTES")
    tensor.set_shared_memory("text", size)

    result = client.infer("identity_bytes", [tensor])

    assert result.as_numpy("OUTPUT0").tolist() == [["α".encode(), b"", b"tritonclient"]]


def test_streamed_request_in_shared_memory(client, create) -> None:
    x0, x1 = vectors(3)
    inputs, outputs = create(2 * VECTOR), create(VECTOR)
    shm.set_shared_memory_region(inputs, [x0, x1])
    client.register_system_shared_memory("in", key_of(inputs), 2 * VECTOR)
    client.register_system_shared_memory("out", key_of(outputs), VECTOR)
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer(
            "add_sub",
            [shm_input("INPUT0", "in", VECTOR), shm_input("INPUT1", "in", VECTOR, VECTOR)],
            outputs=[shm_output("OUTPUT1", "out", VECTOR)],
            request_id="s1",
        )
        result, error = results.get(timeout=30)
    finally:
        client.stop_stream()
    assert error is None
    assert result.get_response().id == "s1"
    got = shm.get_contents_as_numpy(outputs, np.float32, [1, 16])
    np.testing.assert_array_equal(got, x0 - x1)


def test_status_lists_regions_and_unregister_removes_them(client, create) -> None:
    a, b = create(64), create(128)
    client.register_system_shared_memory("a", key_of(a), 64)
    client.register_system_shared_memory("b", key_of(b), 100, offset=28)

    regions = client.get_system_shared_memory_status().regions
    assert {n: (r.name, r.key, r.offset, r.byte_size) for n, r in regions.items()} == {
        "a": ("a", key_of(a), 0, 64),
        "b": ("b", key_of(b), 28, 100),
    }
    assert list(client.get_system_shared_memory_status("b").regions) == ["b"]

    client.unregister_system_shared_memory("a")
    assert list(client.get_system_shared_memory_status().regions) == ["b"]
    error = error_of(client.get_system_shared_memory_status, "a")
    assert error.status() == "StatusCode.NOT_FOUND"
    client.unregister_system_shared_memory("a")  # unknown: nothing to do, as in Triton
    client.unregister_system_shared_memory()  # all
    assert client.get_system_shared_memory_status().regions == {}


def test_registering_a_name_twice_fails(client, create) -> None:
    region = create(64)
    client.register_system_shared_memory("twice", key_of(region), 64)
    error = error_of(client.register_system_shared_memory, "twice", key_of(region), 32)
    assert error.status() == "StatusCode.ALREADY_EXISTS"
    assert "system shared memory region 'twice' is already registered" in error.message()
    assert client.get_system_shared_memory_status("twice").regions["twice"].byte_size == 64


def test_an_unknown_region_in_a_request(client) -> None:
    error = error_of(client.infer, "add_sub", [shm_input("INPUT0", "nosuch", VECTOR)])
    assert error.status() == "StatusCode.NOT_FOUND"
    assert error.message() == (
        "model 'add_sub': input 'INPUT0': unknown shared memory region 'nosuch'"
    )


def test_a_region_too_small_for_an_output(client, create) -> None:
    x0, x1 = vectors()
    inputs, small = create(2 * VECTOR), create(VECTOR)
    shm.set_shared_memory_region(inputs, [x0, x1])
    client.register_system_shared_memory("in", key_of(inputs), 2 * VECTOR)
    client.register_system_shared_memory("small", key_of(small), VECTOR)
    error = error_of(
        client.infer,
        "add_sub",
        [shm_input("INPUT0", "in", VECTOR), shm_input("INPUT1", "in", VECTOR, VECTOR)],
        outputs=[shm_output("OUTPUT0", "small", 32)],
    )
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == (
        "model 'add_sub': output 'OUTPUT0': the output is 64 bytes, shared memory region "
        "'small' was given 32 (shared_memory_byte_size)"
    )
    # Past the end of the region: refused before the request runs.
    error = error_of(
        client.infer,
        "add_sub",
        [shm_input("INPUT0", "in", VECTOR), shm_input("INPUT1", "in", VECTOR, VECTOR)],
        outputs=[shm_output("OUTPUT0", "small", VECTOR, offset=8)],
    )
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "region 'small' holds 64 bytes, got offset 8 and byte size 64" in error.message()


def test_an_input_byte_size_that_does_not_match_the_shape(client, create) -> None:
    region = create(2 * VECTOR)
    client.register_system_shared_memory("in", key_of(region), 2 * VECTOR)
    error = error_of(client.infer, "add_sub", [shm_input("INPUT0", "in", VECTOR + 4)])
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == (
        "model 'add_sub': input 'INPUT0': shared_memory_byte_size is 68, expected 64 "
        "for shape [1, 16] of FP32"
    )


def test_a_region_past_the_end_of_its_object_is_refused(client, create) -> None:
    region = create(64)
    error = error_of(client.register_system_shared_memory, "r", key_of(region), 64, offset=1)
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "offset 1 + byte_size 64 exceeds the 64 bytes" in error.message()
    assert client.get_system_shared_memory_status().regions == {}


def test_a_key_that_does_not_exist(client) -> None:
    error = error_of(client.register_system_shared_memory, "r", "/onnxserve-no-such-key", 64)
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == (
        "system shared memory region 'r': key '/onnxserve-no-such-key' does not exist "
        "(/dev/shm/onnxserve-no-such-key)"
    )


@pytest.mark.parametrize(
    "key", ["/../etc/hostname", "../etc/hostname", "/dev/shm/../../etc/hostname", "/", "/.."]
)
def test_keys_outside_dev_shm_are_refused(client, key: str) -> None:
    error = error_of(client.register_system_shared_memory, "r", key, 1)
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "is not a POSIX shared memory name" in error.message()
    assert client.get_system_shared_memory_status().regions == {}


def test_a_symlink_in_dev_shm_is_refused(client, tmp_path: Path) -> None:
    target = tmp_path / "outside"
    target.write_bytes(b"\0" * 64)
    link = SHM / f"onnxserve-test-link-{uuid.uuid4().hex[:12]}"
    os.symlink(target, link)
    try:
        error = error_of(client.register_system_shared_memory, "r", f"/{link.name}", 64)
    finally:
        link.unlink()
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert f"cannot open key '/{link.name}'" in error.message()
    assert client.get_system_shared_memory_status().regions == {}
