"""The synchronous client: every call of the inference protocol, numpy in and numpy out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from clients import convert
from clients.channel import Pem, open_channel, tls_settings
from clients.errors import from_rpc_error
from clients.messages import (
    load_request,
    repository_index,
    server_metadata,
    statistics,
    tensor_metadata,
    unload_request,
)
from clients.streaming import StreamRequest, StreamResult, stream_result
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.generated import grpc_service_pb2_grpc as pb_grpc


class InferenceServerClient:
    """A connection to one server. `timeout` (seconds) is the default deadline of every call;
    each call can set its own. TLS is used when `tls` is true or any certificate is given."""

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
        self._channel = open_channel(url, tls_config, channel_options)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> InferenceServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- health and metadata ------------------------------------------------------------

    def is_server_live(self, timeout: float | None = None) -> bool:
        return self._call(self._stub.ServerLive, pb.ServerLiveRequest(), timeout).live

    def is_server_ready(self, timeout: float | None = None) -> bool:
        return self._call(self._stub.ServerReady, pb.ServerReadyRequest(), timeout).ready

    def is_model_ready(self, model: str, version: str = "", timeout: float | None = None) -> bool:
        request = pb.ModelReadyRequest(name=model, version=version)
        return self._call(self._stub.ModelReady, request, timeout).ready

    def server_metadata(self, timeout: float | None = None) -> dict[str, Any]:
        response = self._call(self._stub.ServerMetadata, pb.ServerMetadataRequest(), timeout)
        return server_metadata(response)

    def model_metadata(
        self, model: str, version: str = "", timeout: float | None = None
    ) -> dict[str, Any]:
        request = pb.ModelMetadataRequest(name=model, version=version)
        return tensor_metadata(self._call(self._stub.ModelMetadata, request, timeout))

    def model_config(
        self, model: str, version: str = "", timeout: float | None = None
    ) -> dict[str, Any]:
        request = pb.ModelConfigRequest(name=model, version=version)
        return convert.to_dict(self._call(self._stub.ModelConfig, request, timeout).config)

    def model_statistics(
        self, model: str = "", version: str = "", timeout: float | None = None
    ) -> list[dict[str, Any]]:
        request = pb.ModelStatisticsRequest(name=model, version=version)
        return statistics(self._call(self._stub.ModelStatistics, request, timeout))

    # --- repository ---------------------------------------------------------------------

    def repository_index(
        self, ready_only: bool = False, timeout: float | None = None
    ) -> list[dict[str, str]]:
        request = pb.RepositoryIndexRequest(ready=ready_only)
        return repository_index(self._call(self._stub.RepositoryIndex, request, timeout))

    def load_model(
        self, model: str, config: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> None:
        self._call(self._stub.RepositoryModelLoad, load_request(model, config), timeout)

    def unload_model(
        self, model: str, unload_dependents: bool = False, timeout: float | None = None
    ) -> None:
        request = unload_request(model, unload_dependents)
        self._call(self._stub.RepositoryModelUnload, request, timeout)

    # --- inference ----------------------------------------------------------------------

    def infer(
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
        """One request -> {output name: array}; every output unless `outputs` names some."""
        request = convert.infer_request(model, inputs, outputs, version, id, parameters)
        return convert.infer_outputs(self._call(self._stub.ModelInfer, request, timeout))

    def stream_infer(
        self, requests: Iterable[StreamRequest], timeout: float | None = None
    ) -> Iterator[StreamResult]:
        """Sends `requests` on one stream (consumed as the server takes them) and yields each
        result as it arrives, possibly out of order; match them by `id`. `timeout` bounds the
        whole stream."""
        messages = (r.message() for r in requests)
        call = self._stub.ModelStreamInfer(messages, timeout=self._timeout(timeout))
        try:
            for message in call:
                yield stream_result(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()  # no-op once finished; releases the stream if the caller stops early

    # --- helpers ------------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def _call(self, method: Callable[..., Any], request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=self._timeout(timeout))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
