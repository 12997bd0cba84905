"""One trial: provision a fresh stack, run the phases, record, tear down. Failures are recorded.

A failed phase stops the trial (later phases would measure a broken stack), but what the
earlier phases measured is kept and the cause is written to trial.json; the run goes on.
"""
from __future__ import annotations

import datetime as dt
import shutil
import time
import traceback
from pathlib import Path
from typing import Callable

import pandas as pd

from msbench.measure import traffic
from msbench.backends import BackendDef
from msbench.config import Params, UserConfig
from msbench.run.phases import PHASES, TrialState
from msbench.providers import Stack, registry
from msbench.providers.catalog import check_provider, make_stack
from msbench.measure.resources import PhaseMonitor
from msbench.results import LATENCY_COLUMNS, PHASE_WINDOW_COLUMNS, TIDY_COLUMNS, RunDir, redact
from msbench.measure.watchdog import ComponentFailed, Watchdog
from msbench.run.workload import Dataset

def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_trial(run: RunDir, backend: BackendDef, trial: int, seq: int, params: Params, data: Dataset,
              provider: str = "native", user: UserConfig | None = None, phases=PHASES,
              on_phase: Callable[[str], None] = lambda name: None) -> dict:
    """Run one trial and write its folder; returns its trial.json content (never raises for a
    failure inside the trial, only for bad arguments). ``on_phase`` hears the name of each step as it
    begins (provision, each phase, teardown): how the progress bar knows (progress.py)."""
    check_provider(provider)
    meta = {"run": run.run_id, "backend": backend.name, "store": backend.kind, "provider": provider,
            "trial": trial, "seq": seq, "status": "failed", "failed_phase": "provision", "error": "",
            "started": _now()}
    rows: list[tuple[str, str, float, str]] = []
    latencies = None
    tables: dict[str, pd.DataFrame] = {}
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
                meta["stack_ready_s"] = round(time.monotonic() - began, 3)
                meta["image_digests"] = stack.image_digests()
                state = TrialState(stack, params, data, name=stack.collection,
                                   description=stack.collection_description, unwatched=dog.paused)
                skipped = stack.skipped_phases()
                meta["skipped_phases"] = "; ".join(f"{name}: {why}" for name, why in skipped.items())
                capture, meta["s3_capture"] = _start_capture(stack, params, scratch / "s3.pcap")
                state.connect()
                try:
                    for phase in (p for p in phases if p.__name__ not in skipped):
                        meta["failed_phase"] = phase.__name__
                        on_phase(phase.__name__)
                        if getattr(phase, "uncaptured", False) and capture is not None:
                            # the store on its own is not Milvus's traffic; it runs at Milvus's concurrency
                            tables.update(_account(capture, stack.bucket, windows, meta))
                            state.notes["milvus_s3_concurrency"] = meta["s3_capture"].get("milvus_peak_get_concurrency")
                            capture = None
                        opened, phase_name = time.time(), phase.__name__
                        try:   # a failed phase keeps its window: its requests are still its own
                            with dog.phase(phase_name), PhaseMonitor(stack.processes) as mon:
                                produced = phase(state)
                            phase_name = produced[0][0] if produced else phase_name
                        finally:
                            windows.append((phase_name, opened, time.time()))
                        rows += produced
                        rows += [(phase_name, metric, value, unit) for metric, value, unit in mon.rows()]
                except BaseException:
                    clues = _clues(stack)   # read before teardown removes what they look at
                    raise
                finally:
                    state.disconnect()
                    if capture is not None:
                        capture.stop()
                latencies = state.latencies_ms
                meta.update(cold_load=state.notes.get("cold_load"), handicap=stack.handicap_facts())
                meta["failed_phase"] = "teardown"   # ok only once the stack is gone
                on_phase("teardown")
            meta.update(status="ok", failed_phase="")
        except (Exception, ComponentFailed) as err:  # recorded, never lost: the run goes on
            meta["error"] = "; ".join([f"{type(err).__name__}: {err}", *clues])
            meta["traceback"] = traceback.format_exc()
        except KeyboardInterrupt:
            meta["error"] = "interrupted"
            raise
        finally:
            registry.JOURNAL.reset(journal)
            notes = state.notes if state is not None else {}
            meta.update(store_alone_note=notes.get("store_alone", ""), bytes_served_note=notes.get("bytes_served_note", ""),
                        load_failures="; ".join(notes.get("load_failures", [])))
            meta["stalls"] = "; ".join(f"{x['component']} did not answer for {x['seconds']:g} s in {x['phase']}"
                                       for x in (dog.stalls if dog else []))
            if capture is not None:
                tables.update(_account(capture, stack.bucket, windows, meta))
            tables["phase_windows.csv"] = pd.DataFrame(windows, columns=PHASE_WINDOW_COLUMNS)
            meta["s3_capture_note"] = _capture_note(meta.get("s3_capture") or {})
            meta.update(finished=_now(), duration_s=round(time.monotonic() - began, 3))
            secrets = stack.secrets() if stack is not None else []
            for key in ("error", "traceback", "store_alone_note", "load_failures"):
                meta[key] = redact(meta.get(key, ""), secrets)
            ident = {"run": run.run_id, "backend": backend.name, "provider": provider, "trial": trial, "seq": seq}
            table = pd.DataFrame([{**ident, "phase": p, "metric": m, "value": float(v), "unit": u} for p, m, v, u in rows],
                                 columns=TIDY_COLUMNS)
            lat_table = None
            if latencies is not None:
                lat_table = pd.DataFrame({**ident, "query": range(len(latencies)), "latency_ms": latencies,
                                          "warmup": [i < params.warmup_queries for i in range(len(latencies))]},
                                         columns=LATENCY_COLUMNS)
            tables = {name: frame.assign(**ident)[[*ident, *frame.columns]] for name, frame in tables.items()}
            if meta["error"] != "interrupted":
                run.write_trial(backend.name, trial, meta, table, lat_table, log_dir, secrets, tables)
    return meta


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


def _account(capture: traffic.Capture, bucket: str, windows: list, meta: dict) -> dict[str, pd.DataFrame]:
    """The capture parsed into tables; a parse failure is recorded and never fails the trial."""
    try:
        requests, summary, meta["s3_capture"] = traffic.account(capture, bucket, windows)
    except Exception as err:
        meta["s3_capture"] = {**capture.facts, "error": f"{type(err).__name__}: {err}"}
        return {}
    return {"s3_requests.parquet": requests, "s3_summary.csv": summary}
