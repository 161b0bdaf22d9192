"""What a request costs the server over one ModelStreamInfer stream vs unary ModelInfer calls.

Starts the real server on a copy of the example `tabular` model (the light one: per request,
serving overhead dominates) and drives it for a fixed time in two ways, alternating:
  unary   64 coroutines, each sending ModelInfer calls back to back (64 in flight);
  stream  one bidirectional stream kept at 64 requests in flight.
Both send the same pre-serialised batch-1 request, so the client builds nothing per request.
Reports throughput and the server's CPU time per request (user + system, all its threads, from
/proc), which is the cost the stream is meant to cut; client and server share the machine.

    .venv/bin/python bench/stream_vs_unary.py --seconds 5 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `server` importable
    sys.path.insert(0, str(ROOT))

from server.grpc.generated import grpc_service_pb2 as pb  # noqa: E402
from tests.harness import ServerProcess  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")
_INFER = "/inference.GRPCInferenceService/ModelInfer"
_STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


@dataclass
class Run:
    mode: str
    requests: int
    seconds: float
    server_cpu: float  # seconds
    client_cpu: float  # seconds

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def server_us(self) -> float:
        return self.server_cpu / self.requests * 1e6

    def client_us(self) -> float:
        return self.client_cpu / self.requests * 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def request_bytes(model: str) -> bytes:
    features = np.random.default_rng(0).normal(size=(1, 16)).astype(np.float32)
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="features", datatype="FP32", shape=[1, 16])
    request.raw_input_contents.append(features.tobytes())
    return request.SerializeToString()


async def unary(channel: grpc.aio.Channel, payload: bytes, in_flight: int, until: float) -> int:
    call = channel.unary_unary(_INFER, request_serializer=None, response_deserializer=None)
    loop = asyncio.get_running_loop()

    async def caller() -> int:
        done = 0
        while loop.time() < until:
            await call(payload)
            done += 1
        return done

    return sum(await asyncio.gather(*(caller() for _ in range(in_flight))))


async def stream(channel: grpc.aio.Channel, payload: bytes, in_flight: int, until: float) -> int:
    call = channel.stream_stream(_STREAM, request_serializer=None, response_deserializer=None)()
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(in_flight)
    sent = 0

    async def writer() -> None:
        nonlocal sent
        while loop.time() < until:
            await slots.acquire()
            await call.write(payload)
            sent += 1
        await call.done_writing()

    async def reader() -> int:
        done = 0
        async for response in call:
            if response[:1] == b"\x0a":  # field 1, error_message: the request failed
                raise RuntimeError(pb.ModelStreamInferResponse.FromString(response).error_message)
            done += 1
            slots.release()
        return done

    _, done = await asyncio.gather(writer(), reader())
    assert done == sent, (done, sent)
    return done


async def measure(
    server: ServerProcess, mode: str, payload: bytes, in_flight: int, seconds: float
) -> Run:
    drive = unary if mode == "unary" else stream
    async with grpc.aio.insecure_channel(server.address) as channel:
        loop = asyncio.get_running_loop()
        await drive(channel, payload, in_flight, loop.time() + 1.0)  # warm-up, not counted
        pid = server.process.pid  # type: ignore[union-attr]
        cpu, client, start = cpu_seconds(pid), time.process_time(), loop.time()
        requests = await drive(channel, payload, in_flight, start + seconds)
        elapsed = loop.time() - start
        return Run(
            mode,
            requests,
            elapsed,
            cpu_seconds(pid) - cpu,
            time.process_time() - client,
        )


def table(runs: list[Run]) -> str:
    lines = [
        "| mode | requests/s | server CPU per request | client CPU per request |",
        "|---|---:|---:|---:|",
    ]
    for mode in ("unary", "stream"):
        mine = [r for r in runs if r.mode == mode]
        best = sorted(mine, key=lambda r: r.throughput)[len(mine) // 2]  # the median run
        spread = f"{min(r.throughput for r in mine):,.0f}-{max(r.throughput for r in mine):,.0f}"
        label = "64 unary callers" if mode == "unary" else "1 stream, 64 in flight"
        lines.append(
            f"| {label} | {best.throughput:,.0f} ({spread}) | "
            f"{statistics.median(r.server_us() for r in mine):.0f} us | "
            f"{statistics.median(r.client_us() for r in mine):.0f} us |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (alternating)")
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stream-vs-unary-") as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(ROOT / "model_repository" / "tabular", repo / "tabular")
        payload = request_bytes("tabular")
        runs = []
        server = ServerProcess(repo, log_dir=Path(tmp)).start()
        try:
            for _ in range(args.repeats):
                for mode in ("unary", "stream"):
                    run = asyncio.run(measure(server, mode, payload, args.in_flight, args.seconds))
                    print(
                        f"{mode:6} {run.throughput:8,.0f} req/s  server {run.server_us():5.0f} "
                        f"us/req  client {run.client_us():5.0f} us/req",
                        file=sys.stderr,
                    )
                    runs.append(run)
        finally:
            server.stop()
    print(f"tabular, batch-1 requests, {args.seconds:g} s per run, median of {args.repeats} "
          f"(range), {os.cpu_count()} cores shared by client and server\n")  # fmt: skip
    print(table(runs))


if __name__ == "__main__":
    main()
