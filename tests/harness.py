"""Starts the real server in a subprocess on free ports and talks gRPC to it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc

_LISTENING = re.compile(r"gRPC listening on [^:]+:(\d+)")
_HTTP = re.compile(r"HTTP listening on [^:]+:(\d+)")
_METRICS = re.compile(r"metrics listening on [^:]+:(\d+)")


class ServerProcess:
    """One `python -m server serve` process; ports are chosen by the OS (port 0)."""

    def __init__(self, repository: Path, *args: str, log_dir: Path) -> None:
        self.repository = repository
        self.args = list(args)
        self.log_path = log_dir / f"server-{os.getpid()}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.metrics_port = 0
        self.http_port = 0  # stays 0 when the args turn HTTP off (--http-port -1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> ServerProcess:
        command = [
            sys.executable, "-m", "server", "serve",
            "--model-repository", str(self.repository),
            "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
            *self.args,
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout
        # Both ports are logged before the models load: wait for both lines.
        while not (self.port and self.metrics_port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not listen in {timeout}s:\n{self.logs()}")
            logs = self.logs()
            listening, metrics = _LISTENING.search(logs), _METRICS.search(logs)
            if listening and metrics:
                self.port, self.metrics_port = int(listening.group(1)), int(metrics.group(1))
                http = _HTTP.search(logs)  # logged before the metrics line, when HTTP is on
                self.http_port = int(http.group(1)) if http else 0
            else:
                time.sleep(0.05)
        if wait_ready:
            self.wait_ready(deadline - time.monotonic())
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Waits for the end of the start-up load (ServerReady may stay false after it under
        strict readiness when a model failed, which tests of broken models rely on)."""
        deadline = time.monotonic() + timeout
        while "startup finished" not in self.logs():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not finish starting in {timeout}s:\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code (killed after timeout)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.logs()}")

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def stub(self, channel: grpc.Channel) -> pb_grpc.GRPCInferenceServiceStub:
        return pb_grpc.GRPCInferenceServiceStub(channel)
