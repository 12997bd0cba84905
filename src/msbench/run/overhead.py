"""Harness overhead: the same inserts and searches through our phase code (with its resource
monitor) and through a bare pymilvus loop, on one stack, interleaved in random order; and the
S3 capture's cost: the same reload of the collection with and without tcpdump running; and the
watchdog's: the same serial searches with and without it watching.

If our code added more than noise, every backend's figures would carry it; the target is
under 1%. Each repetition inserts into a fresh collection (so both sides do identical work)
and searches the same loaded collection with the same held-out queries. Both ways of one
repetition run back to back, so the analysis pairs them: the stack's slow drift over the
repetitions cancels in each repetition's ratio instead of widening the interval.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from pymilvus import Collection, utility
from scipy import stats

from msbench.backends import BackendDef
from msbench.config import Params
from msbench.measure import traffic
from msbench.run.phases import VECTOR_FIELD, TrialState, flush, index_build, insert, load_first, load_warm, search
from msbench.providers.native import NativeStack
from msbench.measure.resources import PhaseMonitor
from msbench.measure.watchdog import Watchdog
from msbench.run.workload import Dataset


def _ours(state: TrialState, phase) -> tuple[float, float]:
    """Seconds of the phase with its monitor, and of the monitor alone (its reads at the start
    and end: the only time it takes, since nothing samples during the phase)."""
    began = time.perf_counter()
    with PhaseMonitor(state.stack.processes):
        inside = time.perf_counter()
        phase(state)
        inside = time.perf_counter() - inside
    total = time.perf_counter() - began
    return total, total - inside


def _bare_insert(state: TrialState, name: str) -> float:
    """What a user's own loop does: create, then insert the same numpy batches."""
    began = time.perf_counter()
    collection = Collection(name, state.collection.schema, using=state.alias)
    ids, vectors, size = state.data.ids, state.data.train, state.params.batch_size
    for start in range(0, len(vectors), size):
        collection.insert([ids[start:start + size], vectors[start:start + size].tolist()])
    return time.perf_counter() - began


def _bare_search(state: TrialState) -> float:
    params, limit = state.params.search_params(), state.params.top_k
    began = time.perf_counter()
    for query in state.data.queries:
        state.collection.search([query.tolist()], VECTOR_FIELD, params, limit=limit)
    return time.perf_counter() - began


def _load(state: TrialState, capture_path: Path | None) -> float:
    """One release-and-reload (the load_warm phase), under a capture when given a path."""
    capture = traffic.start_capture(state.stack, capture_path) if capture_path else None
    try:
        rows = load_warm(state)
    finally:
        if capture is not None:
            capture.stop()
            capture_path.unlink()
    return next(m.value for m in rows if m.metric == "load_warm_s")


def _search(state: TrialState, watched: bool) -> float:
    """The search phase, under the watchdog (as in a trial) or not."""
    began = time.perf_counter()
    if watched:
        with Watchdog(state.stack.watched, state.params.unresponsive_s) as dog, dog.phase("search"):
            search(state)
    else:
        search(state)
    return time.perf_counter() - began


def measure(backend: BackendDef, params: Params, data: Dataset, log_dir: Path, repetitions: int = 10,
            seed: int = 0, works: tuple[str, ...] = ("capture", "watchdog", "search", "insert")) -> pd.DataFrame:
    """Seconds per repetition for (work, way) with way in {ours, bare}; order shuffled per repetition.
    Every search repetition runs before the first insert one: the segments each insert leaves
    Milvus to seal and drop would otherwise land on the searches that follow it. For the work
    "load under capture", ours is the reload with the S3 capture running, bare without it; for
    "search under watchdog", the search phase with the watchdog on, bare with it off."""
    rng = np.random.default_rng(seed)
    rows = []
    with NativeStack(backend, params, log_dir) as stack:
        main = TrialState(stack, params, data)
        main.connect()
        try:
            for phase in (insert, flush, index_build, load_first):
                phase(main)
            capture_ok = "capture" in works and isinstance(stack.capture_target(), tuple)
            for rep in range(repetitions if capture_ok else 0):
                for way in rng.permutation(["ours", "bare"]):
                    seconds = _load(main, log_dir / "overhead.pcap" if way == "ours" else None)
                    rows.append({"repetition": rep, "work": "load under capture", "way": way, "seconds": seconds,
                                 "monitor_seconds": np.nan})
            for rep in range(repetitions if "watchdog" in works else 0):
                for way in rng.permutation(["ours", "bare"]):
                    rows.append({"repetition": rep, "work": "search under watchdog", "way": way,
                                 "seconds": _search(main, way == "ours"), "monitor_seconds": np.nan})
            for rep in range(repetitions if "search" in works else 0):
                for way in rng.permutation(["ours", "bare"]):
                    seconds, monitor = _ours(main, search) if way == "ours" else (_bare_search(main), np.nan)
                    rows.append({"repetition": rep, "work": "search", "way": way, "seconds": seconds,
                                 "monitor_seconds": monitor})
            for rep in range(repetitions if "insert" in works else 0):
                for way in rng.permutation(["ours", "bare"]):
                    name = f"overhead_{way}_{rep}"
                    if way == "ours":
                        mine = TrialState(stack, params, data, alias=main.alias, name=name)
                        seconds, monitor = _ours(mine, insert)
                    else:
                        seconds, monitor = _bare_insert(main, name), np.nan
                    rows.append({"repetition": rep, "work": "insert", "way": way, "seconds": seconds,
                                 "monitor_seconds": monitor})
                    utility.drop_collection(name, using=main.alias)
        finally:
            main.disconnect()
    return pd.DataFrame(rows)


def summary(raw: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Overhead = geometric mean over repetitions of ours/bare, minus one, with a t interval on
    the log ratios (timings are skewed, ratios multiply); n = repetitions with both ways timed.
    ``monitor_pct``: the monitor's own time as a share of the bare time, free of the noise."""
    out = []
    for work, group in raw.groupby("work"):
        wide = group.pivot_table(index="repetition", columns="way", values="seconds").dropna()
        logs = np.log(wide["ours"] / wide["bare"]).to_numpy()
        n, mean = len(logs), float(np.mean(logs))
        monitor = group["monitor_seconds"].mean() if "monitor_seconds" in group else np.nan
        low = high = p = np.nan
        if n > 1 and np.ptp(logs) > 0:
            low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(logs))
            p = float(stats.ttest_1samp(logs, 0.0).pvalue)
        out.append({"work": work, "n": n, "bare_mean_s": wide["bare"].mean(), "ours_mean_s": wide["ours"].mean(),
                    "overhead_pct": 100 * np.expm1(mean), "ci_low_pct": 100 * np.expm1(low),
                    "ci_high_pct": 100 * np.expm1(high), "median_ratio": float(np.exp(np.median(logs))),
                    "p_paired": p, "monitor_pct": 100 * monitor / wide["bare"].mean()})
    return pd.DataFrame(out)


def describe(table: pd.DataFrame, confidence: float = 0.95) -> str:
    """One line per work, as a reader quotes it."""
    return "\n".join(f"{r.work}: overhead {r.overhead_pct:+.2f}% [{100 * confidence:.0f}% CI {r.ci_low_pct:+.2f}, "
                     f"{r.ci_high_pct:+.2f}], geometric mean of ours/bare paired by repetition, n={r.n}"
                     + (f"; the monitor's own reads {r.monitor_pct:.3f}% of the bare time"
                        if np.isfinite(r.monitor_pct) else "")
                     for r in table.itertuples())
