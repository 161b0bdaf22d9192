"""Client subcommands of `onnxserve`: infer, models, health (server/cli.py registers them).

Every failure is one line on stderr and exit code 1: server unreachable, unknown model, an input
file that is missing or not what it claims to be.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from clients.client import InferenceServerClient
from clients.errors import InferenceServerError
from server.datatypes import BY_NAME, from_numpy

Command = Callable[[argparse.Namespace], int]

_NPY_MAGIC = b"\x93NUMPY"


class InputError(Exception):
    """A --input the command cannot turn into an array."""


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    connection = argparse.ArgumentParser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--url", default="localhost:8001", help="server host:port (localhost:8001)")
    group.add_argument("--timeout", type=float, help="seconds before a call gives up")
    group.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CAs")
    group.add_argument("--tls-ca-cert", type=Path, help="PEM CA that signed the server (TLS)")
    group.add_argument("--tls-cert", type=Path, help="PEM client certificate (mutual TLS)")
    group.add_argument("--tls-key", type=Path, help="PEM key of --tls-cert (mutual TLS)")

    p = sub.add_parser("infer", parents=[connection], help="run one inference request")
    p.add_argument("model", help="model name")
    p.add_argument(
        "--input",
        "-i",
        action="append",
        required=True,
        metavar="NAME=VALUE",
        help="an input: NAME=file.npy, NAME=@file.json or NAME='[[1, 2], [3, 4]]' (once per "
        "input); JSON values take the model's datatype unless --datatype says otherwise",
    )
    p.add_argument(
        "--datatype",
        action="append",
        default=[],
        metavar="NAME=DATATYPE",
        help="protocol datatype of a JSON input, e.g. INPUT0=FP32",
    )
    p.add_argument("--output", "-o", action="append", metavar="NAME", help="only these outputs")
    p.add_argument("--model-version", default="", help="version to use (default: latest ready)")
    p.add_argument(
        "--output-dir", type=Path, help="save each output as NAME.npy here instead of printing"
    )

    p = sub.add_parser("models", parents=[connection], help="list the repository's models")
    p.add_argument("--ready", action="store_true", help="only models that are ready")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("health", parents=[connection], help="is the server live and ready?")
    p.add_argument("--model", action="append", default=[], help="also check this model (repeat)")
    return {"infer": _guarded(_infer), "models": _guarded(_models), "health": _guarded(_health)}


def _guarded(command: Command) -> Command:
    """Failures become one line on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except InferenceServerError as error:
            _fail(_describe(error, args.url))
        except (InputError, ValueError) as error:
            _fail(str(error))
        return 1

    return run


def _fail(message: str) -> None:
    print(f"onnxserve: error: {message}", file=sys.stderr)


def _describe(error: InferenceServerError, url: str) -> str:
    # grpc's own wording when no connection could be made (refused, unresolvable, timed out).
    if error.code == grpc.StatusCode.UNAVAILABLE and (
        "failed to connect" in error.message or "DNS resolution failed" in error.message
    ):
        return f"cannot reach the server at {url}: {error.message}"
    return f"{error.code.name}: {error.message}"


def _client(args: argparse.Namespace) -> InferenceServerClient:
    return InferenceServerClient(
        args.url,
        timeout=args.timeout,
        tls=args.tls,
        root_certificates=args.tls_ca_cert,
        certificate_chain=args.tls_cert,
        private_key=args.tls_key,
    )


# --- infer ---------------------------------------------------------------------------------


def _infer(args: argparse.Namespace) -> int:
    datatypes = dict(_pair(d, "--datatype") for d in args.datatype)
    with _client(args) as client:
        inputs = _read_inputs(client, args.model, args.model_version, args.input, datatypes)
        outputs = client.infer(args.model, inputs, args.output, args.model_version)
    if args.output_dir is not None:
        _save(outputs, args.output_dir)
    else:
        print(json.dumps({"model": args.model, "outputs": _jsonable(outputs)}, indent=2))
    return 0


def _read_inputs(
    client: InferenceServerClient,
    model: str,
    version: str,
    specs: list[str],
    datatypes: dict[str, str],
) -> dict[str, np.ndarray]:
    declared: dict[str, str] | None = None
    inputs = {}
    for spec in specs:
        name, value = _pair(spec, "--input")
        if not _is_json(value):
            inputs[name] = _load_npy(name, value)
            continue
        data = _load_json(name, value)
        datatype = datatypes.get(name)
        if datatype is None:  # the model says what a JSON list should become
            if declared is None:
                metadata = client.model_metadata(model, version)
                declared = {t["name"]: t["datatype"] for t in metadata["inputs"]}
            datatype = declared.get(name)
            if datatype is None:
                raise InputError(f"model '{model}' has no input '{name}'")
        if datatype not in BY_NAME:
            raise InputError(f"input '{name}': unknown datatype '{datatype}'")
        try:
            inputs[name] = np.array(data, dtype=BY_NAME[datatype].numpy)
        except (TypeError, ValueError, OverflowError) as error:
            raise InputError(f"input '{name}': cannot make a {datatype} array: {error}") from None
    return inputs


def _pair(spec: str, option: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name or not value:
        raise InputError(f"{option} expects NAME=VALUE, got '{spec}'")
    return name, value


def _is_json(value: str) -> bool:
    # "@file.json" or "file.json": a JSON file; "[...]": inline JSON; anything else: a .npy file.
    return value.startswith("@") or value.endswith(".json") or value.lstrip().startswith("[")


def _load_json(name: str, value: str) -> Any:
    text = value
    if not value.lstrip().startswith("["):
        path = Path(value.removeprefix("@"))
        try:
            text = path.read_text()
        except OSError as error:
            raise InputError(f"input '{name}': cannot read {path}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"input '{name}': not valid JSON: {error}") from None


def _load_npy(name: str, value: str) -> np.ndarray:
    path = Path(value)
    try:
        with path.open("rb") as file:
            if file.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                raise InputError(f"input '{name}': {path} is not a .npy file")
            file.seek(0)
            return np.load(file, allow_pickle=False)
    except OSError as error:
        raise InputError(f"input '{name}': cannot read {path}: {error.strerror}") from None
    except ValueError as error:  # a damaged header, or an array of Python objects
        raise InputError(f"input '{name}': cannot load {path}: {error}") from None


def _jsonable(outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    for name, array in outputs.items():
        datatype = from_numpy(array.dtype).name
        data = array.tolist()
        if datatype == "BYTES":
            data = _text(data)
        out[name] = {"datatype": datatype, "shape": list(array.shape), "data": data}
    return out


def _text(data: Any) -> Any:
    if isinstance(data, list):
        return [_text(item) for item in data]
    return data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data


def _save(outputs: dict[str, np.ndarray], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in outputs.items():
        path = directory / f"{name}.npy"
        np.save(path, array)
        print(f"{name}: {array.dtype} {list(array.shape)} -> {path}")


# --- models and health ---------------------------------------------------------------------


def _models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.repository_index(ready_only=args.ready)
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    rows = [("MODEL", "VERSION", "STATE", "REASON")]
    rows += [(m["name"], m["version"] or "-", m["state"], m["reason"]) for m in models]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, version, state, reason in rows:
        cells = (name.ljust(widths[0]), version.ljust(widths[1]), state.ljust(widths[2]), reason)
        print("  ".join(cells).rstrip())
    return 0


def _health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        live = client.is_server_live()
        ready = client.is_server_ready()
        models = {m: client.is_model_ready(m) for m in args.model}
    print(f"server {args.url}: {'live' if live else 'not live'}, {_ready(ready)}")
    for model, model_ready in models.items():
        print(f"model {model}: {_ready(model_ready)}")
    return 0 if live and ready and all(models.values()) else 1


def _ready(ready: bool) -> str:
    return "ready" if ready else "not ready"
