"""How a model's queue forms batches, derived once from its config."""

from __future__ import annotations

from dataclasses import dataclass

from server.model_config import ModelConfig


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    batching: bool  # False: each request runs alone
    max_rows: int  # rows per execution at most
    target_rows: int  # largest preferred size, else max_rows: a batch of several never exceeds it
    max_delay: float  # seconds the oldest request may wait for more
    max_queue_size: int  # 0: unbounded
    default_timeout: float  # seconds; 0: none

    @classmethod
    def from_config(cls, config: ModelConfig) -> BatchPolicy:
        dynamic = config.dynamic_batching
        max_rows = config.max_batch_size or 1
        if dynamic is None or not config.max_batch_size:
            return cls(False, max_rows, max_rows, 0.0, 0, 0.0)
        target = max(dynamic.preferred_batch_size, default=max_rows)
        return cls(
            batching=True,
            max_rows=max_rows,
            target_rows=min(target, max_rows),
            max_delay=dynamic.max_queue_delay_microseconds / 1e6,
            max_queue_size=dynamic.max_queue_size,
            default_timeout=dynamic.default_timeout_microseconds / 1e6,
        )
