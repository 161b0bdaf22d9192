"""The one place a request's deadline is resolved: the transport's time left and the `timeout`
parameter (microseconds, as Triton reads it), whichever ends first."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.dataplane import resolve_deadline
from server.errors import InvalidArgumentError
from server.inference import InferenceRequest


def request(**parameters: object) -> InferenceRequest:
    return InferenceRequest("m", "", {"x": np.zeros(1)}, parameters=dict(parameters))


async def deadline_in(req: InferenceRequest, timeout: float | None) -> float | None:
    now = asyncio.get_running_loop().time()
    deadline = resolve_deadline(req, timeout)
    return None if deadline is None else deadline - now


@pytest.mark.parametrize(
    ("parameters", "transport", "expected"),
    [
        ({}, None, None),
        ({}, 2.0, 2.0),
        ({"timeout": 2500}, None, 0.0025),
        ({"timeout": 2500}, 2.0, 0.0025),  # the parameter is shorter
        ({"timeout": 5_000_000}, 2.0, 2.0),  # the transport's deadline is shorter
        ({"timeout": 0}, None, None),  # 0: no timeout, as Triton reads it
        ({"timeout": 0}, 1.0, 1.0),
    ],
)
def test_the_earlier_deadline_wins(parameters: dict, transport: float | None, expected) -> None:
    got = asyncio.run(deadline_in(request(**parameters), transport))
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("value", [-1, "10", True, 1.5])
def test_timeout_must_be_non_negative_microseconds(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=r"model 'm': parameter 'timeout': expected a "):
        asyncio.run(deadline_in(request(timeout=value), None))
