"""The HTTP frontend with plain HTTP requests: the JSON forms of the KServe v2 REST protocol,
the binary extension byte by byte, and every client mistake answered 4xx with a JSON error while
the same keep-alive connection goes on serving."""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tests import models
from tests.harness import ServerProcess

LIMIT = 64 * 1024  # --max-message-bytes of the module's server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("models")
    models.build_double(repo)
    models.build_identity(repo, datatype="BYTES")
    models.build_identity(repo, datatype="BOOL")
    models.build_identity(repo, datatype="UINT8")
    return start_module_server(repo, "--max-message-bytes", str(LIMIT))


@pytest.fixture
def conn(server: ServerProcess) -> Iterator[http.client.HTTPConnection]:
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    yield connection
    connection.close()


def call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def error_of(status: int, body: bytes) -> str:
    assert 400 <= status < 500, (status, body)
    payload = json.loads(body)
    assert list(payload) == ["error"]
    return payload["error"]


def double_body(data: Any, shape: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "INPUT0", "shape": shape, "datatype": "FP32", "data": data},
            {"name": "ID", "shape": [shape[0], 1], "datatype": "INT64", "data": [7] * shape[0]},
        ],
        **extra,
    }


def test_health_paths(conn: http.client.HTTPConnection) -> None:
    assert call(conn, "GET", "/v2/health/live")[0] == 200
    assert call(conn, "GET", "/v2/health/ready")[0] == 200
    assert call(conn, "GET", "/v2/models/double/ready")[0] == 200
    assert call(conn, "GET", "/v2/models/double/versions/1/ready")[0] == 200
    assert call(conn, "GET", "/v2/models/double/versions/2/ready")[0] == 503
    status, _, body = call(conn, "GET", "/v2")
    assert status == 200 and json.loads(body)["name"] == "onnxserve"


def test_nested_and_flat_json_data_give_the_same_answer(conn: http.client.HTTPConnection) -> None:
    for data in ([[1, 2.5], [3, -4]], [1, 2.5, 3, -4]):
        status, headers, body = call(
            conn, "POST", "/v2/models/double/infer", double_body(data, [2, 2], id="x-1")
        )
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "model_name": "double",
            "model_version": "1",
            "id": "x-1",
            "outputs": [
                {"name": "OUTPUT0", "datatype": "FP32", "shape": [2, 2], "data": [2, 5, 6, -8]},
                {"name": "ID_OUT", "datatype": "INT64", "shape": [2, 1], "data": [7, 7]},
            ],
        }


def test_bytes_as_strings_and_bool_as_true_false(conn: http.client.HTTPConnection) -> None:
    text = ["", "héllo", "日本"]
    request = {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "BYTES", "data": text}]}
    status, _, body = call(conn, "POST", "/v2/models/identity_bytes/infer", request)
    assert status == 200 and json.loads(body)["outputs"][0]["data"] == text
    flags = [[True, False]]
    request = {"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "BOOL", "data": flags}]}
    status, _, body = call(conn, "POST", "/v2/models/identity_bool/infer", request)
    assert status == 200 and json.loads(body)["outputs"][0]["data"] == [True, False]


def test_binary_request_and_mixed_response(conn: http.client.HTTPConnection) -> None:
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    header = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "shape": [1, 3], "datatype": "FP32",
                 "parameters": {"binary_data_size": 12}},
                {"name": "ID", "shape": [1, 1], "datatype": "INT64", "data": [5]},
            ],
            "outputs": [
                {"name": "OUTPUT0", "parameters": {"binary_data": True}},
                {"name": "ID_OUT", "parameters": {"binary_data": False}},
            ],
        }
    ).encode()  # fmt: skip
    status, headers, body = call(
        conn,
        "POST",
        "/v2/models/double/infer",
        header + x.tobytes(),
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    length = int(headers["inference-header-content-length"])
    meta = json.loads(body[:length])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 12}
    assert meta["outputs"][1]["data"] == [5]
    assert np.frombuffer(body[length:], np.float32).tolist() == [2.0, 4.0, 6.0]


def test_binary_data_output_parameter_makes_every_output_binary(
    conn: http.client.HTTPConnection,
) -> None:
    request = double_body([1, 2], [1, 2], parameters={"binary_data_output": True})
    status, headers, body = call(conn, "POST", "/v2/models/double/infer", request)
    length = int(headers["inference-header-content-length"])
    sizes = [o["parameters"]["binary_data_size"] for o in json.loads(body[:length])["outputs"]]
    assert status == 200 and sizes == [8, 8] and len(body) == length + 16


def binary(tensor: str, tail: bytes) -> tuple[bytes, dict[str, str]]:
    """A body of one input's JSON header and `tail`, with the header's length set."""
    header = ('{"inputs":[' + tensor + "]}").encode()
    return header + tail, {"Inference-Header-Content-Length": str(len(header))}


MISTAKES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("malformed JSON", b'{"inputs": [', {}, 400, "request body is not valid JSON"),
    ("not UTF-8", b'{"inputs": [{"name": "\xff\xfe"}]}', {}, 400, "not valid JSON"),
    ("JSON array", b"[1, 2]", {}, 400, "expected a JSON object, got list"),
    (
        "header longer than body",
        b"{}",
        {"Inference-Header-Content-Length": "99"},
        400,
        "Inference-Header-Content-Length is 99, but the body holds only 2 bytes",
    ),
    (
        "header length not a number",
        b"{}",
        {"Inference-Header-Content-Length": "x"},
        400,
        "Inference-Header-Content-Length: expected a non-negative integer",
    ),
    (
        "unknown datatype",
        b'{"inputs":[{"name":"INPUT0","shape":[1],"datatype":"FP8","data":[1]}]}',
        {},
        400,
        "input 'INPUT0': expected a datatype of",
    ),
    (
        "negative dimension",
        b'{"inputs":[{"name":"INPUT0","shape":[-1],"datatype":"FP32","data":[1]}]}',
        {},
        400,
        "shape [-1] has a negative dimension",
    ),
    (
        "data count off",
        b'{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"FP32","data":[1,2]}]}',
        {},
        400,
        "'data' holds 2 values, expected 3 for shape [1, 3]",
    ),
    (
        "ragged data",
        b'{"inputs":[{"name":"INPUT0","shape":[2,2],"datatype":"FP32","data":[[1,2],[3]]}]}',
        {},
        400,
        "'data' is not a regular array of FP32 values",
    ),
    (
        "string for a number",
        b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":["a"]}]}',
        {},
        400,
        "expected FP32 values as JSON numbers",
    ),
    (
        "forged binary size",
        *binary(
            '{"name":"INPUT0","shape":[1,1000000000],"datatype":"FP32",'
            '"parameters":{"binary_data_size":4}}',
            b"abcd",
        ),
        400,
        "raw content is 4 bytes, expected 4000000000 for shape [1, 1000000000] of FP32",
    ),
    (
        "binary size past the end",
        *binary(
            '{"name":"INPUT0","shape":[1,1],"datatype":"FP32","parameters":{"binary_data_size":8}}',
            b"abcd",
        ),
        400,
        "binary_data_size 8 runs past the end of the body (4 bytes left)",
    ),
    (
        "body longer than the binary sizes",
        *binary(
            '{"name":"INPUT0","shape":[1,1],"datatype":"FP32","parameters":{"binary_data_size":4}}',
            b"abcdXY",
        ),
        400,
        "the body holds 2 bytes more than the header's binary_data_size values account for",
    ),
    ("bad gzip", b"not gzip", {"Content-Encoding": "gzip"}, 400, "request body is not valid gzip"),
    ("unknown encoding", b"{}", {"Content-Encoding": "br"}, 415, "unsupported Content-Encoding"),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_mistakes_are_4xx_and_the_connection_serves_the_next_request(
    conn: http.client.HTTPConnection,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    got, _, answer = call(conn, "POST", "/v2/models/double/infer", body, headers)
    assert got == status and message in error_of(got, answer)
    ok, _, _ = call(conn, "POST", "/v2/models/double/infer", double_body([1], [1, 1]))
    assert ok == 200


def test_wrong_method_and_path(conn: http.client.HTTPConnection) -> None:
    status, _, body = call(conn, "GET", "/v2/models/double/infer")
    assert status == 405 and "allowed: POST" in error_of(status, body)
    status, _, body = call(conn, "GET", "/v2/modelz")
    assert status == 404 and error_of(status, body) == "no such path: /v2/modelz"
    status, _, body = call(conn, "POST", "/v2/models/nope/infer", double_body([1], [1, 1]))
    assert status == 404 and error_of(status, body) == "unknown model 'nope'"
    assert call(conn, "GET", "/v2/health/live")[0] == 200


def test_a_body_over_the_limit_is_refused_before_it_is_sent(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(
            b"POST /v2/models/double/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        # No byte of the body was sent: the answer comes from the header alone.
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"request body of 1000000000 bytes is over the limit of 65536" in reply


def test_a_chunked_body_over_the_limit_is_refused_while_read(server: ServerProcess) -> None:
    # 9 chunks of 8 KiB: just over the 64 KiB limit, and no length said in advance. Sent in one
    # piece, so the server has it all when it refuses and closes (no unread bytes, no reset).
    chunk = b"2000\r\n" + b"x" * 0x2000 + b"\r\n"
    request = (
        b"POST /v2/models/double/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunk * 9
        + b"0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
        sock.sendall(request)
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 413 ")
    # Counted as the body arrives: the size said is where the count crossed the limit.
    assert re.search(
        rb"request body of (6[5-9]|7[0-3])\d{3} bytes is over the limit of 65536", reply
    )


def test_a_gzip_bomb_is_refused_once_inflated_past_the_limit(
    conn: http.client.HTTPConnection,
) -> None:
    import gzip

    bomb = gzip.compress(b" " * (LIMIT * 4))
    status, _, body = call(
        conn, "POST", "/v2/models/double/infer", bomb, {"Content-Encoding": "gzip"}
    )
    assert status == 413 and "once inflated" in error_of(status, body)


def test_statistics_and_repository_paths(conn: http.client.HTTPConnection) -> None:
    call(conn, "POST", "/v2/models/identity_uint8/infer", {"inputs": [
        {"name": "INPUT0", "shape": [1, 2], "datatype": "UINT8", "data": [1, 255]}]})  # fmt: skip
    status, _, body = call(conn, "GET", "/v2/models/identity_uint8/versions/1/stats")
    stats = json.loads(body)["model_stats"]
    assert status == 200 and [(s["name"], s["version"]) for s in stats] == [("identity_uint8", "1")]
    assert stats[0]["inference_count"] >= 1
    status, _, body = call(conn, "POST", "/v2/repository/index", {"ready": True})
    assert status == 200
    assert sorted(m["name"] for m in json.loads(body)) == [
        "double", "identity_bool", "identity_bytes", "identity_uint8"
    ]  # fmt: skip
    # Model control mode "none": the repository is not changed from outside.
    status, _, body = call(conn, "POST", "/v2/repository/models/double/unload", {})
    assert status == 503 and "explicit" in json.loads(body)["error"]


def test_a_uint8_value_out_of_range_is_refused(conn: http.client.HTTPConnection) -> None:
    request = {"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "UINT8", "data": [256]}]}
    status, _, body = call(conn, "POST", "/v2/models/identity_uint8/infer", request)
    assert (
        error_of(status, body)
        == "model 'identity_uint8': input 'INPUT0': a value does not fit in UINT8"
    )


def test_binary_bytes_with_a_bad_length_prefix(conn: http.client.HTTPConnection) -> None:
    raw = struct.pack("<I", 50) + b"abc"
    tensor = {"name": "INPUT0", "shape": [1, 1], "datatype": "BYTES"}
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor]}).encode()
    status, _, body = call(
        conn, "POST", "/v2/models/identity_bytes/infer", header + raw,
        {"Inference-Header-Content-Length": str(len(header))},
    )  # fmt: skip
    assert "BYTES element 0: length 50 overruns the 7-byte buffer" in error_of(status, body)
