"""Building the grpc.aio server: options, the service's handlers, the listening port."""

from __future__ import annotations

import grpc

from server.dataplane import DataPlane
from server.grpc.servicer import InferenceServicer, generic_handler


def build_grpc_server(
    dataplane: DataPlane, host: str, port: int, max_message_bytes: int
) -> tuple[grpc.aio.Server, int]:
    """Returns the (not yet started) server and the port it bound (useful when port is 0)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # A second server on the same port must fail to start, not share it silently.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((generic_handler(InferenceServicer(dataplane)),))
    bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound
