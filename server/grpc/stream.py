"""ModelStreamInfer: many inference requests over one bidirectional stream.

Each message takes the same path as a unary ModelInfer (parse -> decode -> data plane -> encode),
but the requests of one stream run concurrently, so the batcher sees them together, and each
response leaves as soon as it is ready, matched to its request by `id`. A failed request is
answered in-band (`error_message`, plus the request's `id` as Triton does) and the stream stays
open. When the client goes away, every request the stream still holds is cancelled. When the
server shuts down, a stream stops reading, answers what it has read, and ends with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from server.dataplane import DataPlane
from server.errors import InferenceServerError
from server.grpc import codec
from server.grpc.generated import grpc_service_pb2 as pb
from server.grpc.status import code_for
from server.inference import InferenceRequest

# Requests read from one stream and not yet answered. At the limit the stream stops reading, and
# HTTP/2 flow control pushes back on a client that sends faster than it reads responses.
MAX_IN_FLIGHT = 1024

# In-band errors carry their status code name (e.g. "INVALID_ARGUMENT") in this parameter of the
# otherwise empty infer_response, so clients can tell a full queue from a bad request.
ERROR_CODE_PARAMETER = "error_code"


def stream_handler(dataplane: DataPlane) -> grpc.RpcMethodHandler:
    # Raw bytes both ways: we parse each message ourselves and serialize each response once.
    return grpc.stream_stream_rpc_method_handler(
        functools.partial(_serve, dataplane), request_deserializer=None, response_serializer=None
    )


async def _serve(
    dataplane: DataPlane, requests: AsyncIterator[bytes], context: Any
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    responses: asyncio.Queue[bytes | None] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    reader = loop.create_task(_read(dataplane, requests, responses, tasks, slots))
    # Shutdown stops the reading, so an idle stream cannot hold the server for its whole grace.
    stopping = loop.create_task(dataplane.stopping.wait())
    stopping.add_done_callback(lambda _: reader.cancel())
    try:
        while (response := await responses.get()) is not None:
            yield response
            slots.release()  # written: this request no longer counts against the stream
        await asyncio.wait({reader})
        if not reader.cancelled():
            reader.result()  # re-raises what stopped the reader, if anything did
            return
        # Shutdown: answer what was already read, then send the client elsewhere.
        if tasks:
            await asyncio.wait(set(tasks))
        while not responses.empty():
            yield responses.get_nowait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
    finally:
        # Normal end, client gone or server stopping: nothing of this stream may outlive it.
        stopping.cancel()
        reader.cancel()
        for task in tasks:
            task.cancel()


async def _read(
    dataplane: DataPlane,
    requests: AsyncIterator[bytes],
    responses: asyncio.Queue[bytes | None],
    tasks: set[asyncio.Task[None]],
    slots: asyncio.Semaphore,
) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            await slots.acquire()
            try:
                raw = await requests.__anext__()
            except StopAsyncIteration:
                break
            arrival = time.monotonic()
            try:
                message = codec.parse_infer_request(raw)
            except InferenceServerError as error:
                dataplane.reject(error, arrival=arrival)
                responses.put_nowait(_error_response(error))
                continue
            try:
                request = codec.decode_request(message)
            except InferenceServerError as error:
                dataplane.reject(error, message.model_name, message.model_version, arrival)
                responses.put_nowait(
                    _error_response(error, message.model_name, message.model_version, message.id)
                )
                continue
            request.arrival = arrival
            task = loop.create_task(_answer(dataplane, request, responses))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        # The client has finished sending: answer what is in flight, then end the stream.
        if tasks:
            await asyncio.wait(set(tasks))
    finally:
        responses.put_nowait(None)


async def _answer(
    dataplane: DataPlane, request: InferenceRequest, responses: asyncio.Queue[bytes | None]
) -> None:
    # The data plane counts the outcome; a failure is answered in-band and the stream stays.
    try:
        response = await dataplane.infer(request)
    except InferenceServerError as error:
        responses.put_nowait(
            _error_response(error, request.model_name, request.model_version, request.id)
        )
        return
    message = pb.ModelStreamInferResponse(infer_response=codec.encode_response(response))
    responses.put_nowait(message.SerializeToString())


def _error_response(
    error: InferenceServerError, model_name: str = "", model_version: str = "", id: str = ""
) -> bytes:
    code = pb.InferParameter(string_param=code_for(error).name)
    response = pb.ModelInferResponse(
        model_name=model_name,
        model_version=model_version,
        id=id,
        parameters={ERROR_CODE_PARAMETER: code},
    )
    message = pb.ModelStreamInferResponse(error_message=error.message, infer_response=response)
    return message.SerializeToString()
