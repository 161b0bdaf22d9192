"""The /metrics HTTP endpoint, served by prometheus-client in its own threads.

Scrapes never run on the event loop; they only ask it for a snapshot (on_loop), which costs the
loop a few dictionary copies per scrape.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import threading
from collections.abc import Callable
from typing import TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from server.errors import ListenError

T = TypeVar("T")

# A scrape gives up on the model families if the loop does not answer in time (it is stuck, or
# shutting down); the process metrics are still returned.
SNAPSHOT_TIMEOUT = 5.0


class MetricsServer:
    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Serves `registry` at http://host:port/metrics; port 0 lets the OS choose (see .port)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:  # reported in one line, like the gRPC port
            raise ListenError(host, port) from None
        raise
    return MetricsServer(server, thread)


def on_loop(
    loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float = SNAPSHOT_TIMEOUT
) -> Callable[[], T]:
    """A function that, from any other thread, runs `fn` on `loop` and returns its result."""

    def call() -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as error:
                future.set_exception(error)

        loop.call_soon_threadsafe(run)
        return future.result(timeout)

    return call
