"""The one table from our error kinds to gRPC status codes."""

from __future__ import annotations

import grpc

from server import errors

_CODES: dict[type[errors.InferenceServerError], grpc.StatusCode] = {
    errors.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    errors.UnavailableError: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.UnimplementedError: grpc.StatusCode.UNIMPLEMENTED,
    errors.InternalError: grpc.StatusCode.INTERNAL,
}


def code_for(error: errors.InferenceServerError) -> grpc.StatusCode:
    return _CODES.get(type(error), grpc.StatusCode.INTERNAL)
