"""Runs the onnxserve image with docker for the image tests: ports published on 127.0.0.1 only
(the host side chosen by docker), readiness waited for with a gRPC call (a published port
accepts TCP connections before the server listens), and every container removed afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import grpc

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc

IMAGE = os.environ.get("IMAGE", "onnxserve:latest")
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def readable_copy(source: Path, target: Path) -> Path:
    """A copy of a model repository that the image's user (10001) can read: pytest's temporary
    folders are 0700 and owned by whoever runs the tests."""
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    target.parent.chmod(0o755)
    return target


class Container:
    """One `docker run -d` of the image; `args` go after the image name (to `onnxserve serve`)."""

    def __init__(
        self,
        repository: Path,
        *args: str,
        docker_options: tuple[str, ...] = (),
        mount: str = "/models",
    ) -> None:
        self.name = f"onnxserve-test-{uuid.uuid4().hex[:12]}"
        self.repository = repository
        self.args = args
        self.docker_options = docker_options
        self.mount = mount
        self.ports: dict[str, int] = {}
        self.run_at = 0.0  # time.time() just before `docker run`

    def start(self) -> Container:
        publish = [f"--publish=127.0.0.1::{port}" for port in PORTS.values()]
        self.run_at = time.time()
        docker(
            "run", "--detach", "--name", self.name, "--read-only", "--tmpfs", "/tmp",
            "--volume", f"{self.repository}:{self.mount}:ro", *publish, *self.docker_options,
            IMAGE, *self.args,
        )  # fmt: skip
        for key, port in PORTS.items():
            mapping = docker("port", self.name, f"{port}/tcp").splitlines()[0]
            self.ports[key] = int(mapping.rsplit(":", 1)[1])
        return self

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Polls ServerReady; returns the wall-clock time it first answered true."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while True:
                try:
                    if stub.ServerReady(pb.ServerReadyRequest(), timeout=0.5).ready:
                        return time.time()
                except grpc.RpcError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready in {timeout}s:\n{self.logs()}")
                if self.state()["Status"] != "running":
                    raise RuntimeError(f"{self.name} exited:\n{self.logs()}")
                time.sleep(0.01)  # pacing between polls

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name))[0]

    def state(self) -> dict:
        return self.inspect()["State"]

    def started_at(self) -> float:
        """When the container's process started (docker's clock is this machine's)."""
        text = self.state()["StartedAt"]
        # Nanoseconds do not fit datetime: keep microseconds.
        match = re.match(r"(.*T[\d:]+)(\.\d+)?Z", text)
        assert match, text
        fraction = float(match.group(2) or 0)
        stamp = datetime.fromisoformat(match.group(1) + "+00:00").timestamp()
        return stamp + fraction

    def cpu_seconds(self) -> float:
        """User + system CPU time of the container's PID 1 (all its threads) so far."""
        fields = docker("exec", self.name, "cat", "/proc/1/stat").rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")

    def logs(self) -> str:
        done = subprocess.run(
            ["docker", "logs", self.name], capture_output=True, text=True, timeout=30, check=False
        )
        return done.stdout + done.stderr

    def wait_exit(self, timeout: float = 60.0) -> int:
        return int(docker("wait", self.name, timeout=timeout).strip())

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False)
