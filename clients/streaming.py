"""ModelStreamInfer on the client side: requests and results, and a stream shared by coroutines.

The server runs the requests of one stream concurrently and answers each as soon as it is done,
so results can arrive out of order; they are matched to requests by `id`. A failed request comes
back as a result with an `error`, and the stream carries on.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from clients import convert
from clients.errors import InferenceServerError, code_from_name, from_rpc_error
from server.grpc.generated import grpc_service_pb2 as pb

# The parameter in which the server names the status code of an in-band error.
ERROR_CODE_PARAMETER = "error_code"


@dataclass(frozen=True)
class StreamRequest:
    model: str
    inputs: convert.Inputs
    outputs: Sequence[str] | None = None
    version: str = ""
    id: str = ""
    # Seconds the request may wait in the server's queue before it is answered DEADLINE_EXCEEDED.
    timeout: float | None = None
    parameters: Mapping[str, Any] | None = None

    def message(self) -> pb.ModelInferRequest:
        parameters = dict(self.parameters or {})
        if self.timeout is not None:
            parameters["timeout"] = convert.timeout_parameter(self.timeout)
        return convert.infer_request(
            self.model, self.inputs, self.outputs, self.version, self.id, parameters
        )


@dataclass(frozen=True)
class StreamResult:
    id: str
    model: str
    version: str
    outputs: convert.Outputs | None  # None when the request failed
    error: InferenceServerError | None = None

    def result(self) -> convert.Outputs:
        """The outputs, or the request's error raised."""
        if self.error is not None:
            raise self.error
        assert self.outputs is not None
        return self.outputs


def stream_result(message: pb.ModelStreamInferResponse) -> StreamResult:
    response = message.infer_response
    if message.error_message:
        code = response.parameters.get(ERROR_CODE_PARAMETER)
        error = InferenceServerError(
            code_from_name(code.string_param) if code is not None else grpc.StatusCode.UNKNOWN,
            message.error_message,
        )
        return StreamResult(response.id, response.model_name, response.model_version, None, error)
    try:
        outputs = convert.infer_outputs(response)
    except InferenceServerError as error:
        return StreamResult(response.id, response.model_name, response.model_version, None, error)
    return StreamResult(response.id, response.model_name, response.model_version, outputs)


class AsyncStream:
    """One open ModelStreamInfer shared by many coroutines: `await stream.infer(...)` sends a
    request and waits for its own result. Open it with AsyncInferenceServerClient.stream()."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self._call = call
        self._waiting: dict[str, asyncio.Future[StreamResult]] = {}
        self._ids = itertools.count()
        self._write_lock = asyncio.Lock()  # grpc.aio takes one write at a time
        self._closed: InferenceServerError | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def infer(
        self,
        model: str,
        inputs: convert.Inputs,
        outputs: Sequence[str] | None = None,
        version: str = "",
        *,
        id: str = "",
        timeout: float | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> convert.Outputs:
        if self._closed is not None:
            raise self._closed
        id = id or f"stream-{next(self._ids)}"
        if id in self._waiting:
            raise ValueError(f"request id '{id}' is already in flight on this stream")
        message = StreamRequest(model, inputs, outputs, version, id, timeout, parameters).message()
        future = asyncio.get_running_loop().create_future()
        self._waiting[id] = future
        try:
            async with self._write_lock:
                await self._call.write(message)
            return (await future).result()
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            self._waiting.pop(id, None)

    async def close(self) -> None:
        """Finishes sending; results still due are awaited by their callers."""
        if self._closed is None:
            async with self._write_lock:
                await self._call.done_writing()
        await asyncio.shield(self._reader)

    def cancel(self) -> None:
        self._call.cancel()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            await self.close()
        else:
            self.cancel()

    async def _read(self) -> None:
        try:
            async for message in self._call:
                result = stream_result(message)
                future = self._waiting.get(result.id)
                if future is not None and not future.done():
                    future.set_result(result)
            error = InferenceServerError(grpc.StatusCode.CANCELLED, "the stream has ended")
        except grpc.RpcError as rpc_error:
            error = from_rpc_error(rpc_error)
        except asyncio.CancelledError:
            error = InferenceServerError(grpc.StatusCode.CANCELLED, "the stream was cancelled")
        self._closed = error
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
