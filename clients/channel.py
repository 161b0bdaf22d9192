"""Opening a channel, plain or TLS (root certificate, and a client certificate for mutual TLS)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

Pem = str | Path | bytes  # a PEM file path, or the PEM bytes themselves

# Responses may be as large as the server sends (its limit applies); grpc's client default is 4 MiB.
_DEFAULT_OPTIONS = (("grpc.max_receive_message_length", -1),)


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS settings: with no root certificate the system's trusted roots verify the server."""

    root_certificates: Pem | None = None
    certificate_chain: Pem | None = None  # client certificate, for mutual TLS
    private_key: Pem | None = None  # its key

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("mutual TLS needs both a client certificate and its private key")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.root_certificates),
            private_key=_read(self.private_key),
            certificate_chain=_read(self.certificate_chain),
        )


def tls_settings(
    tls: bool,
    root_certificates: Pem | None,
    certificate_chain: Pem | None,
    private_key: Pem | None,
) -> Tls | None:
    """TLS is on when asked for, or when any certificate or key is given."""
    if tls or root_certificates or certificate_chain or private_key:
        return Tls(root_certificates, certificate_chain, private_key)
    return None


def channel_options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    names = {name for name, _ in options}
    return [*options, *(o for o in _DEFAULT_OPTIONS if o[0] not in names)]


def open_channel(url: str, tls: Tls | None, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(url, options=channel_options(options))
    return grpc.secure_channel(url, tls.credentials(), options=channel_options(options))


def open_aio_channel(
    url: str, tls: Tls | None, options: Sequence[tuple[str, Any]]
) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(url, options=channel_options(options))
    return grpc.aio.secure_channel(url, tls.credentials(), options=channel_options(options))


def _read(pem: Pem | None) -> bytes | None:
    if pem is None or isinstance(pem, bytes):
        return pem
    try:
        return Path(pem).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {pem}: {error.strerror}") from None
