"""A known handicap for a store: the positive control that proves the study can see a slower store.

``handicap: {cpu: 0.25}`` in a backend definition holds every process of that store to a quarter
of one CPU. Natively that is a cgroup v1 ``cpu`` group of its own (``cpu.cfs_quota_us`` over
``cpu.cfs_period_us``) that each store process joins before it runs (so all it forks is held
too); under Docker the same kernel mechanism is the container's ``cpu_quota``/``cpu_period``.
A CPU quota, not a block-I/O limit: under cgroup v1 buffered writes escape blkio throttling and
reads are throttled only when they miss the page cache, so a bandwidth limit would not be the
known, steady handicap a control needs.

The quota's period is 10 ms (longer only where the share would give less than the kernel's
smallest quota, 1 ms): over the kernel's usual 100 ms, a quarter of a CPU let the store run
unthrottled for 25 ms at a time, so a phase shorter than that (a replayed dozen LISTs) was slowed
or not by chance (docs/replay.md: a replayed throughput phase 1.73x slower, CV 89% over trials).
"""
from __future__ import annotations

import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from msbench.providers import registry

CPU_CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 10_000      # the quota's period, unless the share needs a longer one (period_us)
MIN_QUOTA_US = 1_000    # the kernel refuses a smaller cpu.cfs_quota_us


def unavailable_reason() -> str | None:
    """Why a CPU quota cannot be set here, or None."""
    if not (CPU_CGROUP_ROOT / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 cpu controller at {CPU_CGROUP_ROOT} (a handicap needs cpu.cfs_quota_us)"
    if not os.access(CPU_CGROUP_ROOT, os.W_OK):
        return f"cannot create a cgroup under {CPU_CGROUP_ROOT}: run as root"
    return None


def docker_quota(handicap: Mapping[str, float]) -> dict[str, int]:
    """The container keyword arguments that set the same quota as :class:`CpuQuota`."""
    if not handicap.get("cpu"):
        return {}
    period = period_us(handicap["cpu"])
    return {"cpu_period": period, "cpu_quota": round(handicap["cpu"] * period)}


def period_us(cpu: float) -> int:
    """The quota's period for a share ``cpu`` of one CPU: PERIOD_US, or the shortest that gives the
    share at least the kernel's smallest quota."""
    return max(PERIOD_US, math.ceil(MIN_QUOTA_US / cpu))


@dataclass
class CpuQuota:
    """One cgroup of our own, created by :meth:`create` and removed by :meth:`close` (it must be empty)."""

    path: Path
    cpu: float

    @classmethod
    def create(cls, label: str, cpu: float) -> "CpuQuota":
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(f"handicap cpu={cpu} cannot be applied: {reason}")
        path = CPU_CGROUP_ROOT / f"msbench-{label}-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        registry.made_path(path, "cgroup")
        period = period_us(cpu)
        (path / "cpu.cfs_period_us").write_text(f"{period}\n")
        (path / "cpu.cfs_quota_us").write_text(f"{round(cpu * period)}\n")
        return cls(path, cpu)

    def join_self(self) -> None:
        """Move the calling process into the group: the child's ``preexec_fn``, so the server and
        all it forks run held from their first instruction."""
        with open(self.path / "cgroup.procs", "w") as fh:
            fh.write("0\n")

    def throttled_s(self) -> float:
        """Seconds the group's processes waited for quota (cpu.stat throttled_time): proof the handicap bit."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_time":
                return int(value) / 1e9
        return float("nan")

    def close(self, timeout: float = 10.0) -> None:
        """Remove the group once its processes are gone (the kernel refuses a busy group)."""
        deadline = time.monotonic() + timeout
        while self.path.exists():
            try:
                self.path.rmdir()
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        registry.removed_path(self.path)
