"""The transport-independent form of one inference request and its result.

Decoded once at the edge (server/grpc/codec.py) into numpy arrays; the core never sees protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.shared_memory import OutputPlacement


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    model_version: str  # "" = the highest ready version
    inputs: dict[str, np.ndarray]
    # None = every output the model declares; otherwise these names, in this order.
    requested_outputs: tuple[str, ...] | None = None
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    # Rows in the batch dimension; set by validation (1 for unbatched models).
    batch_size: int = 1
    # Monotonic deadline on the event loop's clock, or None.
    deadline: float | None = None
    # Outputs to write into shared memory instead of the response, by name; None: none.
    output_placements: dict[str, OutputPlacement] | None = None


@dataclass(slots=True)
class InferenceResult:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    id: str = ""
