"""The cores a process may use: affinity capped by the cgroup CPU quota, read from real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.backends import cpu_limits
from server.backends.cpu_limits import cgroup_cpu_quota, usable_cores


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def no_own_cgroup(tmp_path: Path) -> Path:
    proc = tmp_path / "proc-cgroup"
    write(proc, "0::/")
    return proc


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [("200000 100000", 2.0), ("150000 100000", 1.5), ("50000 100000", 0.5), ("max 100000", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, cores: float | None) -> None:
    write(tmp_path / "cg" / "cpu.max", cpu_max)
    assert cgroup_cpu_quota(tmp_path / "cg", no_own_cgroup(tmp_path)) == cores


def test_cgroup_v2_own_group_is_preferred_to_the_root(tmp_path: Path) -> None:
    # A systemd service with CPUQuota=300%: the limit sits on its own group, not the root.
    root = tmp_path / "cg"
    write(root / "cpu.max", "max 100000")
    write(root / "system.slice" / "app.service" / "cpu.max", "300000 100000")
    proc = tmp_path / "proc-cgroup"
    write(proc, "0::/system.slice/app.service")
    assert cgroup_cpu_quota(root, proc) == 3.0


@pytest.mark.parametrize(("quota", "cores"), [("250000", 2.5), ("-1", None)])
def test_cgroup_v1_quota(tmp_path: Path, quota: str, cores: float | None) -> None:
    root = tmp_path / "cg"
    write(root / "cpu" / "docker" / "abc" / "cpu.cfs_quota_us", quota)
    write(root / "cpu" / "docker" / "abc" / "cpu.cfs_period_us", "100000")
    proc = tmp_path / "proc-cgroup"
    write(proc, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/")
    assert cgroup_cpu_quota(root, proc) == cores


@pytest.mark.parametrize("cpu_max", ["", "garbage", "0 100000", "100000 0"])
def test_unreadable_quota_is_no_limit(tmp_path: Path, cpu_max: str) -> None:
    write(tmp_path / "cg" / "cpu.max", cpu_max)
    assert cgroup_cpu_quota(tmp_path / "cg", no_own_cgroup(tmp_path)) is None


def test_no_cgroup_files_is_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "missing", tmp_path / "missing-proc") is None


@pytest.mark.parametrize(
    ("cpu_max", "cores"), [("150000 100000", 2), ("50000 100000", 1), ("max 100000", 8)]
)
def test_quota_caps_the_affinity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str, cores: int
) -> None:
    # `docker --cpus 1.5` on an 8-core host: every core in the affinity mask, 1.5 cores of time.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    write(tmp_path / "cg" / "cpu.max", cpu_max)
    assert usable_cores(tmp_path / "cg", no_own_cgroup(tmp_path)) == cores


def test_session_threads_follow_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.backends.onnxruntime import session_options
    from server.model_config import SessionConfig

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(cpu_limits, "cgroup_cpu_quota", lambda *paths: 2.0)
    assert session_options(SessionConfig(), 1).intra_op_num_threads == 2
