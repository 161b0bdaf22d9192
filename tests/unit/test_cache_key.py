"""The response cache key and value form: what makes two requests the same, and outputs
stored and read back unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from server.cache.key import bypass_reason, model_fingerprint, request_key, version_hasher
from server.cache.value import decode_outputs, encode_outputs
from server.inference import InferenceRequest
from server.model_config import ModelConfig, ResponseCacheConfig
from server.shared_memory import OutputPlacement

BASE = version_hasher("m", 1, b"fingerprint")


def request(**changes: object) -> InferenceRequest:
    fields: dict[str, object] = {
        "model_name": "m",
        "model_version": "",
        "inputs": {
            "A": np.arange(4, dtype=np.float32).reshape(1, 4),
            "B": np.array([[7]], dtype=np.int64),
        },
    }
    fields.update(changes)
    return InferenceRequest(**fields)  # type: ignore[arg-type]


def key(r: InferenceRequest, base: hashlib.blake2b = BASE) -> bytes:
    return request_key(base, r)


def test_the_same_request_gets_the_same_256_bit_key() -> None:
    first, second = key(request()), key(request(id="another id"))
    assert first == second
    assert len(first) == 32
    # The digest is BLAKE2b over the layout, not a per-process hash(): fixed across runs.
    assert first == key(request(model_version="1"))  # the version served is in BASE


def a_inputs(array: np.ndarray) -> dict[str, np.ndarray]:
    return {"A": array, "B": np.array([[7]], dtype=np.int64)}


@pytest.mark.parametrize(
    "changed",
    [
        request(inputs=a_inputs(np.array([[0, 1, 2, 3.5]], dtype=np.float32))),  # bytes
        request(inputs=a_inputs(np.arange(4, dtype=np.float32).reshape(2, 2))),  # shape
        request(inputs=a_inputs(np.arange(4, dtype=np.int32).reshape(1, 4))),  # datatype
        request(
            inputs={
                "C": np.arange(4, dtype=np.float32).reshape(1, 4),
                "B": np.array([[7]], dtype=np.int64),
            }
        ),  # name
        request(requested_outputs=("OUT",)),
        request(requested_outputs=()),
        request(parameters={"custom": 1}),
        request(parameters={"custom": "1"}),
    ],
)
def test_anything_that_decides_the_response_changes_the_key(changed: InferenceRequest) -> None:
    assert key(changed) != key(request())


def test_the_model_version_and_what_was_loaded_are_in_the_key() -> None:
    same = key(request())
    assert key(request(), version_hasher("m", 2, b"fingerprint")) != same
    assert key(request(), version_hasher("n", 1, b"fingerprint")) != same
    assert key(request(), version_hasher("m", 1, b"reloaded")) != same
    assert key(request(), version_hasher("m", 1, b"fingerprint")) == same


def test_delivery_parameters_and_input_order_do_not_change_the_key() -> None:
    inputs = request().inputs
    reordered = request(inputs={"B": inputs["B"], "A": inputs["A"]})
    assert key(reordered) == key(request())
    assert key(request(parameters={"timeout": 5000, "priority": 1})) == key(request())


def test_fields_cannot_run_into_each_other() -> None:
    """Length prefixes: bytes moving between two inputs give another key."""
    one = {"A": np.frombuffer(b"ab", np.uint8), "B": np.frombuffer(b"c", np.uint8)}
    two = {"A": np.frombuffer(b"a", np.uint8), "B": np.frombuffer(b"bc", np.uint8)}
    assert key(request(inputs=one)) != key(request(inputs=two))


def test_bytes_inputs_key_the_same_as_bytes_or_as_prepared_text() -> None:
    raw = np.array([b"caf\xc3\xa9", b""], dtype=object)
    text = np.array(["café", ""], dtype=object)
    assert key(request(inputs={"S": raw})) == key(request(inputs={"S": text}))
    other = np.array([b"cafe", b""], dtype=object)
    assert key(request(inputs={"S": other})) != key(request(inputs={"S": raw}))


def test_a_non_contiguous_input_keys_like_its_contiguous_copy() -> None:
    base = np.arange(16, dtype=np.float32).reshape(4, 4)
    view = base[:, ::2]
    assert key(request(inputs={"A": view})) == key(request(inputs={"A": view.copy()}))


def test_stateful_and_shared_memory_requests_bypass_the_cache() -> None:
    assert bypass_reason(request()) is None
    assert bypass_reason(request(parameters={"sequence_id": 3})) == "sequence parameters"
    placements = {"OUT": OutputPlacement(region="r", offset=0, byte_size=16)}
    assert bypass_reason(request(output_placements=placements)) == "outputs go to shared memory"


def test_the_fingerprint_follows_the_model_file_and_config(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"one")
    config = ModelConfig(name="m", response_cache=ResponseCacheConfig(True))
    first = model_fingerprint(model, config)
    assert model_fingerprint(model, config) == first
    assert model_fingerprint(model, ModelConfig(name="m", max_batch_size=4)) != first
    model.write_bytes(b"two")
    assert model_fingerprint(model, config) != first


# --- the value ------------------------------------------------------------------------------


def test_outputs_come_back_equal_in_order_and_read_only() -> None:
    outputs = {
        "Z": np.arange(6, dtype=np.float16).reshape(2, 3),
        "A": np.array([[True, False]]),
        "S": np.array([["x", "ÿ"], ["", "long" * 100]], dtype=object),
        "E": np.zeros((0, 5), dtype=np.int64),
        "R": np.array(3.5, dtype=np.float64),  # rank 0
        "U": np.arange(2**8, dtype=np.uint64)[::3],  # not contiguous
    }
    decoded = decode_outputs(encode_outputs(outputs))
    assert list(decoded) == list(outputs)
    for name, array in outputs.items():
        got = decoded[name]
        assert got.shape == array.shape and got.dtype == array.dtype, name
        assert not got.flags.writeable, name
        if array.dtype == object:
            assert got.tolist() == [[s.encode() for s in row] for row in array.tolist()]
        else:
            assert np.array_equal(got, array), name


@pytest.mark.parametrize("value", [b"", b"\x01\x00\x00\x00", b"\x00\x00\x00\x00extra"])
def test_anything_else_is_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a cached response|trailing bytes"):
        decode_outputs(value)
