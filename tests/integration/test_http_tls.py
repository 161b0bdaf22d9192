"""HTTPS and mutual TLS on the HTTP port, with the certificates and servers of test_tls.py.

--tls-cert/--tls-key/--tls-client-ca apply to HTTP as they do to gRPC: a client that trusts the
server's CA is served, plaintext and other CAs are not; under mutual TLS only clients with a
certificate from the client CA are.
"""

from __future__ import annotations

import http.client
import json
import ssl

import pytest

from tests.harness import ServerProcess
from tests.integration import test_tls
from tests.integration.test_tls import Identity, Pki

# The gRPC TLS tests' certificates and servers: the same servers answer HTTPS on their HTTP port.
pki = test_tls.pki
repo = test_tls.repo
tls_server = test_tls.tls_server
mtls_server = test_tls.mtls_server

REQUEST = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1.5, -2]},
        {"name": "ID", "shape": [1, 1], "datatype": "INT64", "data": [9]},
    ]
}


def context(root: Identity, client: Identity | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(root.cert))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


def infer_over(server: ServerProcess, ctx: ssl.SSLContext | None) -> list[float]:
    """OUTPUT0 of one JSON inference, over HTTPS with `ctx` or plain HTTP without."""
    if ctx is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            "127.0.0.1", server.http_port, timeout=10
        )
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", server.http_port, timeout=10, context=ctx)
    try:
        conn.request("POST", "/v2/models/double/infer", body=json.dumps(REQUEST))
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())["outputs"][0]["data"]
    finally:
        conn.close()


REFUSED = (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)


def test_https_serves_clients_that_trust_its_ca_only(tls_server: ServerProcess, pki: Pki) -> None:
    assert tls_server.http_port
    assert infer_over(tls_server, context(pki.ca)) == [3.0, -4.0]
    assert infer_over(tls_server, context(pki.ca, pki.client)) == [3.0, -4.0]
    with pytest.raises(ssl.SSLCertVerificationError):
        infer_over(tls_server, context(pki.rogue_ca))
    with pytest.raises(REFUSED):
        infer_over(tls_server, None)


def test_mutual_tls_requires_a_client_certificate_from_its_ca(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    assert infer_over(mtls_server, context(pki.ca, pki.client)) == [3.0, -4.0]
    with pytest.raises(REFUSED):
        infer_over(mtls_server, context(pki.ca))
    with pytest.raises(REFUSED):
        infer_over(mtls_server, context(pki.ca, pki.rogue_client))
