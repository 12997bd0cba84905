"""What Milvus asked of its object store: every S3 request of a trial, read from a packet capture.

No proxy sits in the data path: ``tcpdump`` (Debian's) records the store's port on the interface
Milvus reaches it through, keeping the first ``SNAPLEN`` bytes of each packet (request and status
lines, headers) and, from the IP header, every packet's true length. After the trial the capture
is parsed into one row per request. Milvus's S3 clients (minio-go, the AWS C++ SDK) speak
HTTP/1.1 with keep-alive and never pipeline: on one connection a request is every byte the
client sends until the server answers, and the response every byte until the client speaks
again, so bytes are counted without reading bodies (an interim ``100 Continue`` keeps the request
open). A request's time is its first byte; its duration runs to the response's last byte, and
its time to first byte from the request's last byte to the response's first.

The capture file holds the Authorization header (the access key); it stays in the trial's
scratch folder and is deleted with it. Only the parsed table is kept: no header values beyond
sizes (an object's size, from Content-Length or Content-Range), and query values only of the
parameters a replay needs (QUERY_VALUES_KEPT; never tokens or credentials).
"""
from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np
import pandas as pd
import psutil

from msbench.providers import Stack, registry
from msbench.results import REQUEST_COLUMNS, SUMMARY_COLUMNS

S3_PREFIXES = ("insert_log", "stats_log", "delta_log", "index_files")   # where Milvus keeps what (bucket paths)
SNAPLEN = 2048            # request line and SigV4 headers fit in about 900 bytes
BUFFER_KIB = 16384        # kernel buffer: no drops at the rates seen here (the drop count is recorded)
START_TIMEOUT_S = 10.0
# tcpdump is handed the kernel's packets in blocks, at least once a second (its 1000 ms timeout); SIGINT
# ends its loop at once, so the packets of the last second would be lost: stop waits one hand-over
DRAIN_S = 1.1
METHODS = ("GET", "PUT", "POST", "HEAD", "DELETE")
# query parameters whose values are kept (what a replay needs to repeat the request); the others
# (uploadId, continuation-token: the store's own tokens; start-after: a key; presigned X-Amz-*) by name only
QUERY_VALUES_KEPT = ("delimiter", "encoding-type", "fetch-owner", "list-type", "max-keys", "partNumber")
BETWEEN = "between phases"


# -- capture -------------------------------------------------------------------------------------

@dataclass
class Capture:
    """A tcpdump of one TCP port, started and stopped by PID; ``facts`` is what the record keeps."""

    interface: str
    port: int
    path: Path
    process: subprocess.Popen | None = None
    facts: dict = field(default_factory=dict)

    def start(self) -> "Capture":
        err_path = self.path.with_suffix(".err")
        # It dies with us (a killed run leaves no capture behind), through setpriv and not
        # preexec_fn: Python code between fork and exec can hang in a process whose gRPC threads
        # (pymilvus) hold locks. -Z root: tcpdump keeps its user, so the kernel keeps that signal.
        argv = registry.die_with_parent(["tcpdump", "-i", self.interface, "-nn", "-Z", "root", "-s", str(SNAPLEN),
                                         "-B", str(BUFFER_KIB), "-w", str(self.path), f"tcp port {self.port}"], "TERM")
        with open(err_path, "w") as err:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "listening on" not in err_path.read_text():   # tcpdump says so once the filter is attached
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CaptureUnavailable(f"tcpdump did not start: {err_path.read_text().strip()[-300:]}")
            time.sleep(0.02)
        self.facts = {"enabled": True, "tool": "tcpdump", "interface": self.interface,
                      "port": self.port, "snaplen": SNAPLEN}
        return self

    def stop(self) -> dict:
        """Stop tcpdump (SIGINT: it flushes and prints its counters) and record them."""
        if self.process is None:
            return self.facts
        if self.process.poll() is None:
            time.sleep(DRAIN_S)
            try:   # what the capture cost the machine, for the record
                times = psutil.Process(self.process.pid).cpu_times()
                self.facts["tcpdump_cpu_s"] = round(times.user + times.system, 3)
            except psutil.Error:
                pass
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        err = self.path.with_suffix(".err").read_text()
        for line in err.splitlines():
            words = line.split()
            if "captured" in line:
                self.facts["packets_captured"] = int(words[0])
            elif "dropped by kernel" in line:
                self.facts["packets_dropped"] = int(words[0])
        return self.facts


class CaptureUnavailable(RuntimeError):
    """Why no capture could be taken (recorded instead of zeros)."""


def missing_prerequisite() -> str | None:
    """Why this host cannot capture at all (whatever the stack), or None."""
    if os.geteuid() != 0:
        return "not root: capturing packets needs root (CAP_NET_RAW)"
    if shutil.which("tcpdump") is None:
        return "tcpdump is not installed (scripts/setup installs it from Debian)"
    return None


def capture_target(stack: Stack) -> tuple[str, int]:
    """(interface, port) to capture Milvus's S3 traffic on, or CaptureUnavailable saying why not."""
    missing = missing_prerequisite()
    if missing:
        raise CaptureUnavailable(missing)
    target = stack.capture_target()
    if isinstance(target, str):
        raise CaptureUnavailable(target)
    return target


def start_capture(stack: Stack, path: Path) -> Capture:
    interface, port = capture_target(stack)
    return Capture(interface, port, path).start()


# -- parsing -------------------------------------------------------------------------------------

@dataclass
class Segment:
    time: float
    client: tuple[bytes, int]
    to_server: bool
    seq: int
    length: int      # the true payload length (from the IP header)
    data: bytes      # the captured part of it
    opens: bool = False   # the client's SYN: a new connection begins (loopback reuses ports at once)


def read_segments(path: Path, server_port: int) -> Iterator[Segment]:
    """TCP segments with payload to or from ``server_port`` in a pcap file (Ethernet or Linux
    cooked link types, IPv4 or IPv6), and the clients' SYNs (no payload, ``opens``), in capture order."""
    with open(path, "rb") as fh:
        head = fh.read(24)
        if len(head) < 24:
            return
        magic = head[:4]
        order = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<",
                 b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
        if order is None:
            raise ValueError(f"{path}: not a pcap file (magic {magic.hex()})")
        scale = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
        linktype = struct.unpack(order + "I", head[20:24])[0]
        link_len = {1: 14, 113: 16, 0: 4}.get(linktype)
        if link_len is None:
            raise ValueError(f"{path}: link type {linktype} not supported (Ethernet, Linux cooked or null)")
        record = struct.Struct(order + "IIII")
        while True:
            rec = fh.read(16)
            if len(rec) < 16:
                return
            sec, frac, caplen, _ = record.unpack(rec)
            frame = fh.read(caplen)
            segment = _tcp_segment(frame[link_len:], sec + frac * scale, server_port)
            if segment is not None:
                yield segment


def _tcp_segment(packet: bytes, ts: float, server_port: int) -> Segment | None:
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != 6:
            return None
        total = struct.unpack("!H", packet[2:4])[0]
        src, dst, ip_payload, tcp = packet[12:16], packet[16:20], total - ihl, packet[ihl:]
    elif version == 6:
        if packet[6] != 6:   # extension headers are not used on loopback
            return None
        src, dst, ip_payload, tcp = packet[8:24], packet[24:40], struct.unpack("!H", packet[4:6])[0], packet[40:]
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    offset = (tcp[12] >> 4) * 4
    length = ip_payload - offset
    if tcp[13] & 0x12 == 0x02 and dport == server_port:   # SYN without ACK: the client opens a connection
        return Segment(ts, (src, sport), True, seq, 0, b"", opens=True)
    if length <= 0:
        return None
    if dport == server_port:
        return Segment(ts, (src, sport), True, seq, length, tcp[offset:])
    if sport == server_port:
        return Segment(ts, (dst, dport), False, seq, length, tcp[offset:])
    return None


@dataclass
class _Message:
    first: Segment
    last_time: float
    wire_bytes: int


def _messages(segments: list[Segment]) -> Iterator[tuple[bool, _Message]]:
    """One connection's segments as alternating runs (client, server), retransmissions dropped."""
    next_seq: dict[bool, int] = {}
    current: _Message | None = None
    direction = None
    for seg in segments:
        end = (seg.seq + seg.length) & 0xFFFFFFFF
        expected = next_seq.get(seg.to_server)
        if expected is not None and (end == expected or ((end - expected) & 0xFFFFFFFF) > 0x7FFFFFFF):
            continue   # nothing new: a retransmission
        next_seq[seg.to_server] = end
        if current is not None and seg.to_server == direction:
            current.last_time, current.wire_bytes = seg.time, current.wire_bytes + seg.length
            continue
        if current is not None:
            yield direction, current
        current, direction = _Message(seg, seg.time, seg.length), seg.to_server
    if current is not None:
        yield direction, current


def _headers(data: bytes) -> tuple[str, dict[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _int(value: str | None) -> float:
    try:
        return float(int(value))
    except (TypeError, ValueError):
        return float("nan")


_SUBRESOURCES = {"location", "versioning", "policy", "acl", "lifecycle", "tagging", "cors", "uploads"}


def classify(method: str, key: str, query: dict[str, str], headers: dict[str, str]) -> str:
    """The S3 operation a request is, from its method, path and query (the names of S3's API)."""
    if method == "GET":
        if not key:
            return "bucket other" if _SUBRESOURCES & set(query) else "LIST"
        return "GET range" if "range" in headers else "GET"
    if method == "PUT":
        if not key:
            return "create bucket"
        if "partNumber" in query:
            return "multipart part"
        return "COPY" if "x-amz-copy-source" in headers else "PUT"
    if method == "POST":
        if "uploads" in query:
            return "multipart create"
        if "uploadId" in query:
            return "multipart complete"
        return "DELETE multi" if "delete" in query else "POST"
    if method == "DELETE":
        return "multipart abort" if "uploadId" in query else "DELETE"
    return method


def prefix_of(key: str, query: dict[str, str]) -> str:
    """Which Milvus prefix (insert_log, stats_log, delta_log, index_files) a request touches."""
    for part in (key or query.get("prefix", "")).split("/"):
        if part in S3_PREFIXES:
            return part
    return "other"


def _request(conn: int, bucket: str, req: _Message, resp: _Message | None) -> dict | None:
    line, headers = _headers(req.first.data)
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] not in METHODS:
        return None
    method, target = parts[0], parts[1]
    url = urlsplit(target)
    path = unquote(url.path)
    key = path[len(bucket) + 2:] if path.startswith(f"/{bucket}") else path.lstrip("/")
    query = {k: v for k, v in parse_qsl(url.query, keep_blank_values=True)
             if not k.lower().startswith("x-amz-")}   # presigned URLs carry the credential there
    status, code, resp_headers = float("nan"), "", {}
    if resp is not None:
        status_line, resp_headers = _headers(resp.first.data)
        status = _int(status_line.split(" ")[1] if " " in status_line else None)
        body = resp.first.data.decode("latin-1")
        code = next((c for c in ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable")
                     if f"<Code>{c}</Code>" in body), "")
    sent = _int(headers.get("x-amz-decoded-content-length") or headers.get("content-length"))
    agent = headers.get("user-agent", "")
    operation = classify(method, key, query, headers)
    return {
        "conn": conn, "client": "milvus" if ("minio-go" in agent or "aws-sdk" in agent) and "warp" not in agent
        else "other", "start": req.first.time, "request_end": req.last_time,
        "response_start": resp.first.time if resp else float("nan"),
        "end": resp.last_time if resp else float("nan"),
        "method": method, "operation": operation, "prefix": prefix_of(key, query),
        "key": query.get("prefix", "") if operation == "LIST" else key,   # a listing: the prefix it lists
        "query": "&".join(f"{k}={query[k]}" if k in QUERY_VALUES_KEPT else k for k in sorted(query)),
        "range": headers.get("range", ""),
        "status": status, "error_code": code,
        "request_wire_bytes": req.wire_bytes, "response_wire_bytes": resp.wire_bytes if resp else 0,
        "request_body_bytes": 0.0 if method in ("GET", "HEAD", "DELETE") and np.isnan(sent) else sent,
        "response_body_bytes": 0.0 if method == "HEAD" else _int(resp_headers.get("content-length")),
        "object_bytes": _object_bytes(operation, status, resp_headers) if key else float("nan"),
        "duration_ms": ((resp.last_time if resp else float("nan")) - req.first.time) * 1000.0,
        "ttfb_ms": ((resp.first.time if resp else float("nan")) - req.last_time) * 1000.0,
    }


def _object_bytes(operation: str, status: float, headers: dict[str, str]) -> float:
    """The whole object's size when a response states it: a HEAD's or a whole GET's Content-Length,
    a ranged GET's Content-Range total (``bytes 0-99/4096``); NaN otherwise."""
    if operation in ("HEAD", "GET") and status == 200:
        return _int(headers.get("content-length"))
    if operation == "GET range" and status == 206:
        return _int(headers.get("content-range", "").rpartition("/")[2])
    return float("nan")


def parse_capture(path: Path, server_port: int, bucket: str) -> tuple[pd.DataFrame, dict]:
    """One row per S3 request in the capture, and what could not be parsed (counts)."""
    by_conn: dict[tuple, list[Segment]] = defaultdict(list)
    generation: dict[tuple, int] = defaultdict(int)   # a client address and port used again is a new connection
    for seg in read_segments(path, server_port):
        if seg.opens:
            if by_conn.get((seg.client, generation[seg.client])):
                generation[seg.client] += 1
            continue
        by_conn[(seg.client, generation[seg.client])].append(seg)
    rows, unparsed, orphans = [], 0, 0
    for conn, client in enumerate(sorted(by_conn, key=lambda c: by_conn[c][0].time)):
        pending: _Message | None = None
        for to_server, msg in _messages(by_conn[client]):
            if to_server:
                if pending is not None:   # runs alternate: only an interim 100 Continue came between
                    pending.last_time, pending.wire_bytes = msg.last_time, pending.wire_bytes + msg.wire_bytes
                else:
                    pending = msg
                continue
            if pending is None:
                orphans += 1   # a response to a request sent before the capture started
                continue
            if msg.first.data.startswith(b"HTTP/1.1 100"):
                continue
            row = _request(conn, bucket, pending, msg)
            unparsed += row is None
            if row:
                rows.append(row)
            pending = None
        if pending is not None:
            row = _request(conn, bucket, pending, None)   # no answer before the capture ended
            unparsed += row is None
            if row:
                rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in REQUEST_COLUMNS if c not in ("retry", "phase")])
    table = table.sort_values("start", kind="stable").reset_index(drop=True)
    table["retry"] = _retries(table)
    return table, {"requests": len(table), "unparsed_messages": unparsed, "responses_without_request": orphans}


def _retries(table: pd.DataFrame) -> pd.Series:
    """A request repeating an earlier one (same method, key, query and range) that failed."""
    failed: set[tuple] = set()
    flags = []
    for row in table.itertuples(index=False):
        ident = (row.method, row.key, row.query, row.range)
        flags.append(ident in failed)
        bad = np.isnan(row.status) or row.status >= 500 or row.status == 429
        (failed.add if bad else failed.discard)(ident)
    return pd.Series(flags, index=table.index, dtype=bool)


def assign_phases(table: pd.DataFrame, windows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """Each request to the phase whose [start, end] holds its first byte (else BETWEEN)."""
    table = table.copy()
    table["phase"] = BETWEEN
    for phase, began, ended in windows:
        table.loc[(table["start"] >= began) & (table["start"] <= ended), "phase"] = phase
    return table


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Milvus's requests per phase and operation (and "all"): counts, HTTP errors (status >= 400),
    requests left unanswered (e.g. in flight when the capture stopped), retries, body bytes,
    latency percentiles, busy seconds (the union of the intervals when a request was open) and the
    span (first request's first byte to the last response's last byte). Our own requests (readiness
    probes, the footprint's listings) are left out."""
    rows = []
    table = table[table["client"] == "milvus"]
    groups = [*table.groupby(["phase", "operation"]), *(((p, "all"), g) for p, g in table.groupby("phase"))]
    for (phase, op), group in groups:
        dur = group["duration_ms"].dropna().to_numpy()
        pct = (lambda q: float(np.percentile(dur, q))) if len(dur) else (lambda q: float("nan"))
        rows.append({
            "phase": phase, "operation": op, "requests": len(group),
            "errors": int((group["status"] >= 400).sum()),
            "unanswered": int(group["status"].isna().sum()),   # no response before the capture or connection ended
            "slowdowns": int(((group["status"] == 503) | (group["error_code"] == "SlowDown")).sum()),
            "retries": int(group["retry"].sum()),
            "bytes_sent": float(group["request_body_bytes"].fillna(0).sum()),
            "bytes_received": float(group["response_body_bytes"].fillna(0).sum()),
            "latency_p50_ms": pct(50), "latency_p90_ms": pct(90), "latency_p99_ms": pct(99),
            "latency_max_ms": float(dur.max()) if len(dur) else float("nan"),
            "ttfb_p50_ms": float(group["ttfb_ms"].median()), "busy_s": _busy(group), "span_s": _span(group)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _busy(group: pd.DataFrame) -> float:
    return busy_seconds(group["start"], group["end"].fillna(group["start"]))


def busy_seconds(starts, ends) -> float:
    """Seconds with at least one request open: the length of the union of the [start, end] intervals."""
    busy, reach = 0.0, -np.inf
    for began, ended in sorted(zip(starts, ends)):
        if ended > reach:
            busy += ended - max(began, reach)
            reach = ended
    return float(busy)


def _span(group: pd.DataFrame) -> float:
    return float(group["end"].fillna(group["start"]).max() - group["start"].min()) if len(group) else float("nan")


LOADS = ("load_first", "load_warm", "load_cold")


READS = ("GET", "GET range", "HEAD")   # what a load asks of the collection's objects (a LIST is the GC's)


def load_reads(table: pd.DataFrame, sent: dict[str, float]) -> list[tuple[str, str, float, str]]:
    """Per load phase, Milvus's reads of the collection's objects (GET and HEAD under its prefixes)
    from when its load() was sent (``sent``, epoch; a cold load's restart before it is left out, as
    are the GC's LISTs): their span, from the first one's first byte to the last one's last byte,
    the seconds at least one was open (the store serving; the span's gaps are Milvus deserialising
    what it read), their body bytes, and the wait from load() to the first read (Milvus's own
    scheduling). Rows (phase, metric, value, unit) for results.csv: a store's part of a load that
    is not on Milvus's 1 s load-state tick."""
    reads = table[(table["client"] == "milvus") & table["operation"].isin(READS) & table["prefix"].isin(S3_PREFIXES)]
    rows = []
    for phase in LOADS:
        mine = reads[(reads["phase"] == phase) & (reads["start"] >= sent.get(phase, -np.inf))]
        if len(mine):
            rows += [(phase, f"{phase}_s3_span_s", _span(mine), "s"), (phase, f"{phase}_s3_busy_s", _busy(mine), "s"),
                     (phase, f"{phase}_s3_read_bytes", float(mine["response_body_bytes"].fillna(0).sum()), "bytes")]
            if phase in sent:
                rows.append((phase, f"{phase}_s3_first_read_s", float(mine["start"].min() - sent[phase]), "s"))
    return rows


def peak_concurrency(table: pd.DataFrame, phases: tuple[str, ...] = LOADS) -> int:
    """The most GETs Milvus had open at once during ``phases``: the concurrency warp is run at."""
    gets = table[(table["client"] == "milvus") & table["phase"].isin(phases) & (table["method"] == "GET")]
    events = sorted([(t, 1) for t in gets["start"]] + [(t, -1) for t in gets["end"].fillna(gets["start"])],
                    key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def account(capture: Capture, bucket: str, windows: list[tuple[str, float, float]]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """A capture (stopped here) as (requests with their phases, per-phase summary, facts for the record);
    ``load_reads`` of the requests gives the load rows of results.csv."""
    capture.stop()
    table, facts = parse_capture(capture.path, capture.port, bucket)
    table = assign_phases(table, windows)
    return table, summarize(table), {**capture.facts, **facts, "milvus_peak_get_concurrency": peak_concurrency(table)}
