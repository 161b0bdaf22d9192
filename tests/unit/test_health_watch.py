"""Health Watch streams around shutdown, driven in-process so the ordering is exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from grpc_health.v1 import health_pb2

from server.dataplane import DataPlane
from server.grpc.health import NOT_SERVING, SERVING, HealthServicer
from server.repository.manager import ModelRepositoryManager


def watch_server(repo: Path) -> tuple[DataPlane, AsyncIterator[health_pb2.HealthCheckResponse]]:
    """A started data plane with no models, and a Watch on the server's health (60 s interval)."""
    dataplane = DataPlane(ModelRepositoryManager(repo))
    dataplane.finish_startup([])
    request = health_pb2.HealthCheckRequest(service="")
    return dataplane, HealthServicer(dataplane, watch_interval=60).Watch(request, context=None)


def test_shutdown_between_replies_still_sends_not_serving(tmp_path: Path) -> None:
    # Shutdown begins while the stream is suspended on its first reply: the next reply must
    # still say NOT_SERVING before the stream ends, never end silently.
    async def main() -> list[int]:
        dataplane, watch = watch_server(tmp_path)
        statuses = [(await anext(watch)).status]
        dataplane.stop_accepting()
        statuses += [reply.status async for reply in watch]
        return statuses

    assert asyncio.run(asyncio.wait_for(main(), 5)) == [SERVING, NOT_SERVING]


def test_shutdown_wakes_a_sleeping_watch(tmp_path: Path) -> None:
    # A watch in its 60 s sleep answers shutdown at once instead of at the next interval.
    async def main() -> list[int]:
        dataplane, watch = watch_server(tmp_path)
        statuses = [(await anext(watch)).status]
        pending = asyncio.ensure_future(anext(watch))
        while not dataplane.stopping._waiters:  # until the stream sleeps in its interval wait
            await asyncio.sleep(0)  # a yield, no time passes
        dataplane.stop_accepting()
        statuses.append((await pending).status)
        return statuses

    assert asyncio.run(asyncio.wait_for(main(), 5)) == [SERVING, NOT_SERVING]
