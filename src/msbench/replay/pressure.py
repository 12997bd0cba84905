"""CPU held beside the store while a phase is replayed, as the recording's other processes held it.

Recorded under Milvus, the store shared the host's cores with Milvus and the benchmark's client;
replayed alone, it has them to itself, so it is less busy than in the recording (docs/replay.md:
0.16-0.82 of the recorded busy time on MinIO). ``--pressure recorded`` gives the replayed store
the same neighbours in CPU: during each phase, burner processes use, on average, the cores the
recording's other processes used in that phase (their CPU seconds over the phase's length, read
from the trial's per-phase resource rows: trace.PhaseSpan.beside_cores).

What it keeps is the mean over the phase, not its shape in time: Milvus's CPU comes in bursts
(deserializing a segment it has just read), the burners' evenly (busy, then idle, every
PERIOD_S). The burners are this module run as processes of their own, started per trial, told
their share on stdin, ended by closing it (or, failing that, killed by their PID).
"""
from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import psutil

PERIOD_S = 0.010   # a burner's cycle: busy for its share, idle for the rest (CFS balances at this scale)
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


def burn() -> None:
    """One burner (``python -m msbench.replay.pressure``): every PERIOD_S, busy for the share of it
    last read from stdin (a line "0.7"), idle for the rest; gone at stdin's end, so also when the
    process that started it dies."""
    share, pending, fd = 0.0, b"", sys.stdin.fileno()
    print("ready", flush=True)
    while True:
        began = time.perf_counter()
        if select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            if lines:   # the newest share wins
                share = min(max(float(lines[-1]), 0.0), 1.0)
        while time.perf_counter() - began < share * PERIOD_S:
            pass
        rest = PERIOD_S - (time.perf_counter() - began)
        if rest > 0:
            time.sleep(rest)


@dataclass
class Held:
    """One block of :meth:`Pressure.holding`: the cores asked for, and those the burners got."""

    asked: float
    used: float = float("nan")


class Pressure:
    """``with Pressure() as p: p.set(1.4)``: 1.4 cores used beside the store until the next set.
    One burner per core of the host, each at the level's share of it."""

    def __init__(self, cores: int | None = None):
        self.cores = cores or psutil.cpu_count() or 1
        self.level = 0.0
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Pressure":
        try:
            for _ in range(self.cores):
                proc = subprocess.Popen([sys.executable, "-m", "msbench.replay.pressure"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
                self._procs.append(proc)
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            for proc in self._procs:   # a phase's pressure starts with it, not after an interpreter's start-up
                ready = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))[0]
                if not ready or proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a CPU burner did not start within {STARTUP_TIMEOUT_S:g} s")
        except BaseException:
            self.__exit__()
            raise
        return self

    def set(self, level: float) -> float:
        """Use ``level`` cores (capped at the host's) from now on; returns the level set."""
        self.level = min(max(float(level), 0.0), float(self.cores))
        for proc in self._procs:
            proc.stdin.write(f"{self.level / self.cores}\n")
            proc.stdin.flush()
        return self.level

    @contextlib.contextmanager
    def holding(self, level: float) -> Iterator[Held]:
        """``level`` cores during the block, none after it; the Held yielded gets what the burners used."""
        held = Held(self.set(level))
        before, began = self.cpu_s(), time.perf_counter()
        try:
            yield held
        finally:
            held.used = (self.cpu_s() - before) / (time.perf_counter() - began)
            self.set(0.0)

    def cpu_s(self) -> float:
        """CPU seconds the burners have used so far (what they got, next to what they were asked)."""
        total = 0.0
        for proc in self._procs:
            try:
                times = psutil.Process(proc.pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def __exit__(self, *exc) -> None:
        """Close each burner's stdin (it ends); one that does not is killed by its own PID."""
        for proc in self._procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
            proc.stdout.close()
        self._procs = []


if __name__ == "__main__":
    burn()
