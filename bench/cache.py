"""What the response cache saves: the example `tabular` model with the cache off, local and in
Redis, in one run.

Three workloads of batch-1 requests, each driven for a fixed time by `--in-flight` coroutines:
  repeating  90% of requests draw from 100 distinct inputs, 10% are new (a popular-items mix)
  hits       one input over and over: every request after the first is a hit
  misses     a new input every time: every request runs and is stored
Requests are serialised before timing, so the client builds nothing while it measures. For each
cell: throughput, client-side latency, the server's CPU time per request (user + system, all its
threads, from /proc) and the hit ratio from ModelStatistics. hits against misses is the hit
path's cost against a miss's. Redis is a local redis-server started here (skipped if absent);
client, server and Redis share the machine.

    .venv/bin/python bench/cache.py --seconds 5 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `server` importable
    sys.path.insert(0, str(ROOT))

from bench.server_process import BenchServer  # noqa: E402
from server.grpc.generated import grpc_service_pb2 as pb  # noqa: E402
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc  # noqa: E402

_INFER = "/inference.GRPCInferenceService/ModelInfer"
HOT_INPUTS = 100
HOT_SHARE = 0.9
WORKLOADS = ("repeating", "hits", "misses")


@dataclass
class Cell:
    cache: str
    workload: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_us: float  # server CPU per request
    hit_ratio: float | None
    hit_us: float | None  # ModelStatistics: cache lookup + decode per hit
    miss_us: float | None  # cache lookup + store per miss
    run_us: float | None  # queue + compute per request that ran

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def request_bytes(features: np.ndarray) -> bytes:
    request = pb.ModelInferRequest(model_name="tabular")
    request.inputs.add(name="features", datatype="FP32", shape=[1, 16])
    request.raw_input_contents.append(features.astype(np.float32).tobytes())
    return request.SerializeToString()


def payloads(workload: str, count: int, seed: int) -> list[bytes]:
    """`count` serialised requests in the order they are sent; new inputs are never repeated."""
    rng = np.random.default_rng(seed)
    fresh = (request_bytes(rng.normal(size=(1, 16))) for _ in iter(int, 1))
    if workload == "misses":
        return [next(fresh) for _ in range(count)]
    if workload == "hits":
        return [request_bytes(np.ones((1, 16)))] * count
    hot = [request_bytes(rng.normal(size=(1, 16))) for _ in range(HOT_INPUTS)]
    picks = rng.random(count) < HOT_SHARE
    choices = rng.integers(0, HOT_INPUTS, count)
    return [hot[c] if p else next(fresh) for p, c in zip(picks, choices, strict=True)]


async def drive(
    address: str, sequence: list[bytes], in_flight: int, seconds: float, timed: bool = True
) -> list[float]:
    """Sends `sequence` in order from `in_flight` callers until the time is up; latencies (s).
    A timed run must not run out of requests before its time is up."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(_INFER, request_serializer=None, response_deserializer=None)
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        latencies: list[float] = []
        position = 0

        async def caller() -> None:
            nonlocal position
            clock = time.perf_counter
            while loop.time() < until and position < len(sequence):
                payload = sequence[position]
                position += 1
                start = clock()
                await call(payload)
                latencies.append(clock() - start)

        await asyncio.gather(*(caller() for _ in range(in_flight)))
        if timed and position >= len(sequence):
            raise RuntimeError("ran out of prepared requests: raise --max-rate")
        return latencies


def server_counts(address: str) -> np.ndarray:
    """hits, hit ns, misses, miss ns, requests that ran, their queue + compute ns."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelStatistics(pb.ModelStatisticsRequest(name="tabular"), timeout=10)
    total = np.zeros(6, dtype=np.int64)
    for s in reply.model_stats:
        i = s.inference_stats
        ran_ns = i.queue.ns + i.compute_input.ns + i.compute_infer.ns + i.compute_output.ns
        total += (i.cache_hit.count, i.cache_hit.ns, i.cache_miss.count, i.cache_miss.ns,
                  i.compute_infer.count, ran_ns)  # fmt: skip
    return total


def per(ns: int, count: int) -> float | None:
    return ns / count / 1000 if count else None


def measure(server: BenchServer, cache: str, workload: str, args: argparse.Namespace) -> Cell:
    count = int(args.max_rate * (args.seconds + args.warmup))
    # A new seed per repeat: the misses of one repeat are not hits in the next.
    sequence = payloads(workload, count, seed=args.seed * 10 + WORKLOADS.index(workload))
    warm = int(args.max_rate * args.warmup * 0.1)  # the first requests fill the cache
    asyncio.run(drive(server.address, sequence[:warm], args.in_flight, args.warmup, timed=False))
    before = server_counts(server.address)
    cpu = server.cpu_seconds()
    start = time.monotonic()
    latencies = asyncio.run(drive(server.address, sequence[warm:], args.in_flight, args.seconds))
    elapsed = time.monotonic() - start
    cpu = server.cpu_seconds() - cpu
    hits, hit_ns, misses, miss_ns, ran, ran_ns = (server_counts(server.address) - before).tolist()
    p50, p99 = np.percentile(np.array(latencies), [50, 99]) * 1000
    return Cell(
        cache,
        workload,
        len(latencies),
        elapsed,
        float(p50),
        float(p99),
        cpu / len(latencies) * 1e6,
        hits / (hits + misses) if hits + misses else None,
        per(hit_ns, hits),
        per(miss_ns, misses),
        per(ran_ns, ran),
    )


@contextmanager
def redis_server(where: Path) -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server not found: the Redis rows are left out", file=sys.stderr)
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(where),
        "--save", "", "--appendonly", "no", "--logfile", str(where / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # pacing while redis-server opens its port
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(30)


def table(cells: list[Cell]) -> str:
    lines = [
        "| cache | workload | requests/s | p50 ms | p99 ms | server CPU / request | hit ratio"
        " | lookup per hit | lookup + store per miss | queue + compute per run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        ratio = "-" if c.hit_ratio is None else f"{c.hit_ratio:.0%}"
        lines.append(
            f"| {c.cache} | {c.workload} | {c.throughput:,.0f} | {c.p50_ms:.2f} | "
            f"{c.p99_ms:.2f} | {c.server_us:.0f} us | {ratio} | {us(c.hit_us)} | "
            f"{us(c.miss_us)} | {us(c.run_us)} |"
        )
    return "\n".join(lines)


def median(cells: list[Cell], cache: str, workload: str) -> Cell:
    """The cell of median throughput among the repeats of (cache, workload)."""
    mine = sorted((c for c in cells if (c.cache, c.workload) == (cache, workload)),
                  key=lambda c: c.throughput)  # fmt: skip
    return mine[(len(mine) - 1) // 2]


def us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} us"


def ratios(cells: list[Cell]) -> str:
    """Server CPU per request of a hit against a miss, and of the repeating mix against off."""
    by = {(c.cache, c.workload): c for c in cells}
    lines = []
    for cache in ("local", "redis"):
        hit, miss = by.get((cache, "hits")), by.get((cache, "misses"))
        mix, off = by.get((cache, "repeating")), by.get(("off", "repeating"))
        if hit and miss and mix and off and hit.hit_us and miss.miss_us and miss.run_us:
            lines.append(
                f"- {cache}: a hit costs the server {hit.server_us / miss.server_us:.2f}x a miss's"
                f" CPU; in the request path a hit takes {hit.hit_us:.0f} us where a miss takes"
                f" {miss.miss_us + miss.run_us:.0f} us (lookup + store + queue + compute); the"
                f" repeating mix runs at {mix.throughput / off.throughput:.2f}x the throughput of"
                " no cache"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per cell")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each cell, alternating")
    parser.add_argument(
        "--max-rate", type=float, default=20_000, help="requests prepared per second of a cell"
    )
    args = parser.parse_args()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp_name:
        tmp = Path(tmp_name)
        plain, cached = tmp / "plain", tmp / "cached"
        shutil.copytree(ROOT / "model_repository" / "tabular", plain / "tabular")
        shutil.copytree(ROOT / "model_repository" / "tabular", cached / "tabular")
        with open(cached / "tabular" / "config.yaml", "a") as config:
            config.write("response_cache: {enable: true}\n")
        (tmp / "redis").mkdir()
        with redis_server(tmp / "redis") as redis_url:
            setups = [("off", plain, ()), ("local", cached, ("--cache", "local"))]
            if redis_url is not None:
                setups.append(("redis", cached, ("--cache", redis_url)))
            with ExitStack() as stack:
                servers = {
                    name: stack.enter_context(BenchServer(repo, tmp / f"{name}.log", *flags))
                    for name, repo, flags in setups
                }
                # Cells alternate, so a change in the machine's load spreads over all of them.
                for repeat in range(args.repeats):
                    for workload in WORKLOADS:
                        for name, server in servers.items():
                            args.seed = repeat
                            cell = measure(server, name, workload, args)
                            print(f"{name:5} {workload:9} {cell.throughput:8,.0f} req/s"
                                  f"  {cell.server_us:5.0f} us/req", file=sys.stderr)  # fmt: skip
                            cells.append(cell)
    print(
        f"tabular, batch-1 requests, {args.in_flight} in flight, {args.seconds:g} s per cell,"
        f" the run of median throughput of {args.repeats} (cells alternate);"
        f" {os.cpu_count()} cores shared by client, server and Redis\n"
    )
    medians = [median(cells, name, w) for name, _, _ in setups for w in WORKLOADS]
    print(table(medians))
    print()
    print(ratios(medians))


if __name__ == "__main__":
    main()
