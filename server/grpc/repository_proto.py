"""The repository RPCs' messages <-> the core's plain values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.grpc.generated import grpc_service_pb2 as pb
from server.repository.states import VersionStatus


def index_to_proto(statuses: list[VersionStatus]) -> pb.RepositoryIndexResponse:
    model = pb.RepositoryIndexResponse.ModelIndex
    return pb.RepositoryIndexResponse(
        models=[
            model(
                name=s.name,
                version="" if s.version is None else str(s.version),
                state=s.state.value,
                reason=s.reason,
            )
            for s in statuses
        ]
    )


def parameters_from_proto(
    parameters: Mapping[str, pb.ModelRepositoryParameter],
) -> dict[str, Any]:
    """{name: the value of whichever field is set}; an unset value is None."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values
