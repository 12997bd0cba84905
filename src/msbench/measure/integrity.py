"""Did the store keep what Milvus wrote? Every object of the trial's listing is read back once
(untimed, after the capture has stopped, so these reads are not Milvus's traffic), its bytes
counted and compared with the size the listing gives and with the size the traffic capture saw
Milvus write. A store that truncates or pads an object, or lists a size it does not serve,
shows here by name; one that loses objects shows as lost recall or a failed load (the report
compares recall across stores).

The size the capture saw written is the key's last successful write: a PUT's body
(x-amz-decoded-content-length, the bytes before minio-go's chunk framing, else Content-Length),
or a multipart upload's parts summed (the successful parts between the key's last
CreateMultipartUpload and its CompleteMultipartUpload). A listed key the capture saw no complete
write of (written before the capture started, by a server-side COPY, or with no length on the
wire) is counted as unseen, not judged. The ETag of a single-part object is compared with the
MD5 of the bytes read where it has an MD5's shape: every store here makes it so, and a mismatch
with the same size is corruption the sizes cannot see.
"""
from __future__ import annotations

import hashlib
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
from botocore.exceptions import ClientError

PHASE = "integrity"
READERS = 8
PROBLEMS_NAMED = 50            # problems named by key in a report (all are counted)
WRITE_OPERATIONS = ("PUT", "multipart create", "multipart part", "multipart complete")   # traffic.classify's names
MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')


@dataclass(frozen=True)
class ObjectRead:
    """One object read back."""

    key: str
    listed: int              # size in the listing
    read: int | None         # bytes the GET returned; None when it failed
    etag: str = ""
    md5: str = ""            # of the bytes read
    error: str = ""


@dataclass
class IntegrityReport:
    """What reading every listed object back found (counts, and the first problems by key)."""

    objects: int
    bytes_listed: int
    bytes_read: int
    read_errors: int
    differs_from_listing: int
    differs_from_capture: int
    unseen_in_capture: int
    etag_mismatches: int
    capture_available: bool
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, float, str]]:
        """The trial's tidy rows (phase "integrity"); the named problems belong in its notes."""
        unseen = float(self.unseen_in_capture) if self.capture_available else math.nan
        differs = float(self.differs_from_capture) if self.capture_available else math.nan
        return [(PHASE, "integrity_objects", float(self.objects), "count"),
                (PHASE, "integrity_bytes_read", float(self.bytes_read), "bytes"),
                (PHASE, "integrity_read_errors", float(self.read_errors), "count"),
                (PHASE, "integrity_size_differs_from_listing", float(self.differs_from_listing), "count"),
                (PHASE, "integrity_size_differs_from_capture", differs, "count"),
                (PHASE, "integrity_unseen_in_capture", unseen, "count"),
                (PHASE, "integrity_etag_mismatches", float(self.etag_mismatches), "count"),
                (PHASE, "integrity_s", self.seconds, "s")]


def written_sizes(written: pd.DataFrame) -> dict[str, int | None]:
    """Key -> the size of its last successful write as the capture saw it (None: a write whose length
    the capture could not read). ``written``: traffic.parse_capture's table, or any part of it holding
    the write requests (columns start, key, operation, status, request_body_bytes)."""
    done = written[written["operation"].isin(WRITE_OPERATIONS) & (written["status"] >= 200)
                   & (written["status"] < 300)].sort_values("start", kind="stable")
    sizes: dict[str, int | None] = {}
    uploads: dict[str, int | None] = {}   # key -> bytes of its open multipart upload's parts so far
    for op, key, body in zip(done["operation"], done["key"], done["request_body_bytes"]):
        known = None if pd.isna(body) else int(body)
        if op == "PUT":
            sizes[key] = known
        elif op == "multipart create":
            uploads[key] = 0
        elif op == "multipart part" and key in uploads:
            uploads[key] = None if known is None or uploads[key] is None else uploads[key] + known
        elif op == "multipart complete" and key in uploads:
            sizes[key] = uploads.pop(key)
    return sizes


def read_back(s3, bucket: str, listing: dict[str, int], workers: int = READERS) -> list[ObjectRead]:
    """GET every listed object once, counting its bytes and hashing them (nothing kept in memory)."""
    def read(item: tuple[str, int]) -> ObjectRead:
        key, listed = item
        try:
            response = s3.get_object(Bucket=bucket, Key=key)
            digest, count = hashlib.md5(), 0
            for chunk in response["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
                count += len(chunk)
            return ObjectRead(key, listed, count, response.get("ETag", ""), digest.hexdigest())
        except ClientError as err:
            error = err.response.get("Error", {})
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return ObjectRead(key, listed, None, error=f"{status} {error.get('Code', '')}".strip())
        except Exception as err:   # a connection cut mid-body is what this looks for
            return ObjectRead(key, listed, None, error=f"{type(err).__name__}: {err}"[:200])

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(read, sorted(listing.items())))


def judge(reads: list[ObjectRead], expected: dict[str, int | None] | None) -> IntegrityReport:
    """Counts and named problems from what was read and what the capture saw written (None: no capture)."""
    problems: list[str] = []
    errors = listing = capture = unseen = etags = 0
    for r in reads:
        if r.read is None:
            errors += 1
            problems.append(f"{r.key}: read failed ({r.error})")
            continue
        if r.read != r.listed:
            listing += 1
            problems.append(f"{r.key}: listed {r.listed} B, read {r.read} B")
        if expected is not None:
            wrote = expected.get(r.key)
            if wrote is None:
                unseen += 1
            elif wrote != r.read:
                capture += 1
                problems.append(f"{r.key}: Milvus wrote {wrote} B, read {r.read} B")
        md5 = MD5_ETAG.match(r.etag)
        if md5 and md5.group(1) != r.md5:
            etags += 1
            problems.append(f"{r.key}: ETag {r.etag} is not the MD5 of the bytes read ({r.md5})")
    return IntegrityReport(objects=len(reads), bytes_listed=sum(r.listed for r in reads),
                           bytes_read=sum(r.read or 0 for r in reads), read_errors=errors, differs_from_listing=listing,
                           differs_from_capture=capture, unseen_in_capture=unseen, etag_mismatches=etags,
                           capture_available=expected is not None, problems=problems[:PROBLEMS_NAMED])


def integrity(s3, bucket: str, listing: dict[str, int], written: pd.DataFrame | None) -> IntegrityReport:
    """Read every object of ``listing`` (Stack.listing(): key -> size) back from ``bucket`` and judge it
    against the listing and against ``written`` (the capture's request table; None when there was no
    capture: then only the listing is compared)."""
    began = time.perf_counter()
    report = judge(read_back(s3, bucket, listing), None if written is None else written_sizes(written))
    report.seconds = time.perf_counter() - began
    return report
