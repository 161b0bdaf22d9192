"""GRPCInferenceService: one short method per RPC (decode -> data plane call -> encode).

Handlers receive the request's raw bytes and parse them here, so a malformed message is answered
INVALID_ARGUMENT instead of grpc's UNKNOWN; every error leaves through one status table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.dataplane import SERVER_NAME, SERVER_VERSION, DataPlane
from server.errors import InferenceServerError, InvalidArgumentError, UnimplementedError
from server.grpc import codec
from server.grpc.config_proto import PLATFORM, to_proto
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.status import code_for
from server.grpc.stream import stream_handler

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"

# Protocol extensions this server implements, as ServerMetadata reports them.
EXTENSIONS = ["model_configuration", "parameters"]

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
            name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        model = self.dataplane.model(request.name, request.version)
        config = model.config
        batch = [-1] if config.batched else []
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=self.dataplane.ready_versions(model.name),
            platform=PLATFORM,
            inputs=[
                tensor(name=t.name, datatype=t.datatype, shape=batch + list(t.dims))
                for t in config.inputs
            ],
            outputs=[
                tensor(name=t.name, datatype=t.datatype, shape=batch + list(t.dims))
                for t in config.outputs
            ],
        )

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Any
    ) -> pb.ModelConfigResponse:
        model = self.dataplane.model(request.name, request.version)
        return pb.ModelConfigResponse(config=to_proto(model.config))

    async def ModelInfer(
        self, message: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        request = codec.decode_request(message)
        request.deadline = _deadline(context, request.parameters, request.model_name)
        model, outputs = await self.dataplane.infer(request)
        return codec.encode_response(model.name, model.version_str, request.id, outputs)

    def stream_handler(self) -> grpc.RpcMethodHandler:
        # ModelStreamInfer works on raw bytes both ways, so it brings its own handler.
        return stream_handler(self.dataplane)


def _deadline(context: Any, parameters: dict[str, Any], model: str) -> float | None:
    """The earlier of the gRPC deadline and the `timeout` parameter, on the loop's clock."""
    remaining = context.time_remaining()
    timeout = codec.timeout_seconds(parameters, model) if parameters else None
    if timeout is not None and (remaining is None or timeout < remaining):
        remaining = timeout
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining


def _unary(method: Method, request_type: Any) -> grpc.RpcMethodHandler:
    name = request_type.DESCRIPTOR.name
    parse = request_type.FromString

    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            try:
                request = parse(raw)
            except Exception as error:  # DecodeError, or invalid UTF-8 in a string field
                raise InvalidArgumentError(f"request is not a valid {name}: {error}") from None
            return await method(request, context)
        except InferenceServerError as error:
            await context.abort(code_for(error), error.message)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            log.exception("%s failed", name)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {error!r}")

    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=None, response_serializer=_serialize
    )


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


def _unimplemented(rpc: str) -> Method:
    async def method(request: Any, context: Any) -> Any:
        raise UnimplementedError(f"{rpc} is not implemented by this server")

    return method


def _unimplemented_stream(rpc: str) -> grpc.RpcMethodHandler:
    async def handler(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not implemented by this server"
        )
        yield  # pragma: no cover

    return grpc.stream_stream_rpc_method_handler(
        handler, request_deserializer=None, response_serializer=_serialize
    )


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
    stream = getattr(servicer, "stream_handler", None)
    handlers["ModelStreamInfer"] = stream() if stream else _unimplemented_stream("ModelStreamInfer")
    return grpc.method_handlers_generic_handler(SERVICE, handlers)
