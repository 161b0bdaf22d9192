"""The test suite's handle on a real server subprocess: the packaged launcher plus gRPC stubs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc

from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from server.launcher import ServerLauncher


class ServerProcess(ServerLauncher):
    """One `python -m server serve` process with its log in `log_dir`; ports chosen by the OS."""

    def __init__(self, repository: Path, *args: str, log_dir: Path) -> None:
        log_path = log_dir / f"server-{os.getpid()}-{time.monotonic_ns()}.log"
        super().__init__(repository, *args, log_path=log_path)

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> ServerProcess:
        super().start(wait_ready, timeout)
        return self

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def stub(self, channel: grpc.Channel) -> pb_grpc.GRPCInferenceServiceStub:
        return pb_grpc.GRPCInferenceServiceStub(channel)
