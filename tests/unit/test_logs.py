"""The log formatters: JSON lines carry level, logger, message and extra fields."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from server.errors import InvalidArgumentError
from server.observability.logs import (
    ClientGoneFilter,
    JsonFormatter,
    configure_logging,
    log_settings,
    update_log_settings,
)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("server.x", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_the_standard_fields_and_extras() -> None:
    line = JsonFormatter().format(record("model '%s': %d ms", "m", 12, model="m", total_ms=12.5))
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "WARNING",
        "logger": "server.x",
        "message": "model 'm': 12 ms",
        "model": "m",
        "total_ms": 12.5,
    }


def test_json_line_carries_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in entry["exception"]
    assert "\n" not in JsonFormatter().format(rec)  # one line per event


def test_configure_logging_replaces_the_root_handlers(capsys: pytest.CaptureFixture) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("warning", "json")
        logging.getLogger("server.y").info("hidden")
        logging.getLogger("server.y").warning("shown %s", 1)
        lines = capsys.readouterr().err.splitlines()
        assert [json.loads(line)["message"] for line in lines] == ["shown 1"]
        with pytest.raises(ValueError):
            configure_logging("INFO", "xml")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_a_client_leaving_mid_reply_is_not_an_error_line() -> None:
    def record(msg: str) -> logging.LogRecord:
        try:
            raise RuntimeError("stream closed")
        except RuntimeError:
            exc_info = sys.exc_info()
        return logging.LogRecord(
            "grpc._cython.cygrpc", logging.ERROR, "x", 1, msg, ("/x/ModelInfer",), exc_info
        )

    gone = record("ExecuteBatchError raised in core by servicer method [%s]")
    root = logging.getLogger()
    saved = root.level
    try:
        root.setLevel(logging.INFO)
        assert ClientGoneFilter().filter(gone) is False
        assert (gone.levelno, gone.exc_info) == (logging.DEBUG, None)
        root.setLevel(logging.DEBUG)
        assert ClientGoneFilter().filter(record(gone.msg)) is True
    finally:
        root.setLevel(saved)
    assert ClientGoneFilter().filter(record("Unexpected error in servicer")) is True


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("INFO", "text")
    try:
        yield root
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@pytest.mark.parametrize(
    ("changes", "level"),
    [
        ({"log_verbose_level": 1}, logging.DEBUG),
        ({"log_verbose_level": 0}, logging.INFO),
        ({"log_info": False}, logging.WARNING),
        ({"log_info": False, "log_warning": False}, logging.ERROR),
        ({"log_info": False, "log_warning": False, "log_error": False}, logging.CRITICAL),
    ],
)
def test_switches_become_one_threshold(root_logger: logging.Logger, changes, level: int) -> None:
    settings = update_log_settings(changes)
    assert root_logger.level == level
    assert settings == {**log_settings(), **changes}  # what was asked is what is reported


def test_a_refused_change_changes_nothing(root_logger: logging.Logger) -> None:
    with pytest.raises(InvalidArgumentError, match="'log_warning': cannot be off while"):
        update_log_settings({"log_format": "json", "log_warning": False})
    assert root_logger.level == logging.INFO
    assert log_settings()["log_format"] == "text"
