"""Faults on real Milvus and real MinIO (smoke-sized): SIGKILL of the store and, separately, of
Milvus, mid-phase, in one phase of each kind (a gRPC call Milvus answers, a wait we poll, worker
threads, a subprocess against the store, the store's listing, and a cold restart under way); the
store's disk filling up; the store stopped (SIGSTOP) for a moment and for good. Each trial must be
recorded failed with its phase and a cause naming the component and what happened (or complete
and say what it went through), quickly, with nothing left running, listening, mounted or on disk;
the other trials stay as they were and a resumed run redoes only the failed ones.

The faults are injected from a wrapper around the real phase (the harness, not a mock): it acts
a moment into the phase, or at its end if the phase is quicker, and waits until the process has
really died, so the fault always falls inside the phase's window."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace

import pandas as pd
import pytest

from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.results import TrialRecord
from msbench.run import phases, study
from msbench.run.phases import Phase
from msbench.run.trial import run_trial

from .expect import BRIEF_TRIAL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

# What each phase needs done before it (the least that lets it run), so a trial stops early.
NEEDS = {"insert": [], "flush": ["insert"], "index": ["insert", "flush"],
         "footprint": ["insert", "flush", "index"], "store_alone": ["insert", "flush"]}
LOADED = ["insert", "flush", "index", "load_first"]
BY_NAME = {p.name: p for p in phases.PHASES}
# One phase of each kind for each server: the store while a wait we poll, a cold restart, and warp
# (a subprocess) use it; Milvus while a gRPC call it answers, worker threads and the store's listing run.
KILL_CELLS = [("store", "flush"), ("store", "load_cold"), ("store", "store_alone"),
              ("milvus", "insert"), ("milvus", "throughput"), ("milvus", "footprint")]
RESTART_CELL = len(KILL_CELLS) + 1
DETECT_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def fault_study(tmp_path_factory):
    reason = unavailable_reason(load_backends()["minio"])
    if reason:
        pytest.skip(f"prerequisite missing for minio: {reason}")
    root = tmp_path_factory.mktemp("faults")
    # throughput at one level so that phase does work; a silence of 10 s fails a phase
    return study.prepare(backends="minio", trials=len(KILL_CELLS) + 4, profile="smoke", results_root=root,
                         run_id="faults", controls=False,
                         overrides={"concurrency": "2", "throughput_seconds": 1.0, "warp_seconds": 1.0,
                                    "unresponsive_s": 10.0, **BRIEF_TRIAL})


def _log(fault_study, fault: str, phase: str, meta: TrialRecord, detected_s: float | None = None) -> None:
    """One line per fault in the run folder (faults.csv): what was done, where, what was recorded."""
    line = pd.DataFrame([{"fault": fault, "phase": phase, "status": meta.status, "failed_phase": meta.failed_phase,
                          "seconds_to_phase_end": detected_s, "duration_s": meta.duration_s,
                          "error": meta.error, "stalls": meta.stalls}])
    path = fault_study.run.path / "faults.csv"
    line.to_csv(path, mode="a", header=not path.exists(), index=False)


def _server(stack, who: str):
    return stack.store.process if who == "store" else stack.milvus.process


def _kill(stack, who: str) -> float:
    """SIGKILL, then wait until the kernel says it is dead: returns when that was."""
    proc = _server(stack, who)
    os.kill(proc.pid, signal.SIGKILL)
    proc.popen.wait(timeout=10)
    return time.time()


def _inject(phase: Phase, act, delay: float | None = 0.3) -> Phase:
    """``phase`` that runs ``act(state)`` ``delay`` seconds in, or at its end if it ends sooner
    (``None``: as it begins). In load_cold the clock starts after the restart (test_a_store_killed_
    during_the_restart covers the restart itself)."""
    lock, fired = threading.Lock(), []

    def fire(state):
        with lock:
            if fired:
                return
            sent = time.time()
            try:
                fired.append(act(state))
            finally:   # fired from the phase's own thread, act may be cut short by the watchdog's report of it
                if not fired:
                    fired.append(sent)

    def wrapped(state):
        if delay is None:
            fire(state)
        timer = threading.Timer(delay or 0.0, fire, args=(state,))
        wrapped.timers.append(timer)
        if phase.name == "load_cold":
            restart = state.stack.restart

            def then_start():
                happened = restart()
                timer.start()
                return happened
            state.stack.restart = then_start
        else:
            timer.start()
        try:
            return phase.run(state)
        finally:
            timer.cancel()
            fire(state)

    wrapped.fired, wrapped.timers = fired, []
    return replace(phase, run=wrapped)


def _trial(fault_study, number: int, target: str, act, delay: float | None = 0.3):
    """Trial ``number`` up to ``target``, with ``act`` injected into it: (meta, when the fault
    happened, the phase windows)."""
    before = [BY_NAME[n] for n in NEEDS.get(target, LOADED)]
    injected = _inject(BY_NAME[target], act, delay)
    planned = next(t for t in fault_study.order if t.trial == number)
    meta = run_trial(fault_study.run, fault_study.backend("minio"), number, planned.seq, fault_study.params,
                     fault_study.data, "native", fault_study.user, phases=[*before, injected])
    for timer in injected.run.timers:   # the fault may still be reporting when the trial has ended
        if timer.is_alive():
            timer.join(30)
    folder = fault_study.run.trial_path("minio", number)
    windows = pd.read_csv(folder / "phase_windows.csv")
    return meta, (injected.run.fired or [None])[0], windows


@pytest.mark.parametrize("who,target", KILL_CELLS, ids=[f"kill-{w}-in-{t}" for w, t in KILL_CELLS])
def test_a_killed_server_fails_its_phase_at_once_and_says_why(scratch, fault_study, who, target):
    number = KILL_CELLS.index((who, target)) + 1
    meta, killed_at, windows = _trial(fault_study, number, target, lambda state: _kill(state.stack, who))
    name = "store minio" if who == "store" else "milvus"
    assert meta.status == "failed" and meta.failed_phase == target, meta
    assert meta.error.startswith("ComponentFailed: ") and name in meta.error, meta.error
    assert f"was killed by SIGKILL during phase {target}" in meta.error, meta.error
    ended = windows.iloc[-1]
    _log(fault_study, f"SIGKILL {who}", target, meta, ended.end - killed_at)
    assert ended.phase == target and ended.end - killed_at < DETECT_WITHIN_S, (ended.to_dict(), killed_at)
    assert meta.duration_s < 120, meta   # provision, the phases before, the fault, teardown
    # the record of what ran: both servers started and stopped
    journal = [json.loads(line) for line in (fault_study.run.path / "processes.jsonl").read_text().splitlines()]
    mine = [e for e in journal if e["trial"] == number]
    assert {e["name"] for e in mine if e["event"] == "started"} == {"minio", "milvus"}
    assert sum(e["event"] == "stopped" for e in mine) == sum(e["event"] == "started" for e in mine)


def test_a_store_killed_during_the_restart_fails_the_cold_load_at_once(scratch, fault_study):
    """The restart of a cold load stops and starts the servers on purpose; a store killed while it is under
    way (here: as Milvus comes back up) is a fault all the same, seen within seconds, not when Milvus gives up."""
    killed = []

    def act(state):
        milvus_restart = state.stack.milvus.restart

        def kill_then_restart(timeout: float = 180.0) -> float:
            killed.append(_kill(state.stack, "store"))
            return milvus_restart(timeout)
        state.stack.milvus.restart = kill_then_restart
        return time.time()

    meta, _, windows = _trial(fault_study, RESTART_CELL, "load_cold", act, delay=None)
    ended = windows.iloc[-1]
    _log(fault_study, "SIGKILL store during the restart", "load_cold", meta, ended.end - killed[0])
    assert meta.status == "failed" and meta.failed_phase == "load_cold", meta
    assert "store minio" in meta.error and "was killed by SIGKILL during phase load_cold" in meta.error, meta.error
    assert ended.phase == "load_cold" and ended.end - killed[0] < DETECT_WITHIN_S, (ended.to_dict(), killed)


def _fill(state) -> float:
    """Fill the store's filesystem (a tmpfs of store_disk_mib of our own) to the last byte."""
    with open(state.stack.store_root / "ballast", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
    return time.time()


def test_a_full_disk_fails_the_flush_with_the_cause_named(scratch, fault_study):
    """The store answers 507 to every write; Milvus 2.3.5 retries, then aborts (SIGABRT), or the
    flush's timeout (scaled to the data) ends the phase: either way the trial says the disk is full."""
    number = len(KILL_CELLS) + 2
    fault_study.params = replace(fault_study.params, store_disk_mib=64)
    try:
        meta, _, _ = _trial(fault_study, number, "flush", _fill, delay=None)
    finally:
        fault_study.params = replace(fault_study.params, store_disk_mib=0)
    _log(fault_study, "store's disk full (64 MiB tmpfs)", "flush", meta)
    assert meta.status == "failed" and meta.failed_phase == "flush", meta
    assert "is full" in meta.error, meta.error
    assert "milvus (PID" in meta.error or "flush not done after" in meta.error, meta.error
    assert not any("msbench-store" in line for line in open("/proc/mounts")), "the store's tmpfs is still mounted"


def _stop_for(seconds: float | None):
    def act(state) -> float:
        pid = state.stack.store.process.pid
        os.kill(pid, signal.SIGSTOP)
        if seconds is not None:
            threading.Timer(seconds, os.kill, args=(pid, signal.SIGCONT)).start()
        return time.time()
    return act


def test_a_store_stopped_for_a_moment_is_waited_for_and_recorded(scratch, fault_study):
    number = len(KILL_CELLS) + 3
    meta, _, _ = _trial(fault_study, number, "flush", _stop_for(7.0), delay=None)   # the flush waits on the store
    _log(fault_study, "store SIGSTOP for 7 s", "flush", meta)
    assert meta.status == "ok", meta
    assert "store minio" in meta.stalls and "in flush" in meta.stalls, meta


def test_a_store_stopped_for_good_fails_the_phase_and_is_diagnosed(scratch, fault_study):
    """In the flush, which waits on the store (its timeout, 66 s, is longer than the 10 s of silence allowed)."""
    number = len(KILL_CELLS) + 4
    meta, stopped_at, windows = _trial(fault_study, number, "flush", _stop_for(None), delay=None)
    _log(fault_study, "store SIGSTOP for good", "flush", meta, windows.iloc[-1].end - stopped_at)
    assert meta.status == "failed" and meta.failed_phase == "flush", meta
    assert "did not answer its health check for" in meta.error, meta.error
    assert "stopped (SIGSTOP)" in meta.error and "during phase flush" in meta.error, meta.error
    assert windows.iloc[-1].end - stopped_at < DETECT_WITHIN_S + 10


def test_the_other_trials_stand_and_a_resumed_run_redoes_only_the_failed(scratch, fault_study):
    """After the matrix: exactly the failed trials are pending; redoing one (without a fault)
    completes it and leaves every other trial's record as it was."""
    run = fault_study.run
    statuses = {t.trial: run.trial_status("minio", t.trial) for t in fault_study.order}
    if None in statuses.values():
        pytest.skip("needs the whole fault matrix of this module to have run first")
    failed = sorted(n for n, status in statuses.items() if status == "failed")
    assert [t.trial for t in fault_study.pending()] == sorted(failed, key=lambda n: next(
        t.seq for t in fault_study.order if t.trial == n))
    others = {n: (run.trial_path("minio", n) / "trial.json").read_bytes() for n in statuses if n != failed[0]}
    redo = next(t for t in fault_study.order if t.trial == failed[0])
    assert fault_study.run_one(redo).status == "ok"
    assert {t.trial for t in fault_study.pending()} == set(failed[1:])
    assert all((run.trial_path("minio", n) / "trial.json").read_bytes() == body for n, body in others.items())
    trials = pd.read_csv(run.path / "trials.csv")
    assert (trials.status == "ok").sum() == len(statuses) - len(failed) + 1
