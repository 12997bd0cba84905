"""The measured phases of one trial, in order. Each gets the trial's typed state and returns its
measurements (metric, value, unit); what it finds for later phases it leaves in that state.

What a metric means is decided here, so the rules are written next to the code:
- insert: numpy batches; ``tolist()`` once per batch (a C call) because pymilvus converts an
  ndarray element by element, five times slower; no per-row Python in the timed loop.
- flush, index, loads: the request is sent without pymilvus's own wait (it sleeps 0.2-0.5 s
  between checks, so every figure fell on those steps); we poll the state ourselves
  (``wait_until``: every 10 ms, growing to 1% of the time waited, at most 1 s, so long waits
  stay cheap) and record, next to each time, its resolution: the bound on how far the figure
  can be from the true completion (one poll period plus one state-call round trip, measured).
- flush: done when GetFlushState says every segment the Flush call sealed is flushed (binlogs
  persisted to the bucket, the channel checkpoint past the flush timestamp).
- index: done when Milvus reports every row indexed, none pending, and the state Finished.
- load_first: the first load after the index build (the published "cold load" definition).
- load_warm: ``release()`` then ``load()``: a real reload. ``load_noop`` times ``load()`` on a
  loaded collection, which Milvus answers at once without reading anything: the control that
  shows what a 9 ms "warm load" measured. The bytes the store served during each (kernel TCP
  counters of its connections) say which one read data; NaN, with the reason in the trial's
  record, where those counters cannot see the store (not on this host's loopback, or no ``ss``).
- loads are done when the loading progress is 100% and the load state Loaded. Milvus 2.3.5 writes
  that state only on a fixed 1 s tick (querycoord's CollectionObserver), so load times come in
  1 s steps; beside each, ``<phase>_segments_s`` is the time until every row is in a segment a
  query node holds (querycoord's view of its nodes, pulled every queryCoord.distPullInterval: 500
  ms by default, 100 ms under milvus_pacing=fine), which is not on that tick. A refused load()
  is tried again (up to 5 tries, 2 s apart; load_noop gets one); the time is the successful
  try's, and the failed tries are recorded beside it (count, seconds, errors), never dropped.
- load_cold: release, restart Milvus and the store, drop the page cache, then load; the
  first successful search after it is timed separately.
- search: serial single-query latency over held-out queries, warm-up queries discarded.
- footprint: the trial's objects in the bucket (``Stack.listing``: on a stack of its own, the whole
  bucket; on a deployment, its collection's own) and the store's disk, as found at the end of the trial, then again
  after a forced compaction, the re-index of its segments and Milvus's GC (run every 5 s
  throughout the trial by ``GC_CONFIG``: a few LIST requests to the store each time) have
  left the listing unchanged for a whole GC interval. The second listing re-indexes everything,
  as long again as the index phase: ``footprint_after_gc`` false leaves it out (large sweeps).
"""
from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, NamedTuple

import numpy as np
import pandas as pd
from pymilvus import Collection, CollectionSchema, DataType, FieldSchema, connections, utility
from pymilvus.client.types import LoadState, State

from msbench.config import Params
from msbench.providers import COLLECTION, Stack
from msbench.providers.milvus_native import GC_CONFIG
from msbench.measure import warp
from msbench.measure.integrity import integrity as check_integrity
from msbench.measure.resources import bytes_sent_between, tcp_bytes_sent
from msbench.measure.traffic import S3_PREFIXES
from msbench.run.workload import Dataset, recall_at_k

# pymilvus 2.6 flags its ORM as deprecated; only the ORM inserts numpy columns without rows.
warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API.*")

VECTOR_FIELD = "vector"



class Measurement(NamedTuple):
    """One figure a phase measured; the trial adds the phase's name to make a row of results.csv."""

    metric: str
    value: float
    unit: str

# State polling: every POLL_MIN_S, growing to POLL_FRACTION of the time waited (at most
# POLL_MAX_S), so a long index build is not slowed by the checks that time it.
POLL_MIN_S, POLL_FRACTION, POLL_MAX_S = 0.01, 0.01, 1.0
# After GC: the listing must stay unchanged for one GC interval plus a second (the GC run
# itself), within a few intervals.
GC_INTERVAL_S = float(GC_CONFIG["dataCoord.gc.interval"])
GC_QUIET_S = GC_INTERVAL_S + 1.0
GC_SETTLE_TIMEOUT_S = 4 * GC_INTERVAL_S
# A throughput worker's search gives up (pymilvus stops retrying) after this: a worker left behind
# by an interrupted phase ends by then.
THROUGHPUT_CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Waited:
    elapsed_s: float      # from the request to the start of the state call that first saw it done
    resolution_s: float   # |elapsed_s - true completion| is below this


def wait_until(done: Callable[[], bool], began: float, timeout: float, what: str,
               clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> Waited:
    """Poll ``done()`` from ``began`` (read before the request was sent) until it says yes.

    The completion happened after the server answered the previous call (so after that call
    started; for the first call, after ``began``) and before the deciding call returned. The
    elapsed time is taken at the start of the deciding call, so it is off by less than the
    larger of the last poll period and the deciding call's round trip: the resolution."""
    return wait_stages([(what, done)], began, timeout, clock, sleep)[what]


def wait_stages(stages: list[tuple[str, Callable[[], bool]]], began: float, timeout: float,
                clock: Callable[[], float] = time.perf_counter,
                sleep: Callable[[float], None] = time.sleep) -> dict[str, Waited]:
    """``wait_until`` for states reached in order (each implies the ones before it): each is polled
    from the call that saw the one before, and timed from ``began``. A stage's completion follows the
    previous stage's, so its bound starts where that one's did: the resolution stays honest when a
    stage is already done at its first poll."""
    previous, out = began, {}
    for what, done in stages:
        while True:
            asked = clock()
            finished = done()
            answered = clock()
            if finished:
                out[what] = Waited(asked - began, max(asked - previous, answered - asked))
                break
            if answered - began > timeout:
                raise TimeoutError(f"{what} not done after {timeout:.0f} s")
            previous = asked
            sleep(min(max(POLL_MIN_S, POLL_FRACTION * (answered - began)), POLL_MAX_S))
    return out


def _timed(stem: str, waited: Waited) -> list[Measurement]:
    return [Measurement(f"{stem}_s", waited.elapsed_s, "s"), Measurement(f"{stem}_resolution_s", waited.resolution_s, "s")]


def timeouts(p: Params) -> dict[str, float]:
    """Seconds each wait may take before its phase fails, scaled with the data (MiB of vectors):
    ten times or more what this 2-core machine needs, so a slow store is never cut short, while a
    stuck phase of a small study fails in a minute or two instead of an hour. (A server that dies
    fails the phase at once: see watchdog.)"""
    mib = p.n_vectors * p.dim * 4 / 2**20
    return {"flush": 60 + 10 * mib, "index": 120 + 60 * mib, "load": 60 + 10 * mib,
            "first_search_after_cold": 60 + 2 * mib}


def timing_facts(p: Params) -> dict:
    """For the manifest: how the timed waits poll, what "done" means, the timeouts, the GC settings."""
    return {
        "timeouts_s": {k: round(v, 1) for k, v in timeouts(p).items()},
        "poll_interval_s": {"min": POLL_MIN_S, "fraction_of_elapsed": POLL_FRACTION, "max": POLL_MAX_S},
        "resolution": "each *_resolution_s row: max(last poll period, round trip of the deciding state call)",
        "done": {
            "flush": "GetFlushState true for the segments the Flush call sealed, at its flush timestamp",
            "index": "DescribeIndex: state Finished, indexed_rows >= rows inserted, pending_index_rows 0",
            "load": "GetLoadingProgress 100% and GetLoadState Loaded",
            "footprint_after_gc": ("forced compaction Completed, every row indexed again, then the bucket "
                                   f"listing unchanged for {GC_QUIET_S:g} s (at most {GC_SETTLE_TIMEOUT_S:g} s)"
                                   if p.footprint_after_gc else "not measured (footprint_after_gc false: the "
                                   "compaction re-indexes everything, as long again as the index phase)"),
            "load_segments": "get_query_segment_info: the rows of the segments on query nodes >= rows inserted "
                             "(or the load already Loaded)",
        },
        "milvus_gc_config": dict(GC_CONFIG),
    }


@dataclass
class TrialState:
    """What the phases share: the stack, the connection, the data, and what they found."""

    stack: Stack                  # a provider's stack, provisioned
    params: Params
    data: Dataset
    alias: str = "msbench"
    name: str = COLLECTION        # the stack's (Stack.collection)
    description: str = ""         # the stack's (Stack.collection_description)
    collection: Collection | None = None
    latencies_ms: np.ndarray | None = None
    unwatched: Callable[[], ContextManager] = contextlib.nullcontext   # the watchdog's restart window
    # what the phases found, for later phases and the trial's record
    index_build_s: float | None = None          # the footprint's compaction waits for a re-index this long
    cold_load: dict[str, object] | None = None  # what the cold restart really did (Stack.restart)
    load_failures: list[str] = field(default_factory=list)   # refused load() tries, kept beside the times
    bytes_served_note: str = ""                 # why store_bytes_served_during_load is NaN, if it is
    store_alone_note: str = ""                  # why warp did not run or failed
    milvus_get_concurrency: int | None = None   # the most GETs Milvus had open in a load (from the capture)
    written: pd.DataFrame | None = None         # the capture's requests, for the integrity check
    integrity_problems: list[str] = field(default_factory=list)   # objects the store did not keep as written
    load_sent: dict[str, float] = field(default_factory=dict)   # load phase -> when its load() was sent (epoch)

    def connect(self) -> None:
        if connections.has_connection(self.alias):
            connections.disconnect(self.alias)
        connections.connect(alias=self.alias, uri=self.stack.uri, token=self.stack.milvus_token(), timeout=60)
        if utility.has_collection(self.name, using=self.alias):
            self.collection = Collection(self.name, using=self.alias)

    def disconnect(self) -> None:
        if connections.has_connection(self.alias):
            connections.disconnect(self.alias)

    def server_version(self) -> str:
        """The version Milvus itself reports (what ran, whatever the manifest planned)."""
        return str(utility.get_server_version(using=self.alias))

    def search_one(self, query: np.ndarray, timeout: float | None = None) -> list[int]:
        hits = self.collection.search([query.tolist()], VECTOR_FIELD, self.params.search_params(),
                                      limit=self.params.top_k, timeout=timeout)
        return list(hits[0].ids)


def insert(s: TrialState) -> list[Measurement]:
    schema = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=False),
        FieldSchema(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=s.data.train.shape[1]),
    ], description=s.description)
    s.collection = Collection(s.name, schema, using=s.alias)
    ids, vectors, size = s.data.ids, s.data.train, s.params.batch_size
    began = time.perf_counter()
    for start in range(0, len(vectors), size):
        s.collection.insert([ids[start:start + size], vectors[start:start + size].tolist()])
    elapsed = time.perf_counter() - began
    return [Measurement("insert_s", elapsed, "s"),
            Measurement("insert_rows_per_s", len(vectors) / elapsed, "rows/s"),
            Measurement("insert_batches", float(-(-len(vectors) // size)), "count")]


def flush(s: TrialState) -> list[Measurement]:
    """Flush without pymilvus's wait, then poll GetFlushState as its wait would, finer.
    The ORM drops the Flush reply (sealed segments, flush timestamp), so the handler is used."""
    timeout = timeouts(s.params)["flush"]
    handler = connections._fetch_handler(s.alias)
    began = time.perf_counter()
    reply = handler.flush([s.name], _async=True)._future.result()
    segments, flush_ts = list(reply.coll_segIDs[s.name].data), reply.coll_flush_ts[s.name]
    waited = wait_until(lambda: handler.get_flush_state(segments, s.name, flush_ts), began, timeout, "flush")
    return _timed("flush", waited)


def _indexed(s: TrialState) -> bool:
    progress = utility.index_building_progress(s.name, using=s.alias)
    if progress.get("state") == "Failed":
        raise RuntimeError(f"index build failed: {progress}")
    return (progress.get("state") == "Finished" and progress.get("indexed_rows", 0) >= len(s.data.train)
            and progress.get("pending_index_rows", 0) == 0)


def index_build(s: TrialState) -> list[Measurement]:
    timeout = timeouts(s.params)["index"]
    began = time.perf_counter()
    s.collection.create_index(VECTOR_FIELD, s.params.index_params(), sync=False)  # returns once accepted
    waited = wait_until(lambda: _indexed(s), began, timeout, "index build")
    s.index_build_s = waited.elapsed_s
    return _timed("index_build", waited)


def _loaded(s: TrialState) -> bool:
    progress = utility.loading_progress(s.name, using=s.alias)["loading_progress"]
    return progress == "100%" and utility.load_state(s.name, using=s.alias) == LoadState.Loaded


def _on_query_node(s: TrialState) -> bool:
    """Every inserted row is in a segment a query node holds: querycoord's view of its nodes (pulled
    every queryCoord.distPullInterval), not the Loaded state its 1 s observer writes; or, should that
    view lag, the collection is already Loaded (which needs the rows there)."""
    rows = sum(info.num_rows for info in utility.get_query_segment_info(s.name, using=s.alias))
    return rows >= len(s.data.train) or _loaded(s)


LOAD_RETRY_PAUSE_S = 2.0    # between a refused load() and the next try
LOAD_ERROR_CHARS = 300      # of each failed try's message, kept in TrialState.load_failures


def _timed_load(s: TrialState, phase: str, attempts: int = 5) -> list[Measurement]:
    """load() until it succeeds (stale sessions after a restart can refuse the first tries);
    times the successful try and counts the bytes the store served meanwhile. The failed tries
    are kept, not thrown away: their number, the time they took with the pauses, and each error
    in ``load_failures``, since a load that needed them is not like one that did not."""
    port, limit = s.stack.store.port, timeouts(s.params)["load"]
    # Counters of a store Milvus does not reach through this host would read other traffic (a port-forward's)
    unseen_here = s.stack.capture_target()
    count = (lambda: None) if isinstance(unseen_here, str) else (lambda: tcp_bytes_sent(port))
    failed_s = 0.0
    for attempt in range(1, attempts + 1):
        tried = time.perf_counter()
        sent_before = count()
        s.load_sent[phase] = time.time()   # the capture's clock: its reads are counted from here
        began = time.perf_counter()
        try:
            s.collection.load(timeout=limit, _async=True)   # returns once accepted
            waited = wait_stages([("segments", lambda: _on_query_node(s)), (phase, lambda: _loaded(s))],
                                 began, limit)
        except TimeoutError:
            raise
        except Exception as err:
            s.load_failures.append(
                f"{phase} attempt {attempt}: {type(err).__name__}: {str(err)[:LOAD_ERROR_CHARS]}")
            if attempt == attempts:
                raise
            time.sleep(LOAD_RETRY_PAUSE_S)
            failed_s += time.perf_counter() - tried
            continue
        served, unseen = ((math.nan, unseen_here) if isinstance(unseen_here, str)
                          else bytes_sent_between(sent_before, count(), port))
        if unseen and not s.bytes_served_note:   # the same cause in every load of a trial: said once
            s.bytes_served_note = f"store_bytes_served_during_load is NaN: {unseen}"
        return _timed(phase, waited[phase]) + _timed(f"{phase}_segments", waited["segments"]) + [
            Measurement("load_retries", float(attempt - 1), "count"),
            Measurement("load_failed_attempts", float(attempt - 1), "count"),
            Measurement("load_failed_attempts_s", failed_s, "s"),
            Measurement("store_bytes_served_during_load", served, "bytes")]
    raise AssertionError("unreachable")


def load_first(s: TrialState) -> list[Measurement]:
    return _timed_load(s, "load_first")


def load_warm(s: TrialState) -> list[Measurement]:
    s.collection.release()
    return _timed_load(s, "load_warm")


def load_noop(s: TrialState) -> list[Measurement]:
    """load() on a loaded collection: Milvus returns without reading. The control for load_warm."""
    return _timed_load(s, "load_noop", attempts=1)


def load_cold(s: TrialState) -> list[Measurement]:
    s.collection.release()
    s.disconnect()
    with s.unwatched():   # the servers go away on purpose
        happened = s.stack.restart()
    s.connect()
    rows = _timed_load(s, "load_cold")
    began = time.perf_counter()
    deadline = began + timeouts(s.params)["first_search_after_cold"]
    while True:   # first successful search: Milvus may still be warming its sessions
        try:
            s.search_one(s.data.queries[0])
            break
        except Exception:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.5)
    first_search = time.perf_counter() - began
    s.cold_load = happened
    return rows + [
            Measurement("first_search_after_cold_s", first_search, "s"),
            Measurement("restart_s", float(happened["restart_s"]), "s"),
            Measurement("store_restarted", float(happened["store_restarted"]), "bool"),
            Measurement("page_cache_dropped", float(happened["page_cache_dropped"]), "bool")]


def search(s: TrialState) -> list[Measurement]:
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
    return [Measurement("search_latency_mean_ms", float(kept.mean()), "ms"),
            Measurement("search_latency_p50_ms", float(np.percentile(kept, 50)), "ms"),
            Measurement("search_latency_p95_ms", float(np.percentile(kept, 95)), "ms"),
            Measurement("search_latency_p99_ms", float(np.percentile(kept, 99)), "ms"),
            Measurement("search_latency_max_ms", float(kept.max()), "ms"),
            Measurement("search_qps_serial", 1000.0 / float(kept.mean()), "queries/s"),
            Measurement("search_queries_measured", float(len(kept)), "count"),
            Measurement("search_warmup_discarded", float(warmup), "count"),
            Measurement(f"recall_at_{s.params.top_k}", recall_at_k(found, s.data.neighbors, s.params.top_k), "fraction")]


def throughput(s: TrialState) -> list[Measurement]:
    """Queries per second at each concurrency level, for a fixed, bounded duration."""
    rows: list[Measurement] = []
    queries = s.data.queries
    for level in s.params.concurrency:
        stop = threading.Event()
        counts = [0] * level

        def worker(slot: int) -> None:
            i = slot
            while not stop.is_set():
                s.search_one(queries[i % len(queries)], timeout=THROUGHPUT_CALL_TIMEOUT_S)
                counts[slot] += 1
                i += level

        pool = ThreadPoolExecutor(level)
        try:
            began = time.perf_counter()
            futures = [pool.submit(worker, slot) for slot in range(level)]
            try:
                time.sleep(s.params.throughput_seconds)
            finally:
                stop.set()
            for future in futures:
                future.result()
            elapsed = time.perf_counter() - began
        finally:   # interrupted (a server died): do not wait for workers stuck in pymilvus's retries
            pool.shutdown(wait=False, cancel_futures=True)
        rows.append(Measurement(f"search_qps_c{level}", sum(counts) / elapsed, "queries/s"))
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


def _footprint_rows(s: TrialState, listing: dict[str, int], suffix: str) -> list[Measurement]:
    """Bucket bytes by Milvus prefix and the store's bytes on disk, metrics named with ``suffix``."""
    by_prefix: dict[str, float] = defaultdict(float)
    for key, size in listing.items():
        by_prefix[next((p for p in key.split("/") if p in S3_PREFIXES), "other")] += size
    rows = [Measurement(f"bucket_{p}_bytes{suffix}", by_prefix.get(p, 0.0), "bytes") for p in (*S3_PREFIXES, "other")]
    rows.append(Measurement(f"bucket_bytes{suffix}", float(sum(by_prefix.values())), "bytes"))
    rows.append(Measurement(f"bucket_objects{suffix}", float(len(listing)), "count"))
    paths = s.stack.data_paths()
    if paths:
        allocated, apparent = _disk_bytes(paths)
        rows += [Measurement(f"disk_allocated_bytes{suffix}", float(allocated), "bytes"),
                 Measurement(f"disk_apparent_bytes{suffix}", float(apparent), "bytes")]
    return rows


def settle(read: Callable[[], object], quiet: float, timeout: float, step: float = 0.5,
           clock: Callable[[], float] = time.perf_counter,
           sleep: Callable[[float], None] = time.sleep) -> tuple[object, float, bool]:
    """Read until the value has not changed for ``quiet`` seconds (at most ``timeout``):
    (last value, seconds waited, whether it settled)."""
    began = clock()
    value, changed = read(), began
    while clock() - changed < quiet:
        if clock() - began >= timeout:
            return value, clock() - began, False
        sleep(step)
        now = read()
        if now != value:
            value, changed = now, clock()
    return value, clock() - began, True


def _compacted(s: TrialState) -> bool:
    return s.collection.get_compaction_state().state == State.Completed


def footprint(s: TrialState) -> list[Measurement]:
    """The bucket as found at the end of the trial (no forced compaction; GC has been running
    every few seconds under GC_CONFIG, so only Milvus's own compactions were collected), then at
    a defined point: after a forced compaction (it rewrites every segment), the re-index of the
    new segments, and GC having left the listing unchanged for a whole GC interval. If that
    point is not reached in time, the second listing is taken anyway and ``gc_settled`` says 0."""
    rows = _footprint_rows(s, s.stack.listing(), "")
    if not s.params.footprint_after_gc:
        return rows
    bound = 60.0 + 3 * (s.index_build_s or 60.0)   # the compaction re-indexes everything
    began = time.perf_counter()
    s.collection.compact()
    try:
        wait_until(lambda: _compacted(s), began, bound, "compaction")
        wait_until(lambda: _indexed(s), began, bound, "index of the compacted segments")
        compacted = True
    except TimeoutError:
        compacted = False
    compaction_s = time.perf_counter() - began
    listing, gc_wait, settled = settle(s.stack.listing, GC_QUIET_S, GC_SETTLE_TIMEOUT_S if compacted else 0.0)
    rows += [Measurement("compaction_s", compaction_s, "s"), Measurement("gc_wait_s", gc_wait, "s"),
             Measurement("gc_settled", float(compacted and settled), "bool")]
    return rows + _footprint_rows(s, listing, "_after_gc")


WARP_BUCKET = "msbench-warp"
WARP_DEFAULT_CONCURRENCY = 4    # when no capture says how many GETs Milvus had open at once


def store_alone(s: TrialState) -> list[Measurement]:
    """The store on its own (warp.py): warp PUTs, then GETs, objects of the size that carries
    the bucket's bytes, at the concurrency Milvus's loads reached, into a bucket of warp's own.
    Last, outside the capture: it follows the footprint and measures no Milvus phase, so a warp
    failure is recorded (``warp_{op}_failed``, the cause in the trial's ``store_alone_note``)
    and does not fail the trial."""
    binary = warp.warp_binary()
    if s.params.warp_seconds <= 0 or binary is None:
        s.store_alone_note = "warp_seconds is 0" if binary else "warp is not built (msbench stores install warp)"
        return []
    size = warp.plan_object_size(list(s.stack.listing().values()))
    measured = s.milvus_get_concurrency
    concurrency = int(measured) if measured else WARP_DEFAULT_CONCURRENCY
    store = s.stack.store
    target = warp.WarpTarget(f"{store.host}:{store.port}", store.access_key, store.secret_key, WARP_BUCKET)
    rows: list[Measurement] = [Measurement("warp_concurrency_from_capture", float(bool(measured)), "bool")]
    failures = []
    with tempfile.TemporaryDirectory(prefix="msbench-warp-") as work:
        for op in ("put", "get"):
            try:
                rows += [Measurement(*row) for row in
                         warp.run_warp(binary, target, op, size, concurrency, s.params.warp_seconds, Path(work))]
            except Exception as err:   # recorded: the Milvus phases before it stand
                rows.append(Measurement(f"warp_{op}_failed", 1.0, "bool"))
                failures.append(f"warp {op}: {type(err).__name__}: {err}")
    s.store_alone_note = "; ".join(failures)
    return rows


def integrity(s: TrialState) -> list[Measurement]:
    """Every object of the trial read back once, untimed (after the capture: not Milvus's traffic), its
    size against the listing and against what the capture saw Milvus write (measure.integrity)."""
    report = check_integrity(s.stack.s3(), s.stack.bucket, s.stack.listing(), s.written)
    s.integrity_problems = report.problems
    return [Measurement(metric, value, unit) for _, metric, value, unit in report.rows()]


@dataclass(frozen=True)
class Phase:
    """A phase as a trial runs it: its name in results and plans, and whether its S3 requests are Milvus's
    (the store-alone benchmark runs after the capture has stopped)."""

    name: str
    run: Callable[[TrialState], list[Measurement]]
    captured: bool = True


# The order a trial runs them in. Throughput comes after serial search so latency is measured first.
PHASES = (Phase("insert", insert), Phase("flush", flush), Phase("index", index_build), Phase("load_first", load_first),
          Phase("load_warm", load_warm), Phase("load_noop", load_noop), Phase("load_cold", load_cold),
          Phase("search", search), Phase("throughput", throughput), Phase("footprint", footprint),
          Phase("integrity", integrity, captured=False), Phase("store_alone", store_alone, captured=False))
