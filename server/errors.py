"""Transport-independent error kinds.

The core raises these; only a frontend (server/grpc/status.py) maps them to wire status codes.
A client mistake is never an InternalError: that kind is kept for our own faults and for
failures inside ONNX Runtime.
"""

from __future__ import annotations


class InferenceServerError(Exception):
    """Base of every error the server reports to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(InferenceServerError):
    """The request is malformed or does not match the model."""


class NotFoundError(InferenceServerError):
    """Unknown model, version or shared memory region."""


class AlreadyExistsError(InferenceServerError):
    """The name is taken (a shared memory region registered twice)."""


class UnavailableError(InferenceServerError):
    """The model exists but cannot take requests now (loading, unloading, shutting down)."""


class ResourceExhaustedError(InferenceServerError):
    """A queue or size limit refused the request."""


class DeadlineExceededError(InferenceServerError):
    """The request's timeout passed before it could run."""


class CancelledError(InferenceServerError):
    """The client went away."""


class UnimplementedError(InferenceServerError):
    """The call is part of the protocol but not offered by this server."""


class InternalError(InferenceServerError):
    """Our own fault or an ONNX Runtime failure."""


class ConfigError(Exception):
    """A model's configuration is invalid; the message names file, key path and expectation."""


class ListenError(Exception):
    """The server cannot listen on an address: the port is taken, or the address is not ours."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"cannot listen on {host}:{port}: address in use?")
        self.host = host
        self.port = port
