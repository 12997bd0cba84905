"""Can this store back Milvus? Real S3 requests (boto3/botocore) against a running store.

Every check runs against the store's endpoint in a bucket of its own, made for the check and
removed after it with everything written into it (also when a check fails half-way: every key
written is tracked, so a store whose listing is broken is still emptied). A check passes, fails
(with the store's answer: status, code, message) or is unsupported (the store says so: 501 /
NotImplemented, or it ignores a header whose only purpose is extra verification), and takes the
time it took. A pass may carry notes: what the store did that S3 does differently but no client
here depends on (Ceph 16's empty ETag on CompleteMultipartUpload, for one).

What Milvus needs of S3, read in its sources and in the clients the binaries ship (``go version -m``
and the conan paths in the native Milvus 2.3.5: minio-go v7.0.56, aws-sdk-cpp 1.9.234):

- Milvus 2.3.5, Go side (internal/storage RemoteChunkManager on minio-go, plain HTTP): PutObject of
  objects under 16 MiB as one PUT signed with minio-go's streaming signature (x-amz-content-sha256:
  STREAMING-AWS4-HMAC-SHA256-PAYLOAD, 64 KiB aws-chunked chunks each signed, x-amz-decoded-content-
  length; no Content-MD5, no x-amz-checksum-*: minio-go adds its CRC32C only with trailing headers
  enabled, which Milvus does not); from 16 MiB a multipart upload of 16 MiB parts, each part signed
  the same way; GET of whole objects after a HEAD; ListObjectsV2 with encoding-type=url, one level
  at a time (delimiter "/"), pages followed by continuation-token (no max-keys, no start-after);
  single DELETEs (MultiRemove and RemoveWithPrefix delete key by key: minio-go's RemoveObjects,
  i.e. DeleteObjects, is not called). Its ReadAt would send closed ranges (bytes=a-b), but the
  study's workload never takes that path (see the wire, below), so ranged GETs count for 2.6 only.
- Milvus 2.3.5, C++ side (segcore MinioChunkManager on aws-sdk-cpp): PUT of index files as one
  request with the body's SHA-256 signed, Content-MD5 and Expect: 100-continue (over plain HTTP
  the SDK signs the body although Milvus sets PayloadSigningPolicy::Never), GET, HEAD, DELETE, and
  a ListObjects V1 at start (PreCheck).
- Seen on the wire (the headers of every request Milvus 2.3.5 sent in 25 minutes of trials on
  this machine, a study on MinIO, SeaweedFS and Garage; captured on loopback, keys not kept): 199
  minio-go PUTs and 42 parts, all STREAMING-AWS4-HMAC-SHA256-PAYLOAD with x-amz-decoded-content-
  length; 17 CreateMultipartUpload with UNSIGNED-PAYLOAD; 75 aws-sdk-cpp PUTs, all with
  Content-MD5, Expect: 100-continue and a hex SHA-256; not one If-None-Match, x-amz-checksum-*,
  Range header or DeleteObjects.
- Milvus 2.6 (newer minio-go and aws-sdk-cpp, not seen on the wire here) needs what its Go side
  shares with 2.3.5 and, with Woodpecker as its WAL, PUT with If-None-Match: * answered 412 on an
  existing key (fencing) and user metadata read back by HEAD (its fence objects); storage v2 writes
  Parquet by multipart upload and reads it by byte range.

Checks no Milvus depends on run too (DeleteObjects, start-after, max-keys, the CRC32 / CRC64NVME
headers newer AWS SDKs send): other clients of the same store need them, and they are shown.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import re
import secrets
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import botocore
import pandas as pd
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpsession import URLLib3Session

from msbench.backends import BackendDef
from msbench.config import UserConfig
from msbench.files import atomic_write_text
from msbench.providers import S3Endpoint
from msbench.providers.s3 import s3_client
from msbench.providers.stores import make_store
from msbench.results import redact

PASS, FAIL, UNSUPPORTED = "pass", "fail", "unsupported"
MILVUS_235, MILVUS_26 = "Milvus 2.3.5", "Milvus 2.6"
TARGETS = (MILVUS_235, MILVUS_26)
REGION = "us-east-1"
KIB, MIB = 1024, 1024 * 1024
MESSAGE_CHARS = 200            # of a store's error message, in a record
WRITERS = 16                   # concurrent PUTs when a check needs many objects
LIST_FLAT, LIST_TREE_DIRS, LIST_TREE_LEAVES = 1_100, 12, 3
ROUNDS = 20                    # consistency rounds (PUT, read, overwrite, delete)
STREAM_CHUNK = 64 * KIB        # minio-go's payloadChunkSize
UNSUPPORTED_CODES = {"NotImplemented", "NotSupported"}
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


# -- records -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """What the store said to one request (a success is any 2xx)."""

    status: int | None
    code: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def __str__(self) -> str:
        said = " ".join(x for x in (str(self.status or "no answer"), self.code, self.message and f"({self.message})") if x)
        return said

    @classmethod
    def of(cls, err: ClientError) -> "Answer":
        error, meta = err.response.get("Error", {}), err.response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode")
        return cls(int(status) if status else None, str(error.get("Code", "")),
                   " ".join(str(error.get("Message", "")).split())[:MESSAGE_CHARS])


@dataclass
class CheckResult:
    """One check on one store."""

    name: str
    outcome: str                        # pass | fail | unsupported
    seconds: float
    detail: str = ""                    # what was wrong (fail / unsupported)
    status: int | None = None           # the store's answer where a request was refused
    code: str = ""
    message: str = ""
    notes: list[str] = field(default_factory=list)     # what was seen on the way (also on a pass)
    needed_by: list[str] = field(default_factory=list)  # which Milvus depends on it (TARGETS)


@dataclass
class StoreConformance:
    """Every check on one store, and whether the check left anything behind."""

    store: str
    endpoint: str
    description: str = ""
    botocore: str = botocore.__version__
    started: str = ""
    seconds: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)
    leftover_objects: int | None = None     # in the check's bucket after its cleanup (0 expected)
    leftover_uploads: int | None = None     # multipart uploads still open there
    bucket_removed: bool = False
    cleanup_error: str = ""
    error: str = ""                         # why the checks could not run at all (store did not start, ...)

    def result(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StoreConformance":
        return cls(**{**data, "checks": [CheckResult(**c) for c in data.get("checks", [])]})


@dataclass(frozen=True)
class Fitness:
    """Whether a store can back one Milvus, and why not."""

    target: str
    fit: bool
    reasons: tuple[str, ...]


# -- pure rules ----------------------------------------------------------------------------------

class Mismatch(Exception):
    """The store answered, but not as S3 says (a wrong body, a missing key, a wrong status)."""

    def __init__(self, detail: str, answer: Answer | None = None, outcome: str = FAIL, notes: list[str] | None = None):
        super().__init__(detail)
        self.answer, self.outcome, self.notes = answer, outcome, notes or []


def classify(answer: Answer) -> str:
    """A refused request: unsupported when the store says it does not implement it, else a failure."""
    return UNSUPPORTED if answer.status == 501 or answer.code in UNSUPPORTED_CODES else FAIL


def judge_conditional_put(first: Answer, second: Answer, kept_first: bool | None) -> tuple[str, str]:
    """(outcome, detail) of If-None-Match: * on a new key (``first``) then on the same key (``second``);
    ``kept_first``: whether the object still holds the first body afterwards (None: not read)."""
    if not first.ok:
        return classify(first), f"If-None-Match: * on a new key refused: {first}"
    if second.status == 412:
        if kept_first is False:
            return FAIL, "answered 412 but the object was overwritten"
        return PASS, ""
    if second.ok:
        overwritten = " and overwrote the object" if kept_first is False else ""
        return FAIL, f"ignored If-None-Match: * on an existing key: answered {second.status}{overwritten} (412 expected)"
    return classify(second), f"If-None-Match: * on an existing key: expected 412, got {second}"


def expected_range(size: int, spec: str) -> tuple[int, int] | None:
    """(first, last) byte that a Range header ``spec`` (bytes=a-b, bytes=a-, bytes=-n) selects in an
    object of ``size`` bytes; None when unsatisfiable (answered 416 by RFC 9110)."""
    found = re.fullmatch(r"bytes=(\d*)-(\d*)", spec)
    if not found or found.groups() == ("", ""):
        raise ValueError(f"not a single byte range: {spec!r}")
    start, end = found.groups()
    if start == "":   # suffix: the last n bytes
        n = int(end)
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else None
    first = int(start)
    if first >= size:
        return None
    return first, min(int(end), size - 1) if end else size - 1


def judge_range(data: bytes, spec: str, status: int | None, body: bytes, content_range: str) -> str:
    """What was wrong with the answer to a ranged GET of ``data`` ("" when nothing was)."""
    size, want = len(data), expected_range(len(data), spec)
    if want is None:
        if status == 416:
            return ""
        whole = " (the whole object: the range was ignored)" if status == 200 and body == data else ""
        return f"{spec} of {size} B: expected 416, got {status} with {len(body)} B{whole}"
    first, last = want
    expected = data[first:last + 1]
    if status != 206:
        whole = " (the whole object: the range was ignored)" if status == 200 and body == data else ""
        return f"{spec} of {size} B: expected 206, got {status} with {len(body)} B{whole}"
    if len(body) != len(expected):
        return f"{spec} of {size} B: {len(body)} B returned, {len(expected)} expected"
    if body != expected:
        at = next(i for i, (a, b) in enumerate(zip(body, expected)) if a != b)
        return f"{spec} of {size} B: right length, wrong bytes from offset {first + at}"
    if content_range != f"bytes {first}-{last}/{size}":
        return f"{spec} of {size} B: Content-Range {content_range!r}, expected 'bytes {first}-{last}/{size}'"
    return ""


def multipart_etag(parts: Iterable[bytes]) -> str:
    """S3's ETag of a completed multipart upload: MD5 of the parts' MD5s, dash, number of parts."""
    digests = [hashlib.md5(p).digest() for p in parts]
    return f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'


def _crc64nvme_table() -> list[int]:
    poly = 0x9A6C9329AC4BC9B5   # CRC-64/NVME, reflected
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64NVME = _crc64nvme_table()


def crc64nvme(data: bytes) -> int:
    """CRC-64/NVME (S3's CRC64NVME; check value of b"123456789": 0xAE8B14860A799888). This botocore
    computes it only with the awscrt package, which is not installed here."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _CRC64NVME[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def checksum_header(value: int, width: int) -> str:
    """An x-amz-checksum-* value: the big-endian checksum, base64."""
    return base64.b64encode(value.to_bytes(width, "big")).decode()


# -- talking to the store ------------------------------------------------------------------------

def _body(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


class Probe:
    """The check's bucket on one store and the clients the checks speak through: ``plain`` sends no
    checksum it is not required to (as minio-go and aws-sdk-cpp 1.9 do); ``sdk`` has this botocore's
    defaults (a CRC32 on every PUT, response checksums validated), as newer AWS SDKs behave."""

    def __init__(self, store: S3Endpoint, bucket: str):
        self.endpoint_url, self.bucket = store.endpoint_url, bucket
        self.credentials = Credentials(store.access_key, store.secret_key)
        common = dict(s3={"addressing_style": "path"}, read_timeout=60, max_pool_connections=WRITERS,
                      retries={"max_attempts": 3, "mode": "standard"})
        plain = BotoConfig(**common, request_checksum_calculation="when_required",
                           response_checksum_validation="when_required")
        self.plain = s3_client(store, REGION, plain)
        self.md5 = s3_client(store, REGION, plain)   # Content-MD5, as minio-go and aws-sdk-cpp 1.9 send it
        for operation in ("PutObject", "DeleteObjects"):
            self.md5.meta.events.register(f"before-sign.s3.{operation}", _md5_instead_of_checksum)
        self.sdk = s3_client(store, REGION, BotoConfig(**common))
        # x-amz-content-sha256: UNSIGNED-PAYLOAD, as minio-go sends requests it has no body hash for
        self.unsigned = s3_client(store, REGION, BotoConfig(
            **{**common, "s3": {"addressing_style": "path", "payload_signing_enabled": False}},
            request_checksum_calculation="when_required", response_checksum_validation="when_required"))
        self.http = URLLib3Session(timeout=60)
        self.written: set[str] = set()   # every key a check may have created: emptied at the end
        self._fixtures: dict[str, object] = {}

    def put(self, key: str, body: bytes, client=None, **kwargs) -> dict:
        self.written.add(key)   # before the PUT: a PUT that times out may still have stored it
        return (client or self.plain).put_object(Bucket=self.bucket, Key=key, Body=body, **kwargs)

    def put_many(self, objects: dict[str, bytes]) -> None:
        with ThreadPoolExecutor(WRITERS) as pool:
            list(pool.map(lambda item: self.put(*item), objects.items()))

    def get(self, key: str, client=None, **kwargs) -> tuple[bytes, dict]:
        response = (client or self.plain).get_object(Bucket=self.bucket, Key=key, **kwargs)
        return response["Body"].read(), response

    def answer(self, call: Callable[[], object]) -> Answer:
        """A request's outcome as an Answer, whether it succeeded or was refused."""
        try:
            response = call()
        except ClientError as err:
            return Answer.of(err)
        return Answer(int(response["ResponseMetadata"]["HTTPStatusCode"]))

    def fixture(self, make: Callable[["Probe"], object]):
        """Objects several checks read, written once by ``make``; a failure to write them fails each of
        those checks."""
        name = make.__name__
        if name not in self._fixtures:
            try:
                self._fixtures[name] = make(self)
            except Exception as err:
                self._fixtures[name] = err
        found = self._fixtures[name]
        if isinstance(found, Exception):
            raise found
        return found

    def streaming_put(self, key: str, body: bytes, query: str = "", headers: dict[str, str] | None = None):
        """PUT signed as minio-go signs it over plain HTTP: the seed signature over the headers, then
        every 64 KiB chunk signed in a chain (aws-chunked, x-amz-decoded-content-length). Returns the
        Answer and the response headers."""
        self.written.add(key)
        url = f"{self.endpoint_url}/{self.bucket}/{key}" + (f"?{query}" if query else "")
        request = AWSRequest("PUT", url, headers={"X-Amz-Content-SHA256": STREAMING_PAYLOAD,
                                                  "x-amz-decoded-content-length": str(len(body)), **(headers or {})})
        SigV4Auth(self.credentials, "s3", REGION).add_auth(request)
        stamp = request.context["timestamp"]
        signature = request.headers["Authorization"].rsplit("Signature=", 1)[1]
        signing_key = _signing_key(self.credentials.secret_key, stamp[:8])
        scope = f"{stamp[:8]}/{REGION}/s3/aws4_request"
        framed = []
        for chunk in [body[i:i + STREAM_CHUNK] for i in range(0, len(body), STREAM_CHUNK)] + [b""]:
            to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, signature, EMPTY_SHA256,
                                 hashlib.sha256(chunk).hexdigest()])
            signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
            framed.append(f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n")
        request.data = b"".join(framed)
        response = self.http.send(request.prepare())
        text = response.content.decode("utf-8", "replace")
        code = re.search(r"<Code>(.*?)</Code>", text)
        message = re.search(r"<Message>(.*?)</Message>", text, re.S)
        return (Answer(response.status_code, code.group(1) if code else "",
                       " ".join(message.group(1).split())[:MESSAGE_CHARS] if message else ""),
                dict(response.headers))

    def sent_headers(self, client, operation: str) -> list[dict[str, str]]:
        """The headers of every ``operation`` request ``client`` sends from now on (the evidence of
        what a check really sent)."""
        seen: list[dict[str, str]] = []
        client.meta.events.register(f"before-send.s3.{operation}",
                                    lambda request, **_: seen.append({k.lower(): _text(v) for k, v in request.headers.items()}))
        return seen

    def listing(self, **kwargs) -> list[dict]:
        """Every page of ListObjectsV2 (continuation tokens followed; at most 100 pages)."""
        pages, token = [], None
        while True:
            page = self.plain.list_objects_v2(Bucket=self.bucket, **kwargs,
                                              **({"ContinuationToken": token} if token else {}))
            pages.append(page)
            if not page.get("IsTruncated"):
                return pages
            token = page.get("NextContinuationToken")
            if not token:
                raise Mismatch(f"page {len(pages)}: IsTruncated without NextContinuationToken")
            if len(pages) >= 100:
                raise Mismatch("still truncated after 100 pages")


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _signing_key(secret: str, date: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _objects(pages: list[dict]) -> list[dict]:
    return [o for page in pages for o in page.get("Contents", [])]


def _keys(pages: list[dict]) -> list[str]:
    return [o["Key"] for o in _objects(pages)]


def _same_keys(got: list[str], expected: list[str], what: str) -> None:
    """Every expected key exactly once, in S3's (UTF-8 binary) order, and nothing else."""
    dupes = sorted({k for k in got if got.count(k) > 1}) if len(set(got)) != len(got) else []
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    problems = [f"{len(missing)} missing (first {missing[0]})" if missing else "",
                f"{len(extra)} unexpected (first {extra[0]})" if extra else "",
                f"{len(dupes)} listed more than once (first {dupes[0]})" if dupes else "",
                "not in key order" if not dupes and got != sorted(got) else ""]
    problems = [p for p in problems if p]
    if problems:
        raise Mismatch(f"{what}: {len(got)} keys listed, {len(expected)} expected; {'; '.join(problems)}")


# -- the checks ----------------------------------------------------------------------------------

def _list_fixture(p: Probe) -> dict[str, list[str]]:
    flat = [f"list/flat/{i:05d}" for i in range(LIST_FLAT)]
    tree = [f"list/tree/p{j:02d}/o{i}" for j in range(LIST_TREE_DIRS) for i in range(LIST_TREE_LEAVES)]
    p.put_many({key: key.encode() for key in [*flat, *tree, "list/top"]})
    return {"flat": flat, "tree": tree}


def check_list_pagination(p: Probe) -> list[str]:
    """ListObjectsV2 over 1,100 keys: pages of at most 1,000, IsTruncated and NextContinuationToken
    until the end, every key once and in order."""
    flat = p.fixture(_list_fixture)["flat"]
    pages = p.listing(Prefix="list/flat/")
    sizes = [len(page.get("Contents", [])) for page in pages]
    if max(sizes) > 1000:
        raise Mismatch(f"a page of {max(sizes)} keys: more than the 1,000 S3 allows (page sizes {sizes})")
    wrong_count = [(page.get("KeyCount"), n) for page, n in zip(pages, sizes) if page.get("KeyCount") != n]
    if wrong_count:
        raise Mismatch(f"KeyCount {wrong_count[0][0]} for a page of {wrong_count[0][1]} keys")
    _same_keys(_keys(pages), flat, "paged listing")
    return _short_pages(sizes, 1000)


def check_list_max_keys(p: Probe) -> list[str]:
    """MaxKeys=250 (and 1): no page larger, the same keys over all pages."""
    flat = p.fixture(_list_fixture)["flat"]
    one = p.plain.list_objects_v2(Bucket=p.bucket, Prefix="list/flat/", MaxKeys=1)
    if [o["Key"] for o in one.get("Contents", [])] != flat[:1] or not one.get("IsTruncated"):
        raise Mismatch(f"MaxKeys=1: got {[o['Key'] for o in one.get('Contents', [])][:3]}, "
                       f"IsTruncated {one.get('IsTruncated')} (expected [{flat[0]}], True)")
    pages = p.listing(Prefix="list/flat/", MaxKeys=250)
    sizes = [len(page.get("Contents", [])) for page in pages]
    if max(sizes) > 250:
        raise Mismatch(f"MaxKeys=250 answered a page of {max(sizes)} keys (page sizes {sizes})")
    _same_keys(_keys(pages), flat, "MaxKeys=250 listing")
    return _short_pages(sizes, 250)


def _short_pages(sizes: list[int], full: int) -> list[str]:
    """A note when a page before the last held fewer keys than asked (S3 allows it; clients must cope)."""
    return [f"pages of {sizes} keys: fewer than {full} before the last"] if any(n < full for n in sizes[:-1]) else []


def check_list_start_after(p: Probe) -> list[str]:
    """StartAfter on every page (as boto3's paginator and minio-go send it) with MaxKeys=100, and
    StartAfter a key that does not exist."""
    flat = p.fixture(_list_fixture)["flat"]
    pages = p.listing(Prefix="list/flat/", StartAfter=flat[499], MaxKeys=100)
    _same_keys(_keys(pages), flat[500:], f"StartAfter={flat[499]} (pages of 100)")
    gap = p.plain.list_objects_v2(Bucket=p.bucket, Prefix="list/flat/", StartAfter=flat[499] + "x", MaxKeys=5)
    got = [o["Key"] for o in gap.get("Contents", [])]
    if got != flat[500:505]:
        raise Mismatch(f"StartAfter={flat[499]}x (no such key): got {got}, expected {flat[500:505]}")
    return []


def check_list_delimiter(p: Probe) -> list[str]:
    """Delimiter "/": CommonPrefixes beside the keys of a level; common prefixes paged by MaxKeys;
    a level of 1,100 keys paged with a delimiter (how minio-go lists for Milvus)."""
    fixture = p.fixture(_list_fixture)
    top = p.plain.list_objects_v2(Bucket=p.bucket, Prefix="list/", Delimiter="/")
    prefixes = [c["Prefix"] for c in top.get("CommonPrefixes", [])]
    keys = [o["Key"] for o in top.get("Contents", [])]
    if prefixes != ["list/flat/", "list/tree/"] or keys != ["list/top"]:
        raise Mismatch(f"Prefix=list/ Delimiter=/: CommonPrefixes {prefixes}, keys {keys} "
                       "(expected ['list/flat/', 'list/tree/'], ['list/top'])")
    pages = p.listing(Prefix="list/tree/", Delimiter="/", MaxKeys=5)
    paged = [c["Prefix"] for page in pages for c in page.get("CommonPrefixes", [])]
    _same_keys(paged, sorted({k.rsplit("/", 1)[0] + "/" for k in fixture["tree"]}),
               "CommonPrefixes paged by MaxKeys=5")
    if _keys(pages):
        raise Mismatch(f"Prefix=list/tree/ Delimiter=/: keys {_keys(pages)[:3]} listed beside the prefixes")
    _same_keys(_keys(p.listing(Prefix="list/flat/", Delimiter="/")), fixture["flat"], "a level of 1,100 keys")
    return []


def check_list_v1(p: Probe) -> list[str]:
    """ListObjects (V1): the first page (what Milvus 2.3.5's C++ PreCheck asks at start) and Marker paging."""
    flat = p.fixture(_list_fixture)["flat"]
    empty = p.plain.list_objects(Bucket=p.bucket, Prefix="justforconnectioncheck")
    if empty.get("Contents"):
        raise Mismatch("a prefix with no keys listed keys")
    got, marker = [], ""
    for _ in range(20):
        page = p.plain.list_objects(Bucket=p.bucket, Prefix="list/flat/", Marker=marker)
        keys = [o["Key"] for o in page.get("Contents", [])]
        got += keys
        if not page.get("IsTruncated"):
            break
        if not keys:
            raise Mismatch("IsTruncated with an empty page")
        marker = page.get("NextMarker") or keys[-1]
    _same_keys(got, flat, "V1 listing paged by Marker")
    return []


def check_read_after_write(p: Probe) -> list[str]:
    """Immediately after PUT, overwrite and DELETE: GET and HEAD see the new state (a GET of a deleted
    key answers 404 NoSuchKey, which Milvus maps to "not found"); deleting a missing key answers 204."""
    wrong: list[str] = []
    for i in range(ROUNDS):
        key = f"raw/{i:02d}"
        first, second = _body(i, 1 + (i * 4099) % (64 * KIB)), _body(1000 + i, 7 + (i * 7919) % (64 * KIB))
        p.put(key, first)
        if p.get(key)[0] != first:
            wrong.append(f"{key}: GET after PUT returned other bytes")
        p.put(key, second)
        if p.get(key)[0] != second:
            wrong.append(f"{key}: GET after overwrite returned the old or other bytes")
        length = p.plain.head_object(Bucket=p.bucket, Key=key)["ContentLength"]
        if length != len(second):
            wrong.append(f"{key}: HEAD after overwrite says {length} B, {len(second)} written")
        p.plain.delete_object(Bucket=p.bucket, Key=key)
        gone = p.answer(lambda: p.plain.get_object(Bucket=p.bucket, Key=key))
        if (gone.status, gone.code) != (404, "NoSuchKey"):
            wrong.append(f"{key}: GET after DELETE answered {gone} (404 NoSuchKey expected)")
        head = p.answer(lambda: p.plain.head_object(Bucket=p.bucket, Key=key))
        if head.status != 404:
            wrong.append(f"{key}: HEAD after DELETE answered {head} (404 expected)")
        again = p.answer(lambda: p.plain.delete_object(Bucket=p.bucket, Key=key))
        if again.status != 204:
            wrong.append(f"{key}: DELETE of a missing key answered {again} (204 expected)")
    if wrong:
        raise Mismatch(f"{len(wrong)} violations in {ROUNDS} rounds; first: {'; '.join(wrong[:3])}")
    return []


def check_list_after_write(p: Probe) -> list[str]:
    """Immediately after PUT a listing shows the key with its size; after DELETE it does not."""
    wrong: list[str] = []
    for i in range(ROUNDS):
        key, body = f"law/{i:02d}", _body(2000 + i, 1 + i * 313)
        p.put(key, body)
        listed = {o["Key"]: o["Size"] for o in _objects(p.listing(Prefix="law/"))}
        if listed.get(key) != len(body):
            wrong.append(f"{key}: listed after PUT as {listed.get(key, 'absent')} (size {len(body)} expected)")
        p.plain.delete_object(Bucket=p.bucket, Key=key)
        if key in {o["Key"] for o in _objects(p.listing(Prefix="law/"))}:
            wrong.append(f"{key}: still listed after DELETE")
    if wrong:
        raise Mismatch(f"{len(wrong)} violations in {ROUNDS} rounds; first: {'; '.join(wrong[:3])}")
    return []


def check_put_streaming_signed(p: Probe) -> list[str]:
    """PUT as minio-go sends it over plain HTTP (every binlog Milvus writes): streaming signature, signed
    64 KiB aws-chunked chunks; the object holds the decoded bytes (1 B, exactly 64 KiB, 200 KiB + 5)."""
    for size in (1, STREAM_CHUNK, 200 * KIB + 5):
        key, body = f"stream/{size}", _body(size, size)
        answer, _ = p.streaming_put(key, body)
        if not answer.ok:
            raise Mismatch(f"streaming-signed PUT of {size} B refused: {answer}", answer, classify(answer))
        stored = p.get(key)[0]
        if stored != body:
            raise Mismatch(f"streaming-signed PUT of {size} B: GET returns {len(stored)} B"
                           f"{'' if len(stored) != size else ' of other bytes'} (the chunk framing stored?)")
    return []


def check_put_md5_signed(p: Probe) -> list[str]:
    """PUT as aws-sdk-cpp 1.9 sends it over plain HTTP (Milvus's C++ side: index files): the body's
    SHA-256 signed, Content-MD5, Expect: 100-continue (a 2 MiB + 3 object)."""
    sent = p.sent_headers(p.md5, "PutObject")
    body = _body(3, 2 * MIB + 3)
    p.put("md5/object", body, client=p.md5)
    headers = sent[-1] if sent else {}
    if not (re.fullmatch(r"[0-9a-f]{64}", headers.get("x-amz-content-sha256", "")) and "content-md5" in headers
            and headers.get("expect") == "100-continue"):
        raise Mismatch(f"the client sent headers {sorted(headers)} (check is wrong)")
    if p.get("md5/object")[0] != body:
        raise Mismatch("GET returns other bytes than the PUT wrote")
    return []


def check_multipart(p: Probe) -> list[str]:
    """Multipart upload as minio-go starts it (UNSIGNED-PAYLOAD): parts of 5 MiB, 5 MiB (streaming-signed,
    as minio-go sends parts) and a small last part; the object's bytes, size, a ranged GET across a part
    boundary, ETags; then an abort."""
    parts = [_body(51, 5 * MIB), _body(52, 5 * MIB), _body(53, KIB + 7)]
    key, data, notes = "multipart/object", b"".join(parts), []
    p.written.add(key)
    upload = p.unsigned.create_multipart_upload(Bucket=p.bucket, Key=key)["UploadId"]
    etags = []
    for number, part in enumerate(parts, 1):
        if number == 2:
            answer, headers = p.streaming_put(key, part, query=f"partNumber={number}&uploadId={upload}")
            if not answer.ok:
                raise Mismatch(f"streaming-signed UploadPart refused: {answer}", answer, classify(answer))
            etag = {k.lower(): v for k, v in headers.items()}.get("etag", "")
        else:
            etag = p.plain.upload_part(Bucket=p.bucket, Key=key, UploadId=upload, PartNumber=number, Body=part)["ETag"]
        if etag.strip('"') != hashlib.md5(part).hexdigest():
            notes.append(f"part {number} ETag {etag!r} is not the part's MD5")
        etags.append(etag)
    done = p.plain.complete_multipart_upload(
        Bucket=p.bucket, Key=key, UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]})
    head = p.plain.head_object(Bucket=p.bucket, Key=key)
    expected_etag = multipart_etag(parts)
    if not done.get("ETag"):
        notes.append(f"CompleteMultipartUpload answered an empty ETag (HEAD says {head.get('ETag')!r})")
    elif done["ETag"] != expected_etag:
        notes.append(f"ETag {done['ETag']!r}, not S3's MD5-of-MD5s form {expected_etag!r}")
    if head["ContentLength"] != len(data):
        raise Mismatch(f"HEAD says {head['ContentLength']} B, {len(data)} uploaded", notes=notes)
    if p.get(key)[0] != data:
        raise Mismatch("GET returns other bytes than the parts uploaded", notes=notes)
    for spec in (f"bytes={5 * MIB - 10}-{5 * MIB + 9}", f"bytes={10 * MIB - 3}-{len(data) - 1}"):
        wrong = _ranged(p, key, data, spec)
        if wrong:
            raise Mismatch(wrong, notes=notes)
    aborted = p.plain.create_multipart_upload(Bucket=p.bucket, Key="multipart/aborted")["UploadId"]
    p.plain.upload_part(Bucket=p.bucket, Key="multipart/aborted", UploadId=aborted, PartNumber=1, Body=parts[2])
    answer = p.answer(lambda: p.plain.abort_multipart_upload(Bucket=p.bucket, Key="multipart/aborted", UploadId=aborted))
    if not answer.ok:
        raise Mismatch(f"AbortMultipartUpload refused: {answer}", answer, classify(answer), notes)
    return notes


def _ranged(p: Probe, key: str, data: bytes, spec: str) -> str:
    """GET ``spec`` of ``key`` (holding ``data``) and say what was wrong ("" if nothing)."""
    try:
        body, response = p.get(key, Range=spec)
        status, content_range = response["ResponseMetadata"]["HTTPStatusCode"], response.get("ContentRange", "")
    except ClientError as err:
        answer = Answer.of(err)
        body, status, content_range = b"", answer.status, ""
        if answer.status != 416:
            return judge_range(data, spec, status, body, content_range) + f" [{answer}]"
    return judge_range(data, spec, status, body, content_range)


RANGE_SIZES = (1, KIB, MIB + 17, 8 * MIB + 3)


def _range_fixture(p: Probe) -> dict[str, bytes]:
    objects = {f"range/{size}": _body(size, size) for size in RANGE_SIZES}
    p.put_many(objects)
    return objects


def range_specs(size: int) -> dict[str, str]:
    """The closed ranges Milvus asks (bytes=a-b): the start, a middle stretch of up to 1 MiB + 1 (it
    crosses MiB boundaries in the larger objects), the last 64 KiB + 1, the last byte."""
    middle = size // 3
    return {"start": f"bytes=0-{min(size, 4 * KIB) - 1}",
            "middle": f"bytes={middle}-{middle + min(size - middle, MIB + 1) - 1}",
            "tail": f"bytes={max(size - 64 * KIB - 1, 0)}-{size - 1}",
            "last byte": f"bytes={size - 1}-{size - 1}"}


def edge_specs(size: int) -> dict[str, str]:
    """Ranges no Milvus asks but S3 defines: past the end of the object (416), a range running over
    the end (cut at the end), open-ended (bytes=a-) and suffix (bytes=-n)."""
    return {"past the end": f"bytes={size}-{size + 10}", "over the end": f"bytes={max(size - 10, 0)}-{size + 100}",
            "open-ended": f"bytes={size // 2}-", "suffix": f"bytes=-{min(size, 1000)}"}


def _check_ranges(p: Probe, specs: Callable[[int], dict[str, str]]) -> list[str]:
    objects = p.fixture(_range_fixture)
    wrong = []
    for key, data in objects.items():
        for label, spec in specs(len(data)).items():
            found = _ranged(p, key, data, spec)
            if found:
                wrong.append(f"{label}: {found}")
    if wrong:
        raise Mismatch(f"{len(wrong)} of the ranges answered wrongly; {'; '.join(wrong[:3])}")
    return []


def check_range_get(p: Probe) -> list[str]:
    """Ranged GETs (closed ranges) of 1 B, 1 KiB, 1 MiB + 17 and 8 MiB + 3 objects: status 206, the
    exact bytes, the Content-Range."""
    return _check_ranges(p, range_specs)


def check_range_edge_cases(p: Probe) -> list[str]:
    """Past the end (416 expected), over the end, open-ended and suffix ranges of the same objects."""
    return _check_ranges(p, edge_specs)


def check_conditional_put(p: Probe) -> list[str]:
    """If-None-Match: * (Woodpecker's fencing): a new key is written, the same key again is refused with
    412, also on minio-go's streaming-signed PUT (how Woodpecker sends it over plain HTTP)."""
    key, first_body = "conditional/object", b"first"
    first = p.answer(lambda: p.put(key, first_body, IfNoneMatch="*"))
    second = p.answer(lambda: p.put(key, b"second", IfNoneMatch="*")) if first.ok else Answer(None)
    kept = p.get(key)[0] == first_body if first.ok else None
    outcome, detail = judge_conditional_put(first, second, kept)
    if outcome != PASS:
        raise Mismatch(detail, second if first.ok else first, outcome)
    notes = [] if second.code == "PreconditionFailed" else [f"412 with code {second.code!r} (S3: PreconditionFailed)"]
    streamed, _ = p.streaming_put(key, b"third", headers={"If-None-Match": "*"})
    if streamed.status != 412:
        raise Mismatch(f"If-None-Match: * on a streaming-signed PUT of an existing key answered {streamed} "
                       f"(412 expected)", streamed, FAIL if streamed.ok else classify(streamed))
    return notes


def check_user_metadata(p: Probe) -> list[str]:
    """x-amz-meta-* written with a PUT is read back by HEAD (Woodpecker marks its fence objects so)."""
    p.put("metadata/object", b"F", Metadata={"fenced": "true"})
    found = p.plain.head_object(Bucket=p.bucket, Key="metadata/object").get("Metadata", {})
    if found.get("fenced") != "true":
        raise Mismatch(f"HEAD returns metadata {found} (expected {{'fenced': 'true'}})")
    return []


def _check_delete_objects(p: Probe, client, prefix: str, sent_check: Callable[[dict], str]) -> list[str]:
    keys = [f"{prefix}/{i:02d}" for i in range(30)]
    p.put_many({k: k.encode() for k in keys})
    sent = p.sent_headers(client, "DeleteObjects")
    missing = f"{prefix}/never-written"
    result = client.delete_objects(Bucket=p.bucket, Delete={"Objects": [{"Key": k} for k in [*keys, missing]],
                                                            "Quiet": False})
    wrong_request = sent_check(sent[-1]) if sent else "no request seen"
    if wrong_request:
        raise Mismatch(f"the client sent {wrong_request} (check is wrong)")
    deleted = {d["Key"] for d in result.get("Deleted", [])}
    errors = {e["Key"]: f"{e.get('Code')} {e.get('Message', '')}".strip() for e in result.get("Errors", [])}
    if errors.get(missing):
        raise Mismatch(f"deleting a missing key answered an error: {errors[missing]} (S3 reports it deleted)")
    failed = {k: v for k, v in errors.items() if k != missing}
    if failed or not set(keys) <= deleted:
        first = next(iter(failed.items()), None)
        raise Mismatch(f"{len(set(keys) - deleted)} of {len(keys)} keys not reported deleted"
                       + (f"; first error {first[0]}: {first[1]}" if first else ""))
    left = _keys(p.listing(Prefix=f"{prefix}/"))
    if left:
        raise Mismatch(f"{len(left)} keys still listed after DeleteObjects reported them deleted")
    return [] if missing in deleted else ["the missing key is not in the answer (S3 reports it deleted)"]


def check_delete_objects_md5(p: Probe) -> list[str]:
    """DeleteObjects of 30 keys and a missing one in one batch, with Content-MD5 (as minio-go and
    SDKs before 2025 send it)."""
    return _check_delete_objects(p, p.md5, "batch-md5", lambda h: "" if "content-md5" in h and not any(
        k.startswith("x-amz-checksum-") for k in h) else f"headers {sorted(h)}")


def check_delete_objects_crc32(p: Probe) -> list[str]:
    """The same batch as newer AWS SDKs send it (boto3 >= 1.36): x-amz-checksum-crc32, no Content-MD5."""
    return _check_delete_objects(p, p.sdk, "batch-crc32", lambda h: "" if "x-amz-checksum-crc32" in h and
                                 "content-md5" not in h else f"headers {sorted(h)}")


def _md5_instead_of_checksum(request, **_) -> None:
    """Content-MD5 in place of the checksum headers this botocore adds (it computes no MD5 any more)."""
    for name in [k for k in request.headers if k.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum"))]:
        del request.headers[name]
    body = request.body
    if hasattr(body, "read"):   # a PUT's body is a stream: read it and rewind
        position = body.tell()
        content = body.read()
        body.seek(position)
    else:
        content = body or b""
    request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(content).digest()).decode()


def _check_checksum(p: Probe, name: str, value: Callable[[bytes], str], param: str, client) -> list[str]:
    """PUT with the right checksum (accepted), with a wrong one (refused, or the header is ignored),
    GET with the checksum mode on (the store's checksum, if it returns one, must be right)."""
    body, notes = _body(7, 64 * KIB + 5), []
    sent = p.sent_headers(client, "PutObject")
    right = p.answer(lambda: p.put(f"checksum-{name}/right", body, client=client,
                                   **({param: value(body)} if param else {})))
    header = f"x-amz-checksum-{name}"
    if sent and sent[-1].get(header) != value(body):
        raise Mismatch(f"the client sent {header} {sent[-1].get(header)!r}, not {value(body)!r} (check is wrong)")
    if not right.ok:
        raise Mismatch(f"PUT with a right {header} refused: {right}", right, classify(right))
    got, response = p.get(f"checksum-{name}/right", client=client, ChecksumMode="ENABLED")
    if got != body:
        raise Mismatch("GET returns other bytes than were written")
    returned = response.get(f"Checksum{name.upper()}")
    if returned and returned != value(body):
        raise Mismatch(f"GET returns {header} {returned!r}, the bytes' is {value(body)!r}")
    if not returned:
        notes.append(f"GET with checksum mode on returns no {header}")
    ranged, _ = p.get(f"checksum-{name}/right", client=client, Range="bytes=0-9", ChecksumMode="ENABLED")
    if ranged != body[:10]:
        raise Mismatch("ranged GET with checksum mode on returns other bytes")
    wrong_value = value(body[::-1])
    wrong = p.answer(lambda: p.put(f"checksum-{name}/wrong", body, client=p.plain, **{f"Checksum{name.upper()}": wrong_value}))
    if wrong.ok:
        raise Mismatch(f"ignored {header}: a wrong value was accepted (nothing is verified)", wrong, UNSUPPORTED, notes)
    return notes


def check_checksum_crc32(p: Probe) -> list[str]:
    """x-amz-checksum-crc32, as this botocore sends it on every PUT by default (newer AWS SDKs do the same)."""
    return _check_checksum(p, "crc32", lambda b: checksum_header(zlib.crc32(b), 4), "", p.sdk)


def check_checksum_crc64nvme(p: Probe) -> list[str]:
    """x-amz-checksum-crc64nvme (S3's full-object checksum), computed here and sent with the PUT."""
    return _check_checksum(p, "crc64nvme", lambda b: checksum_header(crc64nvme(b), 8), "ChecksumCRC64NVME", p.plain)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Probe], list[str]]
    needed_by: dict[str, str]     # target -> what in that Milvus needs it

    @property
    def what(self) -> str:
        return " ".join((self.run.__doc__ or "").split("\n\n")[0].split())


def _both(why: str) -> dict[str, str]:
    return {MILVUS_235: why, MILVUS_26: why}


CHECKS: tuple[Check, ...] = (
    Check("read_after_write", check_read_after_write, _both("binlogs and index files are read right after they are written")),
    Check("list_after_write", check_list_after_write, _both("GC and ListWithPrefix list what was just written or deleted")),
    Check("put_streaming_signed", check_put_streaming_signed,
          _both("every object under 16 MiB written from Go (minio-go PutObject over plain HTTP)")),
    Check("put_md5_signed", check_put_md5_signed,
          {MILVUS_235: "index files, written by the C++ side (aws-sdk-cpp 1.9.234)"}),
    Check("list_pagination", check_list_pagination, _both("minio-go follows continuation tokens past 1,000 keys")),
    Check("list_delimiter", check_list_delimiter, _both("ListWithPrefix walks one level at a time with delimiter '/'")),
    Check("list_start_after", check_list_start_after, {}),
    Check("list_max_keys", check_list_max_keys, {}),
    Check("list_v1", check_list_v1, {MILVUS_235: "the C++ PreCheck's ListObjects (V1) at start"}),
    Check("multipart", check_multipart,
          {MILVUS_235: "objects of 16 MiB and more (minio-go multipart, streaming-signed parts)",
           MILVUS_26: "the same, and storage v2 writes Parquet by multipart upload"}),
    Check("range_get", check_range_get, {MILVUS_26: "storage v2 reads Parquet by byte range"}),
    Check("range_edge_cases", check_range_edge_cases, {}),
    Check("conditional_put", check_conditional_put,
          {MILVUS_26: "Woodpecker (its WAL on object storage) fences with If-None-Match: *"}),
    Check("user_metadata", check_user_metadata, {MILVUS_26: "Woodpecker marks fence objects with x-amz-meta-fenced"}),
    Check("delete_objects_md5", check_delete_objects_md5, {}),
    Check("delete_objects_crc32", check_delete_objects_crc32, {}),
    Check("checksum_crc32", check_checksum_crc32, {}),
    Check("checksum_crc64nvme", check_checksum_crc64nvme, {}),
)
CHECK_NAMES = tuple(c.name for c in CHECKS)


def run_check(check: Check, p: Probe, secrets_: list[str]) -> CheckResult:
    """One check, its time and how it ended; never raises for what the store answered."""
    began = time.perf_counter()
    result = CheckResult(check.name, PASS, 0.0, needed_by=[t for t in TARGETS if t in check.needed_by])
    try:
        result.notes = check.run(p)
    except Mismatch as err:
        result.outcome, result.detail, result.notes = err.outcome, str(err), err.notes
        if err.answer is not None:
            result.status, result.code, result.message = err.answer.status, err.answer.code, err.answer.message
    except ClientError as err:
        answer = Answer.of(err)
        result.outcome, result.detail = classify(answer), f"{err.operation_name} refused: {answer}"
        result.status, result.code, result.message = answer.status, answer.code, answer.message
    except Exception as err:   # no answer, or one a client could not read: a failure with its cause
        result.outcome, result.detail = FAIL, f"{type(err).__name__}: {' '.join(str(err).split())[:2 * MESSAGE_CHARS]}"
    result.seconds = round(time.perf_counter() - began, 3)
    result.detail, result.message = redact(result.detail, secrets_), redact(result.message, secrets_)
    result.notes = [redact(n, secrets_) for n in result.notes]
    return result


def _empty_bucket(p: Probe) -> None:
    """Delete every key written or listed and abort every open upload (errors on the way are left to
    the recount that follows)."""
    try:
        listed = set(_keys(p.listing()))
    except Exception:
        listed = set()
    with ThreadPoolExecutor(WRITERS) as pool:
        for _ in pool.map(lambda k: p.answer(lambda: p.plain.delete_object(Bucket=p.bucket, Key=k)),
                          sorted(p.written | listed)):
            pass
    for upload in p.plain.list_multipart_uploads(Bucket=p.bucket).get("Uploads", []):
        p.answer(lambda: p.plain.abort_multipart_upload(Bucket=p.bucket, Key=upload["Key"], UploadId=upload["UploadId"]))


def check_store(store: S3Endpoint, name: str = "", description: str = "") -> StoreConformance:
    """Run every check against a running store in a bucket of their own, then remove that bucket and
    everything in it. ``store``: a providers ObjectStore, or anything with endpoint_url, access_key and
    secret_key; ``name`` defaults to its backend's name, else its endpoint."""
    backend = getattr(store, "backend", None)
    record = StoreConformance(store=name or (backend.name if backend else store.endpoint_url),
                              endpoint=store.endpoint_url, description=description or (backend.description if backend else ""),
                              started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    secrets_ = [store.access_key, store.secret_key]
    began = time.perf_counter()
    p = Probe(store, f"msbench-conformance-{secrets.token_hex(4)}")
    try:
        p.plain.create_bucket(Bucket=p.bucket)
    except Exception as err:
        record.error = redact(f"could not create the check's bucket: {type(err).__name__}: {err}", secrets_)
        record.seconds = round(time.perf_counter() - began, 3)
        return record
    try:
        record.checks = [run_check(check, p, secrets_) for check in CHECKS]
    finally:
        try:
            _empty_bucket(p)
            record.leftover_objects = len(_keys(p.listing()))
            record.leftover_uploads = len(p.plain.list_multipart_uploads(Bucket=p.bucket).get("Uploads", []))
            p.plain.delete_bucket(Bucket=p.bucket)
            record.bucket_removed = p.answer(lambda: p.plain.head_bucket(Bucket=p.bucket)).status == 404
        except Exception as err:
            record.cleanup_error = redact(f"{type(err).__name__}: {err}", secrets_)
        record.seconds = round(time.perf_counter() - began, 3)
    return record


def check_backend(backend: BackendDef, work: Path, user: UserConfig | None = None,
                  timeout: float = 240.0) -> StoreConformance:
    """Start ``backend``'s store alone, natively, under ``work`` (its data and logs), check it, stop it.
    A store that does not start gives a record with ``error`` (and the tail of its log)."""
    store = make_store(backend, work / "store", work / "logs", user)
    try:
        try:
            store.start(timeout)
        except Exception as err:
            logs = sorted((work / "logs").rglob("*.log"), key=lambda f: f.stat().st_mtime)
            tail = logs[-1].read_text(errors="replace")[-500:] if logs else ""
            return StoreConformance(store=backend.name, endpoint=store.endpoint_url, description=backend.description,
                                    error=redact(f"did not start: {type(err).__name__}: {err}; log: {tail}",
                                                 [store.access_key, store.secret_key]))
        return check_store(store, backend.name)
    finally:
        store.stop(fast=True)


# -- records out ---------------------------------------------------------------------------------

def fitness(record: StoreConformance, target: str) -> Fitness:
    """Whether the store can back ``target`` (one of TARGETS): every check that Milvus depends on ran and
    passed. Each reason names the check, what in Milvus needs it, and what the store answered."""
    needs = {c.name: c.needed_by[target] for c in CHECKS if target in c.needed_by}
    reasons = [f"not checked: {record.error}"] if record.error else []
    for name, why in needs.items():
        found = record.result(name)
        if found is None:
            reasons.append(f"{name}: not run ({why})")
        elif found.outcome != PASS:
            reasons.append(f"{name} {found.outcome} ({why}): {found.detail}")
    return Fitness(target, not reasons, tuple(reasons))


def to_frame(records: Iterable[StoreConformance]) -> pd.DataFrame:
    """One row per store and check: the table a run embeds (CSV) and the report reads."""
    rows = [{"store": r.store, "check": c.name, "outcome": c.outcome, "seconds": c.seconds,
             "needed_by": "; ".join(c.needed_by), "status": c.status, "code": c.code, "message": c.message,
             "detail": c.detail, "notes": "; ".join(c.notes)} for r in records for c in r.checks]
    return pd.DataFrame(rows, columns=["store", "check", "outcome", "seconds", "needed_by", "status", "code",
                                       "message", "detail", "notes"])


def default_folder() -> Path:
    """Where ``msbench stores check`` keeps its records unless told: data/conformance/<UTC time>."""
    return Path("data/conformance") / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def save(records: list[StoreConformance], folder: Path) -> tuple[Path, Path]:
    """conformance.json (the full records) and conformance.csv (one row per store and check) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path_json, path_csv = folder / "conformance.json", folder / "conformance.csv"
    atomic_write_text(path_json, json.dumps([r.to_dict() for r in records], indent=1) + "\n")
    atomic_write_text(path_csv, to_frame(records).to_csv(index=False))
    return path_json, path_csv


def load(source: Path | str | list) -> list[StoreConformance]:
    """Records from conformance.json, its parsed content, or records already."""
    data = json.loads(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    return [r if isinstance(r, StoreConformance) else StoreConformance.from_dict(r) for r in data]
