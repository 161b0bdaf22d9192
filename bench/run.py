"""Benchmarks the real server over gRPC and prints markdown tables.

For each example model and each batching setting it builds a one-model repository, starts
`python -m server serve` on it, and drives it for a fixed time per concurrency with Triton's
perf_analyzer (bench/setup.sh installs it), or with bench/aio_load.py where perf_analyzer cannot
run. Right after a model's cells it runs that model in-process with onnxruntime (the ceiling);
after the first model's, a grpc.aio server that returns canned replies under the same load (the
floor, bench/grpc_floor.py) and our request path without the transport (bench/request_path.py).
Last come the start-to-ready measurement (bench/startup.py) and the targets of issue 13, all
from this one run. Everything lands in bench/results/<time>/ (repositories, logs, report.md,
results.json).

    make bench                       # setup + the full run
    .venv/bin/python bench/run.py --models tabular --concurrency 16 --seconds 2 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `server` importable
    sys.path.insert(0, str(ROOT))

from bench import ceiling, perf_analyzer, request_path  # noqa: E402
from bench import startup as startup_bench  # noqa: E402
from bench.ceiling import CeilingResult  # noqa: E402
from bench.perf_analyzer import LoadResult  # noqa: E402
from bench.report import (  # noqa: E402
    Cell,
    ceiling_table,
    cell_table,
    cost_table,
    floor_table,
    targets,
)
from bench.request_path import PathResult  # noqa: E402

if TYPE_CHECKING:
    from bench.grpc_floor import FloorCost  # it imports this module
from bench.server_process import BenchServer  # noqa: E402
from server.model_config import MODEL_FILE, dump_yaml, load_model_config  # noqa: E402

EXAMPLES = ROOT / "model_repository"
PY_SPY = Path(__file__).resolve().parent / ".venv-perf" / "bin" / "py-spy"


def build_repository(model: str, batching: str, where: Path) -> Path:
    """A repository holding only `model`, with dynamic batching off, or on with delay 0."""
    source = EXAMPLES / model
    config = load_model_config(source)
    if batching == "off":
        config = dataclasses.replace(config, dynamic_batching=None)
    else:
        dynamic = config.dynamic_batching
        if dynamic is None:
            raise SystemExit(f"{source}: no dynamic_batching section to turn on")
        config = dataclasses.replace(
            config, dynamic_batching=dataclasses.replace(dynamic, max_queue_delay_microseconds=0)
        )
    repo = where / f"{model}-batching-{batching}"
    (repo / model / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "1" / MODEL_FILE, repo / model / "1" / MODEL_FILE)
    (repo / model / "config.yaml").write_text(dump_yaml(config))
    return repo


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_cell(
    server: BenchServer,
    model: str,
    batching: str,
    concurrency: int,
    args: argparse.Namespace,
    rpc: str = "unary",
) -> Cell:
    name = f"{model}-{batching}-{'' if rpc == 'unary' else rpc + '-'}c{concurrency}"
    profiler = None
    if args.profile:
        profiler = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(server.pid), "--nonblocking", "--format", "raw",
             "--output", str(args.out / f"profile-{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    counted = server.counters(model)
    server_before, client_before, start = server.cpu_seconds(), _children_cpu(), time.monotonic()
    loop_before = server.loop_cpu_seconds()
    if args.generator == "perf_analyzer":
        generator = "perf_analyzer"
        csv_path, log_path = args.out / f"{name}.csv", args.out / f"{name}.perf_analyzer.log"
        window_ms = int(args.seconds * 1000)
        http = rpc == "http"
        result = perf_analyzer.run(
            server.http_address if http else server.address,
            model,
            concurrency,
            window_ms,
            csv_path,
            log_path,
            protocol="http" if http else "grpc",
            streaming=rpc == "stream",
        )
    elif rpc != "unary":
        generator = "-"
        result = LoadResult(0.0, 0.0, 0.0, 0, f"{rpc} cells need perf_analyzer")
    else:
        generator = f"grpc.aio ({args.channels} channels)"
        result = _aio_load(server.address, model, concurrency, args)
    elapsed = time.monotonic() - start
    server_cpu = (server.cpu_seconds() - server_before) / elapsed
    loop_cpu = (server.loop_cpu_seconds() - loop_before) / elapsed
    client_cpu = (_children_cpu() - client_before) / elapsed
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        profiler.wait(30)
    avg_batch = None
    after = server.counters(model)
    if counted is not None and after is not None:
        delta = after - counted
        result.errors = delta.failed  # the server's own count covers every generator
        avg_batch = delta.inferences / delta.executions if delta.executions else None
    return Cell(
        model,
        batching,
        concurrency,
        generator,
        result,
        server_cpu,
        client_cpu,
        avg_batch,
        rpc,
        loop_cpu,
    )


def _aio_load(address: str, model: str, concurrency: int, args: argparse.Namespace) -> LoadResult:
    command = [
        sys.executable, "-m", "clients.load", "--address", address, "--model", model,
        "--concurrency", str(concurrency), "--seconds", str(args.seconds * 3),
        "--channels", str(args.channels),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:]
        return LoadResult(0.0, 0.0, 0.0, 1, f"aio_load exited {done.returncode}: {tail}")
    return LoadResult(**json.loads(done.stdout))


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}, load average at start "
        f"{os.getloadavg()[0]:.2f}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tabular", "image"])
    parser.add_argument("--batching", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="one measurement window; a cell runs three"
    )
    parser.add_argument("--ceiling-batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument("--no-ceiling", action="store_true", help="skip the in-process rows")
    parser.add_argument(
        "--stream-concurrency",
        nargs="*",
        type=int,
        default=[16],
        help="ModelStreamInfer cells of the first model (perf_analyzer only); none: skip",
    )
    parser.add_argument(
        "--http-concurrency",
        nargs="*",
        type=int,
        default=[16],
        help="HTTP/REST cells of the first model (perf_analyzer only); none: skip",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the grpc_floor rows")
    parser.add_argument(
        "--no-path", action="store_true", help="skip bench/request_path.py (no transport)"
    )
    parser.add_argument(
        "--startup-runs", type=int, default=10, help="bench/startup.py runs; 0 skips it"
    )
    parser.add_argument(
        "--generator", choices=["auto", "perf_analyzer", "grpc-aio"], default="auto"
    )
    parser.add_argument("--channels", type=int, default=4, help="grpc-aio channels")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the server with py-spy per cell (collapsed stacks; sampling costs CPU)",
    )
    parser.add_argument("--server-arg", action="append", default=[], help="extra serve option")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.generator == "auto":
        args.generator = "perf_analyzer" if perf_analyzer.available() else "grpc-aio"
    if args.profile and not PY_SPY.exists():
        parser.error("--profile needs py-spy: run bench/setup.sh")
    return args


def measure_model(model: str, args: argparse.Namespace, out: Path) -> list[Cell]:
    """Every cell of one model: unary at each concurrency, then the stream and HTTP cells."""
    cells = []
    # Both servers of a model run side by side (an idle one costs nothing) and the cells
    # alternate between them, so an on/off pair is measured minutes apart at most.
    with contextlib.ExitStack() as stack:
        servers = {
            batching: stack.enter_context(
                BenchServer(
                    build_repository(model, batching, out / "repos"),
                    out / f"server-{model}-{batching}.log",
                    *args.server_arg,
                )
            )
            for batching in args.batching
        }
        for concurrency in args.concurrency:
            for batching, server in servers.items():
                cell = measure_cell(server, model, batching, concurrency, args)
                cells.append(cell)
                print(f"{model} batching {batching} c={concurrency}: {cell.result}", flush=True)
        first = model == args.models[0]
        for rpc, concurrencies in (
            ("stream", args.stream_concurrency if first else []),
            ("http", args.http_concurrency if first else []),
        ):
            for concurrency in concurrencies:
                for batching, server in servers.items():
                    cell = measure_cell(server, model, batching, concurrency, args, rpc)
                    cells.append(cell)
                    print(f"{model} batching {batching} {rpc} c={concurrency}: {cell.result}")
    return cells


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out = args.out or ROOT / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    header = f"Machine: {machine()}.\n"
    print(header, flush=True)
    cells: list[Cell] = []
    rows: list[CeilingResult] = []
    floor: dict[int, LoadResult] = {}
    floor_costs: dict[int, FloorCost] = {}
    path: list[PathResult] = []
    round_trip = None
    for model in args.models:
        cells += measure_model(model, args, out)
        # What a model's ratios divide by is measured right after its cells: this machine's
        # speed drifts more between the start and the end of a run than over a few minutes.
        if not args.no_ceiling:
            rows += ceiling.measure(EXAMPLES / model, args.ceiling_batches, args.ceiling_seconds)
        if model != args.models[0]:
            continue
        if not args.no_floor and args.generator == "perf_analyzer":
            from bench.grpc_floor import measure_floor  # it imports this module: not at the top

            floor, floor_costs = measure_floor(model, args.concurrency, args.seconds, out / "floor")
        if not args.no_path:
            repository = build_repository(model, "off", out / "repos")
            path = request_path.measure({"off": repository}, model, [1, 16], args.seconds)
            round_trip = request_path.thread_round_trip()
    rpcs = ["unary", "stream", "http"]
    cells.sort(
        key=lambda c: (
            args.models.index(c.model),
            c.batching != "off",
            rpcs.index(c.rpc),
            c.concurrency,
        )
    )
    startup = None
    if args.startup_runs:
        samples = [startup_bench.run_once(EXAMPLES, out, []) for _ in range(args.startup_runs)]
        startup = (
            statistics.median(s.ready for s in samples),
            statistics.median(s.rss_mib for s in samples),
        )
    generators = sorted({c.generator for c in cells})
    seconds = args.seconds * 3
    report = "\n\n".join(
        [
            header.strip(),
            f"Load generator: {', '.join(generators)}; {seconds:g} s measured per cell, batch 1 "
            f"per request. Batching on = the example's dynamic_batching with "
            f"max_queue_delay_microseconds 0.",
            cell_table(cells),
            "In-process onnxruntime (same session options and threads as a server instance):",
            ceiling_table(rows),
            f"The floor: canned replies from a bare grpc.aio server, {args.models[0]} model, "
            f"same load (bench/grpc_floor.py):",
            floor_table(floor, floor_costs),
            f"Our request path without the transport ({args.models[0]}, in-process, "
            f"bench/request_path.py):",
            request_path.table(path, round_trip) if round_trip else "(skipped)",
            "Where one unbatched request's server CPU goes, all from this run:",
            cost_table(cells, floor_costs, path, round_trip, args.models[0]),
            "Targets (issue 13), each from this run:",
            targets(cells, rows, floor, startup, light=args.models[0], heavy="image"),
            f"Load average at end: {os.getloadavg()[0]:.2f}",
        ]
    )
    (out / "report.md").write_text(report + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "cells": [dataclasses.asdict(c) for c in cells],
                "ceiling": [dataclasses.asdict(r) for r in rows],
                "floor": {c: dataclasses.asdict(r) for c, r in floor.items()},
                "floor_cost": {c: dataclasses.asdict(r) for c, r in floor_costs.items()},
                "request_path": [dataclasses.asdict(r) for r in path],
                "thread_round_trip_us": round_trip,
                "startup": startup,
            },
            indent=2,
        )
    )
    print("\n" + report + f"\n\n(written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
