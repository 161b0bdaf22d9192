"""Execution providers: configured ones are tried in order, missing ones skipped with a log line
naming them, CPU always last. The GPU case is simulated by what onnxruntime reports available,
since no GPU can run here; everything else uses the real onnxruntime."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from server.backends import onnxruntime as backend
from server.model_config import ExecutionProvider, ModelConfig, SessionConfig
from tests.models import build_double

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def config_with(*providers: ExecutionProvider, **session: str) -> ModelConfig:
    return ModelConfig(
        name="double", execution_providers=providers, session=SessionConfig(**session)
    )


def test_a_missing_provider_is_skipped_with_a_line_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = config_with(ExecutionProvider(CUDA, {"device_id": "0"}), ExecutionProvider(CPU))
    with caplog.at_level(logging.WARNING):
        chosen = backend.choose_providers(config)
    assert chosen == [(CPU, {})]
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"model 'double': execution provider {CUDA} is not available" in line
    assert CPU in line.split("available: ")[1]  # and it says what is available


def test_cpu_is_added_last_when_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend.ort, "get_available_providers", lambda: [CUDA, CPU])
    config = config_with(ExecutionProvider(CUDA, {"device_id": "1"}))
    assert backend.choose_providers(config) == [(CUDA, {"device_id": "1"}), (CPU, {})]
    assert backend.choose_providers(config_with()) == [(CPU, {})]


def test_the_cuda_arena_follows_the_session_strategy_unless_its_options_say_otherwise() -> None:
    session = SessionConfig(arena_extend_strategy="same_as_requested")
    assert backend._provider_options(CUDA, {"device_id": "0"}, session) == {
        "device_id": "0",
        "arena_extend_strategy": "kSameAsRequested",
    }
    own = {"arena_extend_strategy": "kNextPowerOfTwo"}
    assert backend._provider_options(CUDA, own, session) == own
    assert backend._provider_options(CPU, {}, session) == {}


def test_sessions_report_the_providers_onnxruntime_actually_uses(tmp_path: Path) -> None:
    model_dir = build_double(tmp_path)
    config = config_with(ExecutionProvider(CUDA), ExecutionProvider(CPU))
    instances, providers = backend.create_instances(model_dir / "1" / "model.onnx", config)
    assert providers == [CPU]
    assert len(instances) == 1
