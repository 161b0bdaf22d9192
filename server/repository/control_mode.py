"""Model control modes, with Triton's names; apart so the command line can list them cheaply."""

from __future__ import annotations

import enum


class ControlMode(enum.Enum):
    NONE = "none"  # load every model at start
    POLL = "poll"  # also rescan the repository and apply what changed
    EXPLICIT = "explicit"  # load only what is asked for
