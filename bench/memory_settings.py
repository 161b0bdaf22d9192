"""The server's RSS under requests of varying shape, for each ONNX Runtime memory setting.

For every combination of session.enable_mem_pattern, session.enable_cpu_mem_arena and
session.arena_extend_strategy it starts the real server on the `wide` test model (intermediates
256x the input) or the example image model, warms it up with the largest request, then sends N
requests of random batch size (1..16) and, for `wide` in the "shape" mode, random length too;
it prints RSS after warm-up, at the end, and the growth. Not part of `make test`.

    .venv/bin/python -m bench.memory_settings --requests 2000
    .venv/bin/python -m bench.memory_settings --model image --requests 300 --modes batch
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import yaml

from bench.server_process import BenchServer
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests import models

EXAMPLES = Path(__file__).resolve().parent.parent / "model_repository"
MAX_BATCH = 16
MAX_LENGTH = 2048
# label: (enable_mem_pattern, enable_cpu_mem_arena, arena_extend_strategy)
SETTINGS = {
    "pattern on, arena next_power_of_two": (True, True, "next_power_of_two"),
    "pattern on, arena same_as_requested": (True, True, "same_as_requested"),
    "pattern off, arena next_power_of_two": (False, True, "next_power_of_two"),
    "pattern off, arena same_as_requested": (False, True, "same_as_requested"),
    "pattern off, arena off": (False, False, "next_power_of_two"),
}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def infer(stub: pb_grpc.GRPCInferenceServiceStub, model: str, rows: int, length: int) -> None:
    if model == "image":
        x = np.full((rows, 224, 224, 3), 7, np.uint8)
        name, datatype = "image", "UINT8"
    else:
        x = np.full((rows, length), 0.25, np.float32)
        name, datatype = "INPUT0", "FP32"
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=x.shape)
    request = pb.ModelInferRequest(
        model_name=model, inputs=[tensor], raw_input_contents=[x.tobytes()]
    )
    response = stub.ModelInfer(request, timeout=60)
    assert response.outputs[0].shape[0] == rows


def build(repo: Path, model: str, session: dict) -> None:
    if model == "wide":
        models.build_wide(repo, config={"session": session})
        return
    shutil.copytree(EXAMPLES / model, repo / model)
    config_file = repo / model / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["session"] = session
    config["dynamic_batching"] = {"max_queue_delay_microseconds": 0}
    config_file.write_text(yaml.safe_dump(config))


def measure(workdir: Path, model: str, label: str, setting: tuple, mode: str, count: int) -> str:
    pattern, arena, strategy = setting
    repo = workdir / f"repo-{len(list(workdir.iterdir()))}"
    session = {
        "enable_mem_pattern": pattern,
        "enable_cpu_mem_arena": arena,
        "arena_extend_strategy": strategy,
        "intra_op_num_threads": 1,
    }
    build(repo, model, session)
    rng = np.random.default_rng(0)
    with BenchServer(repo, workdir / f"{repo.name}.log") as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for rows, length in [(MAX_BATCH, MAX_LENGTH), (1, 1), (MAX_BATCH // 2, MAX_LENGTH)]:
                infer(stub, model, rows, length)
            warm = rss_mib(server.pid)
            start = time.monotonic()
            for _ in range(count):
                rows = int(rng.integers(1, MAX_BATCH + 1))
                length = int(rng.integers(1, MAX_LENGTH + 1)) if mode == "shape" else MAX_LENGTH
                infer(stub, model, rows, length)
            seconds = time.monotonic() - start
            end = rss_mib(server.pid)
    growth = 100 * (end - warm) / warm
    per_request = 1000 * seconds / count
    return f"| {label} | {mode} | {warm:.0f} | {end:.0f} | {growth:+.0f}% | {per_request:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--model", choices=["wide", "image"], default="wide")
    parser.add_argument("--modes", default="batch,shape", help="batch: rows vary; shape: both")
    parser.add_argument("--only", default="", help="run the settings whose label contains this")
    args = parser.parse_args()
    print(f"model {args.model}, {args.requests} requests per cell, batch 1..{MAX_BATCH}")
    print("| setting | varying | RSS after warm-up (MiB) | RSS at end (MiB) | growth | ms/req |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            for label, setting in SETTINGS.items():
                if args.only in label:
                    line = measure(Path(tmp), args.model, label, setting, mode, args.requests)
                    print(line, flush=True)


if __name__ == "__main__":
    main()
