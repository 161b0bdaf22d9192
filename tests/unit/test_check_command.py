"""`onnxserve check`: every model validated without serving, problems make it exit 1."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from server.cli import main
from tests.models import build_add_sub, build_versioned, write_broken_model, write_config


@pytest.fixture(autouse=True)
def keep_root_logger() -> Iterator[None]:
    """The command sets up logging for a process of its own; undo that for the next tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_good_repository_prints_each_completed_config_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_add_sub(tmp_path, config={"inputs": None, "outputs": None})  # completed from the model
    build_versioned(tmp_path, versions=(1, 2), config={"version_policy": {"all": True}})
    assert main(["check", "--model-repository", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    sections = out.split("--- ")[1:]
    titles = [s.splitlines()[0] for s in sections]
    assert titles == [
        "model 'add_sub' version 1: ok",
        "model 'versioned' version 1: ok",
        "model 'versioned' version 2: ok",
    ]
    completed = yaml.safe_load(sections[0].split("\n", 1)[1])
    assert [t["name"] for t in completed["inputs"]] == ["INPUT0", "INPUT1"]
    assert completed["inputs"][0]["dims"] == [16]
    assert out.rstrip().endswith("checked 2 model(s), 3 version(s): 0 problem(s)")


def test_every_problem_is_printed_and_the_exit_code_is_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_add_sub(tmp_path)
    write_broken_model(tmp_path, "broken")
    build_versioned(tmp_path, "bad_yaml", versions=(1,))
    write_config(tmp_path, "bad_yaml", "max_batch_size: -3\nbatching: yes\n")
    triton = tmp_path / "triton"
    (triton / "1").mkdir(parents=True)
    (triton / "1" / "model.onnx").write_bytes((tmp_path / "add_sub/1/model.onnx").read_bytes())
    (triton / "config.pbtxt").write_text(
        "max_batch_size: 8\nsequence_batching { max_sequence_idle_microseconds: 100 }\n"
    )
    (tmp_path / "empty").mkdir()

    assert main(["check", "--model-repository", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "--- model 'add_sub' version 1: ok" in out
    assert "--- model 'bad_yaml': 2 problem(s)" in out
    assert "max_batch_size: expected" in out and "batching" in out
    assert "--- model 'broken' version 1: 1 problem(s)" in out
    assert "onnxruntime cannot load the model" in out
    assert "--- model 'empty': 1 problem(s)" in out
    assert "sequence_batching: not supported" in out
    assert out.rstrip().endswith("checked 5 model(s), 2 version(s): 4 problem(s)")


def test_a_missing_repository_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--model-repository", str(tmp_path / "nowhere")]) == 1
    assert "not a folder" in capsys.readouterr().out
