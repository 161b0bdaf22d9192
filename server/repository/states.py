"""Per-version model states, with Triton's names so operators find what they know."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ModelState(enum.Enum):
    UNKNOWN = "UNKNOWN"
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class VersionStatus:
    name: str
    version: int | None  # None when no version could be read at all
    state: ModelState
    reason: str = ""
