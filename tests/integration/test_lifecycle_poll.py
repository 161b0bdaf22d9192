"""Poll mode through the real server: folders copied in, changed, broken, fixed and removed."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.harness import ServerProcess
from tests.models import (
    build_add_constant,
    build_double,
    build_versioned,
    write_broken_model,
    write_config,
    write_model,
)

POLL_SECONDS = 0.5
WAIT_SECONDS = 60.0  # generous: two scans plus a load, on a busy 2-core machine


# The tests break models on purpose, and the poller may catch a folder half written.
pytestmark = pytest.mark.server_errors("failed to load")


# Each test changes the repository (and so the server's state): each gets its own, so that any
# order or subset of the tests passes.
@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repository = tmp_path / "models"
    build_double(repository)
    build_versioned(repository, versions=(1,))
    write_broken_model(repository, "broken_at_start")
    return repository


@pytest.fixture
def server(start_server: Callable[..., ServerProcess], repo: Path) -> ServerProcess:
    return start_server(
        repo, "--model-control-mode", "poll", "--repository-poll-secs", str(POLL_SECONDS)
    )


@pytest.fixture
def client(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.address)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS}s: {what}")
        time.sleep(0.1)  # pacing the poll


def add_one(client: triton.InferenceServerClient, name: str, version: str = "") -> float:
    tensor = triton.InferInput("INPUT0", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 1), np.float32))
    return float(client.infer(name, [tensor], model_version=version).as_numpy("OUTPUT0")[0, 0])


def status_of(call: Callable[[], object]) -> str:
    try:
        call()
    except InferenceServerException as error:
        return error.status()
    return "OK"


def index(client: triton.InferenceServerClient) -> dict[tuple[str, str], tuple[str, str]]:
    response = client.get_model_repository_index()
    return {(m.name, m.version): (m.state, m.reason) for m in response.models}


def test_a_broken_model_at_start_leaves_the_others_serving_until_fixed(
    client: triton.InferenceServerClient, repo: Path
) -> None:
    assert not client.is_server_ready()  # strict readiness: a start-up model failed
    assert client.is_model_ready("double")
    assert not client.is_model_ready("broken_at_start")
    state, reason = index(client)[("broken_at_start", "1")]
    assert state == "UNAVAILABLE" and "onnxruntime cannot load the model" in reason
    build_add_constant(repo, "broken_at_start", addend=7.0)
    wait_for(lambda: client.is_model_ready("broken_at_start"), "the fixed model serves")
    assert add_one(client, "broken_at_start") == 7.0
    assert client.is_server_ready()


def test_a_folder_copied_in_serves_and_a_removed_one_is_gone(
    client: triton.InferenceServerClient, repo: Path, tmp_path: Path
) -> None:
    staged = build_add_constant(tmp_path / "staging", "copied", addend=3.0)
    shutil.copytree(staged, repo / "copied")
    wait_for(lambda: client.is_model_ready("copied"), "the copied model serves")
    assert add_one(client, "copied") == 3.0

    write_config(repo, "copied", {"max_batch_size": 4})
    wait_for(
        lambda: client.get_model_config("copied").config.max_batch_size == 4,
        "the changed max_batch_size is served",
    )
    assert add_one(client, "copied") == 3.0

    shutil.rmtree(repo / "copied")
    wait_for(lambda: status_of(lambda: add_one(client, "copied")) == "StatusCode.NOT_FOUND", "gone")
    assert ("copied", "") not in index(client) and ("copied", "1") not in index(client)


def test_a_broken_new_version_leaves_the_old_one_serving(
    client: triton.InferenceServerClient, repo: Path
) -> None:
    write_model(repo, "versioned", 2, b"half a model", None)
    # Listed as LOADING first: wait for the load's outcome.
    wait_for(
        lambda: index(client).get(("versioned", "2"), ("", ""))[0] not in ("", "LOADING"),
        "version 2 was tried",
    )
    state, reason = index(client)[("versioned", "2")]
    assert state == "UNAVAILABLE" and "cannot load the model" in reason
    assert index(client)[("versioned", "1")] == ("READY", "")
    assert add_one(client, "versioned") == 1.0

    build_versioned(repo, versions=(2,))  # the poller retries once the folder changes again
    wait_for(lambda: client.is_model_ready("versioned", "2"), "the fixed version 2 serves")
    assert add_one(client, "versioned") == 2.0
    wait_for(lambda: not client.is_model_ready("versioned", "1"), "version 1 was released")


def test_clients_cannot_load_or_unload_in_poll_mode(client: triton.InferenceServerClient) -> None:
    assert status_of(lambda: client.load_model("double")) == "StatusCode.UNAVAILABLE"
    assert status_of(lambda: client.unload_model("double")) == "StatusCode.UNAVAILABLE"
    assert status_of(lambda: client.load_model("../double")) == "StatusCode.INVALID_ARGUMENT"
    assert client.is_model_ready("double")
