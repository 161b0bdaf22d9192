"""server/validation.py on its own: a decoded request against a completed config."""

from __future__ import annotations

import numpy as np
import pytest

from server.errors import InvalidArgumentError
from server.inference import InferenceRequest
from server.model_config import ModelConfig, TensorConfig
from server.validation import RequestValidator

BATCHED = ModelConfig(
    name="clf",
    max_batch_size=4,
    inputs=(TensorConfig("features", "FP32", (3,)), TensorConfig("tokens", "BYTES", (-1,))),
    outputs=(TensorConfig("label", "INT64", (1,)), TensorConfig("scores", "FP32", (2,))),
)
UNBATCHED = ModelConfig(
    name="grid",
    max_batch_size=0,
    inputs=(TensorConfig("cells", "INT32", (2, -1)),),
    outputs=(TensorConfig("sum", "INT32", (2,)),),
)


def batched_inputs(rows: int = 2, width: int = 3, tokens: int = 5) -> dict[str, np.ndarray]:
    return {
        "features": np.zeros((rows, width), np.float32),
        "tokens": np.full((rows, tokens), b"t", dtype=object),
    }


def request(inputs: dict[str, np.ndarray], outputs: tuple[str, ...] | None = None):
    return InferenceRequest("clf", "", inputs, requested_outputs=outputs)


def rejected(config: ModelConfig, req: InferenceRequest) -> str:
    with pytest.raises(InvalidArgumentError) as info:
        RequestValidator(config).validate(req)
    return info.value.message


def test_a_good_request_gets_its_batch_size() -> None:
    for rows in (1, 4):
        req = request(batched_inputs(rows, tokens=rows + 7))
        RequestValidator(BATCHED).validate(req)
        assert req.batch_size == rows


def test_unbatched_model_takes_whole_tensors_with_batch_size_one() -> None:
    for width in (1, 9):
        req = InferenceRequest("grid", "", {"cells": np.zeros((2, width), np.int32)})
        RequestValidator(UNBATCHED).validate(req)
        assert req.batch_size == 1


def test_unknown_input() -> None:
    inputs = {**batched_inputs(), "extra": np.zeros((2, 3), np.float32)}
    assert rejected(BATCHED, request(inputs)) == (
        "model 'clf': unknown input 'extra'; the model's inputs are ['features', 'tokens']"
    )


def test_missing_input() -> None:
    inputs = batched_inputs()
    del inputs["features"]
    assert rejected(BATCHED, request(inputs)) == (
        "model 'clf': missing input(s) ['features']; "
        "expected inputs ['features', 'tokens'], got ['tokens']"
    )


def test_wrong_datatype() -> None:
    inputs = {**batched_inputs(), "features": np.zeros((2, 3), np.float64)}
    assert rejected(BATCHED, request(inputs)) == (
        "model 'clf': input 'features': expected datatype FP32, got FP64"
    )


def test_wrong_rank() -> None:
    inputs = {**batched_inputs(), "features": np.zeros(3, np.float32)}
    assert rejected(BATCHED, request(inputs)) == (
        "model 'clf': input 'features': expected shape [-1] + [3] "
        "(rank 2 with the batch dimension), got [3]"
    )


def test_wrong_dimension() -> None:
    assert rejected(BATCHED, request(batched_inputs(width=4))) == (
        "model 'clf': input 'features': expected shape [-1, 3], got [2, 4]"
    )


@pytest.mark.parametrize("rows", [0, 5])
def test_batch_outside_one_to_max_batch_size(rows: int) -> None:
    assert rejected(BATCHED, request(batched_inputs(rows))) == (
        "model 'clf': input 'features': expected a batch size of 1..4 (max_batch_size), "
        f"got {rows} in shape [{rows}, 3]"
    )


def test_inputs_disagree_on_the_batch_size() -> None:
    inputs = {**batched_inputs(2), "tokens": np.full((3, 1), b"", dtype=object)}
    message = rejected(BATCHED, request(inputs))
    assert message == ("model 'clf': input 'tokens': batch size 3 differs from the other inputs' 2")


def test_unbatched_shape_is_checked_whole() -> None:
    req = InferenceRequest("grid", "", {"cells": np.zeros((1, 2, 3), np.int32)})
    assert rejected(UNBATCHED, req) == (
        "model 'grid': input 'cells': expected shape [2, -1], got [1, 2, 3]"
    )


def test_requested_outputs_subset_in_any_order() -> None:
    req = request(batched_inputs(), outputs=("scores", "label"))
    RequestValidator(BATCHED).validate(req)
    assert req.requested_outputs == ("scores", "label")


def test_unknown_output() -> None:
    assert rejected(BATCHED, request(batched_inputs(), outputs=("probs",))) == (
        "model 'clf': unknown output 'probs'; the model's outputs are ['label', 'scores']"
    )


def test_output_requested_twice() -> None:
    message = rejected(BATCHED, request(batched_inputs(), outputs=("label", "label")))
    assert message == "model 'clf': output 'label' requested twice"
