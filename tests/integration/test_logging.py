"""Logs of a real server with --log-format json: every line is one JSON object, lifecycle events
are logged once each, requests are not, and a slow request is, with its timings."""

from __future__ import annotations

import json

import grpc
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from server.grpc.generated import grpc_service_pb2 as pb
from tests.integration.observability import double_inputs, fp32_input
from tests.integration.wire import rpc_error
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


def test_log_settings_change_while_serving(start_server, tmp_path) -> None:
    repo = tmp_path / "repo"
    build_double(repo)
    server = start_server(repo)
    with triton.InferenceServerClient(server.address) as client:
        defaults = {
            "log_file": {"string_param": ""},
            "log_info": {"bool_param": True},
            "log_warning": {"bool_param": True},
            "log_error": {"bool_param": True},
            "log_verbose_level": {"uint32_param": 0},
            "log_format": {"string_param": "text"},
        }
        assert client.get_log_settings(as_json=True)["settings"] == defaults
        assert "logging" in client.get_server_metadata().extensions

        refused = {
            "log_file": ({"log_file": "/tmp/x.log"}, "logs to stderr only; got '/tmp/x.log'"),
            "format": ({"log_format": "ISO8601"}, "expected one of text, json, got 'ISO8601'"),
            "threshold": ({"log_error": False}, "'log_error': cannot be off while 'log_info'"),
            "no value": ({"log_info": None}, "log setting 'log_info': no value given"),
        }
        for case, (settings, message) in refused.items():
            with pytest.raises(InferenceServerException) as raised:
                client.update_log_settings(settings)
            assert raised.value.status() == "StatusCode.INVALID_ARGUMENT", case
            assert message in raised.value.message(), (case, raised.value.message())
        # tritonclient picks the value's field from the key; other clients may not.
        value = pb.LogSettingsRequest.SettingValue
        with server.channel() as channel:
            stub = server.stub(channel)
            for settings, message in (
                ({"log_colour": value(string_param="red")}, "unknown log setting 'log_colour'"),
                ({"log_info": value(string_param="no")}, "expected a bool, got str 'no'"),
            ):
                error = rpc_error(stub.LogSettings, pb.LogSettingsRequest(settings=settings))
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert message in error.details()
        assert client.get_log_settings(as_json=True)["settings"] == defaults  # all or nothing

        changed = client.update_log_settings(
            {"log_info": False, "log_format": "json"}, as_json=True
        )
        assert changed["settings"] == {
            **defaults,
            "log_info": {"bool_param": False},
            "log_format": {"string_param": "json"},
        }
        client.infer("double", double_inputs(1))
    assert server.stop() == 0

    lines = server.logs().splitlines()
    start = next(i for i, line in enumerate(lines) if "startup finished" in line)
    assert "INFO" in lines[start] and not lines[start].startswith("{")  # text until the change
    after = [json.loads(line) for line in lines[start + 1 :] if line.startswith("{")]
    assert [r["message"] for r in after] == ["log settings changed: level WARNING, format json"]
    # INFO lines are off from then on: the shutdown's own lines are gone.
    assert not any("shutting down" in line for line in lines)
