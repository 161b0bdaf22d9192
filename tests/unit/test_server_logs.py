"""The server-log check the fixtures run: what counts as an unexpected error, and markers."""

from __future__ import annotations

import pytest

from tests import server_logs

LOG = """\
2026-12-06 04:10:45,344 INFO onnxserve: metrics listening on 127.0.0.1:36153
2026-12-06 04:10:45,346 ERROR server.repository.manager: model 'a': failed to load: bad
2026-12-06 04:10:45,347 ERROR server.scheduling.scheduler: model 'b': batch failed
Traceback (most recent call last):
  File "x.py", line 1, in run
    raise ValueError("boom")
ValueError: boom
2026-12-06 04:10:45,348 WARNING onnxserve: a warning is not an error
{"time": "t", "level": "ERROR", "logger": "x", "message": "json error"}
{"time": "t", "level": "INFO", "logger": "x", "message": "json info"}
"""


def test_every_error_line_and_traceback_is_found_with_its_record() -> None:
    problems = server_logs.problems_in(LOG)
    assert [p.splitlines()[0][24:] for p in problems[:2]] == [
        "ERROR server.repository.manager: model 'a': failed to load: bad",
        "ERROR server.scheduling.scheduler: model 'b': batch failed",
    ]
    assert problems[1].splitlines()[-1] == "ValueError: boom"
    assert problems[2] == '{"time": "t", "level": "ERROR", "logger": "x", "message": "json error"}'
    assert len(problems) == 3


def test_a_bare_traceback_counts_on_its_own() -> None:
    logs = "Traceback (most recent call last):\n  File 'y'\nKeyError: 'k'\nafter\n"
    assert server_logs.problems_in(logs) == [
        "Traceback (most recent call last):\n  File 'y'\nKeyError: 'k'"
    ]


def test_markers_allow_matching_errors_and_exit_codes() -> None:
    nothing = server_logs.expected_from([])
    assert len(server_logs.unexpected(LOG, 0, nothing)) == 3
    assert server_logs.unexpected("", 1, nothing) == ["the server exited with 1"]
    some = server_logs.expected_from(
        [pytest.mark.server_errors("failed to load", "json error", exit_code=3).mark]
    )
    assert [p.splitlines()[-1] for p in server_logs.unexpected(LOG, 3, some)] == [
        "ValueError: boom"
    ]
    anything = server_logs.expected_from([pytest.mark.server_errors().mark])
    assert server_logs.unexpected(LOG, 0, anything) == []
    assert server_logs.unexpected(LOG, -9, anything) == ["the server exited with -9"]


def test_check_fails_the_test_with_the_list() -> None:
    with pytest.raises(pytest.fail.Exception, match="exited with 2"):
        server_logs.check("t", "", 2, server_logs.expected_from([]))
