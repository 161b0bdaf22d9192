"""SIGTERM under load: every request the server accepted completes, then it exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from tests.harness import ServerProcess
from tests.integration.observability import held
from tests.models import build_slow
from tests.slow_requests import SlowRequests

REQUESTS = 8
MILLISECONDS = 150.0


def test_sigterm_finishes_queued_requests_and_exits_0(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # One row per execution, so the requests queue up behind each other (about 1.2 s of work).
    build_slow(tmp_path, config={"max_batch_size": 1}, milliseconds=MILLISECONDS)
    server = start_server(tmp_path)
    load = SlowRequests(server.address, server.metrics_port, REQUESTS)
    load.start_and_wait_arrived()
    server.signal(signal.SIGTERM)
    assert load.join() == [float(i) for i in range(REQUESTS)]
    assert server.stop() == 0
    logs = server.logs()
    assert "shutting down" in logs and "shutdown complete" in logs


SHUTDOWN_TIMEOUT = 3.0
# Stopping the cut run and exiting (sessions released, interpreter teardown) on a loaded 2-core
# VM; shorter than the timeout, so a drain granted the timeout twice cannot fit under it.
EXIT_MARGIN = 2.5


def test_one_shutdown_timeout_bounds_the_whole_drain(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # One execution far longer than the timeout: the drain must give up on it at the deadline.
    build_slow(tmp_path, config={"max_batch_size": 1}, milliseconds=30_000.0)
    server = start_server(tmp_path, "--shutdown-timeout", str(SHUTDOWN_TIMEOUT))
    outcome: list[object] = []

    def one() -> None:
        tensor = triton.InferInput("INPUT0", [1, 1], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 1), np.float32))
        with triton.InferenceServerClient(server.address) as client:
            try:
                outcome.append(client.infer("slow", [tensor], client_timeout=120))
            except triton.InferenceServerException as error:
                outcome.append(error)

    thread = threading.Thread(target=one)
    thread.start()
    deadline = time.monotonic() + 30
    while sum(held(server.metrics_port, "slow")) < 1:  # the execution is running
        assert time.monotonic() < deadline, "the request did not reach the server"
        time.sleep(0.01)  # pacing the poll of /metrics
    assert server.process is not None
    sent = time.monotonic()
    server.signal(signal.SIGTERM)
    code = server.process.wait(SHUTDOWN_TIMEOUT + 30)
    took = time.monotonic() - sent
    thread.join(30)
    # Measured from outside the process: it waited for the request, but only once.
    assert SHUTDOWN_TIMEOUT <= took < SHUTDOWN_TIMEOUT + EXIT_MARGIN, took
    assert code == 0, server.logs()
    assert len(outcome) == 1 and isinstance(outcome[0], triton.InferenceServerException)
    # The stopped run is a warning, not an ERROR (the fixture fails the test on one).
    logs = server.logs()
    assert "model 'slow' version 1: stopping 1 execution(s) still running" in logs
    assert "shutdown complete" in logs
