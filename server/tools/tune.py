"""`onnxserve tune`: candidate configs served by real servers, measured under load, one chosen.

Every candidate of a round gets its own server (a subprocess on free ports, serving a scratch
copy of the model version with the candidate's config.yaml). The round measures each candidate
at each concurrency `repetitions` times, rotating the order each time, so that a slow spell
of a shared machine falls on every candidate rather than on one. A candidate replaces the
current best only when its slowest repetition was faster than the best's fastest (their
ranges do not overlap: the gain exceeds the noise), and only while its median p99 stays
within the latency budget.

Round 1 is the starting (completed) config and each axis varied alone; round 2, if winners on
two or more axes make a new combination and the time budget allows, measures again side by
side the start, each concurrency's round-1 winner and the combination, which replaces a
round-1 winner only by beating it there. The config chosen is the best at the highest
concurrency asked for.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import ConfigError
from server.launcher import ServerLauncher
from server.model import load_sessions
from server.model_config import (
    CONFIG_FILE,
    InstanceGroup,
    ModelConfig,
    dump_yaml,
    load_model_config,
)
from server.repository.scanner import list_versions
from server.tools import tune_space
from server.tools.load_runner import perf_analyzer, run_load
from server.tools.progress import Progress
from server.tools.tune_space import Candidate

_STARTUP_SECONDS = 5.0  # a round's servers starting side by side, for the time estimate
_OVERHEAD_SECONDS = 1.0  # a load generator process starting, per measurement


@dataclass(frozen=True)
class TuneOptions:
    concurrency: list[int] = field(default_factory=lambda: [1, 16, 64])
    latency_budget_ms: float = 0.0  # 0: none
    axes: list[str] | None = None  # None: all of tune_space.AXES
    values: dict[str, list[Any]] = field(default_factory=dict)  # axis -> values to try
    seconds: float = 3.0
    repetitions: int = 3
    time_budget: float = 600.0
    generator: str = "auto"


@dataclass(frozen=True)
class Sample:
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_cores: float  # the server's CPU time over the measurement's wall time
    rss_bytes: int
    failure: str = ""


@dataclass
class Measured:
    candidate: Candidate
    round: int
    samples: dict[int, list[Sample]] = field(default_factory=dict)  # by concurrency
    failure: str = ""  # the server did not start

    def median(self, concurrency: int, key: str) -> float:
        values = [getattr(s, key) for s in self.samples.get(concurrency, []) if not s.failure]
        return statistics.median(values) if values else float("nan")

    def throughputs(self, concurrency: int) -> list[float]:
        return [s.throughput for s in self.samples.get(concurrency, []) if not s.failure]

    def lowest(self, concurrency: int) -> float:
        return min(self.throughputs(concurrency), default=float("nan"))

    def highest(self, concurrency: int) -> float:
        return max(self.throughputs(concurrency), default=float("nan"))

    def usable(self, concurrency: int) -> bool:
        samples = self.samples.get(concurrency, [])
        return bool(samples) and all(not s.failure and s.errors == 0 for s in samples)


@dataclass
class TuneResult:
    model: str
    version: int
    start: ModelConfig  # completed
    options: TuneOptions
    generator: str
    measured: list[Measured]
    best: dict[int, Measured | None]  # by concurrency
    chosen: Measured | None
    notes: list[str]


def tune(model_dir: Path, options: TuneOptions) -> TuneResult:
    began = time.monotonic()
    if not (model_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{model_dir}: tune needs a {CONFIG_FILE}")
    axes = options.axes or list(options.values) or list(tune_space.AXES)
    unknown = [a for a in axes if a not in tune_space.AXES]
    if unknown:
        raise ConfigError(f"unknown axes {unknown}: expected some of {list(tune_space.AXES)}")
    config = load_model_config(model_dir)
    versions = list_versions(model_dir)
    if not versions:
        raise ConfigError(f"{model_dir}: no version folder with a model")
    version = versions[-1]
    single = dataclasses.replace(
        config, instance_group=InstanceGroup(1, config.instance_group.kind)
    )
    completed = load_sessions(model_dir, version, single, str(model_dir)).config
    start = dataclasses.replace(completed, instance_group=config.instance_group)
    generator = options.generator
    if generator == "auto":
        generator = "perf_analyzer" if perf_analyzer() else "grpc-aio"
    elif generator == "perf_analyzer" and not perf_analyzer():
        raise ConfigError("--generator perf_analyzer: perf_analyzer is not on PATH")

    notes = [f"{a}: skipped, {why}" for a, why in tune_space.skipped_axes(start, axes).items()]
    candidates = tune_space.first_round(start, axes, options.values)
    fits = _fitting(len(candidates), options, options.time_budget)
    if fits < len(candidates):
        kept = max(1, fits)  # the start is always measured
        notes.append(f"time budget: round 1 measured {kept} of {len(candidates)} candidates")
        candidates = candidates[:kept]
    target = max(options.concurrency)
    with tempfile.TemporaryDirectory(prefix="onnxserve-tune-") as scratch:
        run = _RoundRunner(model_dir, version, start, options, generator, Path(scratch))
        measured = run.round(1, candidates)
        best = _bests(measured, options)
        refine = _second_round(measured, best, target, axes, options)
        remaining = options.time_budget - (time.monotonic() - began)
        taken = run.measurement_seconds()
        if refine and _fitting(len(refine), options, remaining, taken) >= len(refine):
            second = run.round(2, refine)
            measured += second
            best = _refined(best, second, options)
        elif refine:
            notes.append("time budget: no refinement round")
    return TuneResult(
        start.name, version, start, options, generator, measured, best, best[target], notes
    )


def _fitting(
    count: int, options: TuneOptions, seconds_left: float, measurement: float | None = None
) -> int:
    """How many candidates one round can measure in the time left; `measurement` is the wall
    time one measurement took so far, when known (a busy machine starts processes slowly)."""
    if measurement is None:
        measurement = options.seconds + _warmup(options) + _OVERHEAD_SECONDS
    per_candidate = len(options.concurrency) * options.repetitions * measurement
    return min(count, int(max(0.0, seconds_left - _STARTUP_SECONDS) // per_candidate))


def _warmup(options: TuneOptions) -> float:
    return min(1.0, options.seconds / 3)


def _second_round(
    measured: list[Measured],
    best: dict[int, Measured | None],
    target: int,
    axes: list[str],
    options: TuneOptions,
) -> list[Candidate]:
    """The refinement round: empty unless winners on two or more axes make a new combination."""
    start = measured[0]
    winners: list[Candidate] = []
    for axis in axes:
        on_axis = [m for m in measured if list(m.candidate.settings) == [axis]]
        good = [m for m in on_axis if _beats(m, start, target, options)]
        if good:
            winners.append(max(good, key=lambda m: m.median(target, "throughput")).candidate)
    mixed = tune_space.combined(winners)
    if mixed is None:
        return []
    picks = [start.candidate]
    for m in best.values():
        if m is not None and m.candidate not in picks:
            picks.append(m.candidate)
    return [*picks, mixed] if mixed not in picks else picks


def _within_budget(m: Measured, concurrency: int, options: TuneOptions) -> bool:
    if not m.usable(concurrency):
        return False
    budget = options.latency_budget_ms
    return budget <= 0 or m.median(concurrency, "p99_ms") <= budget


def _beats(a: Measured, b: Measured, concurrency: int, options: TuneOptions) -> bool:
    """a meets the budget and its slowest repetition beat b's fastest: a gain beyond the noise."""
    if not _within_budget(a, concurrency, options):
        return False
    if not _within_budget(b, concurrency, options):
        return True
    return a.lowest(concurrency) > b.highest(concurrency)


def _bests(measured: list[Measured], options: TuneOptions) -> dict[int, Measured | None]:
    """Per concurrency: the fastest candidate that beats the start beyond the noise, else the
    start (the round's first candidate) if it meets the budget, else None."""
    best: dict[int, Measured | None] = {}
    for c in options.concurrency:
        start = measured[0]
        better = [m for m in measured[1:] if _beats(m, start, c, options)]
        if better:
            best[c] = max(better, key=lambda m: m.median(c, "throughput"))
        else:
            best[c] = start if _within_budget(start, c, options) else None
    return best


def _refined(
    best: dict[int, Measured | None], second: list[Measured], options: TuneOptions
) -> dict[int, Measured | None]:
    """Round 1's best at each concurrency, unless the combination (round 2's last candidate)
    beat it when the two ran side by side in round 2."""
    mixed = second[-1]
    refined = dict(best)
    for c, first in best.items():
        if first is None:
            rival = next((m for m in second if m.candidate == Candidate()), None)
        else:
            rival = next((m for m in second if m.candidate == first.candidate), None)
        if rival is not None and rival is not mixed and _beats(mixed, rival, c, options):
            refined[c] = mixed
    return refined


class _RoundRunner:
    def __init__(
        self,
        model_dir: Path,
        version: int,
        start: ModelConfig,
        options: TuneOptions,
        generator: str,
        scratch: Path,
    ) -> None:
        self.model_dir, self.version, self.start = model_dir, version, start
        self.options, self.generator, self.scratch = options, generator, scratch
        self._walls: list[float] = []

    def measurement_seconds(self) -> float | None:
        return statistics.mean(self._walls) if self._walls else None

    def round(self, number: int, candidates: list[Candidate]) -> list[Measured]:
        measured = [Measured(c, number) for c in candidates]
        servers = [self._launch(number, i, c) for i, c in enumerate(candidates)]
        options = self.options
        steps = len(candidates) * len(options.concurrency) * options.repetitions
        progress = Progress(steps + 1)
        try:
            progress.step(f"round {number}: starting {len(servers)} server(s)")
            # All spawned first, then waited for: their models load side by side.
            for m, server in zip(measured, servers, strict=True):
                self._start(m, server, lambda s: s.start(wait_ready=False, timeout=120))
            for m, server in zip(measured, servers, strict=True):
                self._start(m, server, lambda s: s.wait_ready(timeout=120))
            for repetition in range(options.repetitions):
                # Rotated each repetition, so no candidate always follows the same one.
                shift = repetition % len(measured)
                order = list(zip(measured, servers, strict=True))
                order = order[shift:] + order[:shift]
                for c in options.concurrency:
                    for m, server in order:
                        progress.step(f"round {number}: {m.candidate.label}, concurrency {c}")
                        if not m.failure:
                            m.samples.setdefault(c, []).append(self._measure(server, c))
        finally:
            progress.close()
            for server in servers:
                server.terminate()
            for server in servers:
                server.stop()
        return measured

    def _launch(self, number: int, index: int, candidate: Candidate) -> ServerLauncher:
        repo = self.scratch / f"round{number}-{index}"
        model = repo / self.start.name
        shutil.copytree(self.model_dir / str(self.version), model / str(self.version))
        config = tune_space.apply(self.start, candidate)
        (model / CONFIG_FILE).write_text(dump_yaml(config))
        return ServerLauncher(repo, log_path=repo / "server.log")

    def _start(
        self, measured: Measured, server: ServerLauncher, step: Callable[[ServerLauncher], object]
    ) -> None:
        if measured.failure:
            return
        try:
            step(server)
        except (RuntimeError, TimeoutError) as error:
            lines = str(error).strip().splitlines()
            measured.failure = lines[-1] if lines else "did not start"

    def _measure(self, server: ServerLauncher, concurrency: int) -> Sample:
        cpu, wall = server.cpu_seconds(), time.monotonic()
        load = run_load(
            self.generator,
            server.address,
            self.start.name,
            concurrency,
            self.options.seconds,
            _warmup(self.options),
        )
        elapsed = time.monotonic() - wall
        self._walls.append(elapsed)
        # Over the time under load (warm-up included): the generator's own start-up is idle.
        loaded = self.options.seconds + _warmup(self.options)
        cores = (server.cpu_seconds() - cpu) / min(loaded, elapsed)
        return Sample(
            load.throughput,
            load.p50_ms,
            load.p99_ms,
            load.errors,
            cores,
            server.rss_bytes(),
            load.failure,
        )
