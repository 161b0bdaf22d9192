"""Requests that hold a server busy while a test stops it: each of N requests to the `slow`
model (one row per execution, so they queue behind each other) carries its own index and
expects it back, on its own thread. Shared by the graceful-shutdown test and the image's."""

from __future__ import annotations

import threading
import time

import numpy as np
import tritonclient.grpc as triton

from tests.integration.observability import held


class SlowRequests:
    def __init__(self, address: str, metrics_port: int, count: int) -> None:
        self.address = address
        self.metrics_port = metrics_port
        # The output, or the error, of request i (None while it is unanswered).
        self.results: list[object] = [None] * count
        self._threads = [threading.Thread(target=self._one, args=(i,)) for i in range(count)]

    def _one(self, index: int) -> None:
        tensor = triton.InferInput("INPUT0", [1, 1], "FP32")
        tensor.set_data_from_numpy(np.full((1, 1), index, np.float32))
        with triton.InferenceServerClient(self.address) as client:
            try:
                result = client.infer("slow", [tensor], client_timeout=60)
                self.results[index] = float(result.as_numpy("OUTPUT0")[0, 0])
            except Exception as error:  # noqa: BLE001 - reported by the test's assertion
                self.results[index] = error

    def start_and_wait_arrived(self, timeout: float = 30.0) -> None:
        """Sends them all, and returns once each is held by the server or already answered."""
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + timeout
        while sum(held(self.metrics_port, "slow")) + self._answered() < len(self.results):
            assert time.monotonic() < deadline, "the requests did not reach the server"
            time.sleep(0.01)  # pacing the poll of /metrics

    def join(self) -> list[object]:
        for thread in self._threads:
            thread.join(60)
        return self.results

    def _answered(self) -> int:
        return sum(r is not None for r in self.results)
