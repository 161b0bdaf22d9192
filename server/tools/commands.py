"""The options of `onnxserve optimize` and `onnxserve tune`; server/cli.py registers them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from server.errors import ConfigError
from server.observability.logs import configure_logging

Command = Callable[[argparse.Namespace], int]


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    _optimize_parser(sub)
    _tune_parser(sub)
    return {"optimize": _run_optimize, "tune": _run_tune}


def _optimize_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "optimize",
        help="make faster variants of a model version (graph optimized, int8, fp16), measure "
        "each against it, and with --write add the best accepted one as a new version",
    )
    p.add_argument("model_dir", type=Path, help="the model's folder (holding config.yaml)")
    p.add_argument("--version", type=int, help="the version to start from (default: highest)")
    p.add_argument(
        "--samples",
        type=Path,
        help="real inputs: an .npz with one array per input name, or a folder of NAME.npy "
        "files (rows along the first dimension); default: random inputs from the config",
    )
    p.add_argument(
        "--max-abs-error",
        type=float,
        default=0.01,
        help="largest error on any float output (default 0.01)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="smallest share of rows with the same top-1 class or label (default 0.99)",
    )
    p.add_argument(
        "--min-speedup",
        type=float,
        default=1.0,
        help="smallest speed-up over the original, geometric mean over batch sizes (default 1)",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="timing per variant (default 3)")
    p.add_argument(
        "--write",
        action="store_true",
        help="write the fastest accepted variant as the next version folder",
    )


def _run_optimize(args: argparse.Namespace) -> int:
    configure_logging("WARNING", "text")
    from server.tools.optimize import Thresholds, optimize
    from server.tools.optimize_report import text_table, write_reports

    thresholds = Thresholds(args.max_abs_error, args.min_agreement, args.min_speedup)
    try:
        report = optimize(
            args.model_dir, args.version, args.samples, thresholds, args.write, args.seconds
        )
    except ConfigError as error:
        print(f"onnxserve optimize: {error}", file=sys.stderr)
        return 2
    print(text_table(report))
    for path in write_reports(report, args.model_dir):
        print(f"report: {path}")
    if args.write and report.written is None:
        print("nothing written: no variant was accepted")
    return 0


def _tune_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="serve a scratch copy of a model under candidate configs, drive each with load, "
        "and report (or with --write apply) the best config within a latency budget",
    )
    p.add_argument("model_dir", type=Path, help="the model's folder (holding config.yaml)")
    p.add_argument(
        "--latency-budget-ms", type=float, default=0.0, help="p99 limit (default 0: none)"
    )
    p.add_argument(
        "--concurrency",
        type=_int_list,
        default=[1, 16, 64],
        help="requests in flight, comma-separated (default 1,16,64)",
    )
    p.add_argument(
        "--axes",
        type=_name_list,
        default=None,
        help="config keys to vary, comma-separated (default: all of instances, threads, "
        "max_batch_size, preferred_batch_size, queue_delay)",
    )
    p.add_argument(
        "--try",
        dest="values",
        type=_axis_values,
        action="append",
        default=[],
        metavar="AXIS=V1,V2",
        help="the values to try on one axis instead of the built-in ones (repeatable); "
        "preferred_batch_size lists take '/': preferred_batch_size=4/8,16",
    )
    p.add_argument("--seconds", type=float, default=3.0, help="load per measurement (default 3)")
    p.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="interleaved measurements of each candidate (default 3)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=600.0,
        help="seconds for the whole search; later rounds are dropped (default 600)",
    )
    p.add_argument(
        "--generator",
        choices=["auto", "grpc-aio", "perf_analyzer"],
        default="auto",
        help="load generator: perf_analyzer when on PATH (auto, default), else grpc.aio",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="write the chosen config.yaml (the old one kept as config.yaml.bak)",
    )


def _run_tune(args: argparse.Namespace) -> int:
    configure_logging("WARNING", "text")
    from server.tools.tune import TuneOptions, tune
    from server.tools.tune_report import report_and_write

    options = TuneOptions(
        concurrency=args.concurrency,
        latency_budget_ms=args.latency_budget_ms,
        axes=args.axes,
        values=dict(args.values),
        seconds=args.seconds,
        repetitions=args.repetitions,
        time_budget=args.time_budget,
        generator=args.generator,
    )
    try:
        result = tune(args.model_dir, options)
    except ConfigError as error:
        print(f"onnxserve tune: {error}", file=sys.stderr)
        return 2
    report_and_write(result, args.model_dir, args.write, sys.stdout)
    return 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,16,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of at least 1, got {text!r}")
    return values


def _axis_values(text: str) -> tuple[str, list[object]]:
    from server.tools.tune_space import parse_values

    try:
        return parse_values(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]
