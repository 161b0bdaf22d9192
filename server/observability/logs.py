"""Logging setup: one line per event, as text for people or JSON for log pipelines.

The level and format can also change while the server runs (the LogSettings RPC), under
Triton's setting names.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from server.errors import InvalidArgumentError

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else came from `extra=` and is a structured field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, RFC 3339), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ClientGoneFilter(logging.Filter):
    """grpc logs a traceback at ERROR when a client leaves while its reply is being written.

    That is the client's doing, not a fault of ours: it is kept, without the traceback, for
    DEBUG only, so operators' ERROR lines stay meaningful.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("ExecuteBatchError raised in core"):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info, record.exc_text = None, None
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Replaces the root logger's handlers with one stderr handler in the chosen format."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(fmt))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    grpc_core = logging.getLogger("grpc._cython.cygrpc")
    if not any(isinstance(f, ClientGoneFilter) for f in grpc_core.filters):
        grpc_core.addFilter(ClientGoneFilter())


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


# --- settings at run time ---------------------------------------------------------------------

SettingValue = bool | int | str
# Triton's switches, from the most verbose down; here they are one threshold, so a switch that
# is on turns on every one after it.
_SWITCHES = (
    ("log_verbose_level", logging.DEBUG),
    ("log_info", logging.INFO),
    ("log_warning", logging.WARNING),
    ("log_error", logging.ERROR),
)
_SETTING_TYPES: dict[str, type] = {
    "log_file": str,
    "log_info": bool,
    "log_warning": bool,
    "log_error": bool,
    "log_verbose_level": int,
    "log_format": str,
}


def log_settings() -> dict[str, SettingValue]:
    """The settings in force, as the LogSettings RPC reports them."""
    root = logging.getLogger()
    threshold = root.getEffectiveLevel()
    settings: dict[str, SettingValue] = {"log_file": ""}  # always stderr
    for key, level in _SWITCHES:
        on = threshold <= level
        settings[key] = int(on) if key == "log_verbose_level" else on
    json_output = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    settings["log_format"] = "json" if json_output else "text"
    return settings


def update_log_settings(changes: Mapping[str, SettingValue]) -> dict[str, SettingValue]:
    """Applies the changes (all or none) and returns the settings now in force."""
    settings = log_settings()
    for key, value in changes.items():
        expected = _SETTING_TYPES.get(key)
        if expected is None:
            raise InvalidArgumentError(
                f"unknown log setting '{key}'; settings: {', '.join(_SETTING_TYPES)}"
            )
        if type(value) is not expected:
            raise InvalidArgumentError(
                f"log setting '{key}': expected a {expected.__name__},"
                f" got {type(value).__name__} {value!r}"
            )
        settings[key] = value
    if settings["log_file"]:
        raise InvalidArgumentError(
            f"log setting 'log_file': this server logs to stderr only; got {settings['log_file']!r}"
        )
    if settings["log_format"] not in FORMATS:
        raise InvalidArgumentError(
            f"log setting 'log_format': expected one of {', '.join(FORMATS)},"
            f" got {settings['log_format']!r}"
        )
    level = _threshold(settings)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        handler.setFormatter(_formatter(str(settings["log_format"])))
    logging.getLogger(__name__).warning(
        "log settings changed: level %s, format %s",
        logging.getLevelName(level),
        settings["log_format"],
    )
    return log_settings()


def _threshold(settings: Mapping[str, SettingValue]) -> int:
    """The one level the switches describe; a switch off after one on cannot be honoured."""
    level = logging.CRITICAL
    enabled: str | None = None
    for key, switch_level in _SWITCHES:
        if settings[key]:
            enabled = enabled or key
            level = min(level, switch_level)
        elif enabled is not None:
            raise InvalidArgumentError(
                f"log setting '{key}': cannot be off while '{enabled}' is on: levels are"
                f" thresholds here, so {enabled} includes it; turn {enabled} off as well"
            )
    return level
