"""Logs of a real server with --log-format json: every line is one JSON object, lifecycle events
are logged once each, requests are not, and a slow request is, with its timings."""

from __future__ import annotations

import json

import tritonclient.grpc as triton

from tests.integration.observability import double_inputs, fp32_input
from tests.models import build_double, build_slow


def test_json_logs_lifecycle_and_slow_requests(start_server, tmp_path) -> None:
    repo = tmp_path / "repo"
    build_double(repo)
    build_slow(repo, milliseconds=300)
    server = start_server(repo, "--log-format", "json", "--log-slow-ms", "150")
    with triton.InferenceServerClient(server.address) as client:
        for _ in range(20):
            client.infer("double", double_inputs(1))
        client.infer("slow", [fp32_input(2)], request_id="the-slow-one")
    assert server.stop() == 0

    records = [json.loads(line) for line in server.logs().splitlines() if line.strip()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    messages = [r["message"] for r in records]

    for model in ("double", "slow"):
        assert messages.count(f"model '{model}' version 1: loading") == 1
        ready = [m for m in messages if m.startswith(f"model '{model}' version 1: ready in ")]
        assert len(ready) == 1 and ready[0].endswith(" on CPUExecutionProvider"), ready
        unloaded = [m for m in messages if m.startswith(f"model '{model}' version 1: unloaded")]
        assert len(unloaded) == 1 and "drained in" in unloaded[0], unloaded

    slow = [r for r in records if r["message"].startswith("slow request")]
    assert len(slow) == 1, slow  # the 20 fast requests are not logged at all
    (record,) = slow
    assert record["level"] == "WARNING"
    assert (record["model"], record["version"]) == ("slow", "1")
    assert record["request_id"] == "the-slow-one"
    assert (record["rows"], record["batch_rows"]) == (2, 2)
    assert record["total_ms"] > 150
    assert record["queue_ms"] >= 0 and record["compute_infer_ms"] > 0
    assert record["total_ms"] >= record["queue_ms"] + record["compute_ms"] - 0.01
    assert record["error"] == ""
    # Nothing else between "ready" and "shutting down": no line per request.
    start = next(i for i, m in enumerate(messages) if m.startswith("startup finished: serving"))
    end = next(i for i, m in enumerate(messages) if m.startswith("shutting down"))
    assert messages[start + 1 : end] == [record["message"]]
    assert messages[-1] == "shutdown complete"
