"""The settings `onnxserve tune` varies: values per axis, parsing --try, applying a candidate."""

from __future__ import annotations

import pytest

from server.model_config import ModelConfig, parse_config_dict
from server.tools.tune_space import AXES, Candidate, apply, first_round, parse_values, values


def config(**session: object) -> ModelConfig:
    return parse_config_dict({"max_batch_size": 8, "session": dict(session)}, "m", "config.yaml")


def test_spinning_is_an_axis_and_tries_the_other_setting() -> None:
    assert "spinning" in AXES
    assert values(config(), "spinning") == [False]
    assert values(config(intra_op_allow_spinning=False), "spinning") == [True]
    labels = [c.label for c in first_round(config(), ["spinning"])]
    assert labels == ["start", "spinning=False"]


def test_spinning_applies_to_the_session_and_nothing_else() -> None:
    start = config(intra_op_num_threads=2)
    tuned = apply(start, Candidate({"spinning": False}))
    assert tuned.session.intra_op_allow_spinning is False
    assert tuned.session.intra_op_num_threads == 2
    assert tuned.max_batch_size == start.max_batch_size


@pytest.mark.parametrize(
    ("text", "expected"), [("spinning=0,1", [False, True]), ("spinning=off", [False])]
)
def test_spinning_values_parse_as_flags(text: str, expected: list[bool]) -> None:
    assert parse_values(text) == ("spinning", expected)


def test_a_spinning_value_that_is_no_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="spinning: expected true or false, got 'maybe'"):
        parse_values("spinning=maybe")
