"""bench/: cell repositories really switch batching; the target ratios are computed right."""

from __future__ import annotations

from pathlib import Path

from bench.ceiling import CeilingResult
from bench.perf_analyzer import LoadResult
from bench.report import Cell, cell_table, targets
from bench.run import build_repository
from server.model_config import load_model_config


def test_batching_off_drops_dynamic_batching_and_on_sets_delay_zero(tmp_path: Path) -> None:
    off = load_model_config(build_repository("tabular", "off", tmp_path) / "tabular")
    on = load_model_config(build_repository("tabular", "on", tmp_path) / "tabular")
    assert off.dynamic_batching is None
    assert on.dynamic_batching is not None
    assert on.dynamic_batching.max_queue_delay_microseconds == 0
    assert on.max_batch_size == off.max_batch_size == 64
    model = tmp_path / "tabular-batching-on" / "tabular" / "1" / "model.onnx"
    assert model.stat().st_size > 0


def _cell(model: str, batching: str, concurrency: int, throughput: float, p50: float) -> Cell:
    result = LoadResult(throughput, p50, p50 * 2, 0)
    return Cell(model, batching, concurrency, "perf_analyzer", result, 1.0, 0.2, 1.0)


def test_targets_are_the_three_ratios_of_the_issue() -> None:
    cells = [
        _cell("tabular", "off", 1, 1500.0, 0.60),
        _cell("tabular", "on", 1, 1480.0, 0.63),
        _cell("tabular", "off", 16, 1400.0, 11.0),
        _cell("tabular", "on", 16, 2800.0, 5.5),
        _cell("image", "on", 16, 300.0, 50.0),
    ]
    ceiling = [CeilingResult("image", 8, 2, 400.0, 20.0, 25.0)]
    rows = targets(cells, ceiling, light="tabular", heavy="image").splitlines()[2:]
    assert [r.split("|")[2].strip() for r in rows] == ["2.00", "1.05", "0.75"]
    assert [r.split("|")[4].strip() for r in rows] == ["yes", "yes", "yes"]


def test_a_missing_or_failed_cell_reads_not_met() -> None:
    failed = _cell("tabular", "on", 16, 0.0, 0.0)
    failed.result.failure = "perf_analyzer: Failed to obtain stable measurement."
    rows = targets([failed], [], light="tabular", heavy="image").splitlines()[2:]
    assert all(r.split("|")[2].strip() == "n/a" and r.endswith("| no |") for r in rows)
    assert "Failed to obtain stable measurement" in cell_table([failed])
