"""Fails a test whose server exited non-zero or logged a traceback or an ERROR it did not expect.

A server started by the fixtures in tests/conftest.py is checked when it is stopped: a request
that crashed a handler, a background task that died or a shutdown that did not finish cleanly
shows in the log even when every reply the test looked at was right. Tests that provoke errors
on purpose say which ones with the marker

    @pytest.mark.server_errors("failed to load", exit_code=1)

whose patterns are regular expressions searched in each ERROR line or traceback (no pattern:
any error is expected); exit_code is the code the server may exit with besides 0. On a test
module (pytestmark) the marker covers its module-scoped server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

MARKER = "server_errors"
_TEXT_ERROR = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (ERROR|CRITICAL) ")
_TRACEBACK = "Traceback (most recent call last):"


@dataclass(frozen=True)
class Expected:
    """The errors a test provokes on purpose: any when `anything`, else those matching."""

    patterns: tuple[re.Pattern[str], ...] = ()
    anything: bool = False
    exit_codes: frozenset[int] = frozenset({0})

    def allows(self, problem: str) -> bool:
        return self.anything or any(p.search(problem) for p in self.patterns)


def expected_from(markers: Iterable[pytest.Mark]) -> Expected:
    """Merges every server_errors marker into one allowance."""
    patterns: list[re.Pattern[str]] = []
    anything = False
    exit_codes = {0}
    for mark in markers:
        if not mark.args:
            anything = True
        patterns += [re.compile(p) for p in mark.args]
        if "exit_code" in mark.kwargs:
            exit_codes.add(int(mark.kwargs["exit_code"]))
    return Expected(tuple(patterns), anything, frozenset(exit_codes))


def problems_in(logs: str) -> list[str]:
    """Each ERROR/CRITICAL line (text or JSON format) and each traceback, as one string."""
    problems: list[str] = []
    lines = logs.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(_TRACEBACK):
            # A traceback runs until its last line, the unindented "Type: message".
            end = index + 1
            while end < len(lines) and (lines[end].startswith(" ") or not lines[end]):
                end += 1
            text = "\n".join(lines[index : end + 1])
            if problems and index > 0 and problems[-1] == lines[index - 1]:
                problems[-1] += "\n" + text  # the traceback of the ERROR line above it
            else:
                problems.append(text)
            index = end + 1
            continue
        if _TEXT_ERROR.match(line) or _json_level(line) in ("ERROR", "CRITICAL"):
            problems.append(line)
        index += 1
    return problems


def _json_level(line: str) -> str | None:
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    level = entry.get("level") if isinstance(entry, dict) else None
    return level if isinstance(level, str) else None


def unexpected(logs: str, returncode: int | None, expected: Expected) -> list[str]:
    """What in a stopped server's exit code and log the test did not expect."""
    found = [p for p in problems_in(logs) if not expected.allows(p)]
    if returncode is not None and returncode not in expected.exit_codes:
        found.insert(0, f"the server exited with {returncode}")
    return found


def check(name: str, logs: str, returncode: int | None, expected: Expected) -> None:
    """pytest.fail with the unexpected problems, if any."""
    found = unexpected(logs, returncode, expected)
    if found:
        listed = "\n".join(f"- {p}" for p in found)
        hint = f"(mark the test @pytest.mark.{MARKER}(...) if it provokes them on purpose)"
        pytest.fail(f"{name}: unexpected server errors {hint}:\n{listed}", pytrace=False)
