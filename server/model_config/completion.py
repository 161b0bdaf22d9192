"""Completing a ModelConfig from the ONNX model's signature.

Inputs, outputs and max_batch_size left out of config.yaml are taken from the model; the ones
given are checked against it, with the same messages as parsing.py.
"""

from __future__ import annotations

import dataclasses

from server.model_config.checks import (
    check_batching,
    check_warmup,
    compare_dims,
    raise_if_any,
    tensor_names,
)
from server.model_config.types import (
    DEFAULT_MAX_BATCH_SIZE,
    DynamicBatching,
    ModelConfig,
    ModelSignature,
    TensorConfig,
    TensorSignature,
)


def complete_config(config: ModelConfig, signature: ModelSignature, source: str) -> ModelConfig:
    """Fills inputs, outputs and max_batch_size from the model and checks declared ones against it.

    max_batch_size left out: DEFAULT_MAX_BATCH_SIZE (with dynamic batching, delay 0, unless
    configured) when every input and output has a dynamic first dimension, else 0. Inputs and
    outputs left out: all of the model's. Declared ones must match the model; every input must
    be declared, outputs may be a subset. A declared -1 where the model has a fixed size is
    narrowed to that size, as no other size can run.
    """
    max_batch = config.max_batch_size
    batching = config.dynamic_batching
    origin = ""
    problems: list[str] = []
    if max_batch is None:
        blocker = _batch_blocker(signature)
        if blocker is None:
            max_batch, origin = DEFAULT_MAX_BATCH_SIZE, " (completed from the model)"
            batching = batching or DynamicBatching()
        else:
            max_batch, origin = 0, f" (completed from the model: {blocker})"
    elif max_batch > 0:
        problems += _check_batch_dimension(config, signature)
    batched = max_batch > 0
    hint = ""
    if batched:
        hint = f"; dims leave out the batch dimension, as max_batch_size is {max_batch}{origin}"
    inputs = _complete_tensors("inputs", config.inputs, signature.inputs, batched, hint, problems)
    outputs = _complete_tensors(
        "outputs", config.outputs, signature.outputs, batched, hint, problems
    )
    completed = dataclasses.replace(
        config,
        max_batch_size=max_batch,
        inputs=inputs,
        outputs=outputs,
        dynamic_batching=batching,
    )
    problems += check_batching(completed, origin)
    if not problems:  # warm-up inputs are compared with inputs that are known to be right
        problems += check_warmup(completed)
    raise_if_any(problems, source)
    return completed


def _dynamic_first(tensor: TensorSignature) -> bool:
    return bool(tensor.shape) and (tensor.shape[0] is None or tensor.shape[0] < 0)


def _batch_blocker(signature: ModelSignature) -> str | None:
    """Why the model cannot be batched, or None when it can."""
    if not signature.inputs:
        return "it has no inputs"
    for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        for tensor in tensors:
            if not _dynamic_first(tensor):
                return (
                    f"{kind} {tensor.name!r} has shape {_shape(tensor)}, no dynamic first dimension"
                )
    return None


def _check_batch_dimension(config: ModelConfig, signature: ModelSignature) -> list[str]:
    """A given max_batch_size > 0 needs a dynamic first dimension in every tensor served."""
    served_outputs = {t.name for t in config.outputs}
    problems: list[str] = []
    for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        for tensor in tensors:
            if kind == "output" and served_outputs and tensor.name not in served_outputs:
                continue
            if not _dynamic_first(tensor):
                problems.append(
                    f"max_batch_size: {config.max_batch_size} needs a dynamic first (batch)"
                    f" dimension, but the model's {kind} {tensor.name!r} has shape"
                    f" {_shape(tensor)}; set max_batch_size: 0 to serve the model unbatched"
                )
    return problems


def _complete_tensors(
    section: str,
    declared: tuple[TensorConfig, ...],
    model: tuple[TensorSignature, ...],
    batched: bool,
    hint: str,
    problems: list[str],
) -> tuple[TensorConfig, ...]:
    """The tensors of one section, completed; problems are appended to `problems`."""
    if not declared:
        return tuple(TensorConfig(t.name, t.datatype, _model_dims(t, batched)) for t in model)
    kind = section.removesuffix("s")
    by_name = {t.name: t for t in model}
    completed: list[TensorConfig] = []
    for index, tensor in enumerate(declared):
        path = f"{section}[{index}]"
        found = by_name.get(tensor.name)
        if found is None:
            problems.append(
                f"{path}.name: {tensor.name!r} is not an {kind} of the model;"
                f" the model's {section}: {tensor_names(model)}"
            )
            continue
        what = f"the model's {kind} {found.name!r}"
        if tensor.datatype != found.datatype:
            problems.append(
                f"{path}.datatype: expected {found.datatype} as in {what}, got {tensor.datatype}"
            )
        expected = _model_dims(found, batched)
        problems += compare_dims(f"{path}.dims", tensor.dims, expected, what, hint)
        completed.append(dataclasses.replace(tensor, dims=_narrow(tensor.dims, expected)))
    if section == "inputs":  # a session cannot run without every input
        names = {t.name for t in declared}
        problems += [
            f"inputs: the model's input {t.name!r} is not declared;"
            " when inputs are given, every input must be listed"
            for t in model
            if t.name not in names
        ]
    return tuple(completed)


def _model_dims(tensor: TensorSignature, batched: bool) -> tuple[int, ...]:
    shape = tensor.shape[1:] if batched else tensor.shape
    return tuple(-1 if d is None or d < 0 else d for d in shape)


def _narrow(given: tuple[int, ...], expected: tuple[int, ...]) -> tuple[int, ...]:
    if len(given) != len(expected):
        return given
    return tuple(want if got == -1 else got for got, want in zip(given, expected, strict=True))


def _shape(tensor: TensorSignature) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in tensor.shape) + "]"
