"""A load generator in Python: grpc.aio over several channels, for the bench and `onnxserve tune`.

Run as its own process (`python -m clients.load ...`) so its CPU is not the caller's; it
prints one JSON LoadResult. Each channel has its own connection;
`concurrency` coroutines send the same pre-serialised ModelInferRequest back to back, so the
client spends nothing on building requests. It is Python, though: at a few thousand requests
per second it takes a core the server would use (perf_analyzer, in C++, costs less).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time

import grpc
import numpy as np

from server import datatypes
from server.grpc.generated import grpc_service_pb2 as pb
from server.tools.load_runner import LoadResult

_INFER = "/inference.GRPCInferenceService/ModelInfer"
_METADATA = "/inference.GRPCInferenceService/ModelMetadata"


def _identity(data: bytes) -> bytes:
    return data


async def _request_bytes(channel: grpc.aio.Channel, model: str) -> bytes:
    """A batch-1 request of random data for every input the server says the model has."""
    metadata = channel.unary_unary(
        _METADATA,
        request_serializer=pb.ModelMetadataRequest.SerializeToString,
        response_deserializer=pb.ModelMetadataResponse.FromString,
    )
    meta = await metadata(pb.ModelMetadataRequest(name=model))
    rng = np.random.default_rng(0)
    request = pb.ModelInferRequest(model_name=model)
    for tensor in meta.inputs:
        shape = [1 if d == -1 else d for d in tensor.shape]
        dtype = datatypes.BY_NAME[tensor.datatype].numpy
        data = (rng.random(shape) * 100).astype(dtype)
        request.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=shape)
        request.raw_input_contents.append(data.tobytes())
    return request.SerializeToString()


async def measure(
    address: str,
    model: str,
    concurrency: int,
    seconds: float,
    warmup: float,
    channels: int,
) -> LoadResult:
    options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
    pool = [grpc.aio.insecure_channel(address, options=options) for _ in range(channels)]
    try:
        payload = await _request_bytes(pool[0], model)
        calls = [c.unary_unary(_INFER, _identity, _identity) for c in pool]
        latencies: list[float] = []
        errors = 0
        loop = asyncio.get_running_loop()
        start = loop.time() + warmup
        stop = start + seconds

        async def worker(call: grpc.aio.UnaryUnaryMultiCallable) -> None:
            nonlocal errors
            clock = time.perf_counter
            while True:
                t0 = clock()
                now = loop.time()
                if now >= stop:
                    return
                try:
                    await call(payload)
                except grpc.aio.AioRpcError:
                    if now >= start:
                        errors += 1
                    continue
                if now >= start:
                    latencies.append(clock() - t0)

        await asyncio.gather(*(worker(calls[i % channels]) for i in range(concurrency)))
    finally:
        for channel in pool:
            await channel.close()
    if not latencies:
        return LoadResult(0.0, 0.0, 0.0, errors, "no request succeeded")
    p50, p99 = np.percentile(np.array(latencies), [50, 99]) * 1000
    return LoadResult(len(latencies) / seconds, float(p50), float(p99), errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--channels", type=int, default=4)
    args = parser.parse_args()
    channels = max(1, min(args.channels, args.concurrency))
    result = asyncio.run(
        measure(args.address, args.model, args.concurrency, args.seconds, args.warmup, channels)
    )
    print(json.dumps(dataclasses.asdict(result)))


if __name__ == "__main__":
    main()
