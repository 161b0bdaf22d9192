"""`onnxserve optimize`: variants of a model version, measured against it, written on request.

Each variant is made by onnxruntime's own tooling (server/backends/variants.py), loaded the way
the server loads the original (the config's session options, one instance), fed the same
inputs, and timed in interleaved rounds so that a noisy machine slows every variant alike.
A variant is accepted only when it stays within the accuracy thresholds and is not slower; with
--write the fastest accepted one becomes the model's next version folder, renamed into place
whole so that a server polling the repository never sees half of it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from server.backends import onnxruntime as backend
from server.backends import variants
from server.errors import ConfigError
from server.model import load_sessions
from server.model_config import MODEL_FILE, InstanceGroup, ModelConfig, load_model_config
from server.repository.scanner import list_versions
from server.tools import samples as sample_inputs
from server.tools.accuracy import OutputError, compare, worst
from server.tools.progress import Progress

QUANTIZABLE = {"MatMul", "Conv", "Gemm"}
ROUNDS = 3  # interleaved timing rounds per variant
MIN_RUNS = 3  # per variant, batch size and round, however long a run takes


@dataclass(frozen=True)
class Thresholds:
    max_abs_error: float = 0.01  # on any float output
    min_agreement: float = 0.99  # top-1 agreement on any label or class-score output
    min_speedup: float = 1.0  # original p50 / variant p50, the geometric mean over batch sizes


@dataclass
class Variant:
    name: str
    description: str
    verdict: str = "pending"  # original | accepted | rejected | skipped | failed
    reason: str = ""
    size_bytes: int | None = None
    p50_ms: dict[int, float] = field(default_factory=dict)  # by batch size (0: unbatched)
    speedup: float | None = None
    errors: list[OutputError] = field(default_factory=list)
    folder: Path | None = None  # the temporary folder holding model.onnx


@dataclass
class OptimizeReport:
    model: str
    version: int
    samples: str  # where the inputs came from
    random_inputs: bool
    batch_sizes: list[int]
    thresholds: Thresholds
    variants: list[Variant]
    written: int | None = None  # the version folder written, if any


def _maker(name: str, feeds: list[dict[str, np.ndarray]]) -> Callable[[Path, Path], None]:
    if name == "int8-static":
        return lambda source, target: variants.quantize_static_int8(source, target, feeds)
    return {
        "optimized": variants.optimize_graph,
        "int8-dynamic": variants.quantize_dynamic_int8,
        "fp16": variants.convert_fp16,
    }[name]


DESCRIPTIONS = {
    "original": "the version as it is",
    "optimized": "graph optimized offline (extended level)",
    "int8-dynamic": "int8 weights, activations quantized at run time",
    "int8-static": "int8 QDQ, calibrated on the samples",
    "fp16": "fp16 inside, fp32 inputs and outputs",
}


def _not_applicable(name: str, config: ModelConfig, ops: set[str]) -> str:
    """Why a variant does not apply to this model, or "" when it does."""
    strings = any(t.datatype == "BYTES" for t in config.inputs)
    if name.startswith("int8"):
        if strings:
            return "inputs are strings"
        if not ops & QUANTIZABLE:
            return "no MatMul, Conv or Gemm to quantize"
    if name == "fp16":
        if strings:
            return "inputs are strings"
        if not variants.fp16_providers(config):
            return "no configured execution provider runs fp16 faster (CPU does not)"
    return ""


def optimize(
    model_dir: Path,
    version: int | None = None,
    samples_path: Path | None = None,
    thresholds: Thresholds = Thresholds(),
    write: bool = False,
    seconds: float = 1.0,
) -> OptimizeReport:
    config = load_model_config(model_dir)
    versions = list_versions(model_dir)
    if not versions:
        raise ConfigError(f"{model_dir}: no version folder with a {MODEL_FILE}")
    version = version or versions[-1]
    if version not in versions:
        raise ConfigError(f"{model_dir}: no version {version} (found {versions})")
    original_file = model_dir / str(version) / MODEL_FILE
    single = dataclasses.replace(
        config, instance_group=InstanceGroup(1, config.instance_group.kind)
    )
    loaded = load_sessions(model_dir, version, single, str(model_dir))
    config = loaded.config
    if samples_path is not None:
        inputs, where = sample_inputs.load_samples(samples_path, config), str(samples_path)
    else:
        inputs, where = sample_inputs.generate_samples(config), "generated from the config"
    batch_sizes = _batch_sizes(config)
    largest = max(batch_sizes) or 1
    feeds = sample_inputs.chunks(inputs, config, largest)
    ops = variants.op_types(original_file)

    names = ["optimized", "int8-dynamic", "int8-static", "fp16"]
    progress = Progress(len(names) + 2)
    report = OptimizeReport(
        config.name, version, where, samples_path is None, batch_sizes, thresholds, []
    )
    with tempfile.TemporaryDirectory(prefix=".optimize-", dir=model_dir) as scratch:
        original = Variant("original", DESCRIPTIONS["original"], "original")
        original.size_bytes = original_file.stat().st_size
        report.variants.append(original)
        instances = {"original": loaded.instances[0]}
        for name in names:
            progress.step(f"making {name}")
            variant = Variant(name, DESCRIPTIONS[name])
            report.variants.append(variant)
            variant.reason = _not_applicable(name, config, ops)
            if variant.reason:
                variant.verdict = "skipped"
                continue
            folder = Path(scratch) / name
            folder.mkdir()
            try:
                _maker(name, feeds)(original_file, folder / MODEL_FILE)
                made, _ = backend.create_instances(folder / MODEL_FILE, single)
            except Exception as error:  # the tools raise their own types; report, go on
                variant.verdict, variant.reason = "failed", _first_line(error)
                continue
            variant.folder, variant.size_bytes = folder, (folder / MODEL_FILE).stat().st_size
            instances[name] = made[0]
        progress.step("comparing outputs")
        output_names = [t.name for t in config.outputs]
        expected = [instances["original"].run(output_names, f) for f in feeds]
        for variant in report.variants[1:]:
            if variant.name in instances:
                got = [instances[variant.name].run(output_names, f) for f in feeds]
                variant.errors = _errors(output_names, expected, got, config.batched)
        progress.step("timing")
        timings = _time(instances, output_names, inputs, config, batch_sizes, seconds)
        for variant in report.variants:
            if variant.name in timings:
                variant.p50_ms = timings[variant.name]
                variant.speedup = _speedup(original.p50_ms, variant.p50_ms)
            if variant.verdict == "pending":
                variant.verdict, variant.reason = _verdict(variant, thresholds)
        progress.close()
        if write:
            report.written = _write_best(model_dir, report)
    return report


def _batch_sizes(config: ModelConfig) -> list[int]:
    if not config.batched:
        return [0]
    preferred = config.dynamic_batching.preferred_batch_size if config.dynamic_batching else ()
    assert config.max_batch_size is not None
    largest = max(preferred) if preferred else config.max_batch_size
    return sorted({1, largest})


def _errors(
    names: list[str], expected: list[list[np.ndarray]], got: list[list[np.ndarray]], batched: bool
) -> list[OutputError]:
    errors = []
    for i, name in enumerate(names):
        want = np.concatenate([e[i] for e in expected]) if batched else expected[0][i]
        have = np.concatenate([g[i] for g in got]) if batched else got[0][i]
        errors.append(compare(name, want, have, batched))
    return errors


def _time(
    instances: dict[str, backend.OrtInstance],
    output_names: list[str],
    inputs: dict[str, np.ndarray],
    config: ModelConfig,
    batch_sizes: list[int],
    seconds: float,
) -> dict[str, dict[int, float]]:
    """p50 per variant and batch size, from ROUNDS interleaved rounds of seconds / ROUNDS."""
    durations: dict[tuple[str, int], list[float]] = {}
    slice_seconds = seconds / ROUNDS / max(1, len(batch_sizes))
    for _ in range(ROUNDS):
        for size in batch_sizes:
            feed = sample_inputs.batch(inputs, config, size)
            for name, instance in instances.items():
                instance.run(output_names, feed)  # not timed: caches warm for this shape
                runs = durations.setdefault((name, size), [])
                stop = time.perf_counter() + slice_seconds
                for count in itertools.count(1):
                    start = time.perf_counter()
                    instance.run(output_names, feed)
                    end = time.perf_counter()
                    runs.append(end - start)
                    if end >= stop and count >= MIN_RUNS:
                        break
    timings: dict[str, dict[int, float]] = {}
    for (name, size), runs in durations.items():
        timings.setdefault(name, {})[size] = statistics.median(runs) * 1000
    return timings


def _speedup(original: dict[int, float], variant: dict[int, float]) -> float:
    ratios = [original[size] / variant[size] for size in original if variant.get(size)]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else 0.0


def _verdict(variant: Variant, thresholds: Thresholds) -> tuple[str, str]:
    max_abs, agreement = worst(variant.errors)
    if max_abs is not None and not max_abs <= thresholds.max_abs_error:
        return "rejected", f"max abs error {max_abs:.3g} > {thresholds.max_abs_error:g}"
    if agreement is not None and agreement < thresholds.min_agreement:
        return "rejected", f"agreement {agreement:.1%} < {thresholds.min_agreement:.1%}"
    if variant.speedup is not None and variant.speedup < thresholds.min_speedup:
        return "rejected", f"speed-up {variant.speedup:.2f}x < {thresholds.min_speedup:g}x"
    return "accepted", "within the thresholds"


def _write_best(model_dir: Path, report: OptimizeReport) -> int | None:
    accepted = [v for v in report.variants if v.verdict == "accepted" and v.folder]
    if not accepted:
        return None
    best = max(accepted, key=lambda v: v.speedup or 0.0)
    assert best.folder is not None
    number = max(list_versions(model_dir), default=0) + 1
    # The scratch folder (hidden, beside the versions) is complete before it gets a version's
    # name: one rename on the same file system makes it visible whole.
    best.folder.rename(model_dir / str(number))
    best.reason = f"written as version {number}"
    return number


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]
