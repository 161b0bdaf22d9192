"""The `onnxserve` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from server.app import Settings, serve


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
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")


def _run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = Settings(
        model_repository=args.model_repository,
        host=args.host,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_message_bytes=args.max_message_bytes,
        shutdown_timeout=args.shutdown_timeout,
    )
    asyncio.run(serve(settings))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onnxserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    args = parser.parse_args(argv)
    commands = {"serve": _run_serve}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
