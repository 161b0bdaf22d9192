"""Checks a decoded request against a model's completed config before it is queued."""

from __future__ import annotations

import numpy as np

from server import datatypes
from server.errors import InvalidArgumentError
from server.inference import InferenceRequest
from server.model_config import ModelConfig


def _dims_text(dims: tuple[int, ...] | list[int]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


class RequestValidator:
    """Built once per model version; `validate` runs on every request."""

    def __init__(self, config: ModelConfig) -> None:
        self._model = f"model '{config.name}'"
        self._max_batch_size = config.max_batch_size or 0
        self._inputs = {t.name: (datatypes.BY_NAME[t.datatype], t.dims) for t in config.inputs}
        self._outputs = frozenset(t.name for t in config.outputs)
        self._output_order = tuple(t.name for t in config.outputs)

    def validate(self, request: InferenceRequest) -> None:
        """Sets request.batch_size; raises InvalidArgumentError naming model, tensor and values."""
        inputs = request.inputs
        for name in inputs:
            if name not in self._inputs:
                raise InvalidArgumentError(
                    f"{self._model}: unknown input '{name}'; "
                    f"the model's inputs are {sorted(self._inputs)}"
                )
        if len(inputs) != len(self._inputs):
            missing = [name for name in self._inputs if name not in inputs]
            raise InvalidArgumentError(
                f"{self._model}: missing input(s) {missing}; "
                f"expected inputs {list(self._inputs)}, got {list(inputs)}"
            )

        batch_size = 0
        for name, array in inputs.items():
            dtype, dims = self._inputs[name]
            batch_size = self._check_tensor(name, array, dtype, dims, batch_size)
        request.batch_size = batch_size or 1

        if request.requested_outputs is not None:
            seen: set[str] = set()
            for name in request.requested_outputs:
                if name not in self._outputs:
                    raise InvalidArgumentError(
                        f"{self._model}: unknown output '{name}'; "
                        f"the model's outputs are {list(self._output_order)}"
                    )
                if name in seen:
                    raise InvalidArgumentError(f"{self._model}: output '{name}' requested twice")
                seen.add(name)

    def _check_tensor(
        self,
        name: str,
        array: np.ndarray,
        dtype: datatypes.Datatype,
        dims: tuple[int, ...],
        batch_size: int,
    ) -> int:
        got = datatypes.from_numpy(array.dtype)
        if got is not dtype:
            raise InvalidArgumentError(
                f"{self._model}: input '{name}': expected datatype {dtype.name}, got {got.name}"
            )
        shape = array.shape
        if self._max_batch_size:
            expected_rank = len(dims) + 1
            if len(shape) != expected_rank:
                raise InvalidArgumentError(
                    f"{self._model}: input '{name}': expected shape [-1] + {_dims_text(dims)} "
                    f"(rank {expected_rank} with the batch dimension), got {_dims_text(shape)}"
                )
            rows = shape[0]
            if rows < 1 or rows > self._max_batch_size:
                raise InvalidArgumentError(
                    f"{self._model}: input '{name}': expected a batch size of "
                    f"1..{self._max_batch_size} (max_batch_size), got {rows} "
                    f"in shape {_dims_text(shape)}"
                )
            if batch_size and rows != batch_size:
                raise InvalidArgumentError(
                    f"{self._model}: input '{name}': batch size {rows} differs from the "
                    f"other inputs' {batch_size}"
                )
            item_shape = shape[1:]
            batch_size = rows
        else:
            item_shape = shape
        if len(item_shape) != len(dims) or any(
            d != -1 and d != s for d, s in zip(dims, item_shape, strict=True)
        ):
            expected = ([-1] if self._max_batch_size else []) + list(dims)
            raise InvalidArgumentError(
                f"{self._model}: input '{name}': expected shape {_dims_text(expected)}, "
                f"got {_dims_text(shape)}"
            )
        return batch_size
