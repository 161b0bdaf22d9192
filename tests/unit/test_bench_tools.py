"""bench/: cell repositories really switch batching; the targets are computed right."""

from __future__ import annotations

from pathlib import Path

from bench.ceiling import CeilingResult
from bench.perf_analyzer import LoadResult
from bench.report import Cell, cell_table, cost_table, targets
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


def _cell(
    model: str, batching: str, concurrency: int, throughput: float, p50: float, rpc: str = "unary"
) -> Cell:
    result = LoadResult(throughput, p50, p50 * 2, 0)
    return Cell(model, batching, concurrency, "perf_analyzer", result, 1.0, 0.2, 1.0, rpc)


def _column(rows: list[str], index: int) -> list[str]:
    return [r.split("|")[index].strip() for r in rows]


def test_targets_are_the_lines_of_the_issue_each_from_this_run() -> None:
    cells = [
        _cell("tabular", "off", 1, 1500.0, 0.60),
        _cell("tabular", "on", 1, 1480.0, 0.55),
        _cell("tabular", "off", 16, 3000.0, 5.0),
        _cell("tabular", "on", 16, 4000.0, 4.0),
        _cell("tabular", "on", 16, 5200.0, 3.0, rpc="stream"),
        _cell("tabular", "off", 64, 2600.0, 25.0),
        _cell("image", "off", 1, 300.0, 3.0),
        _cell("image", "on", 1, 300.0, 3.3),
        _cell("image", "on", 16, 380.0, 50.0),
    ]
    ceiling = [CeilingResult("image", 8, 2, 400.0, 20.0, 25.0)]
    floor = {1: LoadResult(2500.0, 0.45, 0.9, 0), 16: LoadResult(4600.0, 3.0, 6.0, 0)}
    floor[64] = LoadResult(5000.0, 12.0, 20.0, 0)
    rows = targets(cells, ceiling, floor, (0.48, 140.0), "tabular", "image").splitlines()[2:]
    assert _column(rows, 2) == [
        "0.87",  # 4000 / 4600
        "0.65",  # 3000 / 4600
        "0.52",  # 2600 / 5000
        "0.10",  # 0.55 - 0.45 ms
        "0.92",  # tabular on / off at concurrency 1
        "1.10",  # image on / off
        "333.33",  # 1 core * 1e6 / 3000 requests/s
        "1.30",  # 5200 / 4000
        "0.95",  # 380 / 400
        "0.48",
        "140.00",
    ]
    assert _column(rows, 4) == [
        "yes", "yes", "no", "yes", "yes", "no", "yes", "yes", "yes", "yes", "yes",
    ]  # fmt: skip


def test_a_missing_or_failed_cell_reads_not_met() -> None:
    failed = _cell("tabular", "on", 16, 0.0, 0.0)
    failed.result.failure = "perf_analyzer: Failed to obtain stable measurement."
    rows = targets([failed], [], {}, None, "tabular", "image").splitlines()[2:]
    assert all(r.split("|")[2].strip() == "n/a" and r.endswith("| no |") for r in rows)
    assert "Failed to obtain stable measurement" in cell_table([failed])
    assert "| n/a |" in cell_table([failed])  # no CPU per request without throughput


def test_cost_table_adds_grpc_alone_to_our_path_and_sets_them_beside_the_server() -> None:
    from bench.grpc_floor import FloorCost
    from bench.request_path import PathResult

    served = _cell("tabular", "off", 16, 2000.0, 8.0)  # 1 core / 2000/s = 500 us
    served.loop_cpu = 0.6  # 300 us
    over_http = _cell("tabular", "off", 16, 5000.0, 3.0, rpc="http")  # 200 us
    path = [PathResult("off", 1, 6000.0, 150.0, 90.0), PathResult("off", 16, 6000.0, 140.0, 85.0)]
    floor = {16: FloorCost(210.0, 140.0)}
    table = cost_table([served, over_http], floor, path, (60.0, 50.0), "tabular")
    values = {
        row.split("|")[1].strip(): (row.split("|")[2].strip(), row.split("|")[3].strip())
        for row in table.splitlines()[2:]
    }
    assert values["grpc alone: the floor server"] == ("210", "140")
    assert values["our path without grpc (bench/request_path.py)"] == ("140", "85")
    assert values["... of it the instance-thread round trip"] == ("50", "n/a")
    assert values["the two added: the server if they did not interfere"] == ("350", "225")
    assert values["the real server over gRPC"] == ("500", "300")
    assert values["the real server over HTTP (binary tensors)"] == ("200", "n/a")
    assert values["goal"] == ("360", "n/a")
    missing = cost_table([], {}, [], None, "tabular")
    assert missing.count("| n/a | n/a |") == 6
