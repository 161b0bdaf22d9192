"""The scheduler alone: CPU per request with a fake instance (no onnxruntime, no gRPC).

Drives Scheduler.infer from coroutines on one event loop, with the real instance thread and
statistics observer, and reports requests per second and process CPU time per request: the
cost of queueing, the thread handoff, splitting and statistics that every request pays below
the data plane. Best of three 1-second runs per setting (the machine's load only adds).

    .venv/bin/python bench/scheduler_cost.py
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `server` importable
    sys.path.insert(0, str(ROOT))

from server.inference import InferenceRequest  # noqa: E402
from server.observability.statistics import VersionStatistics  # noqa: E402
from server.scheduling.policy import BatchPolicy  # noqa: E402
from server.scheduling.scheduler import Scheduler  # noqa: E402


class EchoInstance:
    """Answers like the tabular model (label and probabilities per row) without computing."""

    def run(self, output_names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows = next(iter(feeds.values())).shape[0]
        return [np.zeros((rows, 1), np.int64), np.zeros((rows, 4), np.float32)]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(batching: bool, concurrency: int, seconds: float) -> tuple[float, float]:
    policy = BatchPolicy(batching, 64, 64, 0.0, 0, 0.0)
    scheduler = Scheduler(
        "tabular",
        [EchoInstance()],
        policy,
        ["features"],
        ["label", "probabilities"],
        batched=True,
        observer=VersionStatistics("tabular", "1"),
    )
    scheduler.start()
    features = np.zeros((1, 16), np.float32)
    done = 0
    stop = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await scheduler.infer(InferenceRequest("tabular", "", {"features": features}))
            done += 1

    cpu, start = _cpu(), time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed, cpu = time.monotonic() - start, _cpu() - cpu
    await scheduler.close()
    return done / elapsed, cpu / done * 1e6


def main() -> int:
    print("| batching | concurrency | requests/s | CPU per request (us) |\n|---|---:|---:|---:|")
    for batching in (False, True):
        for concurrency in (1, 16):
            runs = [asyncio.run(measure(batching, concurrency, 1.0)) for _ in range(3)]
            rate, cpu = min(runs, key=lambda r: r[1])
            print(f"| {'on' if batching else 'off'} | {concurrency} | {rate:,.0f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
