"""gRPC server reflection, so grpcurl and similar tools work without the .proto files.

Our messages live in the private descriptor pool POOL (see server/grpc/generated); the health and
reflection services' own files are added to it, so every listed service can be described.
"""

from __future__ import annotations

import grpc
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from server.grpc.generated import POOL
from server.grpc.servicer import SERVICE

SERVICES = (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)


def add_reflection_service(server: grpc.aio.Server) -> None:
    for file in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        _add_to_pool(file)
    reflection.enable_server_reflection(SERVICES, server, pool=POOL)


def _add_to_pool(file: FileDescriptor) -> None:
    try:
        POOL.FindFileByName(file.name)
    except KeyError:
        POOL.AddSerializedFile(file.serialized_pb)
