"""The transport-independent form of one inference request and its response.

A frontend decodes its wire format into an InferenceRequest once (numpy arrays, parameters as
plain values, shared memory named but not yet read) and encodes the InferenceResponse once; the
core never sees protobuf or HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.shared_memory import OutputPlacement, RegionRef, SharedInput


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    model_version: str  # "" = the highest ready version
    inputs: dict[str, np.ndarray]
    # None = every output the model declares; otherwise these names, in this order.
    requested_outputs: tuple[str, ...] | None = None
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    # Which frontend took it ("grpc", "http"), and when (time.monotonic()): for the outcome report.
    protocol: str = "grpc"
    arrival: float = 0.0
    # Inputs that name a shared memory region instead of carrying bytes; the data plane reads
    # them into `inputs` before validation. None: none.
    shared_inputs: dict[str, SharedInput] | None = None
    # Outputs to write into shared memory instead of the response, by name; None: none.
    output_regions: dict[str, RegionRef] | None = None
    # Set by the data plane: rows in the batch dimension (1 for unbatched models), the deadline
    # on the event loop's monotonic clock, and the resolved output regions.
    batch_size: int = 1
    deadline: float | None = None
    output_placements: dict[str, OutputPlacement] | None = None


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str
    id: str
    # In the order the client asked for, or the model's order.
    outputs: dict[str, np.ndarray]
    # Outputs written into shared memory (still listed in `outputs` for their datatype and
    # shape): where, and how many bytes were written.
    placed: dict[str, tuple[OutputPlacement, int]] | None = None
