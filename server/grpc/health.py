"""The standard gRPC health service (grpc.health.v1) on the inference port.

Service "" (and the inference service's own name) is the server's readiness, the same answer as
ServerReady; service "liveness" is the process's liveness, SERVING whenever this handler runs
(the event loop is turning), whatever the models' states, so that a Kubernetes liveness probe
never restarts a pod that is loading models or holds a failed one; any other service name is a
model, SERVING while one of its versions is READY (a model named "liveness" is shadowed).
Statuses are read from the data plane at each call, so they follow loads, reloads and unloads
without being told.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.dataplane import DataPlane
from server.grpc.servicer import SERVICE

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
SERVER_SERVICES = frozenset({"", SERVICE})
LIVENESS = "liveness"
# Watch streams look for a change this often.
WATCH_INTERVAL = 1.0


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self, dataplane: DataPlane, watch_interval: float = WATCH_INTERVAL) -> None:
        self._dataplane = dataplane
        self._interval = watch_interval

    def status(self, service: str) -> int:
        dataplane = self._dataplane
        if service == LIVENESS:
            return SERVING  # answering at all proves the loop runs
        if service in SERVER_SERVICES:
            return SERVING if dataplane.ready() else NOT_SERVING
        if dataplane.model_ready(service):
            return SERVING
        known = any(s.name == service for s in dataplane.manager.index())
        return NOT_SERVING if known else SERVICE_UNKNOWN

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status == SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service '{request.service}'")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            # Read before the status: once shutdown is seen, the status sent next is final.
            stopping = not self._dataplane.accepting
            status = self.status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            if stopping:
                return  # end the stream so it does not hold the shutdown grace period
            await self._wait_for_change()

    async def _wait_for_change(self) -> None:
        """Sleep one interval, waking early when shutdown begins."""
        try:
            await asyncio.wait_for(self._dataplane.stopping.wait(), self._interval)
        except TimeoutError:
            pass


def add_health_service(server: grpc.aio.Server, dataplane: DataPlane) -> None:
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(dataplane), server)
