"""The one table from our error kinds to HTTP status codes (the gRPC one is server/grpc/status.py).

Unknown models and versions answer 404 (Triton answers 400): the resource named in the path does
not exist, which is what 404 says. Overload answers 429 with Retry-After, so load balancers and
clients back off instead of failing over.
"""

from __future__ import annotations

from server import errors

_CODES: dict[type[errors.InferenceServerError], int] = {
    errors.InvalidArgumentError: 400,
    errors.NotFoundError: 404,
    errors.AlreadyExistsError: 409,
    errors.ResourceExhaustedError: 429,
    errors.InternalError: 500,
    errors.UnimplementedError: 501,
    errors.UnavailableError: 503,
    errors.DeadlineExceededError: 504,
}
# Seconds a client should wait before it retries, for the codes where a retry can succeed.
RETRY_AFTER: dict[int, bytes] = {429: b"1", 503: b"1"}


def status_for(error: errors.InferenceServerError) -> int:
    return _CODES.get(type(error), 500)


class HttpError(Exception):
    """A mistake only HTTP can make (method, body size, encoding), with its own status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
