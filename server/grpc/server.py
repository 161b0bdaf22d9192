"""Building the grpc.aio server: options, the service's handlers, the listening port."""

from __future__ import annotations

import grpc

from server.dataplane import DataPlane
from server.errors import ListenError
from server.grpc.health import add_health_service
from server.grpc.reflection import add_reflection_service
from server.grpc.servicer import InferenceServicer, generic_handler
from server.grpc.tls import TlsFiles, server_credentials
from server.ports import check_can_listen

# Connection management, chosen so that idle, dead or slow peers cost little and never block
# others (README: "Operating the server safely").
# Ping a connection that has been quiet this long, and drop it if the ack takes longer than the
# timeout: finds peers that vanished without closing TCP (a cut cable, a killed VM).
KEEPALIVE_TIME_MS = 60_000
KEEPALIVE_TIMEOUT_MS = 20_000
# Clients may send their own keepalive pings this often, even with no RPC open, without being
# disconnected for "too many pings" (grpc's default is 5 minutes, which breaks 30 s keepalives).
MIN_CLIENT_PING_INTERVAL_MS = 10_000
# A connection with no RPC for this long is closed with GOAWAY; clients reconnect on their next
# call. Releases abandoned connections. There is no maximum connection age: a stream
# (ModelStreamInfer) may legitimately stay open for hours.
MAX_CONNECTION_IDLE_MS = 300_000
# A TCP (or TLS) handshake that has not finished after this long is dropped.
HANDSHAKE_TIMEOUT_MS = 20_000
# Concurrent RPCs per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); more wait client-side.
MAX_CONCURRENT_STREAMS = 1024
# Concurrent RPCs in the whole server; beyond it new RPCs get RESOURCE_EXHAUSTED at once. High
# enough that slow or stalled clients cannot starve others; it bounds the request messages held
# in memory. Model queues (max_queue_size) are the intended back-pressure.
MAX_CONCURRENT_RPCS = 4096


def build_grpc_server(
    dataplane: DataPlane,
    host: str,
    port: int,
    max_message_bytes: int,
    tls: TlsFiles | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Returns the (not yet started) server and the port it bound (useful when port is 0)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # A second server on the same port must fail to start, not share it silently.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        # Server pings on idle connections too, and lets idle clients ping at the rate above.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
    server.add_generic_rpc_handlers((generic_handler(InferenceServicer(dataplane)),))
    add_health_service(server, dataplane)
    add_reflection_service(server)
    address = f"{host}:{port}"
    check_can_listen(host, port)
    credentials = None if tls is None else server_credentials(tls)
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc's only word for a failed bind (taken since the check, or not ours)
        raise ListenError(host, port) from None
    return server, bound
