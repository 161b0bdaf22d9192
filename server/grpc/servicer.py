"""GRPCInferenceService: one short method per RPC (decode -> data plane call -> encode).

Handlers receive the request's raw bytes and parse them here, so a malformed message is answered
INVALID_ARGUMENT instead of grpc's UNKNOWN; every error leaves through one status table. The
data plane counts inference outcomes; this module only reports what it could not decode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.dataplane import EXTENSIONS, SERVER_NAME, SERVER_VERSION, DataPlane
from server.errors import InferenceServerError, InvalidArgumentError, UnimplementedError
from server.grpc import codec
from server.grpc.config_proto import metadata_to_proto, to_proto
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.log_settings_proto import settings_from_proto, settings_to_proto
from server.grpc.repository_proto import index_to_proto, parameters_from_proto
from server.grpc.statistics_proto import to_proto as statistics_to_proto
from server.grpc.status import code_for
from server.grpc.stream import stream_handler

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"


Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class InferenceServicer:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dataplane.live())

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(
            ready=self.dataplane.model_ready(request.name, request.version)
        )

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=list(EXTENSIONS)
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        return metadata_to_proto(self.dataplane.model_metadata(request.name, request.version))

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Any
    ) -> pb.ModelConfigResponse:
        model = self.dataplane.model(request.name, request.version)
        return pb.ModelConfigResponse(config=to_proto(model.config))

    async def ModelInfer(self, raw: bytes, context: Any) -> bytes:
        arrival = time.monotonic()
        try:
            message = codec.parse_infer_request(raw)
        except InferenceServerError as error:
            self.dataplane.reject(error, arrival=arrival)
            raise
        try:
            request = codec.decode_request(message)
        except InferenceServerError as error:
            self.dataplane.reject(error, message.model_name, message.model_version, arrival)
            raise
        request.arrival = arrival
        response = await self.dataplane.infer(request, context.time_remaining())
        # Serialized here, so the message object is freed when the handler returns rather than
        # held until a slow client has read the whole reply.
        return codec.encode_response(response).SerializeToString()

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        return statistics_to_proto(self.dataplane.model_statistics(request.name, request.version))

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        statuses = self.dataplane.repository_index(request.ready, request.repository_name)
        return index_to_proto(statuses)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        parameters = parameters_from_proto(request.parameters)
        await self.dataplane.load_model(request.model_name, parameters, request.repository_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        parameters = parameters_from_proto(request.parameters)
        await self.dataplane.unload_model(request.model_name, parameters, request.repository_name)
        return pb.RepositoryModelUnloadResponse()

    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Any
    ) -> pb.SystemSharedMemoryStatusResponse:
        response = pb.SystemSharedMemoryStatusResponse()
        for region in self.dataplane.shared_memory_status(request.name):
            response.regions[region.name].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(
                    name=region.name,
                    key=region.key,
                    offset=region.offset,
                    byte_size=region.byte_size,
                )
            )
        return response

    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Any
    ) -> pb.SystemSharedMemoryRegisterResponse:
        self.dataplane.register_shared_memory(
            request.name, request.key, request.offset, request.byte_size
        )
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Any
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self.dataplane.unregister_shared_memory(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def LogSettings(
        self, request: pb.LogSettingsRequest, context: Any
    ) -> pb.LogSettingsResponse:
        return settings_to_proto(self.dataplane.log_settings(settings_from_proto(request.settings)))


def _unary(method: Method, request_type: Any) -> grpc.RpcMethodHandler:
    """A handler that parses the request itself (None: the method takes the raw bytes and
    returns serialized bytes), so every failure leaves through the one status table."""
    name = request_type.DESCRIPTOR.name if request_type is not None else "ModelInferRequest"
    parse = request_type.FromString if request_type is not None else None

    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            if parse is None:
                return await method(raw, context)
            try:
                request = parse(raw)
            except Exception as error:  # DecodeError, or invalid UTF-8 in a string field
                raise InvalidArgumentError(f"request is not a valid {name}: {error}") from None
            response = await method(request, context)
            return response.SerializeToString()
        except InferenceServerError as error:
            await context.abort(code_for(error), error.message)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            log.exception("%s failed", name)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {error!r}")

    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=None, response_serializer=None
    )


def _unimplemented(rpc: str) -> Method:
    async def method(request: Any, context: Any) -> Any:
        raise UnimplementedError(f"{rpc} is not implemented by this server")

    return method


def generic_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """Every RPC of the service, registered with raw-bytes request handling."""
    requests = {
        "ServerLive": pb.ServerLiveRequest,
        "ServerReady": pb.ServerReadyRequest,
        "ModelReady": pb.ModelReadyRequest,
        "ServerMetadata": pb.ServerMetadataRequest,
        "ModelMetadata": pb.ModelMetadataRequest,
        "ModelConfig": pb.ModelConfigRequest,
        "ModelInfer": pb.ModelInferRequest,
        "ModelStatistics": pb.ModelStatisticsRequest,
        "RepositoryIndex": pb.RepositoryIndexRequest,
        "RepositoryModelLoad": pb.RepositoryModelLoadRequest,
        "RepositoryModelUnload": pb.RepositoryModelUnloadRequest,
        "SystemSharedMemoryStatus": pb.SystemSharedMemoryStatusRequest,
        "SystemSharedMemoryRegister": pb.SystemSharedMemoryRegisterRequest,
        "SystemSharedMemoryUnregister": pb.SystemSharedMemoryUnregisterRequest,
        "CudaSharedMemoryStatus": pb.CudaSharedMemoryStatusRequest,
        "CudaSharedMemoryRegister": pb.CudaSharedMemoryRegisterRequest,
        "CudaSharedMemoryUnregister": pb.CudaSharedMemoryUnregisterRequest,
        "TraceSetting": pb.TraceSettingRequest,
        "LogSettings": pb.LogSettingsRequest,
    }
    handlers = {
        rpc: _unary(getattr(servicer, rpc, None) or _unimplemented(rpc), request_type)
        for rpc, request_type in requests.items()
    }
    # ModelInfer parses its own bytes, so a request that does not parse is still counted.
    handlers["ModelInfer"] = _unary(servicer.ModelInfer, None)
    # ModelStreamInfer works on raw bytes both ways, so it brings its own handler.
    handlers["ModelStreamInfer"] = stream_handler(servicer.dataplane)
    return grpc.method_handlers_generic_handler(SERVICE, handlers)
