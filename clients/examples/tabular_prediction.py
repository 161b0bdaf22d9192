"""Predicts classes of a few 16-feature rows with the example `tabular` model.

    python clients/examples/tabular_prediction.py --url localhost:8001 --rows 4

The rows are random (a fixed seed); the same rows go once as one batched request, then one by
one over a stream, and both answers are printed.
"""

from __future__ import annotations

import argparse

import numpy as np

from clients import InferenceServerClient, StreamRequest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="localhost:8001", help="server host:port")
    parser.add_argument("--model", default="tabular")
    parser.add_argument("--rows", type=int, default=4, help="how many rows to classify")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random rows")
    args = parser.parse_args()

    features = np.random.default_rng(args.seed).normal(size=(args.rows, 16)).astype(np.float32)
    with InferenceServerClient(args.url, timeout=30) as client:
        # One request carrying every row: the model is batched, so rows are the first dimension.
        outputs = client.infer(args.model, {"features": features})
        for i, (label, probabilities) in enumerate(
            zip(outputs["label"][:, 0], outputs["probabilities"], strict=True)
        ):
            print(f"row {i}: label {label} probabilities {np.round(probabilities, 3).tolist()}")

        # The same rows as separate requests on one stream; answers may come back in any order.
        requests = [
            StreamRequest(args.model, {"features": row[None, :]}, outputs=["label"], id=str(i))
            for i, row in enumerate(features)
        ]
        labels = {int(r.id): int(r.result()["label"][0, 0]) for r in client.stream_infer(requests)}
        print("stream labels:", [labels[i] for i in range(args.rows)])


if __name__ == "__main__":
    main()
