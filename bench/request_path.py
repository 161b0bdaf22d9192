"""Our request path without the transport: what a request costs between gRPC and onnxruntime.

Starts the server's core on a one-model repository in this process and calls the gRPC
servicer's ModelInfer with the serialized request bytes from N coroutines, as grpc would: parse,
decode, validate, queue, the instance thread, onnxruntime, split, encode, statistics. No socket
and no grpc machinery, so the CPU per request here plus grpc_floor's is what the real server
would cost if the two did not slow each other down. Also times the bare round trip from the
event loop to an instance thread and back, which every execution pays.

    .venv/bin/python bench/request_path.py --model tabular --concurrency 1 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `server` importable
    sys.path.insert(0, str(ROOT))

from server import datatypes  # noqa: E402
from server.app import InferenceServer, Settings  # noqa: E402
from server.grpc.generated import grpc_service_pb2 as pb  # noqa: E402
from server.grpc.servicer import InferenceServicer  # noqa: E402
from server.launcher import cpu_seconds  # noqa: E402
from server.model_config import load_model_config  # noqa: E402
from server.scheduling.worker import InstanceThread  # noqa: E402


@dataclass
class PathResult:
    batching: str
    concurrency: int
    requests_per_second: float
    cpu_us: float  # the whole process (the server's threads and the driving coroutines)
    loop_cpu_us: float  # the event loop's thread alone, per request


class _NoDeadline:
    def time_remaining(self) -> None:
        return None


def infer_request_bytes(repository: Path, model: str) -> bytes:
    """One row of zeros per input, as the load generators send."""
    config = load_model_config(repository / model)
    request = pb.ModelInferRequest(model_name=model)
    for tensor in config.inputs:
        shape = [1, *tensor.dims] if config.batched else list(tensor.dims)
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=shape)
        numpy_type = datatypes.BY_NAME[tensor.datatype].numpy
        request.raw_input_contents.append(np.zeros(shape, numpy_type).tobytes())
    return request.SerializeToString()


async def _measure(
    repository: Path, model: str, batching: str, concurrency: int, seconds: float
) -> PathResult:
    settings = Settings(model_repository=repository, grpc_port=0, http_port=-1, metrics_port=0)
    server = InferenceServer(settings)
    await server.start()
    try:
        servicer = InferenceServicer(server.dataplane)
        raw, context = infer_request_bytes(repository, model), _NoDeadline()
        done = 0

        async def client(stop: float) -> None:
            nonlocal done
            while time.monotonic() < stop:
                await servicer.ModelInfer(raw, context)
                done += 1

        warm = time.monotonic() + min(0.5, seconds)
        await asyncio.gather(*(client(warm) for _ in range(concurrency)))
        done, pid, loop_thread = 0, os.getpid(), threading.get_native_id()
        cpu, loop_cpu = cpu_seconds(pid), cpu_seconds(pid, loop_thread)
        start = time.monotonic()
        await asyncio.gather(*(client(start + seconds) for _ in range(concurrency)))
        elapsed = time.monotonic() - start
        cpu, loop_cpu = cpu_seconds(pid) - cpu, cpu_seconds(pid, loop_thread) - loop_cpu
    finally:
        await server.shutdown()
    return PathResult(
        batching, concurrency, done / elapsed, cpu / done * 1e6, loop_cpu / done * 1e6
    )


def measure(
    repositories: dict[str, Path], model: str, concurrencies: list[int], seconds: float
) -> list[PathResult]:
    """repositories: batching setting ("off"/"on") -> a repository holding `model`."""
    return [
        asyncio.run(_measure(repository, model, batching, concurrency, seconds))
        for batching, repository in repositories.items()
        for concurrency in concurrencies
    ]


def thread_round_trip(count: int = 20_000) -> tuple[float, float]:
    """(wall us, CPU us) of one empty job sent to an instance thread and answered on the loop."""

    async def run() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        worker = InstanceThread("round-trip", loop)
        try:
            for _ in range(1000):
                await worker.submit(int)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                await worker.submit(int)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            worker.stop()
        return wall / count * 1e6, cpu / count * 1e6

    return asyncio.run(run())


def table(results: list[PathResult], round_trip: tuple[float, float]) -> str:
    lines = [
        "| batching | concurrency | requests/s | CPU per request (us) "
        "| of it the loop thread (us) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.batching} | {r.concurrency} | {r.requests_per_second:,.0f} | {r.cpu_us:.0f} "
            f"| {r.loop_cpu_us:.0f} |"
        )
    wall, cpu = round_trip
    lines.append(
        f"\nAn empty job to an instance thread and back to the loop: {wall:.0f} us wall, "
        f"{cpu:.0f} us CPU (paid once per execution)."
    )
    return "\n".join(lines)


def main() -> int:
    from bench.run import build_repository  # it imports this module: not at the top

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tabular")
    parser.add_argument("--batching", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repositories = {b: build_repository(args.model, b, Path(tmp)) for b in args.batching}
        results = measure(repositories, args.model, args.concurrency, args.seconds)
    print(table(results, thread_round_trip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
