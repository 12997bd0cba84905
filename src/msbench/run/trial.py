"""One trial: provision a fresh stack, run the phases, record, tear down. Failures are recorded.

A failed phase stops the trial (later phases would measure a broken stack), but what the
earlier phases measured is kept and the cause is written to trial.json; the run goes on.
"""
from __future__ import annotations

import datetime as dt
import shutil
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Callable

import pandas as pd

from msbench.backends import BackendDef
from msbench.config import Params, UserConfig
from msbench.measure import trace, traffic
from msbench.measure.resources import PhaseMonitor
from msbench.measure.watchdog import ComponentFailed, Watchdog
from msbench.providers import Stack, registry
from msbench.providers.catalog import check_provider, make_stack
from msbench.results import LATENCY_COLUMNS, PHASE_WINDOW_COLUMNS, TIDY_COLUMNS, RunDir, TrialRecord, redact
from msbench.run.phases import PHASES, Phase, TrialState
from msbench.run.workload import Dataset


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_trial(run: RunDir, backend: BackendDef, trial: int, seq: int, params: Params, data: Dataset,
              provider: str = "native", user: UserConfig | None = None, phases: tuple[Phase, ...] = PHASES,
              on_phase: Callable[[str], None] = lambda name: None) -> TrialRecord:
    """Run one trial and write its folder; returns its record (never raises for a failure inside the
    trial, only for bad arguments). ``on_phase`` hears the name of each step as it begins
    (provision, each phase, teardown): how the progress bar knows (progress.py)."""
    check_provider(provider)
    record = TrialRecord(run=run.run_id, backend=backend.name, store=backend.kind, provider=provider, trial=trial,
                         seq=seq, started=_now())
    rows: list[tuple[str, str, float, str]] = []
    tables: dict[str, pd.DataFrame] = {}
    files: dict[str, Callable[[Path], object]] = {}   # the trace: a file with a header, not a table
    windows: list[tuple[str, float, float]] = []   # phase, first and last second (epoch, as the capture's clock)
    began = time.monotonic()
    journal = registry.JOURNAL.set((run.path / "processes.jsonl", {"backend": backend.name, "trial": trial}))
    with registry.scratch_dir("msbench-logs-") as scratch:
        log_dir = scratch / "logs"    # copied into the trial folder; the capture stays beside it
        capture = stack = dog = state = None
        clues: list[str] = []
        try:
            on_phase("provision")
            stack = make_stack(provider, backend, params, log_dir, user, run.run_id, trial)
            with stack, Watchdog(stack.watched, params.unresponsive_s) as dog:
                record.stack_ready_s = round(time.monotonic() - began, 3)
                state = TrialState(stack, params, data, name=stack.collection,
                                   description=stack.collection_description, unwatched=dog.restarting)
                skipped = stack.skipped_phases()
                record.skipped_phases = "; ".join(f"{name}: {why}" for name, why in skipped.items())
                capture, record.s3_capture = _start_capture(stack, params, scratch / "s3.pcap")
                state.connect()
                record.ran = {**stack.ran(), "milvus_version": state.server_version()}
                try:
                    for phase in (p for p in phases if p.name not in skipped):
                        record.failed_phase = phase.name
                        on_phase(phase.name)
                        if not phase.captured and capture is not None:
                            # what follows is not Milvus's traffic (the integrity reads, the store alone);
                            # warp runs at the concurrency Milvus reached
                            files = _account(capture, stack.bucket, windows, record, tables, rows, state.load_sent)
                            state.milvus_get_concurrency = record.s3_capture.get("milvus_peak_get_concurrency")
                            state.written = tables.get("s3_requests.parquet")
                            capture = None
                        opened = time.time()
                        try:   # a failed phase keeps its window: its requests are still its own
                            with dog.phase(phase.name), PhaseMonitor(stack.processes) as mon:
                                measured = phase.run(state)
                        finally:
                            windows.append((phase.name, opened, time.time()))
                        rows += [(phase.name, *m) for m in measured]
                        rows += [(phase.name, metric, value, unit) for metric, value, unit in mon.rows()]
                except BaseException:
                    clues = _clues(stack)   # read before teardown removes what they look at
                    raise
                finally:
                    state.disconnect()
                    if capture is not None:
                        capture.stop()
                record.cold_load, record.handicap = state.cold_load, stack.handicap_facts()
                record.failed_phase = "teardown"   # ok only once the stack is gone
                on_phase("teardown")
            record.status, record.failed_phase = "ok", ""
        except (Exception, ComponentFailed) as err:  # recorded, never lost: the run goes on
            record.error = "; ".join([f"{type(err).__name__}: {err}", *clues])
            record.traceback = traceback.format_exc()
        except KeyboardInterrupt:
            record.error = "interrupted"
            raise
        finally:
            registry.JOURNAL.reset(journal)
            if state is not None:
                record.store_alone_note, record.bytes_served_note = state.store_alone_note, state.bytes_served_note
                record.load_failures = "; ".join(state.load_failures)
                record.integrity_problems = "; ".join(state.integrity_problems)
            record.stalls = "; ".join(f"{x['component']} did not answer for {x['seconds']:g} s in {x['phase']}"
                                      for x in (dog.stalls if dog else []))
            if capture is not None:
                files = _account(capture, stack.bucket, windows, record, tables, rows,
                                 state.load_sent if state is not None else {})
            tables["phase_windows.csv"] = pd.DataFrame(windows, columns=PHASE_WINDOW_COLUMNS)
            record.s3_capture_note = _capture_note(record.s3_capture)
            record.finished, record.duration_s = _now(), round(time.monotonic() - began, 3)
            secrets = stack.secrets() if stack is not None else []
            for key in ("error", "traceback", "store_alone_note", "load_failures"):
                setattr(record, key, redact(getattr(record, key), secrets))
            ident = {"run": run.run_id, "backend": backend.name, "provider": provider, "trial": trial, "seq": seq}
            table = pd.DataFrame([{**ident, "phase": p, "metric": m, "value": float(v), "unit": u} for p, m, v, u in rows],
                                 columns=TIDY_COLUMNS)
            latencies = state.latencies_ms if state is not None else None
            lat_table = None
            if latencies is not None:
                lat_table = pd.DataFrame({**ident, "query": range(len(latencies)), "latency_ms": latencies,
                                          "warmup": [i < params.warmup_queries for i in range(len(latencies))]},
                                         columns=LATENCY_COLUMNS)
            tables = {name: frame.assign(**ident)[[*ident, *frame.columns]] for name, frame in tables.items()}
            if record.error != "interrupted":
                run.write_trial(record, table, lat_table, log_dir, secrets, tables, files)
    return record


def _clues(stack: Stack | None) -> list[str]:
    """What the stack's state says about a failure the error does not explain (a full disk)."""
    clues = []
    try:
        paths = stack.data_paths() if stack is not None else []
    except Exception:   # a stack that never started has none
        paths = []
    for path in paths:
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        if usage.free < max(1 << 20, usage.total // 100):
            clues.append(f"the filesystem holding the store's data ({path}) is full: {usage.free:,} bytes free "
                         f"of {usage.total:,}")
    return clues


def _start_capture(stack: Stack, params: Params, path: Path) -> tuple[traffic.Capture | None, dict]:
    """Start the S3 capture if asked and possible; else record why not (nothing rather than zeros)."""
    if not params.capture_s3:
        return None, {"enabled": False, "reason": "capture_s3 is off"}
    try:
        capture = traffic.start_capture(stack, path)
    except traffic.CaptureUnavailable as err:
        return None, {"enabled": False, "reason": str(err)}
    return capture, capture.facts


def _capture_note(facts: dict) -> str:
    """One line for trials.csv: empty when every request was recorded, else what is missing."""
    if not facts.get("enabled"):
        return facts.get("reason", "")
    if facts.get("error"):
        return f"the capture could not be parsed: {facts['error']}"
    lost = [f"{facts[k]} {what}" for k, what in (("packets_dropped", "packets dropped by the kernel"),
                                                 ("unparsed_messages", "messages not parsed as HTTP"))
            if facts.get(k)]
    return "; ".join(lost)


def _account(capture: traffic.Capture, bucket: str, windows: list, record: TrialRecord,
             tables: dict[str, pd.DataFrame], rows: list[tuple[str, str, float, str]],
             load_sent: dict[str, float]) -> dict[str, Callable[[Path], object]]:
    """The capture parsed into ``tables``, its load rows (traffic.load_reads) added to ``rows``, and the
    trial's trace (the writer of its file). A parse failure, or a trace that fails its checks, is
    recorded and never fails the trial."""
    try:
        requests, summary, record.s3_capture = traffic.account(capture, bucket, windows)
    except Exception as err:
        record.s3_capture = {**capture.facts, "error": f"{type(err).__name__}: {err}"}
        return {}
    rows += traffic.load_reads(requests, load_sent)
    tables.update({"s3_requests.parquet": requests, "s3_summary.csv": summary})
    made, record.trace_note = trace.of_trial(requests, windows, record,
                                             pd.DataFrame(rows, columns=["phase", "metric", "value", "unit"]))
    return {trace.TRIAL_FILE: partial(trace.write, made)} if made is not None else {}
