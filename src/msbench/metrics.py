"""The metric catalogue: every headline measurement's phase, name, unit, better direction, a few words
(brief) and its full description. The runner's stopping rule, the report and the sweep all read it here."""
from __future__ import annotations

from dataclasses import dataclass

from msbench.config import Params


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

    @property
    def direction(self) -> str:
        return direction(self.metric)


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


def headline(params: Params) -> list[Metric]:
    """HEADLINE plus the metrics whose names depend on the run's parameters (top_k, concurrency)."""
    k = params.top_k
    recall = Metric("search", f"recall_at_{k}", "fraction",
                    f"Recall@{k}: share of the true {k} nearest neighbours among the {k} returned")
    qps = [Metric("throughput", f"search_qps_c{c}", "queries/s",
                  f"Searches per second with {c} concurrent clients over {params.throughput_seconds:g} s")
           for c in params.concurrency]
    return [*HEADLINE, recall, *qps]


def compared(params: Params) -> list[Metric]:
    """The headline metrics that measure performance: what comparisons, the stopping rule, power and the
    forest plot use (diagnostics left out)."""
    return [m for m in headline(params) if not m.diagnostic]
