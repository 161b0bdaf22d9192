"""One short method per endpoint: decode -> data plane call -> encode, as the gRPC servicer's.

Each returns the status, the body and any extra headers; errors are raised as the core's kinds
and leave through the one status table (server/http/status.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from server.dataplane import SERVER_NAME, SERVER_VERSION, DataPlane
from server.errors import InferenceServerError, InvalidArgumentError, UnimplementedError
from server.http.codec import decode_infer, encode_infer, parse_json
from server.http.status import OUTCOMES, status_for
from server.model_config import ModelConfig
from server.observability.logs import log_settings, update_log_settings
from server.observability.statistics import Duration, VersionStatistics

JSON = b"application/json"
BINARY = b"application/octet-stream"
# Protocol extensions this server implements, as GET /v2 reports them.
EXTENSIONS = [
    "binary_tensor_data",
    "model_configuration",
    "parameters",
    "statistics",
    "model_repository",
    "logging",
    "system_shared_memory",
]
PLATFORM = "onnxruntime_onnx"


@dataclass(slots=True)
class Call:
    params: dict[str, str]  # from the path: model, version, region
    body: bytes
    header_length: int | None  # Inference-Header-Content-Length
    arrival: float  # time.monotonic() when the request arrived


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: bytes = JSON
    header_length: int | None = None  # for binary outputs


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(value))


_EMPTY = Reply(200, b"")


class Endpoints:
    def __init__(self, dataplane: DataPlane, config_json: Callable[[ModelConfig], Any]) -> None:
        self.dataplane = dataplane
        # Triton's ModelConfig JSON; built by the entry point, which knows the protobuf form.
        self.config_json = config_json

    async def live(self, call: Call) -> Reply:
        return _health(self.dataplane.live())

    async def ready(self, call: Call) -> Reply:
        return _health(self.dataplane.ready())

    async def server_metadata(self, call: Call) -> Reply:
        return json_reply(
            {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}
        )

    async def model_ready(self, call: Call) -> Reply:
        p = call.params
        return _health(self.dataplane.model_ready(p["model"], p.get("version", "")))

    async def model_metadata(self, call: Call) -> Reply:
        model = self.dataplane.model(call.params["model"], call.params.get("version", ""))
        config = model.config
        batch = [-1] if config.batched else []
        return json_reply(
            {
                "name": model.name,
                "versions": self.dataplane.ready_versions(model.name),
                "platform": PLATFORM,
                "inputs": [
                    {"name": t.name, "datatype": t.datatype, "shape": batch + list(t.dims)}
                    for t in config.inputs
                ],
                "outputs": [
                    {"name": t.name, "datatype": t.datatype, "shape": batch + list(t.dims)}
                    for t in config.outputs
                ],
            }
        )

    async def model_config(self, call: Call) -> Reply:
        model = self.dataplane.model(call.params["model"], call.params.get("version", ""))
        return json_reply(self.config_json(model.config))

    async def infer(self, call: Call) -> Reply:
        name, version = call.params["model"], call.params.get("version", "")
        request = None
        model_name = model_version = ""
        code = "OK"
        try:
            dataplane = self.dataplane
            request, form = decode_infer(
                name, version, call.body, call.header_length, dataplane.shared_memory
            )
            _set_deadline(request.parameters, request, name)
            model, outputs = await dataplane.infer(request)
            model_name, model_version = model.name, model.version_str
            body, header_length = encode_infer(model_name, model_version, request, outputs, form)
        except InferenceServerError as error:
            model_name, model_version = self.dataplane.request_labels(name, version)
            code = OUTCOMES[status_for(error)]
            raise
        except BaseException as error:  # the client went away (cancelled), or our own fault
            code = "CANCELLED" if isinstance(error, asyncio.CancelledError) else "INTERNAL"
            model_name, model_version = self.dataplane.request_labels(name, version)
            raise
        finally:
            seconds = time.monotonic() - call.arrival
            self.dataplane.statistics.on_request(model_name, model_version, code, seconds)
        if header_length is None:
            return Reply(200, body)
        return Reply(200, body, BINARY, header_length)

    async def statistics(self, call: Call) -> Reply:
        p = call.params
        stats = self.dataplane.model_statistics(p.get("model", ""), p.get("version", ""))
        return json_reply({"model_stats": [_statistics_json(s) for s in stats]})

    async def repository_index(self, call: Call) -> Reply:
        options = _json_object(call.body, "repository index")
        ready = options.get("ready", False) is True
        statuses = self.dataplane.repository_index(ready)
        return json_reply(
            [
                {
                    "name": s.name,
                    "version": "" if s.version is None else str(s.version),
                    "state": s.state.value,
                    "reason": s.reason,
                }
                for s in statuses
            ]
        )

    async def load(self, call: Call) -> Reply:
        options = _json_object(call.body, f"model '{call.params['model']}': load")
        parameters = options.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidArgumentError("load: expected 'parameters' as a JSON object")
        await self.dataplane.load_model(call.params["model"], parameters)
        return _EMPTY

    async def unload(self, call: Call) -> Reply:
        options = _json_object(call.body, f"model '{call.params['model']}': unload")
        parameters = options.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InvalidArgumentError("unload: expected 'parameters' as a JSON object")
        await self.dataplane.unload_model(call.params["model"], parameters)
        return _EMPTY

    async def shm_status(self, call: Call) -> Reply:
        regions = self.dataplane.shared_memory.status(call.params.get("region", ""))
        return json_reply(
            [
                {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
                for r in regions
            ]
        )

    async def shm_register(self, call: Call) -> Reply:
        name = call.params["region"]
        options = _json_object(call.body, f"system shared memory region '{name}'")
        key, offset, size = options.get("key"), options.get("offset", 0), options.get("byte_size")
        if not isinstance(key, str) or type(offset) is not int or type(size) is not int:
            raise InvalidArgumentError(
                f"system shared memory region '{name}': expected 'key' (string), 'offset' and "
                f"'byte_size' (integers), got {options}"
            )
        self.dataplane.shared_memory.register(name, key, offset, size)
        return _EMPTY

    async def shm_unregister(self, call: Call) -> Reply:
        self.dataplane.shared_memory.unregister(call.params.get("region", ""))
        return _EMPTY

    async def log_settings(self, call: Call) -> Reply:
        return json_reply(log_settings())

    async def update_log_settings(self, call: Call) -> Reply:
        changes = _json_object(call.body, "log settings")
        return json_reply(update_log_settings(changes) if changes else log_settings())

    async def unimplemented(self, call: Call) -> Reply:
        raise UnimplementedError("this endpoint is not implemented by this server")


def _health(ok: bool) -> Reply:
    return Reply(200 if ok else 503, b"")


def _set_deadline(parameters: dict[str, Any], request: Any, model: str) -> None:
    """The `timeout` parameter (microseconds, as Triton reads it) -> the request's deadline."""
    value = parameters.get("timeout")
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(
            f"model '{model}': parameter 'timeout' must be a non-negative integer of microseconds"
        )
    if value:
        request.deadline = asyncio.get_running_loop().time() + value / 1e6


def _json_object(body: bytes, where: str) -> dict[str, Any]:
    if not body:
        return {}
    value = parse_json(where, body)
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{where}: expected a JSON object, got {value!r}")
    return value


def _duration(d: Duration) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}


def _statistics_json(s: VersionStatistics) -> dict[str, Any]:
    return {
        "name": s.name,
        "version": s.version,
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": _duration(s.success),
            "fail": _duration(s.fail),
            "queue": _duration(s.queue),
            "compute_input": _duration(s.compute_input),
            "compute_infer": _duration(s.compute_infer),
            "compute_output": _duration(s.compute_output),
            "cache_hit": {"count": 0, "ns": 0},
            "cache_miss": {"count": 0, "ns": 0},
        },
        "batch_stats": [
            {
                "batch_size": rows,
                "compute_input": {"count": b.count, "ns": b.input_ns},
                "compute_infer": {"count": b.count, "ns": b.infer_ns},
                "compute_output": {"count": b.count, "ns": b.output_ns},
            }
            for rows, b in sorted(s.batches.items())
        ],
    }
