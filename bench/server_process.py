"""One server process for a benchmark cell: the packaged launcher plus the server's own counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from server.launcher import ServerLauncher


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


class BenchServer(ServerLauncher):
    """Used as a context manager: started (and ready) on entry, stopped on exit."""

    def __init__(self, repository: Path, log_path: Path, *args: str) -> None:
        # Not run from the checkout, so `-m server` imports the installed package (or PYTHONPATH).
        super().__init__(repository, *args, log_path=log_path, cwd=log_path.parent)

    def __enter__(self) -> BenchServer:
        self.start()
        return self

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
