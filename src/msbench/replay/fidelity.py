"""Does a replay reproduce what it replays? Recorded against replayed, phase by phase.

Replayed against the store it was recorded on, a trace must give back its request counts and its
object bytes (GET bodies read, PUT and part bodies written) exactly, in every trial: they are
what the replay is made of. The time the store was busy (seconds with at least one request open)
is reproduced within a factor BUSY_FACTOR: it is compared on the wire when the replay was captured
(``wire_store_busy_s``, the instrument that measured the recording, counting each request from its
last byte so that how fast the client sent its bodies is left out), else as the client saw it
(``busy_s`` against the recording's from the first byte).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from msbench.measure import trace as tr
from msbench.replay.record import ReplayRun

# mean replayed busy / recorded busy within [1/BUSY_FACTOR, BUSY_FACTOR]. Measured (docs/replay.md): 0.26-2.45, median
# 0.56, over 23 phases of 3 standard-profile MinIO traces, 3 replays each; the recording itself varied up to 3.2x
# between trials of one phase. The replayed store is less busy: Milvus reads large responses slower than the replay's
# client (a 14 MB GET: 68-91 ms under Milvus, 26 ms replayed) and, under Milvus, the store shares two cores with it.
BUSY_FACTOR = 4.0
COLUMNS = ["trace", "backend", "phase", "trials", "requests_recorded", "requests_replayed_min", "requests_replayed_max",
           "object_bytes_read_recorded", "object_bytes_read_replayed_min", "object_bytes_read_replayed_max",
           "object_bytes_written_recorded", "object_bytes_written_replayed_min", "object_bytes_written_replayed_max",
           "busy_s_recorded", "busy_s_replayed", "busy_ratio", "busy_ratio_min", "busy_ratio_max", "busy_measured",
           "beside_cores_recorded", "beside_cores_held", "exact", "busy_within_tolerance"]


def fidelity(trace: tr.Trace, results: pd.DataFrame, trace_name: str = "", backend: str = "",
             factor: float = BUSY_FACTOR) -> pd.DataFrame:
    """Per phase of ``trace``: recorded against replayed. ``results``: the tidy rows (``metric``
    like ``requests [PHASE]``) of the trials that replayed this trace on one backend."""
    recorded = tr.describe(trace).set_index("phase")
    rows = []
    for phase, rec in recorded.iterrows():
        def per_trial(name: str) -> pd.Series:
            mine = results[results["metric"] == f"{name} [{phase}]"]
            return mine.set_index("trial")["value"]

        requests, read, written = per_trial("requests"), per_trial("object_bytes_read"), per_trial("object_bytes_written")
        wire = per_trial("wire_store_busy_s")
        busy, measured, recorded_busy = ((wire, "wire", rec["store_busy_s"]) if len(wire)
                                         else (per_trial("busy_s"), "client", rec["busy_s"]))
        ratios = busy / recorded_busy if recorded_busy > 0 else busy * np.nan
        exact = bool(len(requests)) and all((s == rec[k]).all() for s, k in (
            (requests, "requests"), (read, "object_bytes_read"), (written, "object_bytes_written")))
        held = per_trial("pressure_used_cores")
        wire_requests = per_trial("wire_requests")
        exact = exact and (wire_requests.empty or (wire_requests == rec["requests"]).all())
        ratio = float(busy.mean() / recorded_busy) if recorded_busy > 0 and len(busy) else np.nan
        rows.append({
            "trace": trace_name, "backend": backend, "phase": phase, "trials": len(requests),
            "requests_recorded": int(rec["requests"]),
            "requests_replayed_min": requests.min(), "requests_replayed_max": requests.max(),
            "object_bytes_read_recorded": int(rec["object_bytes_read"]),
            "object_bytes_read_replayed_min": read.min(), "object_bytes_read_replayed_max": read.max(),
            "object_bytes_written_recorded": int(rec["object_bytes_written"]),
            "object_bytes_written_replayed_min": written.min(), "object_bytes_written_replayed_max": written.max(),
            "busy_s_recorded": float(recorded_busy), "busy_s_replayed": float(busy.mean()) if len(busy) else np.nan,
            "busy_ratio": ratio, "busy_ratio_min": ratios.min(), "busy_ratio_max": ratios.max(),
            "busy_measured": measured,
            "beside_cores_recorded": rec["beside_cores"],
            "beside_cores_held": float(held.mean()) if len(held) else np.nan, "exact": exact,
            "busy_within_tolerance": bool(np.isfinite(ratio) and 1 / factor <= ratio <= factor)})
    return pd.DataFrame(rows, columns=COLUMNS)


def run_fidelity(run: ReplayRun, factor: float = BUSY_FACTOR) -> pd.DataFrame:
    """The fidelity table of every trace of a replay run on the store it was recorded on (its
    source's store kind, when one of the run's backends is that store under its own name)."""
    frames = []
    for name, trace in run.traces.items():
        store = trace.meta.source.get("store") or trace.meta.source.get("backend")
        if store not in run.manifest.backends:
            continue
        trials = run.trials[(run.trials["trace"] == name) & (run.trials["backend"] == store)
                            & (run.trials["status"] == "ok")]["trial"]
        mine = run.results[(run.results["backend"] == store) & run.results["trial"].isin(trials)]
        frames.append(fidelity(trace, mine, name, store, factor))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
