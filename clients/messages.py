"""Request builders and response readers shared by the sync and asyncio clients."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clients.convert import to_dict
from server.grpc.generated import grpc_service_pb2 as pb


def server_metadata(response: pb.ServerMetadataResponse) -> dict[str, Any]:
    return {
        "name": response.name,
        "version": response.version,
        "extensions": list(response.extensions),
    }


def tensor_metadata(response: pb.ModelMetadataResponse) -> dict[str, Any]:
    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {
        "name": response.name,
        "versions": list(response.versions),
        "platform": response.platform,
        "inputs": tensors(response.inputs),
        "outputs": tensors(response.outputs),
    }


def statistics(response: pb.ModelStatisticsResponse) -> list[dict[str, Any]]:
    return [to_dict(s) for s in response.model_stats]


def repository_index(response: pb.RepositoryIndexResponse) -> list[dict[str, str]]:
    return [
        {"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}
        for m in response.models
    ]


def load_request(
    model: str, config: Mapping[str, Any] | None = None
) -> pb.RepositoryModelLoadRequest:
    request = pb.RepositoryModelLoadRequest(model_name=model)
    if config is not None:
        # Triton's convention: a "config" parameter holding the model config as JSON.
        request.parameters["config"].string_param = json.dumps(dict(config))
    return request


def unload_request(model: str, unload_dependents: bool = False) -> pb.RepositoryModelUnloadRequest:
    request = pb.RepositoryModelUnloadRequest(model_name=model)
    if unload_dependents:
        request.parameters["unload_dependents"].bool_param = True
    return request
