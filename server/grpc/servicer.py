"""GRPCInferenceService: one short method per RPC (decode -> data plane call -> encode).

Handlers receive the request's raw bytes and parse them here, so a malformed message is answered
INVALID_ARGUMENT instead of grpc's UNKNOWN; every error leaves through one status table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.dataplane import SERVER_NAME, SERVER_VERSION, DataPlane
from server.errors import InferenceServerError, InvalidArgumentError, UnimplementedError
from server.grpc import codec
from server.grpc.config_proto import PLATFORM, to_proto
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.log_settings_proto import settings_from_proto, settings_to_proto
from server.grpc.repository_proto import index_to_proto, parameters_from_proto
from server.grpc.statistics_proto import to_proto as statistics_to_proto
from server.grpc.status import code_for
from server.grpc.stream import stream_handler
from server.observability.logs import log_settings, update_log_settings

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"

# Protocol extensions this server implements, as ServerMetadata reports them.
EXTENSIONS = [
    "model_configuration",
    "parameters",
    "statistics",
    "model_repository",
    "logging",
    "system_shared_memory",
]

Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
# Told how each call ended: (request, or None if it did not parse; response, or None; status
# code; time.monotonic() at arrival).
Report = Callable[[Any, Any, grpc.StatusCode, float], None]


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
        request = codec.decode_request(message, self.dataplane.shared_memory)
        request.deadline = _deadline(context, request.parameters, request.model_name)
        model, outputs = await self.dataplane.infer(request)
        return codec.encode_response(
            model.name, model.version_str, request.id, outputs, request.output_placements
        )

    def report_infer(
        self,
        request: pb.ModelInferRequest | None,
        response: pb.ModelInferResponse | None,
        code: grpc.StatusCode,
        start: float,
    ) -> None:
        """Counts one ModelInfer outcome under the model version that served it, if any."""
        seconds = time.monotonic() - start
        if response is not None:
            model, version = response.model_name, response.model_version
        elif request is not None:
            model, version = self.dataplane.request_labels(
                request.model_name, request.model_version
            )
        else:
            model = version = ""
        self.dataplane.statistics.on_request(model, version, code.name, seconds)

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
        for region in self.dataplane.shared_memory.status(request.name):
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
        self.dataplane.shared_memory.register(
            request.name, request.key, request.offset, request.byte_size
        )
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Any
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self.dataplane.shared_memory.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    async def LogSettings(
        self, request: pb.LogSettingsRequest, context: Any
    ) -> pb.LogSettingsResponse:
        changes = settings_from_proto(request.settings)
        return settings_to_proto(update_log_settings(changes) if changes else log_settings())


def _deadline(context: Any, parameters: dict[str, Any], model: str) -> float | None:
    """The earlier of the gRPC deadline and the `timeout` parameter, on the loop's clock."""
    remaining = context.time_remaining()
    timeout = codec.timeout_seconds(parameters, model) if parameters else None
    if timeout is not None and (remaining is None or timeout < remaining):
        remaining = timeout
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining


def _unary(
    method: Method, request_type: Any, report: Report | None = None
) -> grpc.RpcMethodHandler:
    name = request_type.DESCRIPTOR.name
    parse = request_type.FromString

    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        start = time.monotonic()
        request = response = None
        code = grpc.StatusCode.OK
        try:
            try:
                request = parse(raw)
            except Exception as error:  # DecodeError, or invalid UTF-8 in a string field
                raise InvalidArgumentError(f"request is not a valid {name}: {error}") from None
            response = await method(request, context)
            # Serialized here, so the message object is freed when the handler returns rather
            # than held until a slow client has read the whole reply.
            return response.SerializeToString()
        except InferenceServerError as error:
            code = code_for(error)
            await context.abort(code, error.message)
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:  # the client went away
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", name)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {error!r}")
        finally:
            if report is not None:
                report(request, response, code, start)

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
    # Inference outcomes feed the statistics and /metrics, whichever way the request failed.
    handlers["ModelInfer"] = _unary(
        servicer.ModelInfer, pb.ModelInferRequest, servicer.report_infer
    )
    # ModelStreamInfer works on raw bytes both ways, so it brings its own handler.
    handlers["ModelStreamInfer"] = stream_handler(servicer.dataplane)
    return grpc.method_handlers_generic_handler(SERVICE, handlers)
