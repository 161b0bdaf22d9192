"""The asyncio client: the same calls as InferenceServerClient, awaited, plus shared streams."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import grpc

from clients import convert
from clients.channel import Pem, open_aio_channel, tls_settings
from clients.errors import from_rpc_error
from clients.messages import (
    load_request,
    repository_index,
    server_metadata,
    statistics,
    tensor_metadata,
    unload_request,
)
from clients.streaming import AsyncStream, StreamRequest, StreamResult, stream_result
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc


class AsyncInferenceServerClient:
    """A connection to one server, used from one event loop; see InferenceServerClient."""

    def __init__(
        self,
        url: str = "localhost:8001",
        *,
        timeout: float | None = None,
        tls: bool = False,
        root_certificates: Pem | None = None,
        certificate_chain: Pem | None = None,
        private_key: Pem | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.url = url
        self.timeout = timeout
        tls_config = tls_settings(tls, root_certificates, certificate_chain, private_key)
        self._channel = open_aio_channel(url, tls_config, channel_options)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncInferenceServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- health and metadata ------------------------------------------------------------

    async def is_server_live(self, timeout: float | None = None) -> bool:
        return (await self._call(self._stub.ServerLive, pb.ServerLiveRequest(), timeout)).live

    async def is_server_ready(self, timeout: float | None = None) -> bool:
        return (await self._call(self._stub.ServerReady, pb.ServerReadyRequest(), timeout)).ready

    async def is_model_ready(
        self, model: str, version: str = "", timeout: float | None = None
    ) -> bool:
        request = pb.ModelReadyRequest(name=model, version=version)
        return (await self._call(self._stub.ModelReady, request, timeout)).ready

    async def server_metadata(self, timeout: float | None = None) -> dict[str, Any]:
        request = pb.ServerMetadataRequest()
        return server_metadata(await self._call(self._stub.ServerMetadata, request, timeout))

    async def model_metadata(
        self, model: str, version: str = "", timeout: float | None = None
    ) -> dict[str, Any]:
        request = pb.ModelMetadataRequest(name=model, version=version)
        return tensor_metadata(await self._call(self._stub.ModelMetadata, request, timeout))

    async def model_config(
        self, model: str, version: str = "", timeout: float | None = None
    ) -> dict[str, Any]:
        request = pb.ModelConfigRequest(name=model, version=version)
        response = await self._call(self._stub.ModelConfig, request, timeout)
        return convert.to_dict(response.config)

    async def model_statistics(
        self, model: str = "", version: str = "", timeout: float | None = None
    ) -> list[dict[str, Any]]:
        request = pb.ModelStatisticsRequest(name=model, version=version)
        return statistics(await self._call(self._stub.ModelStatistics, request, timeout))

    # --- repository ---------------------------------------------------------------------

    async def repository_index(
        self, ready_only: bool = False, timeout: float | None = None
    ) -> list[dict[str, str]]:
        request = pb.RepositoryIndexRequest(ready=ready_only)
        return repository_index(await self._call(self._stub.RepositoryIndex, request, timeout))

    async def load_model(
        self, model: str, config: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> None:
        await self._call(self._stub.RepositoryModelLoad, load_request(model, config), timeout)

    async def unload_model(
        self, model: str, unload_dependents: bool = False, timeout: float | None = None
    ) -> None:
        request = unload_request(model, unload_dependents)
        await self._call(self._stub.RepositoryModelUnload, request, timeout)

    # --- inference ----------------------------------------------------------------------

    async def infer(
        self,
        model: str,
        inputs: convert.Inputs,
        outputs: Sequence[str] | None = None,
        version: str = "",
        timeout: float | None = None,
        *,
        id: str = "",
        parameters: Mapping[str, Any] | None = None,
    ) -> convert.Outputs:
        request = convert.infer_request(model, inputs, outputs, version, id, parameters)
        return convert.infer_outputs(await self._call(self._stub.ModelInfer, request, timeout))

    async def stream_infer(
        self,
        requests: Iterable[StreamRequest] | AsyncIterable[StreamRequest],
        timeout: float | None = None,
    ) -> AsyncIterator[StreamResult]:
        """Sends `requests` on one stream and yields results as they arrive (match by `id`)."""
        call = self._stub.ModelStreamInfer(_messages(requests), timeout=self._timeout(timeout))
        try:
            async for message in call:
                yield stream_result(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()  # no-op once finished; releases the stream if the caller stops early

    def stream(self, timeout: float | None = None) -> AsyncStream:
        """An open stream that many coroutines share: `await stream.infer(...)` each. Use as
        `async with client.stream() as stream:`; `timeout` bounds the whole stream."""
        return AsyncStream(self._stub.ModelStreamInfer(timeout=self._timeout(timeout)))

    # --- helpers ------------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(request, timeout=self._timeout(timeout))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None


async def _messages(
    requests: Iterable[StreamRequest] | AsyncIterable[StreamRequest],
) -> AsyncIterator[pb.ModelInferRequest]:
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request.message()
    else:
        for request in requests:
            yield request.message()
