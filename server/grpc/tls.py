"""TLS for the gRPC port: server certificate and key, optionally a CA that client certificates
must chain to (mutual TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from server.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path  # PEM certificate chain, the server's own certificate first
    key: Path  # PEM private key of that certificate
    client_ca: Path | None = None  # PEM CA bundle; given: clients must present a certificate


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    cert = _read(tls.cert, "--tls-cert")
    key = _read(tls.key, "--tls-key")
    client_ca = _read(tls.client_ca, "--tls-client-ca") if tls.client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _read(path: Path, option: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{option} {path}: cannot read: {error.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{option} {path}: not a PEM file")
    return data
