"""Runs a load generator against a server as a child process and reads its numbers back.

The packaged grpc.aio generator (`python -m clients.load`) always works; perf_analyzer (C++,
so the client takes less of the CPU the server needs) is used when it is on PATH. Both run
outside this process, so the tuner's own work never competes with the client's event loop.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LoadResult:
    """What one load run measured; the bench and the packaged generator report the same form."""

    throughput: float  # successful inferences per second
    p50_ms: float
    p99_ms: float
    errors: int
    failure: str = ""  # why the run produced no numbers, if it did not


def read_perf_analyzer_csv(csv_path: Path) -> LoadResult:
    """perf_analyzer's -f file: one row for the one concurrency it ran (latencies in us)."""
    with open(csv_path, newline="") as f:
        row = next(csv.DictReader(f))
    return LoadResult(
        throughput=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) / 1000,
        p99_ms=float(row["p99 latency"]) / 1000,
        errors=0,
    )


def perf_analyzer() -> str | None:
    return shutil.which("perf_analyzer")


def run_load(
    generator: str, address: str, model: str, concurrency: int, seconds: float, warmup: float
) -> LoadResult:
    if generator == "perf_analyzer":
        return _perf_analyzer(address, model, concurrency, seconds)
    command = [
        sys.executable, "-m", "clients.load", "--address", address, "--model", model,
        "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", str(warmup),
        "--channels", str(min(4, concurrency)),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + warmup + 120)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return LoadResult(0.0, 0.0, 0.0, 1, f"load generator exited {done.returncode}: {tail}")
    return LoadResult(**json.loads(done.stdout))


def _perf_analyzer(address: str, model: str, concurrency: int, seconds: float) -> LoadResult:
    binary = perf_analyzer()
    assert binary is not None
    with tempfile.TemporaryDirectory() as scratch:
        csv_path = Path(scratch) / "result.csv"
        command = [
            binary, "-m", model, "-u", address, "-i", "grpc", "-b", "1",
            "--concurrency-range", str(concurrency),
            # Three windows: a fixed time per measurement rather than "until stable".
            "--measurement-interval", str(max(100, int(seconds * 1000 / 3))),
            "--stability-percentage", "1000", "--max-trials", "3",
            "--input-data", "random", "-f", str(csv_path),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 300)
        if done.returncode != 0 or not csv_path.exists():
            tail = (done.stdout.strip().splitlines() or ["no output"])[-1]
            return LoadResult(0.0, 0.0, 0.0, 1, f"perf_analyzer: {tail}")
        return read_perf_analyzer_csv(csv_path)
