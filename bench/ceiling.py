"""The ceiling: the same model run in-process by onnxruntime, no server, no network.

Sessions are built by the server's own backend from the model's config, so the thread count
and session options are exactly those an instance of the server uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server import datatypes
from server.backends import onnxruntime as backend
from server.model_config import MODEL_FILE, load_model_config


@dataclass
class CeilingResult:
    model: str
    batch: int
    threads: int
    rows_per_second: float
    p50_ms: float  # per call (one batch)
    p99_ms: float


def measure(model_dir: Path, batches: list[int], seconds: float) -> list[CeilingResult]:
    config = load_model_config(model_dir)
    model_file = model_dir / "1" / MODEL_FILE
    instances, _ = backend.create_instances(model_file, config)
    instance = instances[0]
    threads = backend.session_options(config.session, config.instance_group.count)
    outputs = [t.name for t in config.outputs]
    rng = np.random.default_rng(0)
    results = []
    for batch in batches:
        feeds = {
            t.name: (rng.random((batch, *t.dims)) * 100).astype(datatypes.BY_NAME[t.datatype].numpy)
            for t in config.inputs
        }
        for _ in range(5):  # warm-up: first runs allocate
            instance.run(outputs, feeds)
        latencies = []
        clock = time.perf_counter
        begin = clock()
        while clock() - begin < seconds:
            t0 = clock()
            instance.run(outputs, feeds)
            latencies.append(clock() - t0)
        elapsed = clock() - begin
        p50, p99 = np.percentile(np.array(latencies), [50, 99]) * 1000
        results.append(
            CeilingResult(
                model_dir.name,
                batch,
                threads.intra_op_num_threads,
                len(latencies) * batch / elapsed,
                float(p50),
                float(p99),
            )
        )
    return results
