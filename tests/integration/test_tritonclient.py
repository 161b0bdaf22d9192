"""tritonclient.grpc, unchanged, against the example models: health, metadata, the config fields
perf_analyzer reads, and inference compared with onnxruntime run in-process on the same inputs."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import EXAMPLE_REPOSITORY
from tests.harness import ServerProcess

EXAMPLES = ("tabular", "image")
# What the example configs declare (model_repository/*/config.yaml).
DECLARED = {
    "tabular": {
        "max_batch_size": 64,
        "inputs": [("features", "FP32", [16])],
        "outputs": [("label", "INT64", [1]), ("probabilities", "FP32", [4])],
        "preferred_batch_size": [16, 32, 64],
        "max_queue_delay_microseconds": 100,
    },
    "image": {
        "max_batch_size": 16,
        "inputs": [("image", "UINT8", [224, 224, 3])],
        "outputs": [("logits", "FP32", [10]), ("probabilities", "FP32", [10])],
        "preferred_batch_size": [4, 8],
        "max_queue_delay_microseconds": 1000,
    },
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example models only, so models added to model_repository/ later do not
    change what this module tests."""
    repo = tmp_path_factory.mktemp("examples")
    for name in EXAMPLES:
        shutil.copytree(EXAMPLE_REPOSITORY / name, repo / name)
    return repo


@pytest.fixture(scope="module")
def server(repo: Path, start_module_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_module_server(repo)


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.address) as client:
        yield client


@pytest.fixture(scope="module")
def sessions(repo: Path) -> dict[str, ort.InferenceSession]:
    return {
        name: ort.InferenceSession(
            str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        for name in EXAMPLES
    }


def sample(name: str, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "tabular":
        return rng.standard_normal((rows, 16), dtype=np.float32)
    return rng.integers(0, 256, (rows, 224, 224, 3), dtype=np.uint8)


def infer(
    client: triton.InferenceServerClient, name: str, x: np.ndarray, outputs: list[str] | None = None
) -> triton.InferResult:
    ((input_name, datatype, _),) = DECLARED[name]["inputs"]
    tensor = triton.InferInput(input_name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    requested = [triton.InferRequestedOutput(o) for o in outputs] if outputs else None
    return client.infer(name, [tensor], outputs=requested, client_timeout=60)


def assert_matches_onnxruntime(
    result: triton.InferResult, session: ort.InferenceSession, name: str, x: np.ndarray
) -> None:
    ((input_name, _, _),) = DECLARED[name]["inputs"]
    expected = session.run(None, {input_name: x})
    for (output, _, _), want in zip(DECLARED[name]["outputs"], expected, strict=True):
        got = result.as_numpy(output)
        assert got.dtype == want.dtype and got.shape == want.shape, output
        if got.dtype.kind == "f":
            # Same model file and CPU provider; only thread counts may reorder float sums.
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, want)


# --- health and metadata -------------------------------------------------------------------


def test_live_and_ready(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    for name in EXAMPLES:
        assert client.is_model_ready(name)
        assert client.is_model_ready(name, "1")
    assert not client.is_model_ready("tabular", "2")
    assert not client.is_model_ready("nosuch")


def test_server_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "onnxserve"
    assert "model_configuration" in metadata["extensions"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_model_metadata(client: triton.InferenceServerClient, name: str) -> None:
    metadata = client.get_model_metadata(name)
    declared = DECLARED[name]
    assert metadata.name == name
    assert list(metadata.versions) == ["1"]
    assert metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        (n, d, [-1, *dims]) for n, d, dims in declared["inputs"]
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        (n, d, [-1, *dims]) for n, d, dims in declared["outputs"]
    ]


@pytest.mark.parametrize("name", EXAMPLES)
def test_model_config_has_what_perf_analyzer_reads(
    client: triton.InferenceServerClient, name: str
) -> None:
    declared = DECLARED[name]
    config = client.get_model_config(name, as_json=True)["config"]
    assert config["name"] == name
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == declared["max_batch_size"]
    # JSON carries int64 as strings, as Triton's own JSON does.
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        (n, f"TYPE_{d}", [str(x) for x in dims]) for n, d, dims in declared["inputs"]
    ]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        (n, f"TYPE_{d}", [str(x) for x in dims]) for n, d, dims in declared["outputs"]
    ]
    batching = config["dynamic_batching"]
    assert batching["preferred_batch_size"] == declared["preferred_batch_size"]
    assert int(batching["max_queue_delay_microseconds"]) == declared["max_queue_delay_microseconds"]


# --- inference -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rows"), [("tabular", 1), ("tabular", 64), ("image", 3)])
def test_infer_matches_onnxruntime(
    client: triton.InferenceServerClient,
    sessions: dict[str, ort.InferenceSession],
    name: str,
    rows: int,
) -> None:
    x = sample(name, rows, seed=rows)
    result = infer(client, name, x)
    response = result.get_response()
    assert (response.model_name, response.model_version) == (name, "1")
    assert_matches_onnxruntime(result, sessions[name], name, x)


def test_concurrent_requests_each_get_their_own_rows(
    client: triton.InferenceServerClient, sessions: dict[str, ort.InferenceSession]
) -> None:
    """Concurrent requests share batches on the server; each must still get its own answer."""
    inputs = [sample("tabular", rows, seed=100 + rows) for rows in (1, 3, 2, 5, 1, 4, 2, 7)]
    with ThreadPoolExecutor(len(inputs)) as pool:
        results = list(pool.map(lambda x: infer(client, "tabular", x), inputs))
    for x, result in zip(inputs, results, strict=True):
        assert_matches_onnxruntime(result, sessions["tabular"], "tabular", x)


def test_requested_output_only(
    client: triton.InferenceServerClient, sessions: dict[str, ort.InferenceSession]
) -> None:
    x = sample("tabular", 2)
    result = infer(client, "tabular", x, outputs=["probabilities"])
    assert [o.name for o in result.get_response().outputs] == ["probabilities"]
    assert result.as_numpy("label") is None
    (expected,) = sessions["tabular"].run(["probabilities"], {"features": x})
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-4, atol=1e-5)


def test_errors_reach_tritonclient_with_their_status(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("nosuch")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "nosuch" in info.value.message()
    x = np.zeros((1, 15), np.float32)
    with pytest.raises(InferenceServerException) as info:
        infer(client, "tabular", x)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert info.value.message() == (
        "model 'tabular': input 'features': expected shape [-1, 16], got [1, 15]"
    )
