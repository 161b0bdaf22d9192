"""The benchmark's markdown: the cell table, the in-process ceiling, the ratios vs the targets."""

from __future__ import annotations

from dataclasses import dataclass

from bench.ceiling import CeilingResult
from bench.perf_analyzer import LoadResult


@dataclass
class Cell:
    model: str
    batching: str  # "off" | "on"
    concurrency: int
    generator: str
    result: LoadResult
    server_cpu: float  # cores the server used on average over the cell
    client_cpu: float  # cores the load generator used
    avg_batch: float | None  # rows per model execution, from the server's statistics


def cell_table(cells: list[Cell]) -> str:
    lines = [
        "| model | batching | concurrency | throughput (infer/s) | p50 (ms) | p99 (ms) "
        "| errors | rows per execution | server CPU (cores) | client CPU (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        r = c.result
        errors = f"{r.errors} ({r.failure})" if r.failure else str(r.errors)
        batch = "n/a" if c.avg_batch is None else f"{c.avg_batch:.1f}"
        lines.append(
            f"| {c.model} | {c.batching} | {c.concurrency} | {r.throughput:,.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {errors} | {batch} "
            f"| {c.server_cpu:.2f} | {c.client_cpu:.2f} |"
        )
    return "\n".join(lines)


def ceiling_table(rows: list[CeilingResult]) -> str:
    lines = [
        "| model | batch | intra-op threads | rows/s | p50 per call (ms) | p99 per call (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.batch} | {r.threads} | {r.rows_per_second:,.0f} "
            f"| {r.p50_ms:.3f} | {r.p99_ms:.3f} |"
        )
    return "\n".join(lines)


def _find(cells: list[Cell], model: str, batching: str, concurrency: int) -> LoadResult | None:
    for c in cells:
        if (c.model, c.batching, c.concurrency) == (model, batching, concurrency):
            return None if c.result.failure else c.result
    return None


def _ceiling(rows: list[CeilingResult], model: str, batch: int) -> CeilingResult | None:
    return next((r for r in rows if r.model == model and r.batch == batch), None)


def targets(cells: list[Cell], ceiling: list[CeilingResult], light: str, heavy: str) -> str:
    """The three ratios of issue 3, each from numbers of this one run."""
    lines = ["| target | measured | goal | met |", "|---|---:|---:|---|"]

    def add(name: str, value: float | None, goal: str, met: bool) -> None:
        shown = "n/a" if value is None else f"{value:.2f}"
        lines.append(f"| {name} | {shown} | {goal} | {'yes' if met else 'no'} |")

    on, off = _find(cells, light, "on", 16), _find(cells, light, "off", 16)
    ratio = on.throughput / off.throughput if on and off and off.throughput else None
    add(
        f"{light}, concurrency 16: throughput batching on / off",
        ratio,
        ">= 1.30",
        ratio is not None and ratio >= 1.3,
    )
    on, off = _find(cells, light, "on", 1), _find(cells, light, "off", 1)
    ratio = on.p50_ms / off.p50_ms if on and off and off.p50_ms else None
    add(
        f"{light}, concurrency 1: p50 batching on (delay 0) / off",
        ratio,
        "<= 1.10",
        ratio is not None and ratio <= 1.10,
    )
    served, inproc = _find(cells, heavy, "on", 16), _ceiling(ceiling, heavy, 8)
    ratio = served.throughput / inproc.rows_per_second if served and inproc else None
    add(
        f"{heavy}, concurrency 16, batching on: server / in-process batch 8",
        ratio,
        ">= 0.75",
        ratio is not None and ratio >= 0.75,
    )
    return "\n".join(lines)
