"""`onnxserve serve` on a port that is already taken: one clear line and exit code 1."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from server.grpc.generated import grpc_service_pb2 as pb
from tests.harness import ServerProcess


def serve(
    repository: Path, grpc_port: int, metrics_port: int = 0, http_port: int = 0
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "server", "serve",
        "--model-repository", str(repository),
        "--host", "127.0.0.1",
        "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        "--http-port", str(http_port),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("which", ["grpc", "metrics", "http"])
def test_port_held_by_another_program(tmp_path: Path, which: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = {"grpc": (port, 0, 0), "metrics": (0, port, 0), "http": (0, 0, port)}[which]
        result = serve(tmp_path, *ports)
    assert result.returncode == 1
    assert result.stderr == f"onnxserve: cannot listen on 127.0.0.1:{port}: address in use?\n"
    assert result.stdout == ""


def test_port_held_by_another_onnxserve(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    first = start_server(tmp_path)
    result = serve(tmp_path, first.port)
    assert result.returncode == 1
    assert result.stderr == (
        f"onnxserve: cannot listen on 127.0.0.1:{first.port}: address in use?\n"
    )
    with first.channel() as channel:  # the first server is untouched
        assert first.stub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
