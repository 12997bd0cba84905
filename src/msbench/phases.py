"""The measured phases of one trial, in order. Each returns tidy rows (phase, metric, value, unit).

What a metric means is decided here, so the rules are written next to the code:
- insert: numpy batches; ``tolist()`` once per batch (a C call) because pymilvus converts an
  ndarray element by element, five times slower; no per-row Python in the timed loop.
- index: timed until Milvus reports every row indexed and the state Finished.
- load_first: the first load after the index build (the published "cold load" definition).
- load_warm: ``release()`` then ``load()``: a real reload. ``load_noop`` times ``load()`` on a
  loaded collection, which Milvus answers at once without reading anything: the control that
  shows what a 9 ms "warm load" measured. The bytes the store served during each (kernel TCP
  counters of its connections) say which one read data.
- load_cold: release, restart Milvus and the store, drop the page cache, then load; the
  first successful search after it is timed separately.
- search: serial single-query latency over held-out queries, warm-up queries discarded.
"""
from __future__ import annotations

import threading
import time
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility

from msbench.config import Params
from msbench.resources import bytes_sent_between, tcp_bytes_sent
from msbench.workload import Dataset, recall_at_k

# pymilvus 2.6 flags its ORM as deprecated; only the ORM inserts numpy columns without rows.
warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API.*")

COLLECTION = "msbench"
VECTOR_FIELD = "vector"
S3_PREFIXES = ("insert_log", "stats_log", "delta_log", "index_files")

Row = tuple[str, str, float, str]   # phase, metric, value, unit


@dataclass
class TrialState:
    """What the phases share: the stack, the connection, the data, and what they found."""

    stack: object                 # a provider's stack: uri, restart(), s3(), bucket, data_paths()
    params: Params
    data: Dataset
    alias: str = "msbench"
    name: str = COLLECTION
    collection: Collection | None = None
    latencies_ms: np.ndarray | None = None
    notes: dict[str, object] = field(default_factory=dict)

    def connect(self) -> None:
        if connections.has_connection(self.alias):
            connections.disconnect(self.alias)
        connections.connect(alias=self.alias, uri=self.stack.uri, timeout=60)
        if utility.has_collection(self.name, using=self.alias):
            self.collection = Collection(self.name, using=self.alias)

    def disconnect(self) -> None:
        if connections.has_connection(self.alias):
            connections.disconnect(self.alias)

    def search_one(self, query: np.ndarray) -> list[int]:
        hits = self.collection.search([query.tolist()], VECTOR_FIELD, self.params.search_params(),
                                      limit=self.params.top_k)
        return list(hits[0].ids)


def insert(s: TrialState) -> list[Row]:
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=s.data.train.shape[1]),
    ])
    s.collection = Collection(s.name, schema, using=s.alias)
    ids, vectors, size = s.data.ids, s.data.train, s.params.batch_size
    began = time.perf_counter()
    for start in range(0, len(vectors), size):
        s.collection.insert([ids[start:start + size], vectors[start:start + size].tolist()])
    elapsed = time.perf_counter() - began
    return [("insert", "insert_s", elapsed, "s"),
            ("insert", "insert_rows_per_s", len(vectors) / elapsed, "rows/s"),
            ("insert", "insert_batches", float(-(-len(vectors) // size)), "count")]


def flush(s: TrialState) -> list[Row]:
    began = time.perf_counter()
    s.collection.flush()
    return [("flush", "flush_s", time.perf_counter() - began, "s")]


def index_build(s: TrialState, timeout: float = 7200.0) -> list[Row]:
    began = time.perf_counter()
    s.collection.create_index(VECTOR_FIELD, s.params.index_params())
    total = len(s.data.train)
    while True:
        progress = utility.index_building_progress(s.name, using=s.alias)
        if progress.get("indexed_rows", 0) >= total and progress.get("pending_index_rows", 0) == 0:
            state = utility.wait_for_index_building_complete(s.name, using=s.alias, timeout=timeout)
            if state:
                break
        if time.perf_counter() - began > timeout:
            raise TimeoutError(f"index not finished after {timeout:.0f} s: {progress}")
        time.sleep(0.05)
    return [("index", "index_build_s", time.perf_counter() - began, "s")]


def _timed_load(s: TrialState, phase: str, attempts: int = 5) -> list[Row]:
    """load() until it succeeds (stale sessions after a restart can refuse the first tries);
    records the time of the successful call and the bytes the store served meanwhile."""
    for attempt in range(1, attempts + 1):
        sent_before = tcp_bytes_sent(s.stack.store.port)
        began = time.perf_counter()
        try:
            s.collection.load(timeout=3600)
        except Exception:
            if attempt == attempts:
                raise
            time.sleep(2.0)
            continue
        elapsed = time.perf_counter() - began
        return [(phase, f"{phase}_s", elapsed, "s"), (phase, "load_retries", float(attempt - 1), "count"),
                (phase, "store_bytes_served_during_load",
                 bytes_sent_between(sent_before, tcp_bytes_sent(s.stack.store.port)), "bytes")]
    raise AssertionError("unreachable")


def load_first(s: TrialState) -> list[Row]:
    return _timed_load(s, "load_first")


def load_warm(s: TrialState) -> list[Row]:
    s.collection.release()
    return _timed_load(s, "load_warm")


def load_noop(s: TrialState) -> list[Row]:
    """load() on a loaded collection: Milvus returns without reading. The control for load_warm."""
    return _timed_load(s, "load_noop", attempts=1)


def load_cold(s: TrialState) -> list[Row]:
    s.collection.release()
    s.disconnect()
    happened = s.stack.restart()
    s.connect()
    rows = _timed_load(s, "load_cold")
    began = time.perf_counter()
    deadline = began + 300
    while True:   # first successful search: Milvus may still be warming its sessions
        try:
            s.search_one(s.data.queries[0])
            break
        except Exception:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.5)
    first_search = time.perf_counter() - began
    s.notes["cold_load"] = happened
    return rows + [
            ("load_cold", "first_search_after_cold_s", first_search, "s"),
            ("load_cold", "restart_s", float(happened["restart_s"]), "s"),
            ("load_cold", "store_restarted", float(happened["store_restarted"]), "bool"),
            ("load_cold", "page_cache_dropped", float(happened["page_cache_dropped"]), "bool")]


def search(s: TrialState) -> list[Row]:
    """Serial latency; every query's latency kept, warm-up ones flagged; recall over all queries."""
    queries, warmup = s.data.queries, s.params.warmup_queries
    latencies = np.empty(len(queries))
    found = []
    for i, query in enumerate(queries):
        began = time.perf_counter()
        ids = s.search_one(query)
        latencies[i] = (time.perf_counter() - began) * 1000.0
        found.append(ids)
    s.latencies_ms = latencies
    kept = latencies[warmup:]
    return [("search", "search_latency_mean_ms", float(kept.mean()), "ms"),
            ("search", "search_latency_p50_ms", float(np.percentile(kept, 50)), "ms"),
            ("search", "search_latency_p95_ms", float(np.percentile(kept, 95)), "ms"),
            ("search", "search_latency_p99_ms", float(np.percentile(kept, 99)), "ms"),
            ("search", "search_latency_max_ms", float(kept.max()), "ms"),
            ("search", "search_qps_serial", 1000.0 / float(kept.mean()), "queries/s"),
            ("search", "search_queries_measured", float(len(kept)), "count"),
            ("search", "search_warmup_discarded", float(warmup), "count"),
            ("search", f"recall_at_{s.params.top_k}", recall_at_k(found, s.data.neighbors, s.params.top_k), "fraction")]


def throughput(s: TrialState) -> list[Row]:
    """Queries per second at each concurrency level, for a fixed, bounded duration."""
    rows: list[Row] = []
    queries = s.data.queries
    for level in s.params.concurrency:
        stop = threading.Event()
        counts = [0] * level

        def worker(slot: int) -> None:
            i = slot
            while not stop.is_set():
                s.search_one(queries[i % len(queries)])
                counts[slot] += 1
                i += level

        with ThreadPoolExecutor(level) as pool:
            began = time.perf_counter()
            futures = [pool.submit(worker, slot) for slot in range(level)]
            time.sleep(s.params.throughput_seconds)
            stop.set()
            for future in futures:
                future.result()
            elapsed = time.perf_counter() - began
        rows.append(("throughput", f"search_qps_c{level}", sum(counts) / elapsed, "queries/s"))
    return rows


def _disk_bytes(paths: list[Path]) -> tuple[int, int]:
    """Allocated bytes (st_blocks, what the disk really holds) and apparent bytes."""
    allocated = apparent = 0
    for root in paths:
        for path in ([root] if root.is_file() else root.rglob("*")):
            try:
                st = path.lstat()
            except OSError:
                continue
            if path.is_file() and not path.is_symlink():
                allocated += st.st_blocks * 512
                apparent += st.st_size
    return allocated, apparent


def footprint(s: TrialState) -> list[Row]:
    """Bucket bytes by Milvus prefix plus the store's bytes on disk, at the end of the trial
    (after index build and loads, no forced compaction or GC: Milvus GC waits an hour)."""
    by_prefix: dict[str, float] = defaultdict(float)
    objects = 0
    pages = s.stack.s3().get_paginator("list_objects_v2").paginate(Bucket=s.stack.bucket)
    for page in pages:
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            prefix = next((p for p in parts if p in S3_PREFIXES), "other")
            by_prefix[prefix] += obj["Size"]
            objects += 1
    rows: list[Row] = [("footprint", f"bucket_{p}_bytes", by_prefix.get(p, 0.0), "bytes") for p in (*S3_PREFIXES, "other")]
    rows.append(("footprint", "bucket_bytes", float(sum(by_prefix.values())), "bytes"))
    rows.append(("footprint", "bucket_objects", float(objects), "count"))
    paths = s.stack.data_paths()
    if paths:
        allocated, apparent = _disk_bytes(paths)
        rows += [("footprint", "disk_allocated_bytes", float(allocated), "bytes"),
                 ("footprint", "disk_apparent_bytes", float(apparent), "bytes")]
    return rows


# The order a trial runs them in. Throughput comes after serial search so latency is measured first.
PHASES = (insert, flush, index_build, load_first, load_warm, load_noop, load_cold, search, throughput, footprint)
