"""One `python -m server serve` process for a benchmark cell, on an OS-chosen port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc

_LISTENING = re.compile(r"gRPC listening on [^:]+:(\d+)")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Counters:
    failed: int  # requests that ended in an error
    inferences: int  # rows inferred
    executions: int  # model runs (batches)

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.failed - other.failed,
            self.inferences - other.inferences,
            self.executions - other.executions,
        )


class BenchServer:
    def __init__(self, repository: Path, log_path: Path, *args: str) -> None:
        self.repository = repository
        self.log_path = log_path
        self.args = args
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> BenchServer:
        command = [
            sys.executable, "-m", "server", "serve",
            "--model-repository", str(self.repository),
            "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
            *self.args,
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        # Not run from the checkout, so `-m server` imports the installed package (or PYTHONPATH).
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.log_path.parent
        )
        self._wait_ready(60.0)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def counters(self, model: str) -> Counters | None:
        """The server's own counts for the model (ModelStatistics), or None without that RPC."""
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            try:
                reply = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=10)
            except grpc.RpcError:
                return None
        stats = reply.model_stats
        return Counters(
            failed=sum(s.inference_stats.fail.count for s in stats),
            inferences=sum(s.inference_count for s in stats),
            executions=sum(s.execution_count for s in stats),
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.port:
            self._check_alive()
            match = _LISTENING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
            elif time.monotonic() > deadline:
                raise TimeoutError(f"server did not listen in {timeout}s; see {self.log_path}")
            else:
                time.sleep(0.05)
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while True:
                self._check_alive()
                try:
                    if stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server not ready in {timeout}s; see {self.log_path}")
                time.sleep(0.05)

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(
                f"server exited with {self._process.returncode}; see {self.log_path}"
            )
