"""What the report measures and the completed trials' values of it: the headline metrics (with
their unit, meaning and better direction) and the rows of a run that enter any statistic. Only
completed trials (status "ok") are analysed: a failed trial stopped at a broken stack."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from msbench.run import stopping

Run = dict[str, Any]

BYTE_UNITS = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("bytes", 1.0))
FOOTPRINT_PREFIXES = ("insert_log", "stats_log", "delta_log", "index_files", "other")
TIME_UNITS = ("s", "ms")


@dataclass(frozen=True)
class Metric:
    """One headline measurement: where it is recorded, its raw unit, and what it means."""

    phase: str
    metric: str
    unit: str
    what: str
    label: str = ""   # needed only when the metric name repeats across phases
    diagnostic: bool = False   # evidence about the method (shown), not a performance to compare

    @property
    def name(self) -> str:
        return self.label or self.metric

    @property
    def brief(self) -> str:
        """A few words on what it measures, for the verdict table where ``what`` would not fit."""
        return BRIEF.get(self.name, self.what)


_BYTES_OUT = ("Bytes the store sent to Milvus during this load(), from the kernel's TCP counters of its "
              "connections (a connection closed meanwhile is not counted: a lower bound; missing where the "
              "counters cannot see the store, see Deviations)")
HEADLINE: list[Metric] = [
    Metric("insert", "insert_rows_per_s", "rows/s", "Insert throughput: rows per second over the batched insert() calls (before flush)"),
    Metric("flush", "flush_s", "s", "flush(): seal the inserted segments and write them to object storage"),
    Metric("index", "index_build_s", "s", "Index build: create_index() until every row is indexed"),
    Metric("footprint", "bucket_bytes", "bytes", "Bucket size at the end of the trial, as found (after the loads; "
           "no forced compaction; Milvus GC every 5 s)"),
    Metric("footprint", "disk_allocated_bytes", "bytes", "Disk space the store's data directories occupy (allocated blocks) at the end of the trial"),
    Metric("footprint", "bucket_bytes_after_gc", "bytes", "Bucket size after a forced compaction and Milvus garbage "
           "collection settled (GC every 5 s, dropped files kept 1 s): footprint at a defined point"),
    Metric("footprint", "disk_allocated_bytes_after_gc", "bytes", "The store's allocated disk bytes at that same point"),
    Metric("load_first", "load_first_s", "s", "First load() after the index build (the published 'cold load' definition)"),
    Metric("load_warm", "load_warm_s", "s", "release() then load(): a real reload from object storage"),
    Metric("load_warm", "store_bytes_served_during_load", "bytes", f"{_BYTES_OUT}; a real reload should be well above zero",
           "store_bytes_served_during_load [load_warm]", diagnostic=True),
    Metric("load_noop", "load_noop_s", "s", "load() on an already loaded collection: returns without reading; "
           "what a 9 ms 'warm load' measures"),
    Metric("load_noop", "store_bytes_served_during_load", "bytes", f"{_BYTES_OUT}; about zero, as nothing is read",
           "store_bytes_served_during_load [load_noop]", diagnostic=True),
    Metric("load_cold", "load_cold_s", "s", "load() after restarting Milvus and the store and dropping the OS page cache"),
    Metric("load_cold", "first_search_after_cold_s", "s", "Time to the first successful search after the cold load"),
    Metric("search", "search_latency_mean_ms", "ms", "Mean latency of serial single-vector searches (warm-up queries excluded)"),
    Metric("search", "search_latency_p50_ms", "ms", "Median latency of serial searches within one trial"),
    Metric("search", "search_latency_p95_ms", "ms", "95th-percentile latency of serial searches within one trial"),
    Metric("search", "search_latency_p99_ms", "ms", "99th-percentile latency of serial searches within one trial"),
    Metric("search", "search_qps_serial", "queries/s", "Serial searches per second (1 / mean latency)"),
]


# A few words on each compared metric (Metric.brief); one without them is described by its ``what``.
BRIEF = {
    "insert_rows_per_s": "insert throughput",
    "flush_s": "flush: segments sealed and written",
    "index_build_s": "index build",
    "bucket_bytes": "bucket size, as found",
    "disk_allocated_bytes": "store's disk use, as found",
    "bucket_bytes_after_gc": "bucket size after compaction and GC",
    "disk_allocated_bytes_after_gc": "store's disk use after compaction and GC",
    "load_first_s": "first load after the index build",
    "load_warm_s": "reload: release(), then load()",
    "load_noop_s": "load() when loaded: reads nothing",
    "load_cold_s": "load after restarts, page cache dropped",
    "first_search_after_cold_s": "first search after the cold load",
    "search_latency_mean_ms": "mean serial search latency",
    "search_latency_p50_ms": "median serial search latency",
    "search_latency_p95_ms": "95th-percentile search latency",
    "search_latency_p99_ms": "99th-percentile search latency",
    "search_qps_serial": "serial searches per second",
}


def direction(metric: str) -> str:
    """Which way is better: throughput, QPS and recall up, everything else (time, bytes) down."""
    higher = metric.endswith("_rows_per_s") or "qps" in metric or metric.startswith("recall_")
    return "higher" if higher else "lower"


def headline(run: Run) -> list[Metric]:
    """HEADLINE plus the metrics whose names depend on the run's parameters (top_k, concurrency)."""
    params = run["manifest"].get("params", {})
    k = params.get("top_k", 10)
    recall = Metric("search", f"recall_at_{k}", "fraction",
                    f"Recall@{k}: share of the true {k} nearest neighbours among the {k} returned")
    qps = [Metric("throughput", f"search_qps_c{c}", "queries/s",
                  f"Searches per second with {c} concurrent clients over {params.get('throughput_seconds', '?')} s")
           for c in params.get("concurrency", [])]
    return [*HEADLINE, recall, *qps]


def compared(run: Run) -> list[Metric]:
    """The headline metrics that measure performance: what comparisons, power and the forest plot use."""
    return [m for m in headline(run) if not m.diagnostic]


def completed_rows(run: Run, table: str) -> pd.DataFrame:
    """Rows of ``table`` ("results" or "latencies") that belong to completed trials."""
    trials, frame = run["trials"], run[table]
    if trials.empty or "status" not in trials or frame.empty:
        return frame.iloc[0:0]
    ok = trials.loc[trials["status"] == "ok", ["backend", "trial"]]
    return frame.merge(ok, on=["backend", "trial"])


def fitting_byte_unit(largest: float) -> str:
    """The largest decimal unit not above the data, so a table shows 1.58 MB, not 1577226 bytes."""
    return next((unit for unit, factor in BYTE_UNITS if largest >= factor), "bytes")


def trial_values(run: Run, metrics: list[Metric], byte_unit: str | None = None) -> pd.DataFrame:
    """Completed trials' values of ``metrics``, keyed by Metric.name, bytes rescaled for display.

    ``byte_unit`` forces one unit on every byte metric (a stacked bar needs a common scale);
    otherwise each byte metric gets the unit that suits its own values. The frame carries the level
    its intervals are computed at (``confidence_of``), so every table of the run uses the same.
    """
    data = completed_rows(run, "results")
    factors = dict(BYTE_UNITS)
    frames = []
    for m in metrics:
        sel = data[(data["phase"] == m.phase) & (data["metric"] == m.metric)]
        if sel.empty:
            continue
        unit = m.unit
        if unit == "bytes":
            unit = byte_unit or fitting_byte_unit(sel["value"].abs().max())
        frames.append(sel.assign(metric=m.name, value=sel["value"] / factors.get(unit, 1.0), unit=unit))
    tidy = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*data.columns])
    tidy.attrs["confidence"] = stopping.level(run["manifest"])
    return tidy


def confidence_of(tidy: pd.DataFrame) -> float:
    """The level at which intervals of these values are computed so that they cover 95%: 95%, or
    higher in a run stopped by the until-precise rule (see stopping.calibrated_level)."""
    return tidy.attrs.get("confidence", stopping.CONFIDENCE)


def all_backends(run: Run) -> list[str]:
    """Every backend the run asked for or recorded, sorted: the same axis and colours in every figure."""
    recorded = set(run["trials"]["backend"]) if "backend" in run["trials"] else set()
    return sorted(set(run["manifest"].get("backends", [])) | recorded)


def default_baseline(run: Run) -> str | None:
    """The run's planned baseline (MinIO when it ran: the store the published study replaces) when it
    completed a trial, else MinIO, else the first alphabetically."""
    ran = sorted(set(completed_rows(run, "results")["backend"]))
    planned = run["manifest"].get("baseline")
    return planned if planned in ran else "minio" if "minio" in ran else (ran[0] if ran else None)


def control_names(run: Run) -> set[str]:
    """The baseline's A/A and handicapped twins: shown in their own section, not compared as stores."""
    return set(run["manifest"].get("controls") or {})


def without_controls(run: Run, tidy: pd.DataFrame) -> pd.DataFrame:
    return tidy[~tidy["backend"].isin(control_names(run))]
