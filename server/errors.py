"""Transport-independent error kinds.

The core raises these; each frontend maps them to its wire status codes in one table
(server/grpc/status.py, server/http/status.py). `status` names the outcome independently of
the transport; statistics and /metrics count requests by it (the names are gRPC's). A client
mistake is never an InternalError: that kind is kept for our own faults and for failures
inside ONNX Runtime.
"""

from __future__ import annotations


class InferenceServerError(Exception):
    """Base of every error the server reports to a client."""

    status = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(InferenceServerError):
    """The request is malformed or does not match the model."""

    status = "INVALID_ARGUMENT"


class NotFoundError(InferenceServerError):
    """Unknown model, version or shared memory region."""

    status = "NOT_FOUND"


class AlreadyExistsError(InferenceServerError):
    """The name is taken (a shared memory region registered twice)."""

    status = "ALREADY_EXISTS"


class UnavailableError(InferenceServerError):
    """The model exists but cannot take requests now (loading, unloading, shutting down)."""

    status = "UNAVAILABLE"


class ResourceExhaustedError(InferenceServerError):
    """A queue or size limit refused the request."""

    status = "RESOURCE_EXHAUSTED"


class DeadlineExceededError(InferenceServerError):
    """The request's timeout passed before it could run."""

    status = "DEADLINE_EXCEEDED"


class UnimplementedError(InferenceServerError):
    """The call is part of the protocol but not offered by this server."""

    status = "UNIMPLEMENTED"


class InternalError(InferenceServerError):
    """Our own fault or an ONNX Runtime failure."""

    status = "INTERNAL"


class ConfigError(Exception):
    """A model's configuration is invalid; the message names file, key path and expectation."""


# The outcome of a request whose client went away before it was answered.
CANCELLED = "CANCELLED"
OK = "OK"


class ListenError(Exception):
    """The server cannot listen on an address: the port is taken, or the address is not ours."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"cannot listen on {host}:{port}: address in use?")
        self.host = host
        self.port = port
