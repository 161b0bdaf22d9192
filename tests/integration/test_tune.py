"""`onnxserve tune` against real servers, on models built so the right answer is known.

The slow model does a fixed amount of work per run whatever the batch size, so at concurrency
8 a max_batch_size of 8 serves several times the throughput of 1: tune must find it. A model
without a batch dimension cannot batch at all: tune must say so and keep its config. Budgets
are short (fractions of a second per measurement): these check decisions, not speed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from server.cli import main
from server.model_config import DynamicBatching, ModelConfig, Warmup, load_model_config
from server.tools.tune import Measured, Sample, TuneOptions, _bests, _refined
from server.tools.tune_space import Candidate, apply
from tests.models import build_nonbatched, build_slow


def test_tune_finds_that_batching_wins_on_a_fixed_cost_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = build_slow(tmp_path, milliseconds=20, config={"max_batch_size": 1})
    old = (model_dir / "config.yaml").read_text()
    code = main([
        "tune", str(model_dir), "--concurrency", "8", "--try", "max_batch_size=8",
        "--seconds", "1", "--repetitions", "2", "--write",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "chosen (best at concurrency 8): max_batch_size=8" in out
    assert "config.yaml: written; the old one is config.yaml.bak" in out
    assert (model_dir / "config.yaml.bak").read_text() == old
    assert load_model_config(model_dir).max_batch_size == 8
    written = (model_dir / "config.yaml").read_text()
    assert "max_batch_size: 8\n" in written and "execution_providers" not in written  # compact
    report = json.loads((model_dir / "tune-report.json").read_text())
    assert report["chosen"] == {"max_batch_size": 8}
    start, batched = report["candidates"]
    assert (start["settings"], batched["settings"]) == ({}, {"max_batch_size": 8})
    assert len(start["samples"]["8"]) == len(batched["samples"]["8"]) == 2
    # One run per 20 ms against up to eight rows per run: far more than any noise.
    ratio = batched["median"]["8"]["throughput"] / start["median"]["8"]["throughput"]
    assert ratio > 2.5, report
    assert all(s["errors"] == 0 for s in start["samples"]["8"] + batched["samples"]["8"])
    # The plot needs the optional matplotlib; without it the report says so instead.
    if importlib.util.find_spec("matplotlib"):
        assert f"plot: {model_dir / 'tune-plot.png'}" in out
        assert (model_dir / "tune-plot.png").read_bytes().startswith(b"\x89PNG")
    else:
        assert "no plot: matplotlib is not installed (pip install 'onnxserve[tools]')" in out


def test_tune_keeps_the_config_of_a_model_that_cannot_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = build_nonbatched(tmp_path)
    old = (model_dir / "config.yaml").read_text()
    code = main([
        "tune", str(model_dir), "--concurrency", "2", "--axes", "max_batch_size,queue_delay",
        "--seconds", "0.3", "--repetitions", "1", "--write",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "max_batch_size: skipped, the model is not batched (max_batch_size 0)" in out
    assert "queue_delay: skipped, the model is not batched (max_batch_size 0)" in out
    assert "chosen (best at concurrency 2): start" in out
    assert "config.yaml: unchanged" in out
    assert (model_dir / "config.yaml").read_text() == old
    assert not (model_dir / "config.yaml.bak").exists()
    report = json.loads((model_dir / "tune-report.json").read_text())
    assert [c["settings"] for c in report["candidates"]] == [{}]
    assert report["candidates"][0]["median"]["2"]["throughput"] > 0


def _measured(settings: dict[str, int], throughputs: list[float], p99: float = 5.0) -> Measured:
    samples = [Sample(t, 1.0, p99, 0, 0.5, 1 << 20) for t in throughputs]
    return Measured(Candidate(settings), 1, {4: samples})


def test_a_candidate_wins_only_beyond_the_noise_and_within_the_budget() -> None:
    start = _measured({}, [100, 110, 120])
    noisy = _measured({"instances": 2}, [105, 125, 140])  # faster median, ranges overlap
    clear = _measured({"threads": 1}, [150, 155, 160])  # its slowest beats the fastest
    slow_tail = _measured({"queue_delay": 500}, [300, 310, 320], p99=50.0)
    options = TuneOptions(concurrency=[4])
    assert _bests([start, noisy], options)[4] is start
    assert _bests([start, noisy, clear], options)[4] is clear
    assert _bests([start, noisy, clear, slow_tail], options)[4] is slow_tail
    budget = TuneOptions(concurrency=[4], latency_budget_ms=10.0)
    assert _bests([start, noisy, clear, slow_tail], budget)[4] is clear
    over = _measured({}, [100, 100, 100], p99=20.0)
    assert _bests([over, noisy], budget)[4] is noisy  # the start misses the budget itself
    assert _bests([over], budget)[4] is None


def test_settings_apply_over_a_config_the_user_left_incomplete() -> None:
    user = ModelConfig(name="m", dynamic_batching=DynamicBatching(preferred_batch_size=(4, 8)))
    tuned = apply(user, Candidate({"queue_delay": 500, "instances": 2}))
    assert tuned.max_batch_size is None  # still completed from the model at load
    assert tuned.dynamic_batching == DynamicBatching(500, (4, 8))
    assert tuned.instance_group.count == 2
    warm = ModelConfig(name="m", max_batch_size=16, model_warmup=(Warmup("w", batch_size=8),))
    smaller = apply(warm, Candidate({"max_batch_size": 4, "preferred_batch_size": (4, 8)}))
    assert smaller.max_batch_size == 4
    assert smaller.dynamic_batching == DynamicBatching(0, (4,))
    assert smaller.model_warmup[0].batch_size == 4


def test_the_combination_replaces_a_round_one_winner_only_by_beating_it_side_by_side() -> None:
    options = TuneOptions(concurrency=[4])
    winner = _measured({"threads": 1}, [150, 155, 160])
    again = _measured({"threads": 1}, [90, 120, 140])  # round 2 ran on a busier machine
    start = _measured({}, [80, 100, 130])
    close = _measured({"threads": 1, "queue_delay": 0}, [130, 150, 170])
    assert _refined({4: winner}, [start, again, close], options) == {4: winner}
    clear = _measured({"threads": 1, "queue_delay": 0}, [145, 150, 170])
    assert _refined({4: winner}, [start, again, clear], options) == {4: clear}
