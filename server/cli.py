"""The `onnxserve` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from pathlib import Path

from clients import cli as client_cli
from server.errors import ConfigError, ListenError
from server.observability.logs import FORMATS, LEVELS, configure_logging
from server.repository.control_mode import ControlMode
from server.tools import commands as tool_commands

# The server's own modules (onnxruntime, the repository, the gRPC frontend) are imported by the
# commands that need them, so client commands such as `onnxserve health` start quickly.


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model repository over gRPC")
    p.add_argument("--model-repository", type=Path, required=True, help="the models folder")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus port (default 8002)")
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="largest gRPC message received or sent (default 64 MiB)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds to finish in-flight requests on SIGTERM (default 30)",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        default="INFO",
        help="DEBUG, INFO (default), WARNING or ERROR",
    )
    p.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text (default) or json: one JSON object per line",
    )
    p.add_argument(
        "--log-slow-ms",
        type=float,
        default=0.0,
        help="log requests whose queue + compute time exceeds this, with their timings "
        "(default 0: off)",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve gRPC over TLS")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA bundle: require client certificates signed by it (mutual TLS)",
    )
    p.add_argument(
        "--strict-readiness",
        type=_yes_no,
        default=True,
        metavar="true|false",
        help="true (default, as Triton): the server is ready only while every model loaded at"
        " start has a ready version; false: ready once the start-up load has finished",
    )
    _lifecycle_arguments(p)
    _cache_arguments(p)


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _lifecycle_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-control-mode",
        choices=[mode.value for mode in ControlMode],
        default=ControlMode.NONE.value,
        help="none (default): load every model at start; poll: also rescan the repository and"
        " load, reload or unload what changed; explicit: load only --load-model models and"
        " what clients load through the repository RPCs",
    )
    p.add_argument(
        "--repository-poll-secs",
        type=float,
        default=5.0,
        help="seconds between rescans in poll mode (default 5)",
    )
    p.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="NAME",
        help="explicit mode: a model to load at start (repeatable; '*' loads every model)",
    )
    p.add_argument(
        "--model-load-thread-count",
        type=int,
        default=4,
        help="models loaded side by side at start (default 4); 1 loads them one by one",
    )


def _lifecycle_problem(args: argparse.Namespace) -> str | None:
    if args.load_model and args.model_control_mode != ControlMode.EXPLICIT.value:
        return "--load-model needs --model-control-mode explicit"
    if not args.repository_poll_secs > 0:
        return "--repository-poll-secs must be more than 0"
    if args.model_load_thread_count < 1:
        return "--model-load-thread-count must be at least 1"
    return None


def _cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache",
        default="",
        metavar="local|redis://HOST:PORT/DB",
        help="response cache for models with response_cache {enable: true}: local (in this"
        " process) or a Redis URL (redis://, rediss:// for TLS, user:password@ allowed) shared"
        " by replicas; default: none, and such models fail to load",
    )
    p.add_argument(
        "--cache-size",
        type=_byte_size,
        default=256 * 1024 * 1024,
        metavar="BYTES",
        help="local cache: bytes held, keys and values counted (suffixes K, M, G; default 256M)",
    )
    p.add_argument(
        "--cache-ttl",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="Redis cache: seconds an entry lives (default 0: until Redis evicts it)",
    )
    p.add_argument(
        "--cache-timeout-ms",
        type=float,
        default=50.0,
        help="Redis cache: bound on each call; a slower one is skipped and the request runs"
        " (default 50)",
    )
    p.add_argument(
        "--cache-password-file", type=Path, help="Redis cache: file holding the password"
    )
    p.add_argument("--cache-tls-ca", type=Path, help="Redis cache (rediss://): PEM CA bundle")


def _byte_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    scale = units.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes, got {text!r}")
    return int(digits) * scale


def _cache_problem(args: argparse.Namespace) -> str | None:
    cache = args.cache
    redis = cache.startswith(("redis://", "rediss://", "unix://"))
    if cache and cache != "local" and not redis:
        return f"--cache: expected local or a redis://, rediss:// or unix:// URL, got {cache!r}"
    if not redis and (args.cache_ttl or args.cache_password_file or args.cache_tls_ca):
        return "--cache-ttl, --cache-password-file and --cache-tls-ca need --cache redis://..."
    if args.cache_ttl < 0 or not args.cache_timeout_ms > 0:
        return "--cache-ttl must be 0 or more and --cache-timeout-ms more than 0"
    return None


def _check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate every model of a repository without serving: prints each completed"
        " config and every problem; exits 1 on any problem",
    )
    p.add_argument("--model-repository", type=Path, required=True, help="the models folder")


def _run_check(args: argparse.Namespace) -> int:
    # Problems are printed; warnings (e.g. a provider this machine lacks) go to stderr.
    configure_logging("WARNING", "text")
    from server.check import check_repository
    from server.grpc.config_proto import TRITON_FORMAT
    from server.repository.configs import ConfigSource

    problems = check_repository(args.model_repository, ConfigSource(TRITON_FORMAT), sys.stdout)
    return 1 if problems else 0


def _run_serve(args: argparse.Namespace) -> int:
    gc.disable()  # until ready, as in server/__main__.py: serve() turns it back on
    from server.app import Settings, serve

    problem = _tls_problem(args) or _lifecycle_problem(args) or _cache_problem(args)
    if problem:
        print(f"onnxserve serve: {problem}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, args.log_format)
    settings = Settings(
        model_repository=args.model_repository,
        host=args.host,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_message_bytes=args.max_message_bytes,
        shutdown_timeout=args.shutdown_timeout,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        log_slow_ms=args.log_slow_ms,
        strict_readiness=args.strict_readiness,
        model_control_mode=ControlMode(args.model_control_mode),
        repository_poll_secs=args.repository_poll_secs,
        load_models=tuple(args.load_model),
        model_load_threads=args.model_load_thread_count,
        cache=args.cache,
        cache_size=args.cache_size,
        cache_ttl=args.cache_ttl,
        cache_timeout_ms=args.cache_timeout_ms,
        cache_password_file=args.cache_password_file,
        cache_tls_ca=args.cache_tls_ca,
    )
    try:
        asyncio.run(serve(settings))
    except ConfigError as error:
        print(f"onnxserve: {error}", file=sys.stderr)
        return 2
    except ListenError as error:
        print(f"onnxserve: {error}", file=sys.stderr)
        return 1
    return 0


def _tls_problem(args: argparse.Namespace) -> str | None:
    if (args.tls_cert is None) != (args.tls_key is None):
        return "--tls-cert and --tls-key go together"
    if args.tls_client_ca is not None and args.tls_cert is None:
        return "--tls-client-ca needs --tls-cert and --tls-key"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnxserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _check_parser(sub)
    commands = {
        "serve": _run_serve,
        "check": _run_check,
        **tool_commands.register(sub),
        **client_cli.register(sub),
    }
    args = parser.parse_args(argv)
    if args.command != "serve":
        gc.enable()  # off for start-up only (server/__main__.py)
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
