"""Builds the server from settings and runs it: start -> serve -> shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.protobuf.json_format import MessageToDict

from server.cache import LocalStore, ResponseCache, Store
from server.dataplane import DataPlane
from server.grpc.config_proto import TRITON_FORMAT
from server.grpc.config_proto import to_proto as config_to_proto
from server.grpc.server import build_grpc_server
from server.grpc.tls import TlsFiles
from server.heap_trim import HeapTrimmer
from server.http.server import HttpServer
from server.model_config import ModelConfig
from server.observability.http import MetricsServer, on_loop, start_metrics_server
from server.observability.metrics import build_registry, take_snapshot
from server.observability.statistics import Statistics
from server.ports import check_can_listen
from server.repository.configs import ConfigSource
from server.repository.control import RepositoryControl
from server.repository.control_mode import ControlMode
from server.repository.manager import ModelRepositoryManager

log = logging.getLogger("onnxserve")


@dataclass(frozen=True)
class Settings:
    model_repository: Path
    host: str = "0.0.0.0"
    grpc_port: int = 8001
    http_port: int = 8000  # -1: no HTTP frontend
    metrics_port: int = 8002
    max_message_bytes: int = 64 * 1024 * 1024  # gRPC messages and HTTP request bodies
    shutdown_timeout: float = 30.0
    # Serve gRPC over TLS when cert and key are given; a client CA also requires client certs.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Requests slower than this (queue + compute, in ms) are logged with their timings; 0: off.
    log_slow_ms: float = 0.0
    # Ready only while every model loaded at start serves (Triton's --strict-readiness).
    strict_readiness: bool = True
    # Which models load, and when (server/repository/control.py); names as in Triton.
    model_control_mode: ControlMode = ControlMode.NONE
    repository_poll_secs: float = 5.0
    load_models: tuple[str, ...] = ()  # explicit mode: loaded at start; "*" loads all
    model_load_threads: int = 4  # models loading side by side at start (Triton's default)
    # The response cache (docs/response-cache.md): "" off, "local", or a redis:// URL.
    cache: str = ""
    cache_size: int = 256 * 1024 * 1024  # local: bytes held, keys and values counted
    cache_ttl: float = 0.0  # redis: seconds an entry lives; 0: until Redis evicts it
    cache_timeout_ms: float = 50.0  # redis: bound on each call; past it the request just runs
    cache_password_file: Path | None = None
    cache_tls_ca: Path | None = None


class InferenceServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.statistics = Statistics(slow_seconds=settings.log_slow_ms / 1000)
        self.cache = ResponseCache(_cache_store(settings), self.statistics.observer)
        self.manager = ModelRepositoryManager(
            settings.model_repository,
            observer_factory=self.statistics.observer,
            on_released=self.statistics.forget,
            configs=ConfigSource(TRITON_FORMAT),
            response_cache=self.cache,
        )
        self.control = RepositoryControl(
            self.manager,
            settings.model_control_mode,
            settings.repository_poll_secs,
            settings.load_models,
            settings.model_load_threads,
        )
        self.dataplane = DataPlane(
            self.manager, self.statistics, self.control, settings.strict_readiness
        )
        self._metrics: MetricsServer | None = None
        self._heap_trimmer = HeapTrimmer()
        # The metrics port opens after gRPC starts; a taken one must fail before anything runs.
        check_can_listen(settings.host, settings.metrics_port)
        self._grpc, self.grpc_port = build_grpc_server(
            self.dataplane,
            settings.host,
            settings.grpc_port,
            settings.max_message_bytes,
            _tls_files(settings),
        )
        self._http: HttpServer | None = None
        if settings.http_port >= 0:
            tls = _tls_files(settings)
            self._http = HttpServer(
                self.dataplane,
                config_json,
                settings.host,
                settings.http_port,
                settings.max_message_bytes,
                None if tls is None else (tls.cert, tls.key, tls.client_ca),
            )

    async def start(self) -> None:
        # Listen first so liveness answers while models load; readiness follows the load.
        await self._grpc.start()
        log.info("gRPC listening on %s:%d", self.settings.host, self.grpc_port)
        if self._http is not None:
            await self._http.start()
            log.info("HTTP listening on %s:%d", self.settings.host, self._http.port)
        # Scrapes run in the metrics server's threads; the snapshot itself is taken on the loop.
        snapshot = on_loop(
            asyncio.get_running_loop(), lambda: take_snapshot(self.statistics, self.manager)
        )
        self._metrics = start_metrics_server(
            self.settings.host, self.settings.metrics_port, build_registry(snapshot)
        )
        log.info("metrics listening on %s:%d", self.settings.host, self._metrics.port)
        if self.cache.store is not None:
            log.info("response cache: %s", _describe_cache(self.settings))
        await self.control.start()
        self._heap_trimmer.start()
        self.dataplane.finish_startup(self.manager.model_names())
        ready = sorted({m.name for m in self.manager.served_versions()})
        log.info(
            "startup finished: serving %d model(s): %s; server %s",
            len(ready),
            ", ".join(ready) or "none",
            "ready" if self.dataplane.ready() else "not ready (a model loaded at start failed)",
        )

    async def shutdown(self) -> None:
        """Stop accepting -> finish in-flight and queued requests -> release models.

        One --shutdown-timeout bounds the whole drain: each step gets what the earlier ones
        left of it, so requests still running at the deadline are cancelled rather than
        granted the timeout a second time.
        """
        timeout = self.settings.shutdown_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def remaining() -> float:
            return max(0.0, deadline - loop.time())

        log.info("shutting down: finishing in-flight requests (up to %.0fs)", timeout)
        self.dataplane.stop_accepting()
        await self.control.close()  # no poll starts a load from here on
        # gRPC and HTTP drain side by side, within the same deadline.
        stopping = [self._grpc.stop(grace=remaining())]
        if self._http is not None:
            stopping.append(self._http.stop(grace=remaining()))
        await asyncio.gather(*stopping)
        await self.manager.close(remaining())
        await self.cache.close()
        self.dataplane.shared_memory.close()  # no request is left to read or write a region
        if self._metrics is not None:
            self._metrics.stop()
        await self._heap_trimmer.close()
        log.info("shutdown complete")


def _cache_store(settings: Settings) -> Store | None:
    if not settings.cache:
        return None
    if settings.cache == "local":
        return LocalStore(settings.cache_size)
    from server.cache.redis_store import RedisStore  # imports redis only when it is used

    return RedisStore(
        settings.cache,
        settings.cache_timeout_ms / 1000,
        settings.cache_ttl,
        settings.cache_password_file,
        settings.cache_tls_ca,
    )


def _describe_cache(settings: Settings) -> str:
    if settings.cache == "local":
        return f"local, up to {settings.cache_size} bytes"
    url = urlsplit(settings.cache)
    if url.password:  # never log a password given in the URL
        url = url._replace(netloc=url.netloc.replace(f":{url.password}@", ":***@"))
    ttl = f"entries live {settings.cache_ttl:g}s" if settings.cache_ttl else "no TTL"
    return f"{urlunsplit(url)}, {ttl}, {settings.cache_timeout_ms:g} ms per call"


def _tls_files(settings: Settings) -> TlsFiles | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def config_json(config: ModelConfig) -> dict[str, Any]:
    """Triton's ModelConfig as JSON, for the HTTP frontend (int64 fields as strings, as Triton
    writes them and perf_analyzer reads them)."""
    return MessageToDict(config_to_proto(config), preserving_proto_field_name=True)


async def serve(settings: Settings) -> None:
    server = InferenceServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    finally:
        # The cyclic collector was off for start-up (server/__main__.py, cli.py). What start-up
        # made lives as long as the process: frozen, later collections never walk it again.
        gc.freeze()
        gc.enable()
    await stop.wait()
    await server.shutdown()
