"""One short method per endpoint: decode -> data plane call -> encode, as the gRPC servicer's.

Each returns the status, the body and any extra headers; errors are raised as the core's kinds
and leave through the one status table (server/http/status.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from server.dataplane import EXTENSIONS, SERVER_NAME, SERVER_VERSION, DataPlane
from server.errors import InferenceServerError, InvalidArgumentError, UnimplementedError
from server.http.codec import decode_infer, encode_infer, parse_json
from server.model_config import ModelConfig
from server.observability.statistics import Duration, VersionStatistics

JSON = b"application/json"
BINARY = b"application/octet-stream"
# Protocol extensions, as GET /v2 reports them: the data plane's and the binary tensor data one.
HTTP_EXTENSIONS = ["binary_tensor_data", *EXTENSIONS]


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
            {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": HTTP_EXTENSIONS}
        )

    async def model_ready(self, call: Call) -> Reply:
        p = call.params
        return _health(self.dataplane.model_ready(p["model"], p.get("version", "")))

    async def model_metadata(self, call: Call) -> Reply:
        p = call.params
        return json_reply(asdict(self.dataplane.model_metadata(p["model"], p.get("version", ""))))

    async def model_config(self, call: Call) -> Reply:
        model = self.dataplane.model(call.params["model"], call.params.get("version", ""))
        return json_reply(self.config_json(model.config))

    async def infer(self, call: Call) -> Reply:
        name, version = call.params["model"], call.params.get("version", "")
        try:
            request, form = decode_infer(name, version, call.body, call.header_length)
        except InferenceServerError as error:
            self.dataplane.reject(error, name, version, call.arrival, "http")
            raise
        request.arrival = call.arrival
        response = await self.dataplane.infer(request)
        body, header_length = encode_infer(response, form)
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
        regions = self.dataplane.shared_memory_status(call.params.get("region", ""))
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
        self.dataplane.register_shared_memory(name, key, offset, size)
        return _EMPTY

    async def shm_unregister(self, call: Call) -> Reply:
        self.dataplane.unregister_shared_memory(call.params.get("region", ""))
        return _EMPTY

    async def log_settings(self, call: Call) -> Reply:
        return json_reply(self.dataplane.log_settings())

    async def update_log_settings(self, call: Call) -> Reply:
        changes = _json_object(call.body, "log settings")
        return json_reply(self.dataplane.log_settings(changes))

    async def unimplemented(self, call: Call) -> Reply:
        raise UnimplementedError("this endpoint is not implemented by this server")


def _health(ok: bool) -> Reply:
    return Reply(200 if ok else 503, b"")


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
            "cache_hit": _duration(s.cache_hit),
            "cache_miss": _duration(s.cache_miss),
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
