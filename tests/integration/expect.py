"""What every successful trial must show, whatever the provider: the shared assertions."""
from __future__ import annotations

import pandas as pd

EVERY_PHASE_METRIC = {
    "insert": ["insert_s", "insert_rows_per_s"], "flush": ["flush_s"], "index": ["index_build_s"],
    "load_first": ["load_first_s"], "load_warm": ["load_warm_s", "store_bytes_served_during_load"],
    "load_noop": ["load_noop_s"], "load_cold": ["load_cold_s", "first_search_after_cold_s", "page_cache_dropped"],
    "search": ["search_latency_p50_ms", "search_latency_p99_ms", "recall_at_10"],
    "footprint": ["bucket_insert_log_bytes", "bucket_index_files_bytes", "bucket_bytes", "disk_allocated_bytes"],
}


def check_trial(df: pd.DataFrame, label: str) -> pd.Series:
    """Asserts on one trial's tidy rows; returns its values indexed by (phase, metric)."""
    for phase, metrics in EVERY_PHASE_METRIC.items():
        got = set(df[df.phase == phase].metric)
        assert set(metrics) <= got, f"{label} {phase}: missing {set(metrics) - got}"
    value = df.set_index(["phase", "metric"]).value
    assert value["search", "recall_at_10"] >= 0.9
    # A warm load is a real reload: the store served the collection's index again, while
    # load() on a loaded collection (what the published "warm load" timed) read nothing.
    index_bytes = value["footprint", "bucket_index_files_bytes"]
    assert value["load_warm", "store_bytes_served_during_load"] >= 0.5 * index_bytes
    assert value["load_noop", "store_bytes_served_during_load"] < 0.01 * index_bytes
    assert value["load_noop", "load_noop_s"] < value["load_warm", "load_warm_s"]
    assert value["load_cold", "store_restarted"] == 1 and value["load_cold", "page_cache_dropped"] == 1
    assert value["footprint", "bucket_bytes"] > 0 and value["footprint", "disk_allocated_bytes"] > 0
    assert value["insert", "milvus_peak_rss_bytes"] > 50e6 and value["index", "milvus_cpu_s"] > 0
    return value
