"""Issuing a trace's requests against a store: one connection per connection of the trace, the
requests on it strictly in their order, and the recorded order between connections kept.

The order rule (both pacings): a request starts only once every request that had ended before it
began in the recording has ended in the replay. It keeps what Milvus's requests depended on (a
read after the write it reads, a multipart part after its upload was created) and the recorded
concurrency (requests that overlapped may overlap, requests that followed each other still do).

- ``fast`` (closed loop): each connection issues its next request as soon as the rule allows; the
  phase takes as long as the store makes it, which is what is compared across stores.
- ``recorded`` (open loop): a request also waits for its recorded offset from the phase start;
  one that starts more than LATE_TOLERANCE_S after it (its connection or the rule held it back)
  is a late start, counted with its delay.

Measured per request: start, first byte, end (one clock, ``time.perf_counter``, seconds from the
phase start), status against the recorded one, body bytes either way, transport errors. Per phase
(:func:`phase_rows`): replay time (phase start to the last response), busy time (union of open
requests), requests, bytes, errors, late starts, and per-operation latency percentiles. No key
appears in anything recorded: requests are named by phase, connection and order.
"""
from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from msbench.measure import trace as tr, traffic
from msbench.replay.client import Response, S3Connection

PACINGS = ("fast", "recorded")
LATE_TOLERANCE_S = 0.002   # a start later than this after its recorded offset is a late start (sleep overshoots ~0.1 ms)
POOL_SLACK = 1 << 20       # PUT bodies start at different offsets of one random buffer: no two alike
LIST_DEFAULTS = {"list-type": "2", "encoding-type": "url", "fetch-owner": "true"}   # for traces without query values
LIST_TOKENS = ("continuation-token", "start-after")   # the store's own, or a key: a listing restarts from the top
PERCENTILES = (50, 90, 99)
TIMED = ("replay_s", "busy_s", "late_s_max", "latency_")   # a phase's figures that vary from one replay to the next
REQUEST_COLUMNS = ["phase", "repetition", "conn", "conn_seq", "operation", "recorded_start_s", "recorded_duration_s",
                   "recorded_status", "scheduled_s", "start_s", "first_byte_s", "end_s", "late_s", "status", "request_bytes",
                   "response_bytes", "object_bytes_read", "object_bytes_written", "error"]


@dataclass(frozen=True)
class Step:
    """One request of a phase, as the replay issues it."""

    rank: int            # its place among the phase's requests by recorded end (the order rule's currency)
    after: int           # how many of the phase's requests (by recorded end) must have ended before it starts
    conn: int
    seq: int
    offset_s: float      # recorded start, from the phase start
    duration_s: float
    operation: str
    method: str
    key: str
    query: str
    range: str
    request_bytes: int
    response_bytes: int
    status: float        # recorded (NaN: unanswered)
    upload: int = -1     # which multipart upload (create, parts, complete) it belongs to
    part: int = 0        # its part number within that upload


def plan_phase(requests: pd.DataFrame, uploads: dict[int, tuple[int, int]] | None = None) -> dict[int, list[Step]]:
    """The phase's requests as Steps per connection, in order on each, with the order rule's counts.
    ``uploads``: row index -> (upload, part number), from :func:`assign_uploads`."""
    uploads = uploads or {}
    starts = requests["start_s"].to_numpy(float)
    ends = starts + requests["duration_s"].to_numpy(float)
    ends = np.where(np.isnan(ends), np.inf, ends)   # unanswered: nothing waits for it
    by_end = np.argsort(ends, kind="stable")
    rank = np.empty(len(ends), int)
    rank[by_end] = np.arange(len(ends))
    sorted_ends = ends[by_end]
    after = np.searchsorted(sorted_ends, starts, side="left")   # requests that had ended strictly before
    steps: dict[int, list[Step]] = defaultdict(list)
    for pos, (i, row) in enumerate(requests.iterrows()):
        upload, part = uploads.get(i, (-1, 0))
        steps[int(row["conn"])].append(Step(
            int(rank[pos]), int(after[pos]), int(row["conn"]), int(row["seq"]), float(row["start_s"]),
            float(row["duration_s"]) if not pd.isna(row["duration_s"]) else math.nan, row["operation"], row["method"],
            row["key"], row["query"], row["range"], int(row["request_bytes"]), int(row["response_bytes"]),
            float(row["status"]) if not pd.isna(row["status"]) else math.nan, upload, part))
    return {conn: sorted(mine, key=lambda s: s.seq) for conn, mine in sorted(steps.items())}


FINISHES = ("multipart complete", "multipart abort")


def assign_uploads(requests: pd.DataFrame) -> dict[int, tuple[int, int]]:
    """Row index -> (upload, part number) for the trace's multipart requests: a create opens an
    upload of its key, its parts and completion (or abort) follow it. A part's number is the
    recorded partNumber when the trace kept it, else its place among the upload's parts."""
    current: dict[str, int] = {}
    counts: dict[int, int] = defaultdict(int)
    out = {}
    for i, row in tr.in_time_order(requests).iterrows():
        op, key = row["operation"], row["key"]
        if op == "multipart create":
            current[key] = len(counts)
            counts[current[key]] = 0
            out[i] = (current[key], 0)
        elif (op == "multipart part" or op in FINISHES) and key in current:
            upload = current[key]
            if op == "multipart part":
                counts[upload] += 1
                number = _query_values(row["query"]).get("partNumber")
                out[i] = (upload, int(number) if number else counts[upload])
            else:
                out[i] = (upload, 0)
    return out


def _query_values(query: str) -> dict[str, str | None]:
    """measure.traffic's query column: ``name=value`` where the value was kept, ``name`` alone where not."""
    out: dict[str, str | None] = {}
    for part in filter(None, query.split("&")):
        name, eq, value = part.partition("=")
        out[name] = value if eq else None
    return out


def earlier_uploads(frame: pd.DataFrame, phase: str, uploads: dict[int, tuple[int, int]]) -> pd.DataFrame:
    """The requests (create and parts, from earlier phases) that began the multipart uploads ``phase``
    completes or aborts without beginning them: issued again, untimed, before each later repetition of
    the phase, so that each completes an upload of its own as recorded (completed twice, MinIO and
    Garage answer 404). ``uploads``: :func:`assign_uploads` of ``frame``."""
    def upload_of(rows: pd.DataFrame) -> list[int]:
        return [uploads.get(i, (-1, 0))[0] for i in rows.index]

    mine = frame[frame["phase"] == phase]
    begun = set(upload_of(mine[mine["operation"] == "multipart create"]))
    finished = set(upload_of(mine[mine["operation"].isin(FINISHES)])) - begun - {-1}
    earlier = frame[(frame["phase"] != phase) & frame["operation"].isin(("multipart create", "multipart part"))]
    return earlier.loc[np.array([u in finished for u in upload_of(earlier)], dtype=bool)]


class Frontier:
    """How many of a phase's requests, by recorded end, have ended in the replay without a gap:
    the order rule waits on it. Marks arrive in any order; the frontier moves over the done prefix."""

    def __init__(self, total: int):
        self.done = [False] * total
        self.reached = 0
        self.cond = threading.Condition()

    def mark(self, rank: int) -> None:
        with self.cond:
            self.done[rank] = True
            while self.reached < len(self.done) and self.done[self.reached]:
                self.reached += 1
            self.cond.notify_all()

    def wait(self, count: int, timeout: float | None = None) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.reached >= count, timeout)


@dataclass
class Pacer:
    """When a request may start; the clock and sleep are injected so the rule is tested without time."""

    mode: str
    clock: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], None] = time.sleep

    def hold(self, t0: float, offset_s: float) -> tuple[float, float]:
        """Wait for the recorded offset (``recorded`` pacing) and return (scheduled, lateness) in
        seconds from t0; ``fast`` pacing waits for nothing and has no schedule (NaN, 0)."""
        if self.mode == "fast":
            return math.nan, 0.0
        target = t0 + offset_s
        now = self.clock()
        if now < target:
            self.sleep(target - now)
            now = self.clock()
        return offset_s, max(0.0, now - target)


@dataclass
class Outcome:
    step: Step
    scheduled_s: float
    late_s: float
    start_s: float
    first_byte_s: float
    end_s: float
    status: float
    request_bytes: int
    response_bytes: int
    error: str = ""


@dataclass
class Uploads:
    """What multipart requests need from earlier ones: each upload's id and its parts' ETags."""

    ids: dict[int, str] = field(default_factory=dict)
    etags: dict[int, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    lock: threading.Lock = field(default_factory=threading.Lock)


class Issuer:
    """Turns a Step into its S3 request on the replay's bucket (shared by the phase's connections)."""

    def __init__(self, bucket: str, pool: bytes, uploads: Uploads | None = None):
        self.bucket, self.pool = bucket, memoryview(pool)
        self.uploads = uploads or Uploads()
        self.count = 0

    def body(self, size: int, n: int) -> memoryview:
        offset = (n * 65537) % POOL_SLACK if len(self.pool) >= size + POOL_SLACK else 0
        if len(self.pool) < offset + size:
            raise ValueError(f"PUT body of {size} bytes does not fit the prepared random buffer ({len(self.pool)} bytes)")
        return self.pool[offset:offset + size]

    def issue(self, conn: S3Connection, step: Step, n: int) -> tuple[Response, int]:
        """Send the step's request; returns the response and the body bytes sent."""
        op, path = step.operation, f"/{self.bucket}/{step.key}" if step.key else f"/{self.bucket}"
        params, headers, body = {}, {}, b""
        if op == "GET range":
            headers["range"] = step.range
        elif op in ("PUT", "multipart part"):
            body = self.body(step.request_bytes, n)
        elif op == "LIST":
            path = f"/{self.bucket}"
            params = self._list_params(step)
        elif op == "bucket other":
            params = {name: value or "" for name, value in _query_values(step.query).items()}
        elif op == "DELETE multi":
            path, params, body = f"/{self.bucket}", {"delete": ""}, _delete_body(step.request_bytes)
            headers["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        if op == "multipart create":
            params = {"uploads": ""}
        elif op in ("multipart part", "multipart complete", "multipart abort"):
            upload_id = self.uploads.ids.get(step.upload)
            if upload_id is None:
                raise LookupError(f"{op}: its upload was not created in this replay")
            params = {"uploadId": upload_id}
            if op == "multipart part":
                params["partNumber"] = str(step.part)
            elif op == "multipart complete":
                with self.uploads.lock:
                    parts = sorted(self.uploads.etags[step.upload].items())
                body = _complete_body(parts)
        response = conn.request(step.method, path, params, headers, body, keep_body=op == "multipart create")
        if op == "multipart create" and response.status == 200:
            self.uploads.ids[step.upload] = _upload_id(response.body)
        elif op == "multipart part" and response.status == 200:
            with self.uploads.lock:
                self.uploads.etags[step.upload][step.part] = response.headers.get("etag", "")
        return response, len(body)

    def _list_params(self, step: Step) -> dict[str, str]:
        params = {}
        for name, value in _query_values(step.query).items():
            if name == "prefix":
                params["prefix"] = step.key
            elif value is not None:
                params[name] = value
            elif name in LIST_DEFAULTS:
                params[name] = LIST_DEFAULTS[name]
        for token in LIST_TOKENS:
            params.pop(token, None)
        return params


def _delete_body(size: int) -> bytes:
    """A multi-delete of absent keys, of about the recorded body size (its keys are not recorded)."""
    head, tail = b"<Delete><Quiet>true</Quiet>", b"</Delete>"
    item = b"<Object><Key>msbench-replay-absent/%08d</Key></Object>"
    count = max(1, (size - len(head) - len(tail)) // len(item % 0))
    return head + b"".join(item % i for i in range(count)) + tail


def _complete_body(parts: list[tuple[int, str]]) -> bytes:
    items = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts)
    return f"<CompleteMultipartUpload>{items}</CompleteMultipartUpload>".encode()


def _upload_id(body: bytes) -> str:
    for element in ET.fromstring(body).iter():
        if element.tag.endswith("UploadId"):
            return element.text or ""
    raise LookupError("multipart create: no UploadId in the answer")


def run_connection(steps: list[Step], conn: S3Connection, issuer: Issuer, pacer: Pacer, frontier: Frontier,
                   t0: float, numbers: Callable[[], int], wait_timeout: float = 600.0) -> list[Outcome]:
    """One connection's requests, in order, each held by the order rule and the pacing; every
    request ends up marked in the frontier, also a failed one, so no other connection waits forever."""
    out = []
    clock = pacer.clock
    for step in steps:
        try:
            if not frontier.wait(step.after, wait_timeout):
                raise TimeoutError(f"the requests before it had not ended after {wait_timeout:g} s")
            scheduled, late = pacer.hold(t0, step.offset_s)
            began = clock()
            try:
                response, sent = issuer.issue(conn, step, numbers())
                ended = clock()
                out.append(Outcome(step, scheduled, late, began - t0, response.first_byte - t0, ended - t0,
                                   float(response.status), sent, response.body_bytes))
            except Exception as err:   # transport, protocol, or an answer we cannot use: the request's error
                conn.close()   # a half-read response leaves the connection unusable; the next request reopens it
                ended = clock()
                out.append(Outcome(step, scheduled, late, began - t0, math.nan, ended - t0, math.nan, 0, 0,
                                   f"{type(err).__name__}: {err}"[:200]))
        except TimeoutError as err:
            out.append(Outcome(step, math.nan, 0.0, math.nan, math.nan, math.nan, math.nan, 0, 0, str(err)))
        finally:
            frontier.mark(step.rank)
    return out


@dataclass
class PhaseReplay:
    phase: str
    outcomes: list[Outcome]
    replay_s: float
    reconnects: int


def replay_phase(phase: str, requests: pd.DataFrame, uploads: dict[int, tuple[int, int]],
                 connect: Callable[[], S3Connection], issuer: Issuer, pacer: Pacer) -> PhaseReplay:
    """Replay one phase: a connection per trace connection, opened before the clock starts, a thread
    each; the phase runs from the moment they may start to the last response."""
    plan = plan_phase(requests, uploads)
    frontier = Frontier(len(requests))
    conns = {c: connect() for c in plan}
    for conn in conns.values():
        conn.open()
    counter = iter(range(10**12))
    lock = threading.Lock()

    def numbers() -> int:
        with lock:
            return next(counter)

    results: dict[int, list[Outcome]] = {}
    failures: list[BaseException] = []
    t0 = pacer.clock()

    def work(c: int) -> None:
        try:
            results[c] = run_connection(plan[c], conns[c], issuer, pacer, frontier, t0, numbers)
        except BaseException as err:   # not a request's failure (those are recorded): the phase's
            failures.append(err)

    threads = [threading.Thread(target=work, args=(c,), name=f"replay-conn-{c}") for c in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for conn in conns.values():
        conn.close()
    if failures:
        raise failures[0]
    outcomes = [o for c in plan for o in results[c]]
    ends = [o.end_s for o in outcomes if not math.isnan(o.end_s)]
    return PhaseReplay(phase, outcomes, max(ends) if ends else 0.0, sum(c.reconnects for c in conns.values()))


# -- records ---------------------------------------------------------------------------------------

def _class(status: float) -> float:
    return math.nan if math.isnan(status) else status // 100


def request_rows(replayed: PhaseReplay, repetition: int = 1) -> pd.DataFrame:
    """Per request: what was recorded, what the replay saw (no key); ``repetition``: which replay of the phase."""
    rows = []
    for o in replayed.outcomes:
        s = o.step
        ok = not math.isnan(o.status) and 200 <= o.status < 300
        rows.append({"phase": replayed.phase, "repetition": repetition, "conn": s.conn, "conn_seq": s.seq, "operation": s.operation,
                     "recorded_start_s": s.offset_s, "recorded_duration_s": s.duration_s, "recorded_status": s.status,
                     "scheduled_s": o.scheduled_s, "start_s": o.start_s, "first_byte_s": o.first_byte_s,
                     "end_s": o.end_s, "late_s": o.late_s, "status": o.status, "request_bytes": o.request_bytes,
                     "response_bytes": o.response_bytes,
                     "object_bytes_read": o.response_bytes if ok and s.operation in ("GET", "GET range") else 0,
                     "object_bytes_written": o.request_bytes if s.operation in ("PUT", "multipart part") else 0,
                     "error": o.error or ("" if _class(o.status) == _class(s.status) or
                                          (math.isnan(s.status)) else f"status {o.status:g}, recorded {s.status:g}")})
    return pd.DataFrame(rows, columns=REQUEST_COLUMNS)


def phase_rows(phase: str, requests: pd.DataFrame, replay_s: float, pacing: str) -> list[tuple[str, float, str]]:
    """The phase's tidy rows (metric, value, unit); metric names carry the phase, as
    ``replay_s [load_first]`` and ``latency_p50_ms [load_first, GET]``, so one frame holds every phase."""
    done = requests.dropna(subset=["end_s", "start_s"])
    rows = [(f"replay_s [{phase}]", replay_s, "s"),
            (f"busy_s [{phase}]", traffic.busy_seconds(done["start_s"], done["end_s"]), "s"),
            (f"requests [{phase}]", float(len(requests)), "count"),
            (f"errors [{phase}]", float((requests["error"] != "").sum()), "count"),
            (f"bytes_sent [{phase}]", float(requests["request_bytes"].sum()), "bytes"),
            (f"bytes_received [{phase}]", float(requests["response_bytes"].sum()), "bytes"),
            (f"object_bytes_read [{phase}]", float(requests["object_bytes_read"].sum()), "bytes"),
            (f"object_bytes_written [{phase}]", float(requests["object_bytes_written"].sum()), "bytes")]
    if pacing == "recorded":
        late = requests["late_s"] > LATE_TOLERANCE_S
        rows += [(f"late_starts [{phase}]", float(late.sum()), "count"),
                 (f"late_s_max [{phase}]", float(requests["late_s"].max()) if len(requests) else 0.0, "s")]
    ok = done[done["error"] == ""]
    for op, group in ok.groupby("operation"):
        latency = (group["end_s"] - group["start_s"]).to_numpy() * 1000.0
        rows += [(f"latency_p{q}_ms [{phase}, {op}]", float(np.percentile(latency, q)), "ms") for q in PERCENTILES]
    return rows



def combine(repetitions: list[list[tuple[str, float, str]]]) -> list[tuple[str, float, str]]:
    """One phase's rows from its replays in a trial: times (TIMED) the median over the replays,
    errors summed over them, counts and bytes the first replay's (the bucket as recorded)."""
    values: dict[str, list[float]] = defaultdict(list)
    units = {}
    for rows in repetitions:
        for metric, value, unit in rows:
            values[metric].append(value)
            units[metric] = unit
    out = []
    for metric, got in values.items():
        if metric.startswith(TIMED):
            value = float(np.median(got))
        elif metric.startswith("errors"):
            value = float(sum(got))
        else:
            value = got[0]
        out.append((metric, value, units[metric]))
    return out
