"""The one exception every client call raises: the gRPC status code and the server's message."""

from __future__ import annotations

import grpc


class InferenceServerError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def from_rpc_error(error: grpc.RpcError) -> InferenceServerError:
    # Both grpc.RpcError flavours (sync and aio) raised by a call carry code() and details().
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return InferenceServerError(code, details or code.name.lower())


def code_from_name(name: str) -> grpc.StatusCode:
    """A status code from its name, as in-band stream errors carry it; UNKNOWN if not one."""
    return grpc.StatusCode.__members__.get(name, grpc.StatusCode.UNKNOWN)
