"""The clients over TLS with client certificates (mutual TLS), against the real server."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clients import AsyncInferenceServerClient, InferenceServerClient, InferenceServerError
from tests.harness import ServerProcess
from tests.models import build_double


def issue(
    folder: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Writes <name>.pem and <name>.key: a CA when issuer is None, else a leaf it signs."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        server = name == "server"
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    ca = issue(folder, "ca", None)
    issue(folder, "server", ca)
    issue(folder, "client", ca)
    return folder


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server, certs: Path
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("tls-repo")
    build_double(repo)
    return start_module_server(
        repo,
        "--tls-cert", str(certs / "server.pem"),
        "--tls-key", str(certs / "server.key"),
        "--tls-client-ca", str(certs / "ca.pem"),
        wait_ready=False,  # the harness probes readiness in plaintext
    )  # fmt: skip


def mtls(certs: Path) -> dict[str, Path]:
    return {
        "root_certificates": certs / "ca.pem",
        "certificate_chain": certs / "client.pem",
        "private_key": certs / "client.key",
    }


def wait_ready(server: ServerProcess, certs: Path) -> None:
    with InferenceServerClient(server.address, **mtls(certs)) as client:
        for _ in range(600):
            try:
                if client.is_server_ready(timeout=5):
                    return
            except InferenceServerError:
                pass
            assert server.process is not None and server.process.poll() is None, server.logs()
            time.sleep(0.1)  # pacing the readiness poll
    raise TimeoutError("TLS server not ready")


def test_sync_and_async_clients_with_client_certificates(server: ServerProcess, certs: Path):
    wait_ready(server, certs)
    with InferenceServerClient(server.address, timeout=30, **mtls(certs)) as client:
        inputs = {"INPUT0": np.array([[1.0, 2.0]], np.float32), "ID": np.array([[1]], np.int64)}
        assert client.infer("double", inputs)["OUTPUT0"].tolist() == [[2.0, 4.0]]

    async def main() -> bool:
        # PEM bytes work as well as paths.
        settings = {k: v.read_bytes() for k, v in mtls(certs).items()}
        async with AsyncInferenceServerClient(server.address, **settings) as client:
            return await client.is_model_ready("double")

    assert asyncio.run(main()) is True


def test_cli_with_client_certificates(server: ServerProcess, certs: Path) -> None:
    wait_ready(server, certs)
    done = subprocess.run(
        [sys.executable, "-m", "server", "health", "--url", server.address,
         "--tls-ca-cert", certs / "ca.pem", "--tls-cert", certs / "client.pem",
         "--tls-key", certs / "client.key"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"server {server.address}: live, ready\n"


def test_refused_without_client_certificate_or_without_tls(server: ServerProcess, certs: Path):
    wait_ready(server, certs)
    for settings in ({"root_certificates": certs / "ca.pem"}, {}):
        with InferenceServerClient(server.address, **settings) as client:
            with pytest.raises(InferenceServerError) as raised:
                client.is_server_live(timeout=10)
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE

    with pytest.raises(ValueError, match="needs both a client certificate and its private key"):
        InferenceServerClient(server.address, certificate_chain=certs / "client.pem")
    with pytest.raises(ValueError, match="cannot read"):
        InferenceServerClient(server.address, root_certificates=certs / "missing.pem")
