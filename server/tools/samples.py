"""The inputs optimize measures with: the user's samples, or rows generated from the config.

--samples is an .npz with one array per input name, or a folder of NAME.npy files; for a
batched model the first dimension counts rows. Generated rows are random, so the accuracy
measured on them says little about accuracy on real data (the report says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from server import datatypes
from server.errors import ConfigError
from server.model_config import ModelConfig

GENERATED_ROWS = 64


def load_samples(path: Path, config: ModelConfig) -> dict[str, np.ndarray]:
    if path.is_dir():
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in sorted(path.glob("*.npy"))}
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    else:
        raise ConfigError(f"{path}: samples must be an .npz file or a folder of .npy files")
    expected = [t.name for t in config.inputs]
    if sorted(arrays) != sorted(expected):
        raise ConfigError(
            f"model '{config.name}': {path}: expected one array per input "
            f"({', '.join(expected)}), got {', '.join(sorted(arrays)) or 'none'}"
        )
    for tensor in config.inputs:
        want = datatypes.BY_NAME[tensor.datatype].numpy
        if tensor.datatype != "BYTES" and arrays[tensor.name].dtype != want:
            raise ConfigError(
                f"model '{config.name}': input '{tensor.name}': expected {np.dtype(want).name} "
                f"samples, got {arrays[tensor.name].dtype.name}"
            )
    if config.batched and len({len(a) for a in arrays.values()}) != 1:
        raise ConfigError(f"model '{config.name}': {path}: inputs have different row counts")
    return arrays


def generate_samples(config: ModelConfig, rows: int = GENERATED_ROWS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for tensor in config.inputs:
        dims = tuple(1 if d == -1 else d for d in tensor.dims)
        shape = ((rows,) if config.batched else ()) + dims
        kind = datatypes.BY_NAME[tensor.datatype]
        dtype = np.dtype(kind.numpy)
        if tensor.datatype == "BYTES":
            arrays[tensor.name] = np.full(shape, "sample", dtype=object)
        elif dtype.kind == "f":
            arrays[tensor.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[tensor.name] = rng.random(shape) < 0.5
        else:
            info = np.iinfo(dtype)
            high = min(int(info.max), 255) + 1
            arrays[tensor.name] = rng.integers(max(int(info.min), 0), high, shape).astype(dtype)
    return arrays


def row_count(samples: dict[str, np.ndarray], config: ModelConfig) -> int:
    return len(next(iter(samples.values()))) if config.batched else 1


def batch(samples: dict[str, np.ndarray], config: ModelConfig, size: int) -> dict[str, np.ndarray]:
    """The first `size` rows (repeated when there are fewer); a non-batched model's one input."""
    if not config.batched:
        return dict(samples)
    rows = row_count(samples, config)
    index = np.arange(size) % rows
    return {name: array[index] for name, array in samples.items()}


def chunks(
    samples: dict[str, np.ndarray], config: ModelConfig, size: int
) -> list[dict[str, np.ndarray]]:
    """Every row, in batches of at most `size`: the feeds accuracy and calibration run on."""
    if not config.batched:
        return [dict(samples)]
    rows = row_count(samples, config)
    return [
        {name: array[start : start + size] for name, array in samples.items()}
        for start in range(0, rows, size)
    ]
