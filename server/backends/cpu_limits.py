"""How many cores this process may use: its CPU affinity, capped by its cgroup's CPU quota.

A container limited by a cpuset sees only those cores in its affinity mask, but one limited by
a quota (`docker --cpus 2`, a Kubernetes CPU limit) sees every host core there; only the
cgroup's quota says how much time it gets. Sizing thread pools to the host's 64 cores under a
2-core quota makes ORT's threads fight for slices and throttles the process.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0)) or 1
    else:
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return cores


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> float | None:
    """The CPU quota in cores (1.5 = 150 ms per 100 ms), or None when there is none."""
    v2, v1 = _own_cgroups(proc_cgroup)
    # Inside a cgroup namespace the process's own group is mounted at the root.
    for directory in (cgroup_root / v2, cgroup_root):
        text = _read(directory / "cpu.max")
        if text is not None:
            quota, _, period = text.partition(" ")
            return None if quota == "max" else _cores(quota, period)
    for directory in (cgroup_root / "cpu" / v1, cgroup_root / "cpu"):
        quota = _read(directory / "cpu.cfs_quota_us")
        if quota is not None:
            period = _read(directory / "cpu.cfs_period_us") or "100000"
            return None if quota.startswith("-") else _cores(quota, period)
    return None


def _own_cgroups(proc_cgroup: Path) -> tuple[str, str]:
    """This process's cgroup paths (v2 unified, v1 cpu controller), relative to their mounts."""
    v2 = v1 = ""
    for line in (_read(proc_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        relative = path.lstrip("/")
        if hierarchy == "0" and not controllers:
            v2 = relative
        elif "cpu" in controllers.split(","):
            v1 = relative
    return v2, v1


def _cores(quota: str, period: str) -> float | None:
    try:
        microseconds, per = int(quota), int(period or "100000")
    except ValueError:
        return None  # a format we do not know: no limit rather than a wrong one
    return microseconds / per if microseconds > 0 and per > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
