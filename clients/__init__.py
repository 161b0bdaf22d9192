"""Python clients for onnxserve (and any Open Inference Protocol gRPC server): numpy in, numpy out.

    from clients import InferenceServerClient
    with InferenceServerClient("localhost:8001") as client:
        outputs = client.infer("tabular", {"features": features})

Every failed call raises InferenceServerError, which carries the gRPC status code and the
server's message.
"""

from clients.aio import AsyncInferenceServerClient
from clients.client import InferenceServerClient
from clients.errors import InferenceServerError
from clients.streaming import AsyncStream, StreamRequest, StreamResult

__all__ = [
    "AsyncInferenceServerClient",
    "AsyncStream",
    "InferenceServerClient",
    "InferenceServerError",
    "StreamRequest",
    "StreamResult",
]
