"""The HTTP server: uvicorn's httptools protocol on the event loop that grpc.aio uses.

uvicorn is run embedded (startup/shutdown, not serve()), so it installs no signal handlers and
the application's own shutdown checklist decides when it stops. The socket is bound when the
server is built, so a taken port fails before anything runs and port 0 is known at once.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.lifespan.off import LifespanOff

from server.dataplane import DataPlane
from server.errors import ConfigError, ListenError
from server.http.asgi import HttpApp
from server.http.endpoints import Endpoints
from server.model_config import ModelConfig

# An idle keep-alive connection is closed after this long (uvicorn's default is 5 s, shorter than
# the 60 s idle timeouts load balancers commonly keep, which would make them hit closed sockets).
KEEP_ALIVE_SECONDS = 75
BACKLOG = 2048


class HttpServer:
    def __init__(
        self,
        dataplane: DataPlane,
        config_json: Callable[[ModelConfig], Any],
        host: str,
        port: int,
        max_body_bytes: int,
        tls: tuple[Path, Path, Path | None] | None = None,
    ) -> None:
        app = HttpApp(Endpoints(dataplane, config_json), max_body_bytes)
        options: dict[str, Any] = {}
        if tls is not None:
            cert, key, client_ca = tls
            for option, path in (
                ("--tls-cert", cert),
                ("--tls-key", key),
                ("--tls-client-ca", client_ca),
            ):
                if path is not None and not path.is_file():
                    raise ConfigError(f"{option} {path}: cannot read: no such file")
            options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
            if client_ca is not None:
                options["ssl_ca_certs"] = str(client_ca)
                options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        self._config = uvicorn.Config(
            app,
            http="httptools",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,  # no product name in every reply
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            backlog=BACKLOG,
            **options,
        )
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(self._config)
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self._config.load()
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"HTTPS: cannot load the TLS files: {error}") from None
        self._server.lifespan = LifespanOff(self._config)
        await self._server.startup(sockets=[self._socket])
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        # What uvicorn's own main loop would do: refresh the Date and Server headers each second.
        counter = 0
        while True:
            await self._server.on_tick(counter)
            counter += 10
            await asyncio.sleep(1.0)

    async def stop(self, grace: float) -> None:
        """Stop accepting -> finish the requests in flight (up to `grace` s) -> close."""
        self._config.timeout_graceful_shutdown = grace
        if self._ticker is not None:
            self._ticker.cancel()
        if hasattr(self._server, "servers"):
            await self._server.shutdown()
        else:  # never started
            self._socket.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says TCP, and without it every reply waits out a delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # As uvicorn binds its own sockets: a restart need not wait for TIME_WAIT to pass.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise ListenError(host, port) from None
    sock.set_inheritable(True)
    return sock
