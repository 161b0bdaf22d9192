"""Start to ready: `onnxserve serve` from exec to the first ServerReady that says true.

Starts the server on the example repository N times (JSON logs, fixed free ports), polls
ServerReady, and prints the median and where the time went, from the server's own log lines:

  interpreter   `python -c pass`, measured apart (the same interpreter and site-packages)
  imports       what `python -m server serve` imports before it listens, minus the
                interpreter, measured apart
  listener      exec -> "gRPC listening", less the two above (building the server, binding)
  metrics       "gRPC listening" -> "metrics listening"
  <model>       each model's session load and warm-up (they load side by side)
  ready         exec -> ServerReady true

with the server's resident memory and its CPU time (user + system, all threads) once ready
beside it. The machine's load shows in every wall-clock figure, much less in the CPU time:
quote the medians of one run, with the load average printed beside them.

    .venv/bin/python bench/startup.py --runs 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `server` importable
    sys.path.insert(0, str(ROOT))

from server.grpc.generated import grpc_service_pb2 as pb  # noqa: E402
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc  # noqa: E402

EXAMPLES = ROOT / "model_repository"
POLL = 0.005  # pacing between readiness polls; the measurement's resolution


@dataclass
class Sample:
    ready: float  # seconds from exec to ServerReady true
    listening: float  # exec -> "gRPC listening"
    metrics: float  # "gRPC listening" -> "metrics listening"
    rss_mib: float  # resident memory once ready
    cpu: float  # the server's CPU seconds (user + system, all threads) once ready
    loads: dict[str, tuple[float, float]] = field(default_factory=dict)  # model: load, warm-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# What `python -m server serve` runs before it listens: server/__main__.py turns the cyclic
# collector off, then the CLI and the app are imported.
SERVE_IMPORTS = "import gc; gc.disable(); import server.cli, server.app"
_TICKS = os.sysconf("SC_CLK_TCK")


def timed_python(code: str) -> tuple[float, float]:
    """Wall and CPU seconds of `python -c code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError("server did not listen") from None
            time.sleep(POLL)  # pacing: nothing to wait on before the port opens


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _log_times(log: Path) -> dict[str, object]:
    """Seconds since the epoch of the lines startup.py reads, and each model's load fields."""
    found: dict[str, object] = {}
    loads: dict[str, tuple[float, float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = str(entry.get("message", ""))
        when = datetime.fromisoformat(entry["time"]).timestamp()
        if message.startswith("gRPC listening"):
            found["listening"] = when
        elif message.startswith("metrics listening"):
            found["metrics"] = when
        elif "load_seconds" in entry:
            loads[str(entry["model"])] = (
                float(entry["load_seconds"]) - float(entry.get("warmup_seconds", 0.0)),
                float(entry.get("warmup_seconds", 0.0)),
            )
    found["loads"] = loads
    return found


def run_once(repository: Path, work: Path, extra: list[str]) -> Sample:
    port, metrics_port = free_port(), free_port()
    log = work / f"server-{port}.log"
    command = [
        sys.executable, "-m", "server", "serve", "--model-repository", str(repository),
        "--host", "127.0.0.1", "--grpc-port", str(port), "--metrics-port", str(metrics_port),
        "--log-format", "json", *extra,
    ]  # fmt: skip
    with open(log, "wb") as out:
        exec_at = time.time()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=work)
        try:
            _wait_listening(port, process, 60)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                while not stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready:
                    time.sleep(POLL)  # pacing: readiness is only observable by asking
            ready_at = time.time()
            rss, cpu = _rss_mib(process.pid), _cpu_seconds(process.pid)
        finally:
            process.terminate()
            process.wait(30)
    times = _log_times(log)
    listening = float(times.get("listening", ready_at))  # type: ignore[arg-type]
    metrics = float(times.get("metrics", listening))  # type: ignore[arg-type]
    return Sample(
        ready=ready_at - exec_at,
        listening=listening - exec_at,
        metrics=metrics - listening,
        rss_mib=rss,
        cpu=cpu,
        loads=times["loads"],  # type: ignore[arg-type]
    )


def report(
    samples: list[Sample], interpreter: tuple[float, float], imports: tuple[float, float]
) -> str:
    """interpreter and imports: (wall, CPU) seconds, imports without the interpreter."""

    def med(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f}"

    listening = statistics.median(s.listening for s in samples)
    lines = [
        "| phase | median (ms) |",
        "|---|---:|",
        f"| interpreter (`python -c pass`; CPU {interpreter[1] * 1000:.0f}) "
        f"| {interpreter[0] * 1000:.0f} |",
        f"| imports of `serve`, measured apart (CPU {imports[1] * 1000:.0f}) "
        f"| {imports[0] * 1000:.0f} |",
        f"| building the server, gRPC listening | "
        f"{max(0.0, listening - interpreter[0] - imports[0]) * 1000:.0f} |",
        f"| metrics listening | {med([s.metrics for s in samples])} |",
    ]
    for model in sorted({m for s in samples for m in s.loads}):
        loads = [s.loads[model] for s in samples if model in s.loads]
        lines.append(f"| model '{model}': session load | {med([x[0] for x in loads])} |")
        lines.append(f"| model '{model}': warm-up | {med([x[1] for x in loads])} |")
    ready = [s.ready for s in samples]
    lines += [
        f"| **exec -> ServerReady** (median of {len(samples)}; "
        f"min {min(ready) * 1000:.0f}, max {max(ready) * 1000:.0f}) | **{med(ready)}** |",
        "",
        f"Once ready: resident memory median {statistics.median(s.rss_mib for s in samples):.0f}"
        f" MiB, server CPU time median {med([s.cpu for s in samples])} ms. Models load side"
        f" by side, so their rows overlap; load average {os.getloadavg()[0]:.2f}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--model-repository", type=Path, default=EXAMPLES)
    parser.add_argument("--server-arg", action="append", default=[], help="extra serve option")
    args = parser.parse_args(argv)
    interpreter = statistics.median(timed_python("pass") for _ in range(5))
    imports = statistics.median(timed_python("import server.cli, server.app") for _ in range(5))
    with tempfile.TemporaryDirectory() as tmp:
        samples = [
            run_once(args.model_repository.resolve(), Path(tmp), args.server_arg)
            for _ in range(args.runs)
        ]
    print(report(samples, interpreter, imports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
