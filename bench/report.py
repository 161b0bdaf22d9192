"""The benchmark's markdown: the cell table, the in-process ceiling, the ratios vs the targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.ceiling import CeilingResult
from bench.perf_analyzer import LoadResult

if TYPE_CHECKING:  # these import the whole server
    from bench.grpc_floor import FloorCost
    from bench.request_path import PathResult

# Before the request-cost work (issue 13), measured with this bench: server CPU per request,
# tabular model, batching off, concurrency 16; resident memory once ready (bench/startup.py).
BASELINE_CPU_US = 600.0
BASELINE_RSS_MIB = 149.0


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
    rpc: str = "unary"  # gRPC "unary" ModelInfer, "stream" ModelStreamInfer, or "http"
    loop_cpu: float | None = None  # cores the server's event loop thread used

    @property
    def cpu_us(self) -> float | None:
        """Server CPU time per successful request, in microseconds."""
        throughput = self.result.throughput
        return self.server_cpu * 1e6 / throughput if throughput else None

    @property
    def loop_cpu_us(self) -> float | None:
        """The event loop thread's share of cpu_us."""
        throughput = self.result.throughput
        return self.loop_cpu * 1e6 / throughput if throughput and self.loop_cpu else None


def cell_table(cells: list[Cell]) -> str:
    lines = [
        "| model | batching | rpc | concurrency | throughput (infer/s) | p50 (ms) | p99 (ms) "
        "| errors | rows per execution | server CPU (cores) | server CPU per request (us) "
        "| of it the loop thread (us) | client CPU (cores) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        r = c.result
        errors = f"{r.errors} ({r.failure})" if r.failure else str(r.errors)
        batch = "n/a" if c.avg_batch is None else f"{c.avg_batch:.1f}"
        lines.append(
            f"| {c.model} | {c.batching} | {c.rpc} "
            f"| {c.concurrency} | {r.throughput:,.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {errors} | {batch} "
            f"| {c.server_cpu:.2f} | {_us(c.cpu_us)} | {_us(c.loop_cpu_us)} "
            f"| {c.client_cpu:.2f} |"
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


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def floor_table(floor: dict[int, LoadResult], costs: dict[int, FloorCost]) -> str:
    lines = [
        "| concurrency | throughput (infer/s) | p50 (ms) | p99 (ms) "
        "| server CPU per request (us) | of it the loop thread (us) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency, r in sorted(floor.items()):
        failed = f" {r.failure}" if r.failure else ""
        cost = costs.get(concurrency)
        lines.append(
            f"| {concurrency} | {r.throughput:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {_us(cost and cost.cpu_us)} | {_us(cost and cost.loop_cpu_us)} |{failed}"
        )
    return "\n".join(lines)


def _cell(
    cells: list[Cell], model: str, batching: str, concurrency: int, rpc: str = "unary"
) -> Cell | None:
    for c in cells:
        if (c.model, c.batching, c.concurrency, c.rpc) == (model, batching, concurrency, rpc):
            return None if c.result.failure else c
    return None


def _find(
    cells: list[Cell], model: str, batching: str, concurrency: int, rpc: str = "unary"
) -> LoadResult | None:
    cell = _cell(cells, model, batching, concurrency, rpc)
    return None if cell is None else cell.result


def _ceiling(rows: list[CeilingResult], model: str, batch: int) -> CeilingResult | None:
    return next((r for r in rows if r.model == model and r.batch == batch), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(
    cells: list[Cell],
    ceiling: list[CeilingResult],
    floor: dict[int, LoadResult],
    startup: tuple[float, float] | None,
    light: str,
    heavy: str,
) -> str:
    """The targets of issue 13, each from numbers of this one run. startup: (seconds, MiB)."""
    lines = ["| target | measured | goal | met |", "|---|---:|---:|---|"]

    def add(name: str, value: float | None, goal: str, met: bool, unit: str = "") -> None:
        shown = "n/a" if value is None else f"{value:,.2f}{unit}"
        lines.append(f"| {name} | {shown} | {goal} | {'yes' if met else 'no'} |")

    def floor_of(concurrency: int) -> LoadResult | None:
        r = floor.get(concurrency)
        return None if r is None or r.failure else r

    def throughput(r: LoadResult | None) -> float | None:
        return None if r is None else r.throughput

    for batching, concurrency, goal in (("on", 16, 0.85), ("off", 16, 0.65), ("off", 64, 0.65)):
        ratio = _ratio(
            throughput(_find(cells, light, batching, concurrency)),
            throughput(floor_of(concurrency)),
        )
        add(
            f"{light}, concurrency {concurrency}, batching {batching}: throughput / grpc_floor",
            ratio,
            f">= {goal}",
            ratio is not None and ratio >= goal,
        )
    on, base = _find(cells, light, "on", 1), floor_of(1)
    over = on.p50_ms - base.p50_ms if on and base else None
    add(
        f"{light}, concurrency 1, batching on (delay 0): p50 over the floor's p50 (ms)",
        over,
        "<= 0.12",
        over is not None and over <= 0.12,
    )
    for model in (light, heavy):
        on, off = _find(cells, model, "on", 1), _find(cells, model, "off", 1)
        ratio = _ratio(on.p50_ms if on else None, off.p50_ms if off else None)
        add(
            f"{model}, concurrency 1: p50 batching on / off",
            ratio,
            "<= 1.00",
            ratio is not None and ratio <= 1.0,
        )
    cell = _cell(cells, light, "off", 16)
    cpu = cell.cpu_us if cell else None
    add(
        f"{light}, concurrency 16, batching off: server CPU per request (us; before: "
        f"{BASELINE_CPU_US:.0f})",
        cpu,
        f"<= {BASELINE_CPU_US * 0.6:.0f}",
        cpu is not None and cpu <= BASELINE_CPU_US * 0.6,
    )
    stream, unary = _find(cells, light, "on", 16, "stream"), _find(cells, light, "on", 16)
    ratio = _ratio(throughput(stream), throughput(unary))
    add(
        f"{light}, concurrency 16, batching on: stream / unary throughput",
        ratio,
        ">= 1.3",
        ratio is not None and ratio >= 1.3,
    )
    served, inproc = _find(cells, heavy, "on", 16), _ceiling(ceiling, heavy, 8)
    ratio = _ratio(throughput(served), inproc.rows_per_second if inproc else None)
    add(
        f"{heavy}, concurrency 16, batching on: server / in-process batch 8",
        ratio,
        ">= 0.9",
        ratio is not None and ratio >= 0.9,
    )
    seconds, rss = startup if startup else (None, None)
    add(
        "start to ready, example repository (s, median of the runs)",
        seconds,
        "<= 0.5",
        seconds is not None and seconds <= 0.5,
    )
    add(
        f"resident memory once ready (MiB; before: {BASELINE_RSS_MIB:.0f})",
        rss,
        f"<= {BASELINE_RSS_MIB:.0f}",
        rss is not None and rss <= BASELINE_RSS_MIB,
    )
    return "\n".join(lines)


def cost_table(
    cells: list[Cell],
    floor_costs: dict[int, FloorCost],
    path: list[PathResult],
    round_trip: tuple[float, float] | None,
    light: str,
    concurrency: int = 16,
) -> str:
    """Where one unbatched request's server CPU goes: grpc alone, our path alone, the sum, and
    what the real server spent over gRPC and HTTP, in all and on the event loop's thread."""
    grpc_alone = floor_costs.get(concurrency)
    ours = next((r for r in path if (r.batching, r.concurrency) == ("off", concurrency)), None)
    served = _cell(cells, light, "off", concurrency)
    over_http = _cell(cells, light, "off", concurrency, "http")

    def added(a: float | None, b: float | None) -> float | None:
        return a + b if a is not None and b is not None else None

    rows = [
        ("grpc alone: the floor server", grpc_alone and grpc_alone.cpu_us,
         grpc_alone and grpc_alone.loop_cpu_us),
        ("our path without grpc (bench/request_path.py)", ours and ours.cpu_us,
         ours and ours.loop_cpu_us),
        ("... of it the instance-thread round trip", round_trip and round_trip[1], None),
        ("the two added: the server if they did not interfere",
         added(grpc_alone and grpc_alone.cpu_us, ours and ours.cpu_us),
         added(grpc_alone and grpc_alone.loop_cpu_us, ours and ours.loop_cpu_us)),
        ("the real server over gRPC", served and served.cpu_us, served and served.loop_cpu_us),
        ("the real server over HTTP (binary tensors)", over_http and over_http.cpu_us,
         over_http and over_http.loop_cpu_us),
        ("goal", BASELINE_CPU_US * 0.6, None),
    ]  # fmt: skip
    lines = [
        f"| {light}, concurrency {concurrency}, batching off | CPU per request (us) "
        "| of it the loop thread (us) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {_us(cpu)} | {_us(loop)} |" for name, cpu, loop in rows]
    return "\n".join(lines)
