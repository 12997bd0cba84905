"""What every successful trial must show, whatever the provider: the shared assertions."""
from __future__ import annotations

import pandas as pd

EVERY_PHASE_METRIC = {
    "insert": ["insert_s", "insert_rows_per_s"], "flush": ["flush_s", "flush_resolution_s"],
    "index": ["index_build_s", "index_build_resolution_s"],
    "load_first": ["load_first_s", "load_first_resolution_s"],
    "load_warm": ["load_warm_s", "load_warm_resolution_s", "store_bytes_served_during_load"],
    "load_noop": ["load_noop_s", "load_noop_resolution_s"],
    "load_cold": ["load_cold_s", "load_cold_resolution_s", "first_search_after_cold_s", "page_cache_dropped"],
    "search": ["search_latency_p50_ms", "search_latency_p99_ms", "recall_at_10"],
    "footprint": ["bucket_insert_log_bytes", "bucket_index_files_bytes", "bucket_bytes", "disk_allocated_bytes"],
}
AFTER_GC = ["bucket_insert_log_bytes_after_gc", "bucket_index_files_bytes_after_gc", "bucket_bytes_after_gc",
            "disk_allocated_bytes_after_gc", "compaction_s", "gc_wait_s", "gc_settled"]
TIMED = ("flush", "index_build", "load_first", "load_warm", "load_cold")
# Overrides for tests that need whole trials but test neither the cold restart's length nor the footprint
# after GC (test_stores.py does): a 5 s session TTL and no second footprint, about 20 s less a trial.
BRIEF_TRIAL = {"milvus_session_ttl_s": 5, "footprint_after_gc": False}


def check_trial(df: pd.DataFrame, label: str, after_gc: bool = True) -> pd.Series:
    """Asserts on one trial's tidy rows; returns its values indexed by (phase, metric). ``after_gc``:
    the trial measured the footprint again after a forced GC (Params.footprint_after_gc)."""
    expected = {**EVERY_PHASE_METRIC, "footprint": EVERY_PHASE_METRIC["footprint"] + (AFTER_GC if after_gc else [])}
    for phase, metrics in expected.items():
        got = set(df[df.phase == phase].metric)
        assert set(metrics) <= got, f"{label} {phase}: missing {set(metrics) - got}"
    assert after_gc or not set(AFTER_GC) & set(df[df.phase == "footprint"].metric), f"{label}: an unasked GC"
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
    # Timed waits poll finely: each figure is known to within a poll period plus a round trip
    # (tens of ms on a smoke trial; pymilvus's own waits stepped by 0.2-0.5 s).
    phase_of = {"index_build": "index"}
    for stem in TIMED:
        assert value[phase_of.get(stem, stem), f"{stem}_resolution_s"] < 0.2, stem
    if after_gc:   # after a forced compaction and GC the data is all still there, indexed, and settled
        assert value["footprint", "gc_settled"] == 1
        assert value["footprint", "bucket_insert_log_bytes_after_gc"] > 0
        assert value["footprint", "bucket_index_files_bytes_after_gc"] > 0
        assert value["footprint", "disk_allocated_bytes_after_gc"] > 0
    # Read back after the footprint, every object was as the listing and the capture said Milvus wrote it.
    assert value["integrity", "integrity_objects"] > 0 and value["integrity", "integrity_read_errors"] == 0
    assert value["integrity", "integrity_size_differs_from_listing"] == value["integrity", "integrity_etag_mismatches"] == 0
    assert not value["integrity", "integrity_size_differs_from_capture"] > 0   # NaN when nothing was captured
    assert value["insert", "milvus_peak_rss_bytes"] > 50e6 and value["index", "milvus_cpu_s"] > 0
    return value
