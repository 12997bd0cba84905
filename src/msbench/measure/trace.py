"""A trace: Milvus's S3 requests of one trial, phase by phase, in a file any store can be replayed with.

One Parquet file, one row per request (docs/trace-format.md is the schema document), plus a JSON
header in the file's key-value metadata (``msbench.trace``: schema version, where the trace comes
from, whether keys are pseudonyms, each phase's recorded length). No header values and no
credentials are in it: the parser (measure.traffic) keeps none.

Made from a trial's ``s3_requests`` (:func:`of_trial`: every trial that captured traffic writes its
own ``trace.parquet``; ``msbench trace export`` gathers them, or makes them for a run made before
traces), or from a tcpdump file a user brings (:func:`from_pcap`, the same parser), so a capture of
someone's Milvus 2.6 cluster replays the same way. :func:`validate` refuses a bad trace in one line
before anything is provisioned.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from msbench.config import ConfigError
from msbench.measure import traffic
from msbench.results import TrialRecord

SCHEMA_VERSION = 1
META_KEY = b"msbench.trace"
TRIAL_FILE = "trace.parquet"   # a trial's own trace, in its folder
SOURCE_FIELDS = ("run", "backend", "store", "provider", "trial")   # a trial's record in its trace's header
CAPTURE_PHASE = "capture"   # the one phase of a capture that came without phase windows
# column -> (arrow type, nullable?): the file's schema, in order
SCHEMA = {
    "phase": (pa.string(), False),
    "conn": (pa.int64(), False),
    "seq": (pa.int64(), False),
    "start_s": (pa.float64(), False),
    "duration_s": (pa.float64(), True),
    "send_s": (pa.float64(), True),
    "method": (pa.string(), False),
    "operation": (pa.string(), False),
    "key": (pa.string(), False),
    "query": (pa.string(), False),
    "range": (pa.string(), False),
    "request_bytes": (pa.int64(), False),
    "response_bytes": (pa.int64(), False),
    "object_size": (pa.int64(), True),
    "status": (pa.int64(), True),
}
COLUMNS = list(SCHEMA)
# what a replay can repeat: the operation and the method it is made with
REPLAYABLE = {"GET": "GET", "GET range": "GET", "HEAD": "HEAD", "LIST": "GET", "bucket other": "GET",
              "PUT": "PUT", "create bucket": "PUT", "multipart create": "POST", "multipart part": "PUT",
              "multipart complete": "POST", "multipart abort": "DELETE", "DELETE": "DELETE", "DELETE multi": "POST"}
NOT_REPLAYABLE = {"COPY": "its source (a header) is not recorded",
                  "POST": "an S3 POST other than multipart or multi-delete is not known"}
READS = ("GET", "GET range", "HEAD")
WRITES = ("PUT", "multipart complete")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
ORDER_TOLERANCE_S = 1e-6   # timestamps are microseconds: two requests on a connection may touch, not overlap


@dataclass(frozen=True)
class PhaseSpan:
    name: str
    duration_s: float    # the phase's recorded length (its window, or its requests' span)
    beside_cores: float | None = None   # cores the store's neighbours used in it (beside_cores); None: not recorded


@dataclass(frozen=True)
class TraceMeta:
    phases: tuple[PhaseSpan, ...]
    source: dict = field(default_factory=dict)   # run, backend, trial; or the pcap's name, port
    keys: str = "plain"                           # "plain" or "pseudonym"
    excluded: dict = field(default_factory=dict)  # requests left out, by why
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class Trace:
    requests: pd.DataFrame   # COLUMNS, one row per request
    meta: TraceMeta

    @property
    def phases(self) -> list[str]:
        return [p.name for p in self.meta.phases]

    def only(self, phases: list[str]) -> "Trace":
        """The trace cut to ``phases`` (in the trace's order); a ConfigError names the phases it has."""
        unknown = [p for p in phases if p not in self.phases]
        if unknown:
            raise ConfigError(f"phase(s) {', '.join(unknown)} not in the trace; it has: {', '.join(self.phases)}")
        kept = self.requests[self.requests["phase"].isin(phases)]   # row labels kept: they are the full trace's
        return Trace(kept, replace(self.meta, phases=tuple(p for p in self.meta.phases if p.name in phases)))


# -- making a trace --------------------------------------------------------------------------------

def from_requests(requests: pd.DataFrame, windows: pd.DataFrame | list | None = None, source: dict | None = None,
                  clients: tuple[str, ...] | None = ("milvus",)) -> Trace:
    """The trace of one trial's ``s3_requests`` (measure.traffic's table, phases assigned). Offsets
    count from each phase's window start (``windows``: phase, start, end, epoch seconds as in
    phase_windows.csv), else from its first request. Requests between phases and of other clients
    (our probes and listings; ``clients`` None keeps all) are left out and counted in the header."""
    windows = _windows(windows)
    table = requests[requests["client"].isin(clients)] if clients is not None and "client" in requests else requests
    excluded = {"other clients": int(len(requests) - len(table)),
                "between phases": int((table["phase"] == traffic.BETWEEN).sum())}
    table = table[table["phase"] != traffic.BETWEEN].sort_values("start", kind="stable")
    starts = {p: w[0] for p, w in windows.items()}
    order = [p for p in windows if p in set(table["phase"])] + \
        [p for p in dict.fromkeys(table["phase"]) if p not in windows]
    spans = []
    for phase in order:
        mine = table[table["phase"] == phase]
        began = starts.get(phase, mine["start"].min())
        length = windows[phase][1] - windows[phase][0] if phase in windows else mine["end"].max() - began
        spans.append(PhaseSpan(phase, round(float(length), 6)))
    conn_ids = {c: i for i, c in enumerate(dict.fromkeys(table["conn"]))}
    frame = pd.DataFrame({
        "phase": table["phase"].astype(str),
        "conn": table["conn"].map(conn_ids),
        "start_s": table["start"] - table["phase"].map(lambda p: starts.get(p)).fillna(
            table.groupby("phase")["start"].transform("min")),
        "duration_s": table["end"] - table["start"],
        "send_s": table["request_end"] - table["start"],
        "method": table["method"], "operation": table["operation"],
        "key": table["key"].fillna(""), "query": table["query"].fillna(""), "range": table["range"].fillna(""),
        "request_bytes": table["request_body_bytes"].fillna(0), "response_bytes": table["response_body_bytes"].fillna(0),
        "object_size": table["object_bytes"] if "object_bytes" in table else np.nan,
        "status": table["status"],
    })
    frame["seq"] = frame.groupby("conn").cumcount()
    frame = _typed(frame[COLUMNS].reset_index(drop=True))
    return Trace(frame, TraceMeta(tuple(spans), dict(source or {}), "plain", excluded))


def of_trial(requests: pd.DataFrame, windows, record: TrialRecord,
             results: pd.DataFrame | None = None) -> tuple[Trace | None, str]:
    """(the trial's trace, checked, "") or (None, why there is none): a trace that cannot be made or fails
    its checks is noted in the trial's record, never worth failing the trial that captured it.
    ``results``: the trial's tidy rows, for each phase's :func:`beside_cores`."""
    try:
        made = from_requests(requests, windows, {name: getattr(record, name) for name in SOURCE_FIELDS})
        if results is not None:
            made = with_beside_cores(made, results)
        validate(made, where=f"the trace of {record.backend} trial {record.trial}")
    except Exception as err:   # whatever the requests hold, the trial's own figures stand
        return None, f"no trace: {' '.join(str(err).split())}"
    if made.requests.empty:
        return None, "no trace: Milvus made no S3 request in a phase"
    return made, ""


def beside_cores(results: pd.DataFrame, phase: str, length_s: float) -> float | None:
    """The cores the store's neighbours on its host (Milvus, the benchmark's client: every role's
    ``ROLE_cpu_s`` row but the store's) used, on average, during one phase of ``length_s``
    seconds; None when the trial's rows have no CPU figure for it."""
    mine = results[(results["phase"] == phase) & results["metric"].str.endswith("_cpu_s")
                   & (results["metric"] != "store_cpu_s")]
    if mine.empty or not length_s > 0:
        return None
    return round(float(mine["value"].sum()) / length_s, 3)


def with_beside_cores(trace: Trace, results: pd.DataFrame) -> Trace:
    """The trace with each phase's ``beside_cores`` from the trial's tidy rows (phase, metric, value)."""
    spans = tuple(replace(span, beside_cores=beside_cores(results, span.name, span.duration_s))
                  for span in trace.meta.phases)
    return Trace(trace.requests, replace(trace.meta, phases=spans))


def _windows(windows) -> dict[str, tuple[float, float]]:
    if windows is None:
        return {}
    rows = windows[["phase", "start", "end"]].itertuples(index=False) if isinstance(windows, pd.DataFrame) else windows
    return {str(p): (float(s), float(e)) for p, s, e in rows}


def from_pcap(path: str | Path, server_port: int, bucket: str, windows=None, clients: tuple[str, ...] | None = ("milvus",),
              pseudonym_secret: str | None = None) -> Trace:
    """A trace of a tcpdump file (``tcpdump -i IF -s 2048 -w FILE tcp port PORT`` on the host
    that reaches the store), parsed by measure.traffic as the trials' own captures are. Without
    phase windows the whole capture is one phase, ``capture``. ``pseudonym_secret``: keys become
    keyed hashes (:func:`pseudonymize`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no capture file at {path}")
    if not 0 < server_port < 65536:
        raise ConfigError(f"--port must be the store's TCP port (1-65535), got {server_port}")
    try:
        requests, facts = traffic.parse_capture(path, server_port, bucket)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if requests.empty:
        raise ConfigError(f"{path.name}: no S3 request to or from port {server_port} in the capture; "
                          f"capture with `tcpdump -s {traffic.SNAPLEN} ... tcp port PORT` on the store's port")
    spans = _windows(windows)
    if spans:
        requests = traffic.assign_phases(requests, [(p, s, e) for p, (s, e) in spans.items()])
    else:
        requests = requests.assign(phase=CAPTURE_PHASE)
    trace = from_requests(requests, windows, {"pcap": path.name, "port": server_port, **facts}, clients)
    return pseudonymize(trace, pseudonym_secret) if pseudonym_secret else trace


def pseudonymize(trace: Trace, secret: str) -> Trace:
    """Keys replaced by stable keyed hashes (HMAC-SHA256 with ``secret``): the same key always gets
    the same pseudonym, so reads find what was written, and nobody without the secret can tell
    which key it was. Milvus's prefix (insert_log, index_files, ...) is kept in front, so a trace
    still says what kind of file each request touched; a listing's prefix is hashed too (it then
    lists nothing, as no key starts with it)."""
    def alias(key: str) -> str:
        if not key:
            return key
        digest = hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:24]
        return f"{traffic.prefix_of(key, {})}/{digest}"

    frame = trace.requests.assign(key=trace.requests["key"].map(alias))
    return Trace(frame, replace(trace.meta, keys="pseudonym"))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column, (kind, nullable) in SCHEMA.items():
        if pa.types.is_integer(kind):
            values = pd.to_numeric(out[column], errors="raise").round()
            out[column] = values.astype("Int64") if nullable else values.astype("int64")
        elif pa.types.is_floating(kind):
            out[column] = pd.to_numeric(out[column], errors="raise").astype("float64")
        else:
            out[column] = out[column].astype(str)
    return out


# -- file ------------------------------------------------------------------------------------------

def write(trace: Trace, path: str | Path) -> Path:
    """The trace as Parquet (zstd), written beside and renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([pa.field(c, t, nullable=n) for c, (t, n) in SCHEMA.items()],
                       metadata={META_KEY: json.dumps(asdict(trace.meta), default=str).encode()})
    table = pa.Table.from_pandas(trace.requests[COLUMNS], schema=schema, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path


def read(path: str | Path, objects: pd.DataFrame | None = None) -> Trace:
    """A trace file, checked (:func:`validate`); any problem is one ConfigError line."""
    path = Path(path)
    try:
        file = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise ConfigError(f"{path}: not a readable Parquet trace ({' '.join(str(err).split())[:200]})") from None
    raw = (file.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise ConfigError(f"{path}: not an msbench trace (no {META_KEY.decode()} header in its metadata); "
                          f"make one with `msbench trace export` or `msbench trace from-pcap`")
    header = json.loads(raw)
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError(f"{path}: trace schema version {version!r}; this msbench reads version {SCHEMA_VERSION}")
    meta = TraceMeta(phases=tuple(PhaseSpan(**p) for p in header["phases"]), source=header.get("source", {}),
                     keys=header.get("keys", "plain"), excluded=header.get("excluded", {}), schema_version=version)
    trace = Trace(file.to_pandas(), meta)
    validate(trace, objects, where=path.name)
    return Trace(_typed(trace.requests[COLUMNS]), meta)


def read_objects(path: str | Path) -> pd.DataFrame:
    """A declared object table (CSV or Parquet with columns key, size): sizes the trace cannot know."""
    path = Path(path)
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"object table {path}: not readable ({' '.join(str(err).split())[:200]})") from None
    if list(frame.columns) != ["key", "size"]:
        raise ConfigError(f"object table {path}: columns must be key, size; got {', '.join(map(str, frame.columns))}")
    sizes = pd.to_numeric(frame["size"], errors="coerce")
    if sizes.isna().any() or (sizes < 0).any():
        raise ConfigError(f"object table {path}: row {int((sizes.isna() | (sizes < 0)).idxmax())}: size must be a "
                          f"non-negative integer")
    return frame.assign(key=frame["key"].astype(str), size=sizes.astype("int64"))


# -- checks ----------------------------------------------------------------------------------------

def validate(trace: Trace, objects: pd.DataFrame | None = None, where: str = "trace") -> None:
    """Refuse, in one line naming the first bad row and what is valid, a trace a replay would get
    wrong: unknown or missing columns, values of the wrong kind, negative sizes or times, operations
    a replay cannot repeat, malformed ranges, ranges past the object's size (known from the trace's
    own writes, a whole read, the capture, or ``objects``), and requests out of order on a connection."""
    frame = trace.requests

    def bad(i, what: str) -> ConfigError:
        row = frame.loc[i]
        return ConfigError(f"{where}: row {i} (phase {row['phase']}, connection {row['conn']}, #{row['seq']} "
                           f"on it): {what}")

    missing = [c for c in COLUMNS if c not in frame.columns]
    unknown = [c for c in frame.columns if c not in SCHEMA]
    if missing or unknown:
        raise ConfigError(f"{where}: " + "; ".join(
            ([f"missing column(s) {', '.join(missing)}"] if missing else [])
            + ([f"unknown column(s) {', '.join(map(str, unknown))}"] if unknown else []))
            + f"; valid columns: {', '.join(COLUMNS)}")
    for column, (kind, nullable) in SCHEMA.items():
        if pa.types.is_string(kind):
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        wrong = values.isna() & (frame[column].notna() if nullable else True)
        if wrong.any():
            raise ConfigError(f"{where}: row {int(wrong.idxmax())}: {column} must be a number"
                              + ("" if nullable else " (no empty value)"))
        negative = values < 0
        if negative.any():
            raise bad(negative.idxmax(), f"{column} is negative ({values[negative.idxmax()]:g}); sizes, times and "
                                         f"numbers are at least 0")
    phases = set(trace.phases)
    stray = ~frame["phase"].isin(phases)
    if stray.any():
        raise bad(stray.idxmax(), f"phase {frame['phase'][stray.idxmax()]!r} is not in the trace's header; "
                                  f"it names {', '.join(trace.phases) or 'none'}")
    for i, (op, method) in enumerate(zip(frame["operation"], frame["method"])):
        if op in NOT_REPLAYABLE:
            raise bad(frame.index[i], f"operation {op} cannot be replayed: {NOT_REPLAYABLE[op]}; drop its phase "
                                      f"(--phases) or the row")
        if op not in REPLAYABLE:
            raise bad(frame.index[i], f"unknown operation {op!r}; valid: {', '.join(REPLAYABLE)}")
        if method != REPLAYABLE[op]:
            raise bad(frame.index[i], f"operation {op} is made with {REPLAYABLE[op]}, not {method}")
    status = pd.to_numeric(frame["status"], errors="coerce")
    off = status.notna() & ((status < 100) | (status > 599))
    if off.any():
        raise bad(off.idxmax(), f"status {status[off.idxmax()]:g} is not an HTTP status (100-599, or empty when "
                                f"unanswered)")
    for i, text in frame["range"].items():
        if text and parse_range(text) is None:
            raise bad(i, f"range {text!r} is not a single byte range (bytes=FIRST-LAST, bytes=FIRST- or bytes=-N)")
        if text and frame.at[i, "operation"] != "GET range":
            raise bad(i, f"a range on a {frame.at[i, 'operation']} request; only GET range has one")
    _check_ranges(frame, objects, bad)
    _check_order(frame, bad)


def parse_range(text: str) -> tuple[int | None, int | None] | None:
    """(first, last) of ``bytes=FIRST-LAST``; last None for ``bytes=FIRST-``; first None for a suffix
    ``bytes=-N`` (last = N); None when it is not one range of that form."""
    found = _RANGE.match(text.strip())
    if not found or found.group(1) == found.group(2) == "":
        return None
    first = int(found.group(1)) if found.group(1) else None
    last = int(found.group(2)) if found.group(2) else None
    if first is not None and last is not None and last < first:
        return None
    return first, last


class Bucket:
    """What a trace's writes leave in the bucket, request by request: key -> size."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self._parts: dict[str, int] = {}

    def apply(self, row) -> None:
        op, key, done = row["operation"], row["key"], succeeded(row["status"])
        if op == "PUT" and done:
            self.sizes[key] = int(row["request_bytes"])
        elif op == "multipart create":
            self._parts[key] = 0
        elif op == "multipart part" and done and key in self._parts:
            self._parts[key] += int(row["request_bytes"])
        elif op == "multipart complete" and done and key in self._parts:
            self.sizes[key] = self._parts.pop(key)
        elif op == "DELETE" and done:
            self.sizes.pop(key, None)


def known_sizes(frame: pd.DataFrame, objects: pd.DataFrame | None = None) -> dict:
    """For each read (row label) the size of the object it reads, where anything says it: the
    declared ``objects``, else the trace's last write of the key before it (a PUT's body, or the
    parts of a completed multipart upload), else the size the capture saw in the response."""
    declared = dict(zip(objects["key"], objects["size"])) if objects is not None else {}
    bucket = Bucket()
    sizes = {}
    for i, row in in_time_order(frame).iterrows():
        if row["operation"] in READS:
            size = declared.get(row["key"], bucket.sizes.get(row["key"]))
            if size is None and not pd.isna(row["object_size"]):
                size = int(row["object_size"])
            if size is not None:
                sizes[i] = size
        bucket.apply(row)
    return sizes


def succeeded(status) -> bool:
    """A 2xx answer (an unanswered request has none)."""
    return not pd.isna(status) and 200 <= status < 300


def in_time_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order they happened: phases in the trace's order, then by start."""
    rank = {p: i for i, p in enumerate(dict.fromkeys(frame["phase"]))}
    return frame.assign(_rank=frame["phase"].map(rank)).sort_values(["_rank", "start_s"], kind="stable")


def _check_ranges(frame: pd.DataFrame, objects: pd.DataFrame | None, bad) -> None:
    """A range that starts past the object's end, or a recorded body larger than the object could give."""
    sizes = known_sizes(frame, objects)
    for i, size in sizes.items():
        row = frame.loc[i]
        if not succeeded(row["status"]):
            continue
        first, last = parse_range(row["range"]) if row["range"] else (0, None)
        if first is None:   # a suffix: the last N bytes
            first = max(0, size - last)
        if first >= size and size > 0:
            raise bad(i, f"range {row['range']} starts past the object's end ({size} bytes)")
        if row["operation"] != "HEAD" and int(row["response_bytes"]) > size - first:
            raise bad(i, f"{'range ' + row['range'] + ': ' if row['range'] else ''}{row['response_bytes']} bytes were "
                         f"read from byte {first} of an object of {size} bytes")


def _check_order(frame: pd.DataFrame, bad) -> None:
    """On a connection: each order number once; within a phase, in the order of the numbers, each
    request starts once the one before it has ended (HTTP/1.1 without pipelining)."""
    dup = frame.duplicated(["conn", "seq"], keep="first")
    if dup.any():
        raise bad(dup.idxmax(), "its number on the connection is used twice (seq must be unique per conn)")
    for _, group in frame.sort_values(["conn", "seq"]).groupby(["phase", "conn"], sort=False):
        starts = group["start_s"].to_numpy()
        ends = starts + group["duration_s"].fillna(0).to_numpy()
        early = np.flatnonzero(starts[1:] < ends[:-1] - ORDER_TOLERANCE_S)
        if early.size:
            i = group.index[early[0] + 1]
            raise bad(i, f"starts at {starts[early[0] + 1]:.6f} s, before the request before it on its connection "
                         f"ended ({ends[early[0]]:.6f} s): requests on a connection must follow each other in order")


# -- summaries -------------------------------------------------------------------------------------

def object_bytes_read(frame: pd.DataFrame) -> pd.Series:
    """Object data a request received: the body of a successful GET (whole or ranged)."""
    ok = frame["status"].astype("float64").between(200, 299)
    return frame["response_bytes"].where(frame["operation"].isin(("GET", "GET range")) & ok, 0)


def object_bytes_written(frame: pd.DataFrame) -> pd.Series:
    """Object data a request sent: the body of a PUT or a multipart part."""
    return frame["request_bytes"].where(frame["operation"].isin(("PUT", "multipart part")), 0)


def describe(trace: Trace) -> pd.DataFrame:
    """Per phase: recorded length, requests, connections, object bytes read and written, and busy
    seconds: ``busy_s`` with any request open (first byte sent to last byte received), and
    ``store_busy_s`` counted from each request's last byte, which leaves out how fast the client
    sent its bodies (Milvus's uploads pause while it computes; a replay's do not); and the cores used
    beside the store in it, where recorded."""
    rows = []
    frame = trace.requests
    for span in trace.meta.phases:
        mine = frame[frame["phase"] == span.name]
        starts = mine["start_s"].to_numpy(float)
        ends = starts + mine["duration_s"].fillna(0).to_numpy(float)
        sent = starts + mine["send_s"].fillna(0).to_numpy(float)
        rows.append({"phase": span.name, "recorded_s": span.duration_s, "requests": len(mine),
                     "connections": mine["conn"].nunique(), "object_bytes_read": int(object_bytes_read(mine).sum()),
                     "object_bytes_written": int(object_bytes_written(mine).sum()),
                     "busy_s": traffic.busy_seconds(starts, ends), "store_busy_s": traffic.busy_seconds(sent, ends),
                     "beside_cores": np.nan if span.beside_cores is None else span.beside_cores})
    return pd.DataFrame(rows, columns=["phase", "recorded_s", "requests", "connections", "object_bytes_read",
                                       "object_bytes_written", "busy_s", "store_busy_s", "beside_cores"])
