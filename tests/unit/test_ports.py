"""server/ports.py: a taken port is found before any listener is built."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from server.errors import ListenError
from server.ports import check_can_listen


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_listening_port_is_refused(taken_port: int) -> None:
    with pytest.raises(ListenError) as info:
        check_can_listen("127.0.0.1", taken_port)
    assert str(info.value) == f"cannot listen on 127.0.0.1:{taken_port}: address in use?"
    assert (info.value.host, info.value.port) == ("127.0.0.1", taken_port)


def test_the_wildcard_address_conflicts_with_a_specific_one(taken_port: int) -> None:
    with pytest.raises(ListenError):
        check_can_listen("0.0.0.0", taken_port)


def test_a_free_port_and_port_zero_pass() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_can_listen("127.0.0.1", free)
    check_can_listen("127.0.0.1", 0)


def test_a_closed_connection_in_time_wait_is_no_conflict() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    check_can_listen("127.0.0.1", port)
