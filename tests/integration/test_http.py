"""The HTTP frontend through tritonclient.http (sync and aio), against the real server.

Every datatype in binary and JSON form, compression both ways, the errors a client sees, model
metadata and config, repository, statistics, logging and shared memory endpoints, and many
concurrent requests each getting exactly its own answer.
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException

from tests import models
from tests.harness import ServerProcess
from tests.integration.test_datatypes import SAMPLES, assert_same

# JSON cannot carry infinities: the JSON samples swap them for the largest finite value.
JSON_SAMPLES = {
    d: np.where(np.isinf(a), np.finfo(a.dtype).max, a) if a.dtype.kind == "f" else a
    for d, a in SAMPLES.items()
}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, start_module_server: Callable[..., ServerProcess]
) -> ServerProcess:
    repo = tmp_path_factory.mktemp("models")
    models.build_identity_all(repo)
    models.build_double(repo)
    models.build_nonbatched(repo)
    return start_module_server(repo)


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.http_address)


def identity(
    client: triton.InferenceServerClient, datatype: str, x: np.ndarray, binary: bool, **kw: object
) -> np.ndarray:
    tensor = triton.InferInput("INPUT0", list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = [triton.InferRequestedOutput("OUTPUT0", binary_data=binary)]
    result = client.infer(f"identity_{datatype.lower()}", [tensor], outputs=wanted, **kw)
    return result.as_numpy("OUTPUT0")


@pytest.mark.parametrize("datatype", SAMPLES)
def test_every_datatype_round_trips_as_binary(
    client: triton.InferenceServerClient, datatype: str
) -> None:
    assert_same(identity(client, datatype, SAMPLES[datatype], binary=True), SAMPLES[datatype])


@pytest.mark.parametrize("datatype", SAMPLES)
def test_every_datatype_round_trips_as_json(
    client: triton.InferenceServerClient, datatype: str
) -> None:
    x = JSON_SAMPLES[datatype]
    got = identity(client, datatype, x, binary=False)
    if datatype == "BYTES":  # tritonclient hands JSON strings back as str
        got = np.vectorize(str.encode, otypes=[object])(got)
    assert_same(got, x)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_requests_and_responses(
    client: triton.InferenceServerClient, encoding: str
) -> None:
    x = np.arange(600, dtype=np.float32).reshape(2, 300)
    for binary in (True, False):
        got = identity(
            client,
            "FP32",
            x,
            binary,
            request_compression_algorithm=encoding,
            response_compression_algorithm=encoding,
        )
        assert_same(got, x)


def test_a_subset_of_outputs_with_the_id_echoed(client: triton.InferenceServerClient) -> None:
    x = np.array([[1.5, -2.0, 3.25]], np.float32)
    inputs = [triton.InferInput("INPUT0", [1, 3], "FP32"), triton.InferInput("ID", [1, 1], "INT64")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(np.array([[42]], np.int64), binary_data=False)
    result = client.infer(
        "double", inputs, request_id="req-7", outputs=[triton.InferRequestedOutput("ID_OUT")]
    )
    response = result.get_response()
    assert response["id"] == "req-7"
    assert [o["name"] for o in response["outputs"]] == ["ID_OUT"]
    assert result.as_numpy("ID_OUT").tolist() == [[42]]


def test_nonbatched_model_keeps_its_output_shape(client: triton.InferenceServerClient) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = triton.InferInput("INPUT0", [2, 3], "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    result = client.infer("nonbatched", [tensor])
    assert result.as_numpy("OUTPUT0").tolist() == x.T.tolist()


def test_many_concurrent_requests_each_get_their_own_answer(server: ServerProcess) -> None:
    rng = np.random.default_rng(7)
    cases = [
        (
            rng.standard_normal((int(rows), 4)).astype(np.float32),
            rng.integers(0, 2**40, (int(rows), 1)),
        )
        for rows in rng.integers(1, 5, 64)
    ]

    async def run() -> list[tuple[np.ndarray, np.ndarray]]:
        client = triton_aio.InferenceServerClient(server.http_address, conn_limit=16)
        try:

            async def one(x: np.ndarray, ids: np.ndarray, binary: bool) -> tuple[np.ndarray, ...]:
                inputs = [
                    triton_aio.InferInput("INPUT0", list(x.shape), "FP32"),
                    triton_aio.InferInput("ID", list(ids.shape), "INT64"),
                ]
                inputs[0].set_data_from_numpy(x, binary_data=binary)
                inputs[1].set_data_from_numpy(ids.astype(np.int64), binary_data=binary)
                result = await client.infer("double", inputs)
                return result.as_numpy("OUTPUT0"), result.as_numpy("ID_OUT")

            return await asyncio.gather(
                *(one(x, ids, i % 2 == 0) for i, (x, ids) in enumerate(cases))
            )
        finally:
            await client.close()

    for (x, ids), (doubled, echoed) in zip(cases, asyncio.run(run()), strict=True):
        np.testing.assert_array_equal(doubled, x * 2)
        np.testing.assert_array_equal(echoed, ids)


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("double") and not client.is_model_ready("double", "9")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "onnxserve"
    assert {"binary_tensor_data", "statistics", "model_repository"} <= set(metadata["extensions"])


def test_model_metadata_and_config(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("double", "1")
    assert metadata["name"] == "double" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "ID", "datatype": "INT64", "shape": [-1, 1]},
    ]
    config = client.get_model_config("double")
    assert config["name"] == "double" and config["max_batch_size"] == 8
    assert [i["data_type"] for i in config["input"]] == ["TYPE_FP32", "TYPE_INT64"]


def test_errors_carry_status_and_message(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("nope")
    assert unknown.value.status() == "404" and "nope" in unknown.value.message()
    tensor = triton.InferInput("INPUT0", [1, 2, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(InferenceServerException) as shape:
        client.infer("identity_fp32", [tensor])
    assert shape.value.status() == "400"
    assert shape.value.message() == (
        "model 'identity_fp32': input 'INPUT0': expected shape [-1] + [-1] "
        "(rank 2 with the batch dimension), got [1, 2, 3]"
    )
    wrong = triton.InferInput("INPUT0", [1, 2], "INT32")
    wrong.set_data_from_numpy(np.zeros((1, 2), np.int32))
    with pytest.raises(InferenceServerException) as datatype:
        client.infer("identity_fp32", [wrong])
    assert datatype.value.message() == (
        "model 'identity_fp32': input 'INPUT0': expected datatype FP32, got INT32"
    )


def ok_requests_by_protocol(server: ServerProcess, model: str) -> dict[str, float]:
    """onnxserve_requests_total{code="OK"} of the model, by protocol, from /metrics."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    counts = {}
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if line.startswith("onnxserve_requests_total{") and f'model="{model}"' in line:
            if 'code="OK"' in line:
                protocol = line.split('protocol="', 1)[1].split('"', 1)[0]
                counts[protocol] = float(line.rsplit(" ", 1)[1])
    return counts


def test_statistics_count_http_and_grpc_requests_together(server: ServerProcess) -> None:
    client = triton.InferenceServerClient(server.http_address)
    before = client.get_inference_statistics("identity_int8")["model_stats"][0]
    counted_before = ok_requests_by_protocol(server, "identity_int8")
    x = np.ones((1, 3), np.int8)
    for _ in range(3):
        identity(client, "INT8", x, binary=True)
    grpc_client = triton_grpc.InferenceServerClient(server.address)
    tensor = triton_grpc.InferInput("INPUT0", [1, 3], "INT8")
    tensor.set_data_from_numpy(x)
    grpc_client.infer("identity_int8", [tensor])
    after = client.get_inference_statistics("identity_int8", "1")["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 4
    success = after["inference_stats"]["success"]["count"]
    assert success - before["inference_stats"]["success"]["count"] == 4
    all_models = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in all_models} >= {"double", "identity_int8", "nonbatched"}
    counted = ok_requests_by_protocol(server, "identity_int8")
    assert {p: counted.get(p, 0) - counted_before.get(p, 0) for p in counted} == {
        "grpc": 1,
        "http": 3,
    }


def test_log_settings_read_and_change(client: triton.InferenceServerClient) -> None:
    settings = client.get_log_settings()
    assert settings["log_format"] == "text" and settings["log_info"] is True
    changed = client.update_log_settings({"log_verbose_level": 1})
    assert changed["log_verbose_level"] == 1
    assert client.update_log_settings({"log_verbose_level": 0})["log_verbose_level"] == 0


def test_system_shared_memory_for_inputs_and_outputs(client: triton.InferenceServerClient) -> None:
    shm = pytest.importorskip("tritonclient.utils.shared_memory")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    handle = shm.create_shared_memory_region("http_io", "/onnxserve_http_io", 64)
    try:
        shm.set_shared_memory_region(handle, [x])
        client.register_system_shared_memory("http_io", "/onnxserve_http_io", 64)
        status = client.get_system_shared_memory_status("http_io")
        assert status == [
            {"name": "http_io", "key": "/onnxserve_http_io", "offset": 0, "byte_size": 64}
        ]
        tensor = triton.InferInput("INPUT0", [2, 4], "FP32")
        tensor.set_shared_memory("http_io", 32)
        output = triton.InferRequestedOutput("OUTPUT0")
        output.set_shared_memory("http_io", 32, offset=32)
        result = client.infer("identity_fp32", [tensor], outputs=[output])
        placed = result.get_output("OUTPUT0")
        assert placed["parameters"]["shared_memory_byte_size"] == 32
        got = shm.get_contents_as_numpy(handle, np.float32, [2, 4], offset=32)
        np.testing.assert_array_equal(got, x)
        client.unregister_system_shared_memory("http_io")
        assert client.get_system_shared_memory_status() == []
    finally:
        shm.destroy_shared_memory_region(handle)


def test_repository_index_load_and_unload(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    models.build_double(tmp_path)
    models.build_double(tmp_path, "other")
    server = start_server(tmp_path, "--model-control-mode", "explicit", "--load-model", "double")
    client = triton.InferenceServerClient(server.http_address)
    index = {m["name"]: m.get("state", "") for m in client.get_model_repository_index()}
    assert index == {"double": "READY", "other": "UNKNOWN"}
    client.load_model("other")
    assert client.is_model_ready("other")
    client.unload_model("double")
    assert not client.is_model_ready("double")
    with pytest.raises(InferenceServerException) as gone:
        client.get_model_metadata("double")
    assert gone.value.status() in ("404", "503")


def test_http_turned_off(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    models.build_double(tmp_path)
    server = start_server(tmp_path, "--http-port", "-1")
    assert server.http_port == 0 and "HTTP listening" not in server.logs()


def test_perf_analyzer_over_http(server: ServerProcess, tmp_path: Path) -> None:
    perf = Path(__file__).resolve().parents[2] / "bench" / ".venv-perf" / "bin" / "pa"
    if not perf.exists() or shutil.which("ldconfig") is None:
        pytest.skip("perf_analyzer is not installed (bash bench/setup.sh installs it)")
    import subprocess

    csv = tmp_path / "pa.csv"
    run = subprocess.run(
        [
            str(perf),
            "-m",
            "double",
            "-u",
            server.http_address,
            "-i",
            "http",
            "--shape",
            "INPUT0:4",
            "--concurrency-range",
            "4",
            "--measurement-interval",
            "500",
            "--stability-percentage",
            "1000",
            "--max-trials",
            "3",
            "-f",
            str(csv),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Throughput" in run.stdout and csv.exists()


def test_response_cache_hits_show_in_http_statistics(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> None:
    models.build_double(tmp_path, config={"response_cache": {"enable": True}})
    server = start_server(tmp_path, "--cache", "local", "--cache-size", "1M")
    client = triton.InferenceServerClient(server.http_address)
    x = np.array([[1.0, 2.0]], np.float32)
    inputs = [triton.InferInput("INPUT0", [1, 2], "FP32"), triton.InferInput("ID", [1, 1], "INT64")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(np.array([[3]], np.int64))
    answers = [client.infer("double", inputs).as_numpy("OUTPUT0").tolist() for _ in range(2)]
    assert answers == [[[2.0, 4.0]]] * 2
    stats = client.get_inference_statistics("double")["model_stats"][0]["inference_stats"]
    assert (stats["cache_miss"]["count"], stats["cache_hit"]["count"]) == (1, 1)
