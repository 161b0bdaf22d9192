"""`onnxserve infer | models | health` and the client examples, run as commands against the
example model repository."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clients import InferenceServerClient
from tests.conftest import EXAMPLE_REPOSITORY, REPO_ROOT
from tests.harness import ServerProcess

EXAMPLES = REPO_ROOT / "clients" / "examples"
FEATURES = np.random.default_rng(0).normal(size=(2, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def server(start_module_server) -> ServerProcess:
    return start_module_server(EXAMPLE_REPOSITORY)


@pytest.fixture(scope="module")
def expected(server: ServerProcess) -> dict[str, np.ndarray]:
    """What the Python client gets for FEATURES: the CLI must print the same."""
    with InferenceServerClient(server.address, timeout=30) as client:
        return client.infer("tabular", {"features": FEATURES})


def onnxserve(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "server", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_infer_with_inline_json_prints_outputs(
    server: ServerProcess, expected: dict[str, np.ndarray]
) -> None:
    # The JSON list takes the model's declared datatype (FP32) without --datatype.
    done = onnxserve(
        "infer", "tabular", "--url", server.address, "--input", f"features={FEATURES.tolist()}"
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["model"] == "tabular"
    label, probabilities = printed["outputs"]["label"], printed["outputs"]["probabilities"]
    assert (label["datatype"], label["shape"]) == ("INT64", [2, 1])
    assert label["data"] == expected["label"].tolist()
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [2, 4])
    assert np.array_equal(np.array(probabilities["data"], np.float32), expected["probabilities"])


def test_infer_npy_to_output_dir(
    server: ServerProcess, expected: dict[str, np.ndarray], tmp_path: Path
) -> None:
    np.save(tmp_path / "features.npy", FEATURES)
    out = tmp_path / "out"
    done = onnxserve(
        "infer", "tabular", "--url", server.address,
        "-i", f"features={tmp_path / 'features.npy'}", "--output-dir", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.load(out / "label.npy"), expected["label"])
    assert np.array_equal(np.load(out / "probabilities.npy"), expected["probabilities"])
    assert f"label: int64 [2, 1] -> {out / 'label.npy'}" in done.stdout


def test_infer_json_file_with_datatype_and_one_output(
    server: ServerProcess, expected: dict[str, np.ndarray], tmp_path: Path
) -> None:
    (tmp_path / "rows.json").write_text(json.dumps(FEATURES.tolist()))
    done = onnxserve(
        "infer", "tabular", "--url", server.address, "-i", f"features=@{tmp_path / 'rows.json'}",
        "--datatype", "features=FP32", "--output", "label",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)["outputs"]
    assert list(outputs) == ["label"]
    assert outputs["label"]["data"] == expected["label"].tolist()


def test_models_lists_the_repository_index(server: ServerProcess) -> None:
    done = onnxserve("models", "--url", server.address)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert lines == [
        ["MODEL", "VERSION", "STATE", "REASON"],
        ["image", "1", "READY"],
        ["tabular", "1", "READY"],
    ]
    done = onnxserve("models", "--url", server.address, "--json")
    assert {m["name"]: m["state"] for m in json.loads(done.stdout)} == {
        "image": "READY",
        "tabular": "READY",
    }


def test_health(server: ServerProcess) -> None:
    done = onnxserve("health", "--url", server.address, "--model", "tabular")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"server {server.address}: live, ready",
        "model tabular: ready",
    ]
    done = onnxserve("health", "--url", server.address, "--model", "no_such_model")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "model no_such_model: not ready"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["infer", "no_such_model", "-i", "x=[[1]]"], "NOT_FOUND: unknown model 'no_such_model'"),
        (["infer", "tabular", "-i", "nope=[[1]]"], "model 'tabular' has no input 'nope'"),
        (["infer", "tabular", "-i", "features=/no/such/file.npy"], "cannot read /no/such/file.npy"),
        (["infer", "tabular", "-i", "features=[[1, 2"], "input 'features': not valid JSON"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    server: ServerProcess, args: list[str], message: str
) -> None:
    done = onnxserve(*args, "--url", server.address)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("onnxserve: error: ")
    assert message in done.stderr


def test_a_file_that_is_not_npy(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "bad.npy").write_bytes(b"1,2,3\n")
    done = onnxserve("infer", "tabular", "--url", server.address, "-i", f"x={tmp_path}/bad.npy")
    assert (done.returncode, done.stderr) == (
        1,
        f"onnxserve: error: input 'x': {tmp_path}/bad.npy is not a .npy file\n",
    )


def test_server_down() -> None:
    url = f"127.0.0.1:{closed_port()}"
    for args in (["health"], ["infer", "tabular", "-i", "features=[[1]]"]):
        done = onnxserve(*args, "--url", url)
        assert done.returncode == 1
        assert done.stderr.startswith(f"onnxserve: error: cannot reach the server at {url}: ")
        assert done.stderr.count("\n") == 1


# --- examples ------------------------------------------------------------------------------


def run_example(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def labels_printed(stdout: str) -> tuple[list[int], list[int]]:
    rows = [int(m) for m in re.findall(r"^row \d+: label (\d+)", stdout, re.MULTILINE)]
    streamed = json.loads(re.search(r"^stream labels: (.*)$", stdout, re.MULTILINE).group(1))
    return rows, streamed


@pytest.mark.parametrize("example", ["tritonclient_tabular.py", "tabular_prediction.py"])
def test_tabular_examples(server: ServerProcess, example: str) -> None:
    stdout = run_example(example, "--url", server.address, "--rows", "6", "--seed", "3")
    features = np.random.default_rng(3).normal(size=(6, 16)).astype(np.float32)
    with InferenceServerClient(server.address, timeout=30) as client:
        labels = client.infer("tabular", {"features": features})["label"][:, 0].tolist()
    assert labels_printed(stdout) == (labels, labels)


def test_image_example(server: ServerProcess, tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(300, 200, 3), dtype=np.uint8)
    np.save(tmp_path / "image.npy", image)
    stdout = run_example(
        "image_classification.py", "--url", server.address, "--image", str(tmp_path / "image.npy")
    )
    lines = stdout.splitlines()
    assert len(lines) == 3
    assert all(re.fullmatch(r"\d\. class \d: \d\.\d{4}", line) for line in lines)
