"""`onnxserve optimize` on tiny models with real onnxruntime tooling; a written version served.

One verdict path per test: accepted (the graph-optimized variant computes the same numbers),
rejected for accuracy (int8 cannot meet an error bound of 1e-9), skipped (nothing to quantize,
no fp16 provider). Timing budgets are tiny: speed is the bench's business, so tests that are
not about speed pass --min-speedup 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper

from server.cli import main
from server.tools.optimize import Thresholds, optimize
from tests.models import build_add_constant, make_model, tensor, tensor_config, write_model

SECONDS = 0.05
ANY_SPEED = Thresholds(max_abs_error=1e-4, min_agreement=1.0, min_speedup=0.0)


def build_classifier(repo: Path, name: str = "classifier") -> Path:
    """FEATURES FP32 [8] -> SCORES FP32 [4] = softmax(FEATURES @ W + b): MatMul to quantize."""
    rng = np.random.default_rng(3)
    model = make_model(
        [
            helper.make_node("MatMul", ["FEATURES", "W"], ["raw"]),
            helper.make_node("Add", ["raw", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["SCORES"], axis=-1),
        ],
        [tensor("FEATURES", "FP32", [8])],
        [tensor("SCORES", "FP32", [4])],
        [
            numpy_helper.from_array(rng.normal(0, 1, (8, 4)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.normal(0, 1, (4,)).astype(np.float32), "B"),
        ],
        name,
    )
    config = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "inputs": [tensor_config("FEATURES", "FP32", [8])],
        "outputs": [tensor_config("SCORES", "FP32", [4])],
        "dynamic_batching": {"preferred_batch_size": [4]},
    }
    return write_model(repo, name, 1, model, config)


def verdicts(report) -> dict[str, tuple[str, str]]:
    return {v.name: (v.verdict, v.reason) for v in report.variants}


def test_graph_optimized_variant_is_accepted_with_identical_outputs(tmp_path: Path) -> None:
    model_dir = build_classifier(tmp_path)
    report = optimize(model_dir, thresholds=ANY_SPEED, seconds=SECONDS)
    assert report.batch_sizes == [1, 4]
    optimized = next(v for v in report.variants if v.name == "optimized")
    assert (optimized.verdict, optimized.reason) == ("accepted", "within the thresholds")
    (scores,) = optimized.errors
    assert (scores.name, scores.max_abs, scores.agreement) == ("SCORES", 0.0, 1.0)
    assert sorted(optimized.p50_ms) == [1, 4] and optimized.speedup > 0
    assert report.random_inputs and report.written is None
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.yaml"]  # nothing left


def test_int8_is_rejected_for_accuracy_under_a_tight_error_bound(tmp_path: Path) -> None:
    model_dir = build_classifier(tmp_path)
    strict = Thresholds(max_abs_error=1e-9, min_agreement=0.0, min_speedup=0.0)
    report = optimize(model_dir, thresholds=strict, seconds=SECONDS)
    for name in ("int8-dynamic", "int8-static"):
        verdict, reason = verdicts(report)[name]
        assert verdict == "rejected"
        assert reason.startswith("max abs error ") and reason.endswith(" > 1e-09")
        variant = next(v for v in report.variants if v.name == name)
        assert variant.size_bytes is not None and variant.errors[0].max_abs > 1e-9


def test_variants_that_do_not_apply_are_skipped_with_the_reason(tmp_path: Path) -> None:
    model_dir = build_add_constant(tmp_path)  # one Add: nothing to quantize
    report = optimize(model_dir, thresholds=ANY_SPEED, seconds=SECONDS)
    assert verdicts(report) == {
        "original": ("original", ""),
        "optimized": ("accepted", "within the thresholds"),
        "int8-dynamic": ("skipped", "no MatMul, Conv or Gemm to quantize"),
        "int8-static": ("skipped", "no MatMul, Conv or Gemm to quantize"),
        "fp16": ("skipped", "no configured execution provider runs fp16 faster (CPU does not)"),
    }


def test_samples_must_name_every_input(tmp_path: Path) -> None:
    model_dir = build_classifier(tmp_path)
    samples = tmp_path / "samples.npz"
    np.savez(samples, OTHER=np.zeros((2, 8), np.float32))
    with pytest.raises(Exception, match=r"expected one array per input \(FEATURES\), got OTHER"):
        optimize(model_dir, samples_path=samples, seconds=SECONDS)


def test_write_adds_a_version_the_server_serves(
    tmp_path: Path, start_server, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = build_classifier(tmp_path / "repo")
    features = np.random.default_rng(9).normal(0, 1, (16, 8)).astype(np.float32)
    np.save(tmp_path / "FEATURES.npy", features)
    code = main([
        "optimize", str(model_dir), "--samples", str(tmp_path), "--seconds", str(SECONDS),
        "--max-abs-error", "1e-4", "--min-speedup", "0", "--write",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "written as version 2" in out and f"inputs: {tmp_path};" in out
    assert "random inputs" not in out
    assert (model_dir / "2" / "model.onnx").is_file()
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # scratch removed
    saved = json.loads((model_dir / "optimize-report.json").read_text())
    assert saved["written"] == 2 and saved["samples"] == str(tmp_path)
    assert (model_dir / "optimize-report.md").read_text().startswith("# optimize: model")

    from clients import InferenceServerClient

    server = start_server(tmp_path / "repo")
    with InferenceServerClient(server.address) as client:
        assert client.is_model_ready("classifier", "2")
        assert not client.is_model_ready("classifier", "1")
        served = client.infer("classifier", {"FEATURES": features[:4]})["SCORES"]
    logits = features[:4] @ _weights(model_dir)[0] + _weights(model_dir)[1]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


def _weights(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    import onnx

    model = onnx.load(str(model_dir / "1" / "model.onnx"))
    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return found["W"], found["B"]


def test_without_the_onnx_package_optimize_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = build_classifier(tmp_path)
    # None in sys.modules makes the import fail as it does where onnx is not installed.
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    assert main(["optimize", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "onnxserve optimize: onnxruntime's quantization and fp16 tools need the onnx package "
        "(onnxruntime.quantization cannot be imported): pip install 'onnxserve[tools]'\n"
    )
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.yaml"]
