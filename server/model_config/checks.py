"""Checks that span several keys of a config, run on the parsed file and again once the model
has completed it. Each returns its problems as "<key.path[i]>: <what was expected>" lines."""

from __future__ import annotations

from server.errors import ConfigError
from server.model_config.types import ModelConfig, TensorConfig, TensorSignature


def check_unique_names(config: ModelConfig) -> list[str]:
    problems = _duplicates("inputs", [t.name for t in config.inputs])
    problems += _duplicates("outputs", [t.name for t in config.outputs])
    problems += _duplicates("execution_providers", [p.name for p in config.execution_providers])
    problems += _duplicates("model_warmup", [w.name for w in config.model_warmup])
    for index, warmup in enumerate(config.model_warmup):
        problems += _duplicates(f"model_warmup[{index}].inputs", [i.name for i in warmup.inputs])
    return problems


def _duplicates(path: str, names: list[str]) -> list[str]:
    problems: list[str] = []
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            problems.append(
                f"{path}[{index}].name: {name!r} is already used by {path}[{first[name]}]"
            )
        else:
            first[name] = index
    return problems


def check_batching(config: ModelConfig, origin: str = "") -> list[str]:
    """The keys bounded by max_batch_size; nothing to check while it is not known yet.

    `origin` follows "max_batch_size N" in messages when N was completed from the model.
    """
    max_batch = config.max_batch_size
    if max_batch is None:
        return []
    unbatched = f"needs max_batch_size > 0 (a batched model), but max_batch_size is 0{origin}"
    problems: list[str] = []
    batching = config.dynamic_batching
    if batching is not None and max_batch == 0:
        problems.append(f"dynamic_batching: {unbatched}")
    elif batching is not None:
        seen: set[int] = set()
        for index, size in enumerate(batching.preferred_batch_size):
            path = f"dynamic_batching.preferred_batch_size[{index}]"
            if size > max_batch:
                problems.append(f"{path}: {size} is larger than max_batch_size {max_batch}{origin}")
            elif size in seen:
                problems.append(f"{path}: {size} is listed twice")
            seen.add(size)
    for index, warmup in enumerate(config.model_warmup):
        path, size = f"model_warmup[{index}].batch_size", warmup.batch_size
        if max_batch == 0 and size > 1:
            problems.append(f"{path}: {size} {unbatched}")
        elif 0 < max_batch < size:
            problems.append(f"{path}: {size} is larger than max_batch_size {max_batch}{origin}")
    return problems


def check_warmup(config: ModelConfig) -> list[str]:
    """Warm-up inputs against the inputs, once those are known (declared or completed)."""
    if not config.inputs:
        return []
    inputs = {t.name: t for t in config.inputs}
    problems: list[str] = []
    for w_index, warmup in enumerate(config.model_warmup):
        for index, given in enumerate(warmup.inputs):
            path = f"model_warmup[{w_index}].inputs[{index}]"
            tensor = inputs.get(given.name)
            if tensor is None:
                problems.append(
                    f"{path}.name: {given.name!r} is not an input of the model;"
                    f" inputs: {tensor_names(config.inputs)}"
                )
                continue
            what = f"input {tensor.name!r}"
            if given.datatype != tensor.datatype:
                problems.append(
                    f"{path}.datatype: expected {tensor.datatype} as in {what},"
                    f" got {given.datatype}"
                )
            problems += compare_dims(f"{path}.dims", given.dims, tensor.dims, what)
    return problems


def compare_dims(
    path: str, given: tuple[int, ...], expected: tuple[int, ...], what: str, hint: str = ""
) -> list[str]:
    """-1 on either side matches any size."""
    if len(given) != len(expected):
        return [
            f"{path}: expected {len(expected)} dimensions as in {what} {list(expected)},"
            f" got {len(given)}: {list(given)}{hint}"
        ]
    return [
        f"{path}[{index}]: expected {want} as in {what} {list(expected)}, got {got}"
        for index, (got, want) in enumerate(zip(given, expected, strict=True))
        if -1 not in (got, want) and got != want
    ]


def tensor_names(tensors: tuple[TensorConfig, ...] | tuple[TensorSignature, ...]) -> str:
    return ", ".join(repr(t.name) for t in tensors) or "none"


def raise_if_any(problems: list[str], source: str) -> None:
    if problems:
        raise ConfigError("\n".join(f"{source}: {problem}" for problem in problems))
