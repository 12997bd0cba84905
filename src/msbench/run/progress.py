"""Progress you can watch: one bar over a run's trials and one line per finished trial.

The trial under way says which phase it is in through the run folder's ``progress.json``
(backend, trial, phase, since when), written by ``write_phase`` from run_trial's ``on_phase``
hook, so whoever shows the bar reads the same file whether the trial runs in its own process
(``msbench run``) or in a notebook kernel of its own (run_all.ipynb, one papermill execution per
trial). The bar (tqdm, on stderr) shows the trials done of those planned, the backend, trial,
round and phase of the one under way, the time elapsed and an estimate of the time left; a
thread refreshes it while a trial runs (every second on a terminal, every 5 s elsewhere, so an
executed notebook does not fill up with redraws). ``cat data/runs/<run_id>/progress.json`` says
the same from another shell.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from msbench.files import atomic_write_text
from msbench.results import PlannedTrial, TrialRecord

PHASE_FILE = "progress.json"
BAR_FORMAT = "{desc} {n_fmt}/{total_fmt} trials |{bar:12}| {elapsed} elapsed, {remaining} left{postfix}"


def write_phase(run_path: Path, backend: str, trial: int, phase: str) -> None:
    """Never fails the trial: a progress file that cannot be written is only not shown."""
    try:
        atomic_write_text(Path(run_path) / PHASE_FILE, json.dumps(
            {"backend": backend, "trial": trial, "phase": phase, "since": round(time.time(), 3)}))
    except OSError:
        pass


def read_phase(run_path: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_path) / PHASE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def status(planned: PlannedTrial, phase: dict[str, Any], now: float | None = None, started: float = 0.0) -> str:
    """The bar's postfix: the trial under way and, when its progress file is about it, its phase. A file
    written before the trial ``started`` is a killed run's, about the same trial: not shown."""
    text = f"{planned.backend} #{planned.trial} (round {planned.round})"
    fresh = phase.get("since", started) >= started
    if phase.get("backend") == planned.backend and phase.get("trial") == planned.trial and phase.get("phase") and fresh:
        text += f": {phase['phase']}"
        if phase.get("since"):
            text += f" {_duration(max(0.0, (now or time.time()) - phase['since']))}"
    return text


def trial_line(planned: PlannedTrial, record: TrialRecord) -> str:
    """One line per finished trial: its status, how long it took and, when it failed, where and why."""
    took = f" in {_duration(record.duration_s)}" if record.duration_s is not None else ""
    head = f"{planned.backend} trial {planned.trial} (round {planned.round}, #{planned.seq + 1}): {record.status}"
    if record.status == "ok":
        return head + took
    error = " ".join(record.error.split())
    error = error if len(error) <= 160 else error[:157] + "..."
    return f"{head} in phase {record.failed_phase or '?'}{took}: {error}"


class TrialBar:
    """The bar over a run's trials (see the module docstring); a context manager."""

    def __init__(self, run_path: Path, run_id: str, total: int, enabled: bool = True, file=None, interval=None):
        from tqdm.std import tqdm   # text, not a widget: it reads the same in a terminal, a log and a notebook

        self.run_path = Path(run_path)
        self.file = file or sys.stderr
        tty = hasattr(self.file, "isatty") and self.file.isatty()
        self.interval = interval or (1.0 if tty else 5.0)
        self.bar = tqdm(total=total, desc=f"run {run_id}", unit="trial", file=self.file, disable=not enabled,
                        bar_format=BAR_FORMAT, dynamic_ncols=tty, smoothing=0)
        self.enabled = enabled
        self.planned: PlannedTrial | None = None
        self.started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "TrialBar":
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, name="msbench-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.bar.close()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self.show()

    def show(self) -> None:
        planned = self.planned
        if planned is not None:
            self.bar.set_postfix_str(status(planned, read_phase(self.run_path), started=self.started), refresh=True)

    def start(self, planned: PlannedTrial) -> None:
        self.planned = planned
        self.started = time.time()
        self.show()

    def finish(self, planned: PlannedTrial, record: TrialRecord) -> None:
        self.planned = None
        self.say(trial_line(planned, record))
        self.bar.update(1)

    def add(self, trials: int) -> None:
        """More trials planned (a round added by the until-precise rule)."""
        self.bar.total += trials
        self.bar.refresh()

    def say(self, line: str) -> None:
        """A line above the bar (on stdout, the bar stays on its stream). The line is flushed before the
        bar is drawn again: in a kernel, stdout and stderr reach the terminal as separate messages, and
        an unflushed line arrived after the redrawn bar, on its line."""
        if not self.enabled:
            print(line, flush=True)
            return
        with self.bar.external_write_mode(file=sys.stdout):
            print(line, file=sys.stdout, flush=True)
