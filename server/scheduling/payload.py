"""Merging requests' rows into one batch and splitting the model's outputs back.

Runs in the instance's worker thread, never on the event loop: concatenating images is not free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from server.errors import InternalError
from server.scheduling.pending import PendingRequest


def merge_inputs(
    batch: Sequence[PendingRequest], input_names: Sequence[str]
) -> dict[str, np.ndarray]:
    if len(batch) == 1:
        return batch[0].request.inputs
    return {
        name: np.concatenate([p.request.inputs[name] for p in batch], axis=0)
        for name in input_names
    }


def output_names_for(
    batch: Sequence[PendingRequest], all_outputs: tuple[str, ...]
) -> tuple[str, ...]:
    """The union of the outputs the batch asked for, in the model's order."""
    wanted: set[str] = set()
    for p in batch:
        requested = p.request.requested_outputs
        if requested is None:
            return all_outputs
        wanted.update(requested)
    return tuple(n for n in all_outputs if n in wanted)


def split_outputs(
    batch: Sequence[PendingRequest],
    names: Sequence[str],
    arrays: Sequence[np.ndarray],
    rows: int,
    model: str,
    batched: bool,
) -> list[dict[str, np.ndarray]]:
    """Each request's own rows of each output it asked for, in its requested order."""
    if len(arrays) != len(names):
        raise InternalError(f"model '{model}': expected {len(names)} outputs, got {len(arrays)}")
    by_name = dict(zip(names, arrays, strict=True))
    if batched:
        for name, array in by_name.items():
            if array.ndim == 0 or array.shape[0] != rows:
                raise InternalError(
                    f"model '{model}': output '{name}' has shape {list(array.shape)}, "
                    f"expected {rows} rows in its first dimension for a batch of {rows}"
                )
    results = []
    start = 0
    for p in batch:
        wanted = p.request.requested_outputs or names
        if batched and len(batch) > 1:
            stop = start + p.rows
            results.append({n: by_name[n][start:stop] for n in wanted})
            start = stop
        else:
            results.append({n: by_name[n] for n in wanted})
    return results
