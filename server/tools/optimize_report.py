"""The optimize report: one table (terminal and markdown) and the same facts as JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from server.tools.accuracy import worst
from server.tools.optimize import OptimizeReport, Variant


def _batch_label(size: int) -> str:
    return "p50 (ms)" if size == 0 else f"p50 b{size} (ms)"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _row(variant: Variant, batch_sizes: list[int]) -> list[str]:
    max_abs, agreement = worst(variant.errors)
    latencies = [f"{variant.p50_ms[s]:.3f}" if s in variant.p50_ms else "-" for s in batch_sizes]
    original = variant.verdict == "original"
    verdict = variant.verdict + (f": {variant.reason}" if variant.reason else "")
    return [
        variant.name,
        _size(variant.size_bytes),
        *latencies,
        "1.00x" if original else (f"{variant.speedup:.2f}x" if variant.speedup else "-"),
        "-" if original or max_abs is None else f"{max_abs:.2g}",
        "-" if original or agreement is None else f"{agreement:.1%}",
        verdict,
    ]


def rows(report: OptimizeReport) -> tuple[list[str], list[list[str]]]:
    header = [
        "variant", "size", *(_batch_label(s) for s in report.batch_sizes),
        "speed-up", "max abs error", "agreement", "verdict",
    ]  # fmt: skip
    return header, [_row(v, report.batch_sizes) for v in report.variants]


def text_table(report: OptimizeReport) -> str:
    header, body = rows(report)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([_title(report), "", *lines, *_notes(report)])


def markdown(report: OptimizeReport) -> str:
    header, body = rows(report)
    lines = ["| " + " | ".join(r) + " |" for r in [header, *body]]
    lines.insert(1, "|" + "|".join("---" for _ in header) + "|")
    return "\n".join([f"# {_title(report)}", "", *lines, *_notes(report)]) + "\n"


def _title(report: OptimizeReport) -> str:
    return f"optimize: model '{report.model}' version {report.version}"


def _notes(report: OptimizeReport) -> list[str]:
    t = report.thresholds
    notes = [
        "",
        f"inputs: {report.samples}; thresholds: max abs error {t.max_abs_error:g}, "
        f"agreement {t.min_agreement:.1%}, speed-up {t.min_speedup:g}x",
    ]
    if report.random_inputs:
        notes.append(
            "accuracy was measured on random inputs, which says little about real data: "
            "pass --samples with real rows before trusting a verdict"
        )
    if report.written is not None:
        notes.append(f"written: version {report.written}")
    return notes


def to_json(report: OptimizeReport) -> dict[str, Any]:
    data = dataclasses.asdict(report)
    for variant in data["variants"]:
        variant.pop("folder")
        variant["p50_ms"] = {str(k): v for k, v in variant["p50_ms"].items()}
    return data


def write_reports(report: OptimizeReport, model_dir: Path) -> list[Path]:
    paths = [model_dir / "optimize-report.json", model_dir / "optimize-report.md"]
    paths[0].write_text(json.dumps(to_json(report), indent=2) + "\n")
    paths[1].write_text(markdown(report))
    return paths
