"""HTTP beside gRPC on the example models, and a FastAPI + onnxruntime baseline; prints one
markdown table and the target ratios.

onnxserve serves model_repository/ (one process, every frontend); perf_analyzer drives it over
gRPC, HTTP with binary tensors and HTTP with JSON tensors at each concurrency for a fixed time,
and the server's CPU time per request is read from /proc. The baseline (bench/fastapi_baseline.py,
two uvicorn workers) gets the same JSON load on the tabular model.

    bash bench/setup.sh     # perf_analyzer and the baseline's packages, in bench/.venv-perf
    .venv/bin/python bench/http_bench.py [--models tabular image] [--concurrency 1 16 64]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench import perf_analyzer  # noqa: E402
from server.launcher import cpu_seconds as process_cpu_seconds  # noqa: E402

VENV_PERF = ROOT / "bench" / ".venv-perf" / "bin"
JSON_TENSORS = ("--input-tensor-format=json", "--output-tensor-format=json")
TARGETS = [  # (what, numerator, denominator, model, at least)
    ("HTTP binary vs gRPC, tabular, c=16", "HTTP binary", "gRPC", "tabular", 2.0),
    ("HTTP binary vs gRPC, image, c=16", "HTTP binary", "gRPC", "image", 0.95),
    ("HTTP JSON vs FastAPI JSON, tabular, c=16", "HTTP JSON", "FastAPI JSON", "tabular", 2.0),
]


@dataclass
class Row:
    model: str
    frontend: str
    concurrency: int
    throughput: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time per request
    failure: str = ""


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_seconds(pid)
        except OSError:  # a worker that already exited
            continue
    return total


def with_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(c) for c in children.read_text().split())] if children.exists() else [pid]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(log: Path, pattern: str, process: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + 120
    while True:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{process.args} did not start; see {log}")
        time.sleep(0.1)  # pacing while the process starts


def measure(
    model: str, frontend: str, address: str, protocol: str, extra: tuple[str, ...],
    pids: list[int], concurrency: int, args: argparse.Namespace,
) -> Row:  # fmt: skip
    name = f"{model}-{frontend.replace(' ', '_')}-c{concurrency}"
    before, start = cpu_seconds(pids), time.monotonic()
    result = perf_analyzer.run(
        address, model, concurrency, args.window_ms, args.out / f"{name}.csv",
        args.out / f"{name}.log", protocol=protocol, extra=extra,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    requests = result.throughput * elapsed
    cpu_us = (cpu_seconds(pids) - before) / requests * 1e6 if requests else 0.0
    row = Row(model, frontend, concurrency, result.throughput, result.p50_ms, result.p99_ms,
              cpu_us, result.failure)  # fmt: skip
    print(table_line(row), flush=True)
    return row


def table_line(row: Row) -> str:
    cells = [row.model, row.frontend, str(row.concurrency), f"{row.throughput:,.0f}",
             f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}", f"{row.cpu_us:.0f}"]  # fmt: skip
    return "| " + " | ".join(cells) + " |" + (f" {row.failure}" if row.failure else "")


def run_onnxserve(args: argparse.Namespace, rows: list[Row]) -> None:
    log = args.out / "onnxserve.log"
    command = [
        sys.executable, "-m", "server", "serve",
        "--model-repository", str(ROOT / "model_repository"),
        "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
    ]  # fmt: skip
    with open(log, "wb") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for(log, "startup finished", server)
        text = log.read_text()
        grpc_port = re.search(r"gRPC listening on [^:]+:(\d+)", text).group(1)  # type: ignore[union-attr]
        http_port = re.search(r"HTTP listening on [^:]+:(\d+)", text).group(1)  # type: ignore[union-attr]
        frontends = [
            ("gRPC", f"127.0.0.1:{grpc_port}", "grpc", ()),
            ("HTTP binary", f"127.0.0.1:{http_port}", "http", ()),
            ("HTTP JSON", f"127.0.0.1:{http_port}", "http", JSON_TENSORS),
        ]
        for model in args.models:
            for frontend, address, protocol, extra in frontends:
                for c in args.concurrency:
                    rows.append(
                        measure(model, frontend, address, protocol, extra, [server.pid], c, args)
                    )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def run_baseline(args: argparse.Namespace, rows: list[Row]) -> None:
    port = free_port()
    log = args.out / "fastapi.log"
    command = [
        str(VENV_PERF / "python"), "-m", "uvicorn", "bench.fastapi_baseline:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "BASELINE_MODEL": "tabular"}
    with open(log, "wb") as out:
        app = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
                break
            except OSError:
                if app.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the FastAPI baseline did not start; see {log}") from None
                time.sleep(0.2)  # pacing while the workers start
        pids = with_children(app.pid)
        for c in args.concurrency:
            rows.append(
                measure(
                    "tabular",
                    "FastAPI JSON",
                    f"127.0.0.1:{port}",
                    "http",
                    JSON_TENSORS,
                    pids,
                    c,
                    args,
                )  # fmt: skip
            )
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(60)


def ratios(rows: list[Row]) -> list[str]:
    at16 = {(r.model, r.frontend): r.throughput for r in rows if r.concurrency == 16}
    lines = []
    for what, top, bottom, model, least in TARGETS:
        a, b = at16.get((model, top)), at16.get((model, bottom))
        if not a or not b:
            lines.append(f"- {what}: not measured")
            continue
        verdict = "met" if a / b >= least else "NOT met"
        lines.append(f"- {what}: {a / b:.2f}x (target >= {least}x): {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tabular", "image"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--window-ms", type=int, default=2000)
    parser.add_argument("--no-baseline", action="store_true", help="skip the FastAPI baseline")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / f"http-{stamp}")
    args = parser.parse_args(argv)
    if not perf_analyzer.available():
        print("perf_analyzer is not installed: run bash bench/setup.sh", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores; perf_analyzer on the same machine; results in {args.out}\n")
    print("| model | frontend | concurrency | infer/s | p50 ms | p99 ms | server CPU us/request |")
    print("|---|---|---|---|---|---|---|")
    rows: list[Row] = []
    run_onnxserve(args, rows)
    if not args.no_baseline and "tabular" in args.models:
        run_baseline(args, rows)
    print("\nTargets (ratios of throughput at concurrency 16, measured in this run):")
    lines = ratios(rows)
    print("\n".join(lines))
    (args.out / "results.json").write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
