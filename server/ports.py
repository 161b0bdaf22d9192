"""Checks that a port the server is about to listen on is free, so a taken port is reported in
one line instead of a library's log lines and traceback."""

from __future__ import annotations

import errno
import socket

from server.errors import ListenError


def check_can_listen(host: str, port: int) -> None:
    """Raises ListenError when another socket already listens on every address of host:port.

    Like gRPC, it is enough that one of the addresses `host` resolves to can be bound. Other
    bind failures (an address that is not this machine's...) are left to the real listener.
    """
    if port == 0:  # the OS picks a free port
        return
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return
    in_use = 0
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As the real listeners do: connections of an earlier run in TIME_WAIT are no conflict.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                in_use += error.errno == errno.EADDRINUSE
                continue
            return
    if in_use:
        raise ListenError(host, port)
