"""The tune report: tables (terminal and markdown), JSON, the p99-vs-throughput plot, and the
chosen config.yaml, written (the old one kept as config.yaml.bak) or shown as a diff."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from pathlib import Path
from typing import Any, TextIO

from server.model_config import (
    CONFIG_FILE,
    DynamicBatching,
    ModelConfig,
    Warmup,
    config_to_dict,
    dump_yaml,
    load_model_config,
)
from server.tools import tune_space
from server.tools.tune import Measured, TuneResult


def _cell(m: Measured, c: int) -> list[str]:
    if m.failure:
        return ["failed: " + m.failure[:60], "-", "-", "-", "-"]
    if not m.usable(c):
        why = next((s.failure for s in m.samples.get(c, []) if s.failure), "requests failed")
        return [f"failed: {why[:60]}", "-", "-", "-", "-"]
    thr = [s.throughput for s in m.samples[c]]
    return [
        f"{m.median(c, 'throughput'):,.0f} ({min(thr):,.0f}-{max(thr):,.0f})",
        f"{m.median(c, 'p50_ms'):.2f}",
        f"{m.median(c, 'p99_ms'):.2f}",
        f"{m.median(c, 'cpu_cores'):.2f}",
        f"{max(s.rss_bytes for s in m.samples[c]) / 2**20:.0f}",
    ]


def frontier(result: TuneResult, c: int) -> list[Measured]:
    """The candidates no other beats on both throughput and p99, by throughput."""
    points = [m for m in result.measured if m.usable(c)]

    def dominated(m: Measured) -> bool:
        return any(
            o.median(c, "throughput") >= m.median(c, "throughput")
            and o.median(c, "p99_ms") <= m.median(c, "p99_ms")
            and o is not m
            and (o.median(c, "throughput"), o.median(c, "p99_ms"))
            != (m.median(c, "throughput"), m.median(c, "p99_ms"))
            for o in points
        )

    return sorted((m for m in points if not dominated(m)), key=lambda m: m.median(c, "throughput"))


def _name(m: Measured) -> str:
    return m.candidate.label + (f" (round {m.round})" if m.round > 1 else "")


def tables(result: TuneResult) -> tuple[list[list[str]], list[list[str]]]:
    """(every measurement, the best per concurrency), each with its header row first."""
    every = [
        [
            "round", "candidate", "concurrency", "throughput/s (min-max)",
            "p50 ms", "p99 ms", "server CPU (cores)", "RSS MiB",
        ]
    ]  # fmt: skip
    for m in result.measured:
        for c in result.options.concurrency:
            every.append([str(m.round), m.candidate.label, str(c), *_cell(m, c)])
    best = [
        ["concurrency", "best config", "throughput/s", "p99 ms", "frontier (throughput/s @ p99 ms)"]
    ]
    for c in result.options.concurrency:
        chosen = result.best.get(c)
        edge = ", ".join(
            f"{_name(m)}: {m.median(c, 'throughput'):,.0f} @ {m.median(c, 'p99_ms'):.1f}"
            for m in frontier(result, c)
        )
        if chosen is None:
            best.append([str(c), "none meets the budget", "-", "-", edge])
        else:
            best.append(
                [
                    str(c),
                    _name(chosen),
                    f"{chosen.median(c, 'throughput'):,.0f}",
                    f"{chosen.median(c, 'p99_ms'):.2f}",
                    edge,
                ]
            )
    return every, best


def _text(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def _markdown(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    return [lines[0], "|" + "|".join("---" for _ in rows[0]) + "|", *lines[1:]]


def _summary(result: TuneResult) -> list[str]:
    o = result.options
    budget = (
        f"p99 <= {o.latency_budget_ms:g} ms" if o.latency_budget_ms > 0 else "no latency budget"
    )
    lines = [
        f"load: {result.generator}, {o.seconds:g} s per measurement, {o.repetitions} "
        f"interleaved repetitions; {budget}; a candidate wins only when its slowest "
        "repetition beats the best's fastest",
        *result.notes,
    ]
    target = max(o.concurrency)
    chosen = result.chosen
    if chosen is None:
        lines.append(f"chosen: nothing meets the budget at concurrency {target}")
    else:
        lines.append(f"chosen (best at concurrency {target}): {chosen.candidate.label}")
    return lines


def render(result: TuneResult, markdown: bool) -> str:
    every, best = tables(result)
    fmt = _markdown if markdown else _text
    title = f"tune: model '{result.model}' version {result.version}"
    head = [f"# {title}", ""] if markdown else [title, ""]
    return "\n".join([*head, *fmt(every), "", *fmt(best), "", *_summary(result)]) + "\n"


def to_json(result: TuneResult) -> dict[str, Any]:
    def clean(value: float) -> float | None:
        return None if math.isnan(value) or math.isinf(value) else value

    return {
        "model": result.model,
        "version": result.version,
        "generator": result.generator,
        "options": vars(result.options),
        "notes": result.notes,
        "candidates": [
            {
                "round": m.round,
                "settings": m.candidate.settings,
                "failure": m.failure,
                "samples": {str(c): [vars(s) for s in ss] for c, ss in m.samples.items()},
                "median": {
                    str(c): {k: clean(m.median(c, k)) for k in ("throughput", "p50_ms", "p99_ms")}
                    for c in m.samples
                },
            }
            for m in result.measured
        ],
        "best": {str(c): m.candidate.settings if m else None for c, m in result.best.items()},
        "chosen": result.chosen.candidate.settings if result.chosen else None,
    }


def plot(result: TuneResult, path: Path) -> str:
    """p99 against throughput, one marker per candidate and concurrency; matplotlib is optional."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install 'onnxserve[tools]')"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for m in result.measured:
        points = [(m.median(c, "throughput"), m.median(c, "p99_ms")) for c in m.samples]
        points = [p for p in points if not math.isnan(p[0])]
        if points:
            style = "o-" if m.round == 1 else "s--"
            axes.plot(*zip(*points, strict=True), style, label=_name(m))
    axes.set_xlabel("throughput (inferences/s)")
    axes.set_ylabel("p99 latency (ms, log scale)")
    axes.set_yscale("log")  # one overloaded candidate would flatten all the others
    axes.set_title(f"{result.model}: one line per candidate, one point per concurrency")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"plot: {path}"


def _compact(config: ModelConfig) -> dict[str, Any]:
    """config.yaml data without the keys that hold their default value, so the written file
    (and the diff) show what the user set and what tune changed, not every default."""
    defaults = config_to_dict(ModelConfig(name=config.name, dynamic_batching=DynamicBatching()))
    data = config_to_dict(config)
    data.pop("name")  # the folder names the model
    for key in list(data):
        default = defaults.get(key)
        if isinstance(data[key], dict) and isinstance(default, dict):
            data[key] = {k: v for k, v in data[key].items() if default.get(k) != v}
        if key in ("backend", "dynamic_batching"):
            continue  # said even when default; an empty dynamic_batching turns batching on
        if data[key] == default or data[key] in ({}, []):
            del data[key]
    for warmup in data.get("model_warmup", []):
        plain = config_to_dict(dataclasses.replace(config, model_warmup=(Warmup(warmup["name"]),)))
        for k, v in plain["model_warmup"][0].items():
            if warmup.get(k) == v and k != "name":
                del warmup[k]
    return data


def report_and_write(result: TuneResult, model_dir: Path, write: bool, out: TextIO) -> None:
    out.write(render(result, markdown=False))
    (model_dir / "tune-report.md").write_text(render(result, markdown=True))
    (model_dir / "tune-report.json").write_text(json.dumps(to_json(result), indent=2) + "\n")
    out.write(f"report: {model_dir / 'tune-report.md'}, {model_dir / 'tune-report.json'}\n")
    out.write(plot(result, model_dir / "tune-plot.png") + "\n")
    if result.chosen is None or not result.chosen.candidate.settings:
        out.write("config.yaml: unchanged (the starting config is the best measured)\n")
        return
    path = model_dir / CONFIG_FILE
    old = path.read_text()
    new = dump_yaml(
        _compact(tune_space.apply(load_model_config(model_dir), result.chosen.candidate))
    )
    if write:
        (model_dir / (CONFIG_FILE + ".bak")).write_text(old)
        staged = model_dir / f".{CONFIG_FILE}.tune"
        staged.write_text(new)
        staged.rename(path)  # in one step, for a server polling the repository
        out.write(f"config.yaml: written; the old one is {CONFIG_FILE}.bak\n")
    else:
        diff = difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), "config.yaml", "tuned"
        )
        out.write("".join(diff) + "(not written: pass --write to apply it)\n")
