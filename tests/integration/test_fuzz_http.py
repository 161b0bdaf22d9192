"""Hostile HTTP at the real server: every malformed request is a 4xx, never a 5xx or a crash.

From a fixed seed: hand-made cases (forged shapes and sizes, deep nesting, bad headers), random
mutations and truncations of a valid JSON and a valid binary request, random bytes at random
paths, and garbage request lines on raw sockets, sent from several keep-alive connections beside
good requests. Good requests must get exact answers, a mutation that still decodes must be
answered by what it says, and the server must stay live with its memory bounded.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from server.errors import InvalidArgumentError
from server.http.codec import decode_infer
from tests import models
from tests.harness import ServerProcess
from tests.integration.hostile import memory_kib, server_pid
from tests.integration.test_fuzz import mutate

SEED = 20261206
MUTATIONS = 120
TRUNCATIONS = 40
RANDOM_BODIES = 60
GOOD_EVERY = 4
WORKERS = 8
INFER = "/v2/models/double/infer"
LENGTH = "Inference-Header-Content-Length"
PATHS = [
    "/v2", "/v2/health/live", "/v2/models/double", "/v2/models/double/versions/1/infer",
    "/v2/models/double/config", "/v2/models/stats", "/v2/repository/index",
    "/v2/repository/models/double/load", "/v2/systemsharedmemory/region/r/register",
    "/v2/logging", "/v2/models/identity_bytes/infer", "/v2/models/nonbatched/infer",
]  # fmt: skip
Case = tuple[str, str, str, bytes, dict[str, str], "dict[str, np.ndarray] | None"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_module_server) -> ServerProcess:
    repo = tmp_path_factory.mktemp("fuzz_http_repo")
    models.build_double(repo)
    models.build_identity(repo, datatype="BYTES")
    models.build_nonbatched(repo)
    return start_module_server(repo, "--max-message-bytes", str(1 << 20))


def json_request(rng: np.random.Generator, rows: int) -> tuple[bytes, dict[str, np.ndarray]]:
    x = rng.standard_normal((rows, 3)).astype(np.float32)
    ids = rng.integers(0, 2**40, (rows, 1))
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [rows, 3], "datatype": "FP32", "data": x.tolist()},
            {"name": "ID", "shape": [rows, 1], "datatype": "INT64", "data": ids.ravel().tolist()},
        ]
    }
    return json.dumps(body).encode(), {"OUTPUT0": x * 2, "ID_OUT": ids}


def binary_request(rng: np.random.Generator, rows: int) -> tuple[bytes, int]:
    x = rng.standard_normal((rows, 3)).astype(np.float32)
    ids = rng.integers(0, 2**40, (rows, 1)).astype(np.int64)
    header = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "shape": [rows, 3], "datatype": "FP32",
                 "parameters": {"binary_data_size": x.nbytes}},
                {"name": "ID", "shape": [rows, 1], "datatype": "INT64",
                 "parameters": {"binary_data_size": ids.nbytes}},
            ],
            "parameters": {"binary_data_output": False},
        }
    ).encode()  # fmt: skip
    return header + x.tobytes() + ids.tobytes(), len(header)


def crafted(rng: np.random.Generator) -> list[tuple[str, bytes, dict[str, str]]]:
    def tensor(shape: list[int], **rest: Any) -> dict[str, Any]:
        return {"name": "INPUT0", "shape": shape, "datatype": "FP32", **rest}

    def body(*tensors: dict[str, Any]) -> bytes:
        return json.dumps({"inputs": list(tensors)}).encode()

    big = [1, 2**30]
    forged = body(tensor(big, parameters={"binary_data_size": 4}))
    words = body({"name": "INPUT0", "shape": [2**31], "datatype": "BYTES",
                  "parameters": {"binary_data_size": 8}})  # fmt: skip
    one = b'{"inputs":[{"name":"INPUT0","shape":[1,1],"datatype":"FP32","data":'
    return [
        ("forged JSON shape", body(tensor(big, data=[1.0])), {}),
        ("forged binary shape", forged + b"abcd", {LENGTH: str(len(forged))}),
        ("forged BYTES count", words + b"\0" * 8, {LENGTH: str(len(words))}),
        ("shape past numpy", body(tensor([2**62, 2**62], data=[])), {}),
        ("rank 65", body(tensor([1] * 65, data=[1.0])), {}),
        ("shape of strings", body(tensor(["1", "3"], data=[1, 2, 3])), {}),
        ("shape of floats", body(tensor([1.0, 3.0], data=[1, 2, 3])), {}),
        ("deep nesting", b'{"inputs":' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
        ("NaN token", one + b"[NaN]}]}", {}),
        ("huge integer", one + b"[" + b"9" * 400 + b"]}]}", {}),
        ("null data", body(tensor([1, 1], data=None)), {}),
        ("inputs not a list", b'{"inputs": {"INPUT0": 1}}', {}),
        ("outputs of numbers", b'{"inputs": [], "outputs": [1, 2]}', {}),
        ("negative binary size", body(tensor([1, 1], parameters={"binary_data_size": -4})), {}),
        ("header length negative", b"{}", {"Inference-Header-Content-Length": "-1"}),
        ("header length huge", b"{}", {"Inference-Header-Content-Length": str(2**70)}),
        ("timeout as text", b'{"inputs": [], "parameters": {"timeout": "1s"}}', {}),
        ("shared memory unknown", body(tensor([1, 3], parameters={
            "shared_memory_region": "nope", "shared_memory_byte_size": 12})), {}),  # fmt: skip
        ("deflate of garbage", rng.bytes(64), {"Content-Encoding": "deflate"}),
        ("surrogate escape", b'{"inputs":[{"name":"\\ud800","shape":[1],"data":[1]}]}', {}),
    ]  # fmt: skip


def expected_for(body: bytes, header_length: int | None) -> dict[str, np.ndarray] | None:
    """What the double model must answer to this body, if it decodes to a valid request."""
    try:
        request, _ = decode_infer("double", "", body, header_length)
    except InvalidArgumentError:
        return None
    inputs = request.inputs
    expected = {}
    if "INPUT0" in inputs and inputs["INPUT0"].dtype == np.float32:
        expected["OUTPUT0"] = inputs["INPUT0"] * 2
    if "ID" in inputs:
        expected["ID_OUT"] = inputs["ID"]
    return expected


class Worker:
    """One keep-alive connection; reopened only when the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def send(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.will_close:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return response.status, data


def check(case: Case, status: int, data: bytes, failures: list[str]) -> None:
    label, method, path, body, headers, expected = case
    if expected is not None:
        if status != 200:
            failures.append(f"{label}: good request got {status} {data[:200]!r}")
            return
        outputs = {o["name"]: np.array(o["data"]) for o in json.loads(data)["outputs"]}
        for name, array in expected.items():
            got = outputs[name].astype(array.dtype).reshape(array.shape)  # JSON text -> dtype
            np.testing.assert_array_equal(got, array, err_msg=label)
        return
    if status >= 500:
        failures.append(f"{label} ({method} {path}): {status} {data[:200]!r}")
    elif status == 200 and path == INFER and label.startswith(("mutation", "truncated")):
        length = headers.get("Inference-Header-Content-Length")
        if expected_for(body, int(length) if length else None) is None:
            failures.append(f"{label}: 200 for a body that does not decode")
    elif status < 400 and label.startswith(("forged", "deep", "NaN", "huge", "null", "rank")):
        failures.append(f"{label}: accepted, expected an error")
    if status >= 400 and data and json.loads(data).keys() != {"error"}:
        failures.append(f"{label}: error body is not {{'error': ...}}: {data[:200]!r}")


def test_malformed_http_is_a_client_error_and_the_server_carries_on(server: ServerProcess) -> None:
    rng = np.random.default_rng(SEED)
    rnd = random.Random(SEED)
    pid = server_pid(server)
    workers = [Worker(server.http_port) for _ in range(WORKERS)]

    def good() -> Case:
        body, expected = json_request(rng, int(rng.integers(1, 6)))
        return "good", "POST", INFER, body, {}, expected

    for _ in range(20):  # warm-up, so the memory baseline includes the working set
        case = good()
        check(case, *workers[0].send(*case[1:5]), failures := [])
        assert not failures, failures
    before = memory_kib(pid)

    malformed: list[Case] = [(label, "POST", INFER, b, h, None) for label, b, h in crafted(rng)]
    template, _ = json_request(rng, 2)
    binary, header_length = binary_request(rng, 2)
    length = {"Inference-Header-Content-Length": str(header_length)}
    for i in range(MUTATIONS):
        if i % 2:
            malformed.append((f"mutation {i}", "POST", INFER, mutate(binary, rnd), length, None))
        else:
            malformed.append((f"mutation {i}", "POST", INFER, mutate(template, rnd), {}, None))
    for i in sorted(rnd.sample(range(1, len(binary)), TRUNCATIONS)):
        malformed.append((f"truncated to {i} bytes", "POST", INFER, binary[:i], length, None))
    for i in range(RANDOM_BODIES):
        method, path = rnd.choice(["GET", "POST", "PUT", "DELETE"]), rnd.choice(PATHS)
        malformed.append(
            (f"random {i}", method, path, rnd.randbytes(rnd.randint(0, 300)), {}, None)
        )
    plan: list[Case] = []
    for n, case in enumerate(malformed):
        plan.append(case)
        if n % GOOD_EVERY == 0:
            plan.append(good())
    assert len(plan) >= 300

    failures: list[str] = []

    def run(index: int) -> None:
        worker = workers[index]
        for case in plan[index::WORKERS]:
            check(case, *worker.send(*case[1:5]), failures)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(run, range(WORKERS)))
    for worker in workers:
        worker.conn.close()

    for line in (b"GARBAGE\r\n\r\n", b"POST /v2 HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01"):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
            sock.sendall(line)
            sock.shutdown(socket.SHUT_WR)
            reply = sock.makefile("rb").read()
        assert not reply or reply.startswith(b"HTTP/1.1 4"), (line, reply[:200])

    assert not failures, "\n".join(failures)
    final = Worker(server.http_port)
    assert final.send("GET", "/v2/health/live", b"", {})[0] == 200
    status, regions = final.send("GET", "/v2/systemsharedmemory/status", b"", {})
    assert status == 200 and json.loads(regions) == []
    case = good()
    check(case, *final.send(*case[1:5]), failures)
    final.conn.close()
    assert not failures, failures

    after = memory_kib(pid)
    grown_rss = (after["VmRSS"] - before["VmRSS"]) / 1024
    grown_peak = (after["VmPeak"] - before["VmPeak"]) / 1024
    # A forged 4 GiB shape must not have reserved 4 GiB, even briefly.
    assert grown_peak < 256, f"VmPeak grew by {grown_peak:.0f} MiB: {before} -> {after}"
    assert grown_rss < 48, f"RSS grew by {grown_rss:.0f} MiB: {before} -> {after}"
