"""The ASGI application: read the body within the size limit, undo Content-Encoding, route,
call the endpoint, compress the reply when the client asks, and answer every error as JSON
{"error": "..."} with its status from the one table."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from server.errors import InferenceServerError
from server.http.endpoints import JSON, Call, Endpoints, Reply
from server.http.routes import route
from server.http.status import RETRY_AFTER, HttpError, status_for

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
# zlib's window bits per Content-Encoding: gzip has a header and trailer, deflate is zlib's.
_WBITS = {b"gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}


class HttpApp:
    def __init__(self, endpoints: Endpoints, max_body_bytes: int) -> None:
        self.endpoints = endpoints
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not served
            return
        arrival = time.monotonic()
        content_length = header_length = None
        encoding = accept = b""
        for key, value in scope["headers"]:
            if key == b"content-length":
                content_length = value
            elif key == b"inference-header-content-length":
                header_length = value
            elif key == b"content-encoding":
                encoding = value.strip().lower()
            elif key == b"accept-encoding":
                accept = value.lower()
        try:
            endpoint, params = route(scope["method"], scope["path"])
            body = await self._read_body(receive, content_length)
            if encoding and encoding != b"identity":
                body = self._decompress(body, encoding)
            call = Call(params, body, _header_length(header_length), arrival)
            reply = await getattr(self.endpoints, endpoint)(call)
        except InferenceServerError as error:
            await _send_error(send, status_for(error), error.message)
            return
        except HttpError as error:
            await _send_error(send, error.status, error.message, close=error.status == 413)
            return
        except Exception as error:
            log.exception("%s %s failed", scope["method"], scope["path"])
            await _send_error(send, 500, f"internal error: {error!r}")
            return
        await _send(send, reply, accept)

    async def _read_body(self, receive: Receive, content_length: bytes | None) -> bytes:
        limit = self.max_body_bytes
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            # Refused from the header alone, before a byte of the body is read.
            raise HttpError(413, _too_large(int(content_length), limit))
        message = await receive()
        body = message.get("body", b"")
        size = len(body)
        if size > limit:  # a chunked body that arrived whole
            raise HttpError(413, _too_large(size, limit))
        if not message.get("more_body"):
            return body
        chunks = [body]
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, "the client closed the connection before the body ended")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # a chunked body: counted while it arrives
                raise HttpError(413, _too_large(size, limit))
            chunks.append(chunk)
        return b"".join(chunks)

    def _decompress(self, body: bytes, encoding: bytes) -> bytes:
        wbits = _WBITS.get(encoding)
        if wbits is None:
            raise HttpError(415, f"unsupported Content-Encoding {encoding.decode('latin-1')!r}")
        inflater = zlib.decompressobj(wbits)
        try:
            # One byte past the limit tells an oversized body apart without inflating all of it.
            data = inflater.decompress(body, self.max_body_bytes + 1)
        except zlib.error as error:
            raise HttpError(
                400, f"request body is not valid {encoding.decode()}: {error}"
            ) from None
        if len(data) > self.max_body_bytes:
            raise HttpError(413, _too_large(len(data), self.max_body_bytes) + " once inflated")
        if not inflater.eof:
            raise HttpError(400, f"request body is a truncated {encoding.decode()} stream")
        return data


def _header_length(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        length = -1
    if length < 0:
        raise HttpError(
            400, f"Inference-Header-Content-Length: expected a non-negative integer, got {value!r}"
        )
    return length


def _too_large(size: int, limit: int) -> str:
    return f"request body of {size} bytes is over the limit of {limit} (--max-message-bytes)"


def _compress(body: bytes, accept: bytes) -> tuple[bytes, bytes] | None:
    for name in (b"gzip", b"deflate"):
        if name in accept:
            deflater = zlib.compressobj(1, zlib.DEFLATED, _WBITS[name])
            return deflater.compress(body) + deflater.flush(), name
    return None


async def _send(send: Send, reply: Reply, accept: bytes) -> None:
    body = reply.body
    headers = [(b"content-type", reply.content_type)]
    if reply.header_length is not None:
        headers.append((b"inference-header-content-length", b"%d" % reply.header_length))
    if accept and body:
        compressed = _compress(body, accept)
        if compressed is not None:
            body = compressed[0]
            headers.append((b"content-encoding", compressed[1]))
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str, close: bool = False) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", JSON), (b"content-length", b"%d" % len(body))]
    retry = RETRY_AFTER.get(status)
    if retry is not None:
        headers.append((b"retry-after", retry))
    if close:  # the rest of an oversized body is not worth reading
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
