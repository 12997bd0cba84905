"""Per-phase resource use of each stack process and of the client: peak RSS, CPU seconds, bytes written.

Nothing runs while a phase runs: every figure is read from /proc at the phase's start and end,
so measuring cannot slow the timed loops (a sampling thread in this process cost about 0.65 ms
every 100 ms, enough to move the p99 of 2 ms searches).

- Peak RSS is the kernel's high-water mark: writing "5" to ``/proc/PID/clear_refs`` at the start
  resets ``VmHWM`` to the current RSS, and ``VmHWM`` at the end is the exact peak over the phase.
  A process started inside the phase counts from its start; one that exited inside it is not
  counted. Peaks are summed per role (children included): an upper bound of the role's peak,
  since its processes need not peak at the same moment. Where the reset is refused (neither root
  nor the process's owner) the figure is NaN, never a lifetime peak passed off as the phase's.
- CPU seconds (user + system, all threads) and ``wchar`` (bytes passed to write() on files and
  sockets; a process sending with sendmsg, as Ceph's RGW does, shows less than it sent) are
  exact per-process deltas; a process started inside the phase counts from zero.
- The role ``client`` is this process alone (the native stack's servers are its children and
  count under their own roles): what the benchmark itself cost.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import psutil

from msbench.providers import ServerProcess


def parse_ss(out: str) -> dict[str, int]:
    """``ss -tinH state established`` output -> bytes acked per connection ("local peer"): each
    connection is a line, its tcp_info the indented line under it."""
    sent: dict[str, int] = {}
    conn = None
    for line in out.splitlines():
        if line[:1].isspace():
            if conn is not None:
                acked = re.search(r"bytes_acked:(\d+)", line)
                sent[conn] = int(acked.group(1)) if acked else 0
        elif line.strip():
            conn = " ".join(line.split()[2:4])
            sent[conn] = 0
    return sent


def tcp_bytes_sent(port: int) -> dict[str, int] | None:
    """Bytes sent and acknowledged on each established connection served from ``port``, from the
    kernel's tcp_info (``ss -ti``). Counted on the wire, so it is the same for every store,
    whatever syscalls it sends with. None when ``ss`` (iproute2) is missing or fails."""
    if shutil.which("ss") is None:
        return None
    done = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                          capture_output=True, text=True, timeout=30)
    return parse_ss(done.stdout) if done.returncode == 0 else None


def bytes_sent_between(before: dict[str, int] | None, after: dict[str, int] | None, port: int) -> tuple[float, str]:
    """(bytes sent from ``port`` between two readings of :func:`tcp_bytes_sent`, "") or, where the
    counter cannot see the traffic, (NaN, why): never a 0 that reads as "nothing was read". A load
    over loopback always has Milvus's connections to the store open at the second reading, so
    none there means the store is out of this host's sight (another host, a Docker bridge
    network). A connection closed in between is not counted (a lower bound)."""
    if before is None or after is None:
        return math.nan, "the ss command (Debian iproute2) is missing or failed, so the store's TCP counters were not read"
    if not after:
        return math.nan, (f"no connection from port {port} is visible on this host "
                          "(the store is not on this host's loopback)")
    return float(sum(v - before.get(conn, 0) for conn, v in after.items())), ""


def reset_peak_rss(pid: int) -> bool:
    """Restart the kernel's RSS high-water mark of ``pid`` from its current RSS; False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss(pid: int) -> float:
    """``VmHWM`` of ``pid`` in bytes: its peak RSS since it started or since the last reset."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    raise OSError(f"no VmHWM for PID {pid}")   # a kernel thread, or a zombie


def _children() -> dict[int, list[int]]:
    """Parent PID -> child PIDs, from one pass over /proc (psutil's children() makes a pass per
    process asked, which made a phase's start and end cost tens of milliseconds)."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(name))
    return kids


def _members(roles: dict[str, list[ServerProcess]]) -> dict[str, list[psutil.Process]]:
    """Every process of each role, children included, and the client (this process, alone)."""
    kids = _children()
    out: dict[str, list[psutil.Process]] = {}
    for role, managed in roles.items():
        pids = [m.pid for m in managed if m.running()]
        for pid in pids:   # the list grows as it is walked: grandchildren too
            pids += [kid for kid in kids.get(pid, []) if kid not in pids]
        out[role] = []
        for pid in pids:
            try:
                out[role].append(psutil.Process(pid))
            except psutil.Error:
                continue
    out["client"] = [psutil.Process()]
    return out


class Reading(NamedTuple):
    """One process at one moment; ``peak_rss_bytes`` since the last reset."""

    cpu_s: float
    wchar_bytes: float
    peak_rss_bytes: float


def snapshot(procs: list[psutil.Process]) -> dict[psutil.Process, Reading]:
    """What /proc says now of each process still alive."""
    out = {}
    for proc in procs:
        try:
            with proc.oneshot():
                times, io = proc.cpu_times(), proc.io_counters()
            out[proc] = Reading(times.user + times.system, float(getattr(io, "write_chars", io.write_bytes)),
                                peak_rss(proc.pid))
        except (psutil.Error, OSError):
            continue
    return out


@dataclass
class PhaseMonitor:
    """Use as ``with PhaseMonitor(stack.processes) as mon: ...``; then ``mon.rows()``.
    ``roles`` is called at the start and at the end, so a process restarted inside the phase
    (its PID changed) is read at the end."""

    roles: Callable[[], dict[str, list[ServerProcess]]]
    _start: dict[str, dict[psutil.Process, Reading]] = field(default_factory=dict)
    _unreset: set[psutil.Process] = field(default_factory=set)
    _rows: list[tuple[str, float, str]] = field(default_factory=list)

    def __enter__(self) -> "PhaseMonitor":
        members = _members(self.roles())
        self._unreset = {p for procs in members.values() for p in procs if not reset_peak_rss(p.pid)}
        self._start = {role: snapshot(procs) for role, procs in members.items()}
        return self

    def __exit__(self, *exc) -> None:
        self._rows = []
        zero = Reading(0.0, 0.0, 0.0)
        for role, procs in _members(self.roles()).items():
            end, start = snapshot(procs), self._start.get(role, {})
            peak = math.nan if self._unreset & end.keys() else sum(r.peak_rss_bytes for r in end.values())
            cpu = sum(r.cpu_s - start.get(p, zero).cpu_s for p, r in end.items())
            wchar = sum(r.wchar_bytes - start.get(p, zero).wchar_bytes for p, r in end.items())
            self._rows += [(f"{role}_peak_rss_bytes", peak, "bytes"), (f"{role}_cpu_s", cpu, "s"),
                           (f"{role}_wchar_bytes", wchar, "bytes")]

    def rows(self) -> list[tuple[str, float, str]]:
        return self._rows
