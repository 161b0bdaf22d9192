"""ONNX Runtime's intra-op threads and their spinning, per model size: wall and CPU per call.

Runs each example model in-process with intra_op_num_threads 1 and 2, and with
`session.intra_op.allow_spinning` on (ORT's default) and off, at batch 1 and a larger batch.
Reports the p50 wall time per call and the process CPU time per call: spinning threads keep a
core busy between calls, which a server on two cores pays for in its event loop's time.
The calls are paced (a short sleep between them, as requests arrive in a server), because
back-to-back calls hide what spinning costs between calls.

    .venv/bin/python bench/ort_threads.py --seconds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `server` importable
    sys.path.insert(0, str(ROOT))

from server import datatypes  # noqa: E402
from server.backends import onnxruntime as backend  # noqa: E402
from server.model_config import MODEL_FILE, load_model_config  # noqa: E402

EXAMPLES = ROOT / "model_repository"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(model: str, threads: int, spinning: bool, batch: int, seconds: float, gap: float):
    model_dir = EXAMPLES / model
    config = load_model_config(model_dir)
    session = dataclasses.replace(config.session, intra_op_num_threads=threads)
    options = backend.session_options(session, 1, spinning=spinning)
    model_file = model_dir / "1" / MODEL_FILE
    instance = backend.OrtInstance(
        ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    )
    outputs = [t.name for t in config.outputs]
    rng = np.random.default_rng(0)
    feeds = {
        t.name: (rng.random((batch, *t.dims)) * 100).astype(datatypes.BY_NAME[t.datatype].numpy)
        for t in config.inputs
    }
    for _ in range(5):  # the first runs allocate
        instance.run(outputs, feeds)
    latencies = []
    cpu_before, begin = _cpu(), time.perf_counter()
    while time.perf_counter() - begin < seconds:
        t0 = time.perf_counter()
        instance.run(outputs, feeds)
        latencies.append(time.perf_counter() - t0)
        if gap:
            time.sleep(gap)  # pacing: requests arrive apart, as in a server
    cpu = _cpu() - cpu_before
    p50 = float(np.percentile(latencies, 50)) * 1e6
    return p50, cpu / len(latencies) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--gap-us", type=float, default=200.0, help="pause between calls")
    args = parser.parse_args(argv)
    print(
        "| model | batch | intra-op threads | spinning | p50 per call (us) | CPU per call (us) |\n"
        "|---|---:|---:|---|---:|---:|"
    )
    for model, batches in (("tabular", (1, 16)), ("image", (1, 8))):
        for batch in batches:
            for threads in (1, 2):
                for spinning in (True, False):
                    p50, cpu = measure(
                        model, threads, spinning, batch, args.seconds, args.gap_us / 1e6
                    )
                    print(
                        f"| {model} | {batch} | {threads} | {'on' if spinning else 'off'} "
                        f"| {p50:,.0f} | {cpu:,.0f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
