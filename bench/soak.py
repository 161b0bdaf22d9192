"""Soak: mixed load against the real server for N minutes, printing errors and memory over time.

Client threads send a mix of unary and streamed requests to the example models and a test
model (exact answers checked where the answer is known), malformed requests (which must get
INVALID_ARGUMENT), requests cancelled at random moments, and floods against a small queue (which
may get RESOURCE_EXHAUSTED). Meanwhile models are reloaded through RepositoryModelLoad, which
must not fail a single request. Every report line shows requests by outcome, unexpected errors,
and the server's RSS, threads and open file descriptors. Not part of `make test`.

    .venv/bin/python -m bench.soak --minutes 10
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np

from bench.server_process import BenchServer
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests import models

EXAMPLES = Path(__file__).resolve().parent.parent / "model_repository"
Tensor = pb.ModelInferRequest.InferInputTensor
RELOADED = ("tabular", "double")


class Tally:
    """Outcomes by kind of traffic, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.unexpected: list[str] = []

    def add(self, outcome: str, unexpected: str | None = None) -> None:
        with self.lock:
            self.counts[outcome] += 1
            if unexpected is not None:
                self.counts["UNEXPECTED"] += 1
                if len(self.unexpected) < 20:
                    self.unexpected.append(unexpected)


def request(
    model: str, name: str, array: np.ndarray, datatype: str, id: str = ""
) -> pb.ModelInferRequest:  # noqa: E501
    tensor = Tensor(name=name, datatype=datatype, shape=array.shape)
    return pb.ModelInferRequest(
        model_name=model, id=id, inputs=[tensor], raw_input_contents=[array.tobytes()]
    )


def double_request(
    rng: np.random.Generator, rows: int, id: str = ""
) -> tuple[pb.ModelInferRequest, np.ndarray]:  # noqa: E501
    x = rng.standard_normal((rows, 8)).astype(np.float32)
    ids = np.arange(rows, dtype=np.int64).reshape(rows, 1)
    message = pb.ModelInferRequest(
        model_name="double",
        id=id,
        inputs=[
            Tensor(name="INPUT0", datatype="FP32", shape=[rows, 8]),
            Tensor(name="ID", datatype="INT64", shape=[rows, 1]),
        ],
        raw_input_contents=[x.tobytes(), ids.tobytes()],
    )
    return message, x * 2


def first_output(response: pb.ModelInferResponse, name: str) -> np.ndarray:
    index = [o.name for o in response.outputs].index(name)
    shape = tuple(response.outputs[index].shape)
    return np.frombuffer(response.raw_output_contents[index], np.float32).reshape(shape)


def malformed(rng: np.random.Generator) -> pb.ModelInferRequest:
    message, _ = double_request(rng, 2)
    kind = int(rng.integers(4))
    if kind == 0:
        message.inputs[0].shape[:] = [2, -8]
    elif kind == 1:
        message.inputs[0].shape[:] = [1, 2**28]  # a forged 1 GiB
    elif kind == 2:
        message.raw_input_contents[0] = message.raw_input_contents[0][:-1]
    else:
        message.inputs[1].datatype = "FP32"
    return message


def client(address: str, seed: int, stop: threading.Event, tally: Tally) -> None:
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        kinds: list[tuple[Callable[[], None], int]] = [
            (lambda: unary_double(stub, rng, tally), 30),
            (lambda: unary_tabular(stub, rng, tally), 30),
            (lambda: unary_image(stub, rng, tally), 3),
            (lambda: stream_double(channel, rng, tally), 10),
            (lambda: bad(stub, rng, tally), 10),
            (lambda: cancelled(stub, rng, rnd, tally), 10),
            (lambda: flood(stub, rng, tally), 1),
        ]
        actions, weights = zip(*kinds, strict=True)
        while not stop.is_set():
            rnd.choices(actions, weights)[0]()


def _failed(tally: Tally, what: str, error: grpc.RpcError) -> None:
    tally.add(f"{what}:{error.code().name}", f"{what}: {error.code().name} {error.details()}")


def unary_double(
    stub: pb_grpc.GRPCInferenceServiceStub, rng: np.random.Generator, tally: Tally
) -> None:  # noqa: E501
    message, expected = double_request(rng, int(rng.integers(1, 9)))
    try:
        response = stub.ModelInfer(message, timeout=30)
    except grpc.RpcError as error:
        return _failed(tally, "double", error)
    if np.array_equal(first_output(response, "OUTPUT0"), expected):
        tally.add("ok")
    else:
        tally.add("double:WRONG", "double: wrong answer")


def unary_tabular(
    stub: pb_grpc.GRPCInferenceServiceStub, rng: np.random.Generator, tally: Tally
) -> None:  # noqa: E501
    rows = int(rng.integers(1, 65))
    message = request(
        "tabular", "features", rng.standard_normal((rows, 16)).astype(np.float32), "FP32"
    )  # noqa: E501
    try:
        response = stub.ModelInfer(message, timeout=30)
    except grpc.RpcError as error:
        return _failed(tally, "tabular", error)
    probabilities = first_output(response, "probabilities")
    if probabilities.shape == (rows, 4) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4):
        tally.add("ok")
    else:
        tally.add("tabular:WRONG", f"tabular: probabilities {probabilities.shape}")


def unary_image(
    stub: pb_grpc.GRPCInferenceServiceStub, rng: np.random.Generator, tally: Tally
) -> None:  # noqa: E501
    rows = int(rng.integers(1, 5))
    images = rng.integers(0, 256, (rows, 224, 224, 3), dtype=np.uint8)
    try:
        response = stub.ModelInfer(request("image", "image", images, "UINT8"), timeout=60)
    except grpc.RpcError as error:
        return _failed(tally, "image", error)
    if first_output(response, "logits").shape == (rows, 10):
        tally.add("ok")
    else:
        tally.add("image:WRONG", "image: wrong logits shape")


def stream_double(channel: grpc.Channel, rng: np.random.Generator, tally: Tally) -> None:
    count = int(rng.integers(2, 20))
    messages, expected = [], {}
    for i in range(count):
        message, outputs = double_request(rng, int(rng.integers(1, 9)), id=str(i))
        messages.append(message)
        expected[str(i)] = outputs
    call = channel.stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelStreamInferResponse.FromString,
    )
    try:
        for response in call(iter(messages), timeout=60):
            got = response.infer_response
            if response.error_message:
                tally.add("stream:ERROR", f"stream: {response.error_message}")
            elif np.array_equal(first_output(got, "OUTPUT0"), expected.pop(got.id)):
                tally.add("ok")
            else:
                tally.add("stream:WRONG", "stream: wrong answer")
    except grpc.RpcError as error:
        _failed(tally, "stream", error)


def bad(stub: pb_grpc.GRPCInferenceServiceStub, rng: np.random.Generator, tally: Tally) -> None:
    try:
        stub.ModelInfer(malformed(rng), timeout=30)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return tally.add("refused:INVALID_ARGUMENT")
        return _failed(tally, "malformed", error)
    tally.add("malformed:OK", "malformed request accepted")


def cancelled(
    stub: pb_grpc.GRPCInferenceServiceStub,
    rng: np.random.Generator,
    rnd: random.Random,
    tally: Tally,
) -> None:  # noqa: E501
    message, _ = double_request(rng, int(rng.integers(1, 9)))
    future = stub.ModelInfer.future(message, timeout=30)
    time.sleep(rnd.uniform(0, 0.003))
    future.cancel()
    try:
        future.result()
        tally.add("cancel:finished first")
    except grpc.FutureCancelledError:
        tally.add("cancel:CANCELLED")
    except grpc.RpcError as error:
        _failed(tally, "cancel", error)


def flood(stub: pb_grpc.GRPCInferenceServiceStub, rng: np.random.Generator, tally: Tally) -> None:
    """A burst against `slow`, whose queue holds 4: the excess must be RESOURCE_EXHAUSTED."""
    x = rng.standard_normal((1, 4)).astype(np.float32)
    futures = [
        stub.ModelInfer.future(request("slow", "INPUT0", x, "FP32"), timeout=30) for _ in range(40)
    ]  # noqa: E501
    for future in futures:
        try:
            ok = np.array_equal(first_output(future.result(), "OUTPUT0"), x)
            tally.add("ok" if ok else "flood:WRONG", None if ok else "flood: wrong answer")
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                tally.add("refused:RESOURCE_EXHAUSTED")
            else:
                _failed(tally, "flood", error)


def reloader(address: str, every: float, stop: threading.Event, tally: Tally) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        turn = 0
        while not stop.wait(every):
            model = RELOADED[turn % len(RELOADED)]
            turn += 1
            try:
                stub.RepositoryModelLoad(
                    pb.RepositoryModelLoadRequest(model_name=model), timeout=120
                )
                tally.add("reloads")
            except grpc.RpcError as error:
                _failed(tally, f"reload {model}", error)


def process_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            fields[key] = int(value.split()[0])
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


def build_repository(where: Path) -> Path:
    repo = where / "repo"
    for name in ("tabular", "image"):
        shutil.copytree(EXAMPLES / name, repo / name)
    models.build_double(repo, config={"dynamic_batching": {"max_queue_delay_microseconds": 500}})
    small_queue = {"max_queue_delay_microseconds": 0, "max_queue_size": 4}
    models.build_slow(repo, milliseconds=20, config={"dynamic_batching": small_queue})
    return repo


def report_lines(pid: int, tally: Tally, seconds: float, every: float) -> Iterator[str]:
    start = time.monotonic()
    while True:
        status = process_status(pid)
        with tally.lock:
            counts = dict(tally.counts)
        elapsed = time.monotonic() - start
        total = sum(v for k, v in counts.items() if k not in ("UNEXPECTED", "reloads"))
        yield (
            f"| {elapsed / 60:5.1f} | {total} | {counts.get('ok', 0)} "
            f"| {counts.get('refused:INVALID_ARGUMENT', 0)} "
            f"| {counts.get('refused:RESOURCE_EXHAUSTED', 0)} "
            f"| {counts.get('cancel:CANCELLED', 0)} | {counts.get('reloads', 0)} "
            f"| {counts.get('UNEXPECTED', 0)} | {status['VmRSS'] // 1024} | {status['Threads']} "
            f"| {status['fds']} |"
        )
        if elapsed >= seconds:
            return
        time.sleep(min(every, max(0.0, seconds - elapsed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=6, help="client threads")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--reload-every", type=float, default=15.0, help="seconds")
    args = parser.parse_args()

    tally = Tally()
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        repo = build_repository(Path(tmp))
        control = ("--model-control-mode", "explicit", "--load-model", "*")
        with BenchServer(repo, Path(tmp) / "server.log", *control) as server:
            threads = [
                threading.Thread(target=client, args=(server.address, seed, stop, tally))
                for seed in range(args.clients)
            ]
            threads.append(
                threading.Thread(
                    target=reloader, args=(server.address, args.reload_every, stop, tally)
                )
            )
            for thread in threads:
                thread.start()
            print(
                f"soak: {args.clients} client threads, reload every {args.reload_every:g}s, "
                f"{args.minutes:g} min"
            )
            print(
                "| min | requests | ok | invalid (expected) | queue full (expected) "
                "| cancelled | reloads | unexpected | RSS MiB | threads | fds |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            try:
                for line in report_lines(server.pid, tally, args.minutes * 60, args.report_every):
                    print(line, flush=True)
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            alive = process_status(server.pid)
            print(f"peak RSS {alive['VmHWM'] // 1024} MiB")
    print("outcomes:", dict(sorted(tally.counts.items())))
    for line in tally.unexpected:
        print("unexpected:", line)
    raise SystemExit(1 if tally.counts.get("UNEXPECTED") else 0)


if __name__ == "__main__":
    main()
