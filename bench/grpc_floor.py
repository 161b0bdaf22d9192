"""The floor under any grpc.aio server: canned replies, no decoding, no model, same load.

Starts the real server once to record its replies for one model (metadata, config, one
inference), stops it, then serves those bytes from a bare grpc.aio server whose handlers only
return them, and drives it with perf_analyzer like bench/run.py does. The difference between
this and the real server is the cost of everything onnxserve does per request.

    .venv/bin/python bench/grpc_floor.py --model tabular --concurrency 1 16
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

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` and `server` importable
    sys.path.insert(0, str(ROOT))

from bench import perf_analyzer  # noqa: E402
from bench.perf_analyzer import LoadResult  # noqa: E402
from bench.report import floor_table  # noqa: E402
from bench.run import build_repository  # noqa: E402
from bench.server_process import BenchServer  # noqa: E402
from server import datatypes  # noqa: E402
from server.grpc.generated import grpc_service_pb2 as pb  # noqa: E402
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
from server.launcher import cpu_seconds  # noqa: E402

SERVICE = "inference.GRPCInferenceService"


def record_replies(model: str, work: Path) -> tuple[dict[str, bytes], pb.ModelStatisticsResponse]:
    repo = build_repository(model, "off", work)
    with (
        BenchServer(repo, work / "server.log") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=model))
        request = pb.ModelInferRequest(model_name=model)
        for tensor in meta.inputs:
            shape = [1 if d == -1 else d for d in tensor.shape]
            dtype = datatypes.BY_NAME[tensor.datatype].numpy
            request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=shape)
            request.raw_input_contents.append(np.zeros(shape, dtype).tobytes())
        replies = {
            "ServerLive": stub.ServerLive(pb.ServerLiveRequest()),
            "ServerReady": stub.ServerReady(pb.ServerReadyRequest()),
            "ServerMetadata": stub.ServerMetadata(pb.ServerMetadataRequest()),
            "ModelMetadata": meta,
            "ModelConfig": stub.ModelConfig(pb.ModelConfigRequest(name=model)),
            "ModelInfer": stub.ModelInfer(request),
        }
        statistics = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model))
    return {rpc: reply.SerializeToString() for rpc, reply in replies.items()}, statistics


class FloorServer:
    """Canned replies; ModelStatistics counts calls, as perf_analyzer needs to see them move."""

    def __init__(self, replies: dict[str, bytes], statistics: pb.ModelStatisticsResponse) -> None:
        self.replies = replies
        self.statistics = statistics
        self.calls = 0
        self.port = 0
        self.loop_thread = 0  # native id of the thread that runs the floor's event loop
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    def __enter__(self) -> FloorServer:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _handler(self, rpc: str) -> grpc.RpcMethodHandler:
        reply = self.replies[rpc]

        async def infer(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.calls += 1
            return reply

        async def plain(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return reply

        return grpc.unary_unary_rpc_method_handler(infer if rpc == "ModelInfer" else plain)

    async def _statistics(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        stats = self.statistics.model_stats[0]
        stats.inference_count = stats.execution_count = self.calls
        stats.inference_stats.success.count = stats.inference_stats.queue.count = self.calls
        return self.statistics.SerializeToString()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_native_id()
        self._stop = asyncio.Event()
        handlers = {rpc: self._handler(rpc) for rpc in self.replies}
        handlers["ModelStatistics"] = grpc.unary_unary_rpc_method_handler(self._statistics)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._ready.set()
        await self._stop.wait()
        await server.stop(None)


@dataclass
class FloorCost:
    """The floor server's CPU per request (us): in all, and on its event loop's thread."""

    cpu_us: float
    loop_cpu_us: float


def measure_floor(
    model: str, concurrencies: list[int], seconds: float, work: Path
) -> tuple[dict[int, LoadResult], dict[int, FloorCost]]:
    """The floor's throughput and latency per concurrency, as bench/run.py's cells measure, and
    its CPU per request. The floor serves from threads of this process while the main thread
    only waits for perf_analyzer, so this process's CPU time is the floor's."""
    work.mkdir(parents=True, exist_ok=True)
    replies, statistics = record_replies(model, work)
    results, costs = {}, {}
    pid = os.getpid()
    with FloorServer(replies, statistics) as floor:
        for concurrency in concurrencies:
            cpu, loop_cpu = cpu_seconds(pid), cpu_seconds(pid, floor.loop_thread)
            start = time.monotonic()
            result = perf_analyzer.run(
                f"127.0.0.1:{floor.port}",
                model,
                concurrency,
                int(seconds * 1000),
                work / f"floor-c{concurrency}.csv",
                work / f"floor-c{concurrency}.log",
            )
            elapsed = time.monotonic() - start
            cpu, loop_cpu = cpu_seconds(pid) - cpu, cpu_seconds(pid, floor.loop_thread) - loop_cpu
            results[concurrency] = result
            if result.throughput and not result.failure:
                requests = result.throughput * elapsed
                costs[concurrency] = FloorCost(cpu / requests * 1e6, loop_cpu / requests * 1e6)
    return results, costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tabular")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--seconds", type=float, default=2.0, help="one window; three per cell")
    args = parser.parse_args()
    if not perf_analyzer.available():
        parser.error("needs perf_analyzer: run bench/setup.sh")
    with tempfile.TemporaryDirectory() as tmp:
        results, costs = measure_floor(args.model, args.concurrency, args.seconds, Path(tmp))
    print(floor_table(results, costs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
