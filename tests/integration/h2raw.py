"""Just enough HTTP/2 by hand to misbehave: idle connections, half-sent requests, unread replies.

Real gRPC clients always finish what they start and read what they get; these sockets do not.
Frames follow RFC 9113; header blocks use HPACK literals without Huffman coding (RFC 7541 6.2.2),
which every decoder must accept.
"""

from __future__ import annotations

import socket
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS = 0x0, 0x1, 0x4
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )  # noqa: E501


def _integer(value: int, prefix_bits: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([value])
    out = bytearray([limit])
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def header_block(headers: list[tuple[str, str]]) -> bytes:
    block = bytearray()
    for name, value in headers:
        block += b"\x00"  # literal header field without indexing, new name
        block += _integer(len(name), 7) + name.encode()
        block += _integer(len(value), 7) + value.encode()
    return bytes(block)


def grpc_message(message: bytes) -> bytes:
    """The gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, bytes."""
    return b"\x00" + struct.pack(">I", len(message)) + message


class RawConnection:
    """One TCP connection that has said the HTTP/2 preface and nothing it does not mean to."""

    def __init__(self, address: str, receive_buffer: int | None = None) -> None:
        host, port = address.rsplit(":", 1)
        self.authority = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:  # set before connecting, so the TCP window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        # Our SETTINGS (all defaults: 64 KiB windows), and an ack of the server's, sent blind.
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0))

    def start_call(self, path: str, stream: int = 1) -> None:
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        self.sock.sendall(frame(HEADERS, END_HEADERS, stream, header_block(headers)))

    def send_data(self, data: bytes, end: bool, stream: int = 1) -> None:
        self.sock.sendall(frame(DATA, END_STREAM if end else 0, stream, data))

    def close(self) -> None:
        self.sock.close()
