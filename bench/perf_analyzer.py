"""Runs Triton's perf_analyzer (C++, so the client costs little CPU) for one cell."""

from __future__ import annotations

import subprocess
from pathlib import Path

from server.tools.load_runner import LoadResult, read_perf_analyzer_csv

BENCH = Path(__file__).resolve().parent
PERF_ANALYZER = BENCH / ".venv-perf" / "bin" / "pa"  # wrapper written by bench/setup.sh
__all__ = ["LoadResult", "available", "run"]


def available() -> bool:
    if not PERF_ANALYZER.exists():
        return False
    try:
        run = subprocess.run([str(PERF_ANALYZER), "--version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return run.returncode == 0


def run(
    address: str,
    model: str,
    concurrency: int,
    window_ms: int,
    csv_path: Path,
    log_path: Path,
    protocol: str = "grpc",
    extra: tuple[str, ...] = (),
    streaming: bool = False,
) -> LoadResult:
    """Three measurement windows of window_ms (six at most when one is off): a fixed time per cell.

    perf_analyzer stops at the first failed request, so `errors` is 0 for a finished run and the
    run's own message is kept when it did not finish.
    """
    command = [
        str(PERF_ANALYZER),
        "-m", model, "-u", address, "-i", protocol, "-b", "1", *extra,
        "--concurrency-range", str(concurrency),
        "--measurement-interval", str(window_ms),
        # Any three windows count as stable, so the cell runs for a fixed time, not until stable.
        "--stability-percentage", "1000", "--max-trials", "6",
        "--input-data", "random",
        "-f", str(csv_path),
        *(["--streaming"] if streaming else []),  # ModelStreamInfer: one stream per client
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=600)
    if done.returncode != 0 or not csv_path.exists():
        lines = log_path.read_text(errors="replace").strip().splitlines()
        errors = [line for line in lines if "had error" in line]
        why = (errors or lines or ["no output"])[-1].strip()
        return LoadResult(0.0, 0.0, 0.0, max(1, len(errors)), f"perf_analyzer: {why}")
    return read_perf_analyzer_csv(csv_path)
