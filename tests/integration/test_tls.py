"""gRPC over TLS and mutual TLS, with throwaway certificates made at test time.

A client that trusts the server's CA is served; one that speaks plaintext or trusts another CA
is not. Under mutual TLS a client without a certificate, or with one from another CA, is refused.
The metrics endpoint stays plain HTTP.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc
from tests import models
from tests.harness import ServerProcess
from tests.integration.hostile import assert_outputs, double_request


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Identity:  # noqa: E501
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Identity(cert_path, key_path)


def make_ca(
    folder: Path, name: str
) -> tuple[Identity, x509.Certificate, ec.EllipticCurvePrivateKey]:  # noqa: E501
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _write(folder, name, cert, key), cert, key


def make_leaf(
    folder: Path, name: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], server: bool
) -> Identity:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(folder, name, builder.sign(ca_key, hashes.SHA256()), key)


@dataclass(frozen=True)
class Pki:
    ca: Identity
    server: Identity
    client: Identity
    rogue_ca: Identity  # trusted by nobody here
    rogue_client: Identity  # signed by the rogue CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = make_ca(folder, "test-ca")
    rogue, rogue_cert, rogue_key = make_ca(folder, "rogue-ca")
    return Pki(
        ca=ca,
        server=make_leaf(folder, "server", (ca_cert, ca_key), server=True),
        client=make_leaf(folder, "client", (ca_cert, ca_key), server=False),
        rogue_ca=rogue,
        rogue_client=make_leaf(folder, "rogue-client", (rogue_cert, rogue_key), server=False),
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls_repo")
    models.build_double(folder)
    return folder


def credentials(pki: Pki, root: Identity, client: Identity | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=root.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def wait_ready(server: ServerProcess, creds: grpc.ChannelCredentials) -> None:
    deadline = time.monotonic() + 60
    with grpc.secure_channel(server.address, creds) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while True:
            try:
                if stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.1)  # pacing the readiness poll


def infer_over(address: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """One inference; OK with exact outputs, or the status code it failed with."""
    request, expected = double_request(np.random.default_rng(0), 2)
    if creds is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, creds)
    with channel:
        try:
            response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
        except grpc.RpcError as error:
            return error.code()
    assert_outputs(response, expected)
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def tls_server(start_module_server, repo: Path, pki: Pki) -> ServerProcess:
    args = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    server = start_module_server(repo, *args, wait_ready=False)
    wait_ready(server, credentials(pki, pki.ca, None))
    return server


@pytest.fixture(scope="module")
def mtls_server(start_module_server, repo: Path, pki: Pki) -> ServerProcess:
    args = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    server = start_module_server(repo, *args, "--tls-client-ca", str(pki.ca.cert), wait_ready=False)
    wait_ready(server, credentials(pki, pki.ca, pki.client))
    return server


def test_tls_serves_clients_that_trust_its_ca_only(tls_server: ServerProcess, pki: Pki) -> None:
    assert infer_over(tls_server.address, credentials(pki, pki.ca, None)) == grpc.StatusCode.OK
    # A client certificate is not asked for, and does no harm.
    with_cert = credentials(pki, pki.ca, pki.client)
    assert infer_over(tls_server.address, with_cert) == grpc.StatusCode.OK
    assert infer_over(tls_server.address, None) == grpc.StatusCode.UNAVAILABLE
    wrong_ca = credentials(pki, pki.rogue_ca, None)
    assert infer_over(tls_server.address, wrong_ca) == grpc.StatusCode.UNAVAILABLE


def test_metrics_stay_plain_http_beside_tls(tls_server: ServerProcess) -> None:
    assert tls_server.metrics_port
    url = f"http://127.0.0.1:{tls_server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        assert b"# TYPE" in reply.read()


def test_mutual_tls_refuses_clients_without_a_valid_certificate(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    address = mtls_server.address
    assert infer_over(address, credentials(pki, pki.ca, pki.client)) == grpc.StatusCode.OK
    assert infer_over(address, credentials(pki, pki.ca, None)) == grpc.StatusCode.UNAVAILABLE
    rogue = credentials(pki, pki.ca, pki.rogue_client)
    assert infer_over(address, rogue) == grpc.StatusCode.UNAVAILABLE
    assert infer_over(address, None) == grpc.StatusCode.UNAVAILABLE
    # Refused handshakes leave the server serving.
    assert infer_over(address, credentials(pki, pki.ca, pki.client)) == grpc.StatusCode.OK


def test_tritonclient_connects_with_certificates(mtls_server: ServerProcess, pki: Pki) -> None:
    # Our own clients and `onnxserve infer` are covered by test_clients_tls.py.
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    ids = np.array([[5], [6]], np.int64)
    with triton.InferenceServerClient(
        mtls_server.address,
        ssl=True,
        root_certificates=str(pki.ca.cert),
        private_key=str(pki.client.key),
        certificate_chain=str(pki.client.cert),
    ) as client:
        inputs = [
            triton.InferInput("INPUT0", [2, 4], "FP32"),
            triton.InferInput("ID", [2, 1], "INT64"),
        ]  # noqa: E501
        inputs[0].set_data_from_numpy(x)
        inputs[1].set_data_from_numpy(ids)
        result = client.infer("double", inputs)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x * 2)
        np.testing.assert_array_equal(result.as_numpy("ID_OUT"), ids)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tls-cert", "x.crt"], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", "ca.crt"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"], "cannot read"),
    ],
)
def test_tls_options_are_checked_before_serving(
    tmp_path: Path, args: list[str], message: str
) -> None:  # noqa: E501
    command = [
        sys.executable, "-m", "server", "serve", "--model-repository", str(tmp_path),
        "--grpc-port", "0", "--metrics-port", "0", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
