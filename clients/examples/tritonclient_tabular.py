"""The tabular example with Triton's own client, tritonclient.grpc: the server speaks the same
protocol, so Triton tooling works against it unchanged.

    pip install 'tritonclient[grpc]'
    python clients/examples/tritonclient_tabular.py --url localhost:8001 --rows 4
"""

from __future__ import annotations

import argparse
import queue

import numpy as np
import tritonclient.grpc as triton


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="localhost:8001", help="server host:port")
    parser.add_argument("--model", default="tabular")
    parser.add_argument("--rows", type=int, default=4, help="how many rows to classify")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random rows")
    args = parser.parse_args()

    features = np.random.default_rng(args.seed).normal(size=(args.rows, 16)).astype(np.float32)
    client = triton.InferenceServerClient(args.url)
    print("server ready:", client.is_server_ready())
    metadata = client.get_model_metadata(args.model)
    print("inputs:", [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs])

    # Unary: all rows in one request.
    inputs = [triton.InferInput("features", list(features.shape), "FP32")]
    inputs[0].set_data_from_numpy(features)
    outputs = [triton.InferRequestedOutput("label"), triton.InferRequestedOutput("probabilities")]
    result = client.infer(args.model, inputs, outputs=outputs, request_id="batch")
    labels = result.as_numpy("label")[:, 0]
    for i, probabilities in enumerate(result.as_numpy("probabilities")):
        print(f"row {i}: label {labels[i]} probabilities {np.round(probabilities, 3).tolist()}")

    # Streaming: one request per row on a bidirectional stream; results arrive in a callback.
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    for i, row in enumerate(features):
        row_input = triton.InferInput("features", [1, 16], "FP32")
        row_input.set_data_from_numpy(row[None, :])
        client.async_stream_infer(args.model, [row_input], request_id=str(i))
    streamed = {}
    for _ in range(args.rows):
        result, error = results.get(timeout=30)
        if error is not None:
            raise SystemExit(f"stream request failed: {error}")
        streamed[int(result.get_response().id)] = int(result.as_numpy("label")[0, 0])
    client.stop_stream()
    print("stream labels:", [streamed[i] for i in range(args.rows)])
    client.close()


if __name__ == "__main__":
    main()
