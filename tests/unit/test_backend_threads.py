"""Threads per ONNX Runtime session: the cores this process may use, shared by its instances."""

from __future__ import annotations

import os

import pytest

from server.backends import cpu_limits
from server.backends.onnxruntime import session_options
from server.model_config import SessionConfig


@pytest.fixture
def four_of_sixty_four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # A container limited to 4 cores by its cpuset on a 64-core host.
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(cpu_limits, "cgroup_cpu_quota", lambda *paths: None)  # whatever CI has


@pytest.mark.parametrize(("instances", "threads"), [(1, 4), (2, 2), (3, 1), (8, 1)])
def test_default_threads_share_the_usable_cores(
    four_of_sixty_four_cores: None, instances: int, threads: int
) -> None:
    assert session_options(SessionConfig(), instances).intra_op_num_threads == threads


def test_configured_threads_are_kept(four_of_sixty_four_cores: None) -> None:
    options = session_options(SessionConfig(intra_op_num_threads=6, inter_op_num_threads=2), 2)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (6, 2)


@pytest.mark.parametrize(("allow", "entry"), [(True, "1"), (False, "0")])
def test_spinning_follows_the_config(allow: bool, entry: str) -> None:
    options = session_options(SessionConfig(intra_op_allow_spinning=allow), 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry
