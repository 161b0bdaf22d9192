"""How far a variant's outputs are from the original's, per output.

Float outputs get the max and mean absolute error. Outputs that look like a choice get the
top-1 agreement, the share of rows where both pick the same: integer outputs (labels) compared
as they are, float outputs with a last dimension of at least 2 (class scores) by their argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutputError:
    name: str
    max_abs: float | None  # None for integer outputs
    mean_abs: float | None
    agreement: float | None  # None where the output is no choice


def compare(name: str, expected: np.ndarray, actual: np.ndarray, batched: bool) -> OutputError:
    if expected.shape != actual.shape:
        # A variant that changes an output's shape is as wrong as it can be.
        return OutputError(name, float("inf"), float("inf"), 0.0 if batched else None)
    if expected.dtype.kind in "iub":
        rows = _rows(expected, batched)
        same = np.all(rows == _rows(actual, batched), axis=1)
        return OutputError(name, None, None, float(same.mean()) if same.size else 1.0)
    diff = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    mean_abs = float(diff.mean()) if diff.size else 0.0
    agreement = None
    if expected.ndim >= 1 and expected.shape[-1] >= 2 and expected.size:
        picks = np.argmax(expected, axis=-1) == np.argmax(actual, axis=-1)
        agreement = float(picks.mean())
    return OutputError(name, max_abs, mean_abs, agreement)


def _rows(array: np.ndarray, batched: bool) -> np.ndarray:
    if not batched or array.ndim == 0:
        return array.reshape(1, -1)
    return array.reshape(array.shape[0], -1)


def worst(errors: list[OutputError]) -> tuple[float | None, float | None]:
    """(the largest max_abs, the smallest agreement) over the outputs that have them."""
    maxes = [e.max_abs for e in errors if e.max_abs is not None]
    agreements = [e.agreement for e in errors if e.agreement is not None]
    return (max(maxes) if maxes else None, min(agreements) if agreements else None)
