"""The configs `onnxserve tune` tries: one axis at a time from the completed config, then refined.

A candidate is a set of settings (axis -> value) over the starting config; `apply` turns it into
a ModelConfig, keeping the keys that depend on one another consistent (preferred batch sizes and
warm-up batches no larger than max_batch_size).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from server.backends.cpu_limits import usable_cores
from server.model_config import DynamicBatching, ModelConfig

AXES = (
    "instances",
    "threads",
    "spinning",
    "max_batch_size",
    "preferred_batch_size",
    "queue_delay",
)
BATCHING_AXES = ("max_batch_size", "preferred_batch_size", "queue_delay")
_BATCH_SIZES = (1, 4, 16, 64)
_QUEUE_DELAYS_US = (0, 500, 2000)

Settings = dict[str, Any]  # axis -> value


@dataclass
class Candidate:
    settings: Settings = field(default_factory=dict)  # empty: the starting config

    @property
    def label(self) -> str:
        if not self.settings:
            return "start"
        return ", ".join(f"{axis}={_show(value)}" for axis, value in self.settings.items())


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]" if value else "[]"
    return str(value)


def current(config: ModelConfig, axis: str) -> Any:
    batching = config.dynamic_batching
    return {
        "instances": config.instance_group.count,
        "threads": config.session.intra_op_num_threads,
        "spinning": config.session.intra_op_allow_spinning,
        "max_batch_size": config.max_batch_size,
        "preferred_batch_size": batching.preferred_batch_size if batching else (),
        "queue_delay": batching.max_queue_delay_microseconds if batching else 0,
    }[axis]


def skipped_axes(config: ModelConfig, axes: list[str]) -> dict[str, str]:
    """The asked-for axes that cannot apply to this model, with the reason."""
    if config.batched:
        return {}
    return {a: "the model is not batched (max_batch_size 0)" for a in axes if a in BATCHING_AXES}


def values(config: ModelConfig, axis: str) -> list[Any]:
    """The values worth trying on one axis, the current one left out."""
    cores = usable_cores()
    if axis == "instances":
        options: list[Any] = sorted({1, 2, cores})
    elif axis == "threads":
        options = sorted({1, cores})
    elif axis == "spinning":
        options = [False, True]
    elif axis == "max_batch_size":
        options = list(_BATCH_SIZES)
    elif axis == "preferred_batch_size":
        largest = config.max_batch_size or 1
        options = [(), (largest,)]
    else:
        options = list(_QUEUE_DELAYS_US)
    return [v for v in options if v != current(config, axis)]


def first_round(
    config: ModelConfig, axes: list[str], chosen: dict[str, list[Any]] | None = None
) -> list[Candidate]:
    """The starting config, then each axis varied alone (over `chosen` values where given)."""
    skipped = skipped_axes(config, axes)
    candidates = [Candidate()]
    for axis in axes:
        if axis not in skipped:
            options = (chosen or {}).get(axis) or values(config, axis)
            candidates.extend(Candidate({axis: v}) for v in options if v != current(config, axis))
    return candidates


def parse_values(text: str) -> tuple[str, list[Any]]:
    """ "max_batch_size=1,8" -> ("max_batch_size", [1, 8]); preferred_batch_size takes
    lists separated by "/": "preferred_batch_size=4/8,16" -> [(4, 8), (16,)]."""
    axis, _, listed = text.partition("=")
    axis = axis.strip()
    if axis not in AXES or not listed.strip():
        raise ValueError(f"expected AXIS=V1,V2 with AXIS one of {', '.join(AXES)}, got {text!r}")
    if axis == "preferred_batch_size":
        return axis, [tuple(int(v) for v in item.split("/") if v) for item in listed.split(",")]
    if axis == "spinning":
        return axis, [_flag(v) for v in listed.split(",") if v.strip()]
    return axis, [int(v) for v in listed.split(",") if v.strip()]


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"spinning: expected true or false, got {text!r}")


def combined(winners: list[Candidate]) -> Candidate | None:
    """The single-axis winners together, when more than one axis won."""
    settings: Settings = {}
    for winner in winners:
        for axis, value in winner.settings.items():
            settings.setdefault(axis, value)
    return Candidate(settings) if len(settings) > 1 else None


def apply(config: ModelConfig, candidate: Candidate) -> ModelConfig:
    """The candidate's settings over `config`, which may be the user's own, not completed: a
    max_batch_size left out (None) stays out unless the candidate sets it."""
    s = candidate.settings
    max_batch: int | None = s.get("max_batch_size", config.max_batch_size)
    limit = max_batch or 1 << 30  # None: completed later from the model, no limit known here
    batching = config.dynamic_batching
    if max_batch != 0 and any(a in s for a in ("preferred_batch_size", "queue_delay")):
        batching = batching or DynamicBatching()
    if batching is not None:
        preferred = s.get("preferred_batch_size", batching.preferred_batch_size)
        batching = dataclasses.replace(
            batching,
            preferred_batch_size=tuple(p for p in preferred if p <= limit),
            max_queue_delay_microseconds=s.get(
                "queue_delay", batching.max_queue_delay_microseconds
            ),
        )
    warmup = tuple(
        dataclasses.replace(w, batch_size=min(w.batch_size, limit)) if max_batch else w
        for w in config.model_warmup
    )
    return dataclasses.replace(
        config,
        max_batch_size=max_batch,
        dynamic_batching=batching,
        model_warmup=warmup,
        instance_group=dataclasses.replace(
            config.instance_group, count=s.get("instances", config.instance_group.count)
        ),
        session=dataclasses.replace(
            config.session,
            intra_op_num_threads=s.get("threads", config.session.intra_op_num_threads),
            intra_op_allow_spinning=s.get("spinning", config.session.intra_op_allow_spinning),
        ),
    )
