"""The ONNX Runtime memory settings of config.yaml reach the sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server.backends import onnxruntime as backend
from server.model_config import ModelConfig, SessionConfig, load_model_config
from tests import models

ENV_ALLOCATORS = "session.use_env_allocators"


def env_allocators(session: SessionConfig) -> str | None:
    options = backend.session_options(session, 1)
    try:
        return options.get_session_config_entry(ENV_ALLOCATORS)
    except RuntimeError:  # ORT's way of saying the entry is not set
        return None


def test_defaults_keep_a_per_session_arena_and_no_memory_patterns() -> None:
    options = backend.session_options(SessionConfig(), 1)
    assert options.enable_cpu_mem_arena is True
    assert options.enable_mem_pattern is False
    assert env_allocators(SessionConfig()) is None


def test_same_as_requested_uses_the_shared_cpu_arena() -> None:
    assert env_allocators(SessionConfig(arena_extend_strategy="same_as_requested")) == "1"


def test_no_arena_means_no_shared_arena_either() -> None:
    session = SessionConfig(enable_cpu_mem_arena=False, arena_extend_strategy="same_as_requested")
    options = backend.session_options(session, 1)
    assert options.enable_cpu_mem_arena is False
    assert env_allocators(session) is None


@pytest.mark.parametrize("strategy", ["same_as_requested", "next_power_of_two"])
def test_sessions_of_several_models_run_on_either_arena(tmp_path: Path, strategy: str) -> None:
    # The shared arena is registered once per process; later models must reuse it.
    session = {"arena_extend_strategy": strategy, "enable_mem_pattern": True}
    results = []
    for name in ("first", "second"):
        folder = models.build_double(tmp_path, name, config={"session": session})
        config: ModelConfig = load_model_config(folder)
        instances, _ = backend.create_instances(folder / "1" / "model.onnx", config)
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        ids = np.array([[1], [2], [3]], np.int64)
        results.append(instances[0].run(["OUTPUT0", "ID_OUT"], {"INPUT0": x, "ID": ids}))
    for output, ids_out in results:
        np.testing.assert_array_equal(output, np.arange(12, dtype=np.float32).reshape(3, 4) * 2)
        np.testing.assert_array_equal(ids_out, [[1], [2], [3]])
