"""Per-phase resource use of each stack process: peak RSS, CPU seconds, bytes written.

A background thread samples RSS every 100 ms (peaks between samples can be missed: the
figure is a lower bound).  CPU seconds and I/O character counts are exact deltas read from
/proc at the phase's start and end (``wchar``/``rchar``: bytes passed to write()/read() on files
and sockets; a process sending with sendmsg, as Ceph's RGW does, shows less than it sent).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable

import psutil

from msbench.providers.process import ManagedProcess


def tcp_bytes_sent(port: int) -> dict[str, int] | None:
    """Bytes sent and acknowledged on each established connection served from ``port``, from the
    kernel's tcp_info (``ss -ti``). Counted on the wire, so it is the same for every store,
    whatever syscalls it sends with. None when ``ss`` (iproute2) is missing."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=30).stdout.splitlines()
    sent = {}
    for head, info in zip(out[0::2], out[1::2]):
        acked = re.search(r"bytes_acked:(\d+)", info)
        sent[" ".join(head.split()[2:4])] = int(acked.group(1)) if acked else 0
    return sent


def bytes_sent_between(before: dict[str, int] | None, after: dict[str, int] | None) -> float:
    """Sent between two readings; a connection closed in between is not counted (a lower bound)."""
    if before is None or after is None:
        return float("nan")
    return float(sum(v - before.get(conn, 0) for conn, v in after.items()))


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def snapshot(procs: list[ManagedProcess]) -> dict[str, float]:
    cpu = rss = wchar = rchar = 0.0
    for managed in procs:
        root = managed.psutil()
        for proc in (_tree(root) if root else []):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    rss += proc.memory_info().rss
                    io = proc.io_counters()
                    wchar += getattr(io, "write_chars", io.write_bytes)
                    rchar += getattr(io, "read_chars", io.read_bytes)
            except psutil.Error:
                continue
    return {"cpu": cpu, "rss": rss, "wchar": wchar, "rchar": rchar}


@dataclass
class PhaseMonitor:
    """Use as ``with PhaseMonitor(stack.processes) as mon: ...``; then ``mon.rows()``.
    ``roles`` is called at every sample, so a process restarted inside the phase is followed."""

    roles: Callable[[], dict[str, list[ManagedProcess]]]
    interval: float = 0.1
    _start: dict[str, dict[str, float]] = field(default_factory=dict)
    _end: dict[str, dict[str, float]] = field(default_factory=dict)
    _peak: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for role, procs in self.roles().items():
                self._peak[role] = max(self._peak.get(role, 0.0), snapshot(procs)["rss"])

    def __enter__(self) -> "PhaseMonitor":
        self._start = {role: snapshot(procs) for role, procs in self.roles().items()}
        self._peak = {role: snap["rss"] for role, snap in self._start.items()}
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._end = {role: snapshot(procs) for role, procs in self.roles().items()}
        for role, snap in self._end.items():
            self._peak[role] = max(self._peak.get(role, 0.0), snap["rss"])

    def delta(self, role: str, key: str) -> float:
        """Change over the phase; a process restarted inside the phase counts from zero."""
        start, end = self._start.get(role, {}).get(key, 0.0), self._end.get(role, {}).get(key, 0.0)
        return end - start if end >= start else end

    def rows(self) -> list[tuple[str, float, str]]:
        out = []
        for role in self._start:
            out += [(f"{role}_peak_rss_bytes", self._peak.get(role, 0.0), "bytes"),
                    (f"{role}_cpu_s", self.delta(role, "cpu"), "s"),
                    (f"{role}_wchar_bytes", self.delta(role, "wchar"), "bytes")]
        return out
