"""One S3 connection for the replay: HTTP/1.1 keep-alive, path-style, AWS Signature V4.

Not boto3 (providers.s3): a replay must own its connections (one per connection of the trace,
requests on it strictly in order, never a second one opened behind its back), make no retries
(a retry would change the request count it reproduces) and cost little CPU per request (the
client shares the machine's two cores with the store; boto3 spends about a millisecond of Python
per call). The payload is signed as ``UNSIGNED-PAYLOAD``, which every store here accepts, so a
PUT's body is never hashed. Keys never leave this module in a message: errors name the
operation and the connection, not the path.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import socket
from dataclasses import dataclass
from urllib.parse import quote

UNSIGNED = "UNSIGNED-PAYLOAD"
READ_CHUNK = 1 << 20
TIMEOUT_S = 120.0
USER_AGENT = "msbench-replay"   # not Milvus's: measure.traffic counts it as another client


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))


def sign(method: str, host: str, path: str, params: dict[str, str], creds: Credentials,
         when: dt.datetime) -> dict[str, str]:
    """The headers that authenticate one request (SigV4 over host, x-amz-content-sha256, x-amz-date)."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"host": host, "x-amz-content-sha256": UNSIGNED, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, quote(path, safe="/-_.~"), canonical_query(params),
                           *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, UNSIGNED])
    scope = f"{day}/{creds.region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + creds.secret_key).encode(), day), creds.region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    return headers


@dataclass
class Response:
    status: int
    body_bytes: int          # bytes of the body read (counted, kept only when asked)
    first_byte: float        # clock time the status line and headers had arrived
    headers: dict[str, str]
    body: bytes = b""


class S3Connection:
    """One persistent connection to ``host:port``; opened by :meth:`open`, reopened (and counted)
    only when the server closed it between requests."""

    def __init__(self, host: str, port: int, creds: Credentials, clock, timeout: float = TIMEOUT_S):
        self.host, self.port, self.creds, self.clock, self.timeout = host, port, creds, clock, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0
        self._buffer = bytearray(READ_CHUNK)

    def open(self) -> None:
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                body: bytes | memoryview = b"", keep_body: bool = False) -> Response:
        """Send one request and read its whole response; transport failures raise OSError or
        http.client.HTTPException (the caller records them)."""
        params = params or {}
        reused = self.conn is not None and self.conn.sock is not None
        if not reused:
            self._reopen()
        try:
            return self._exchange(method, path, params, headers or {}, body, keep_body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            # the server closed an idle keep-alive connection before it read the request (what Go's
            # client, Milvus's, does too): a new connection, the same request, counted
            self._reopen()
            return self._exchange(method, path, params, headers or {}, body, keep_body)

    def _reopen(self) -> None:
        if self.conn is not None:
            self.reconnects += 1
            self.close()
        self.open()

    def _exchange(self, method: str, path: str, params: dict[str, str], headers: dict[str, str],
                  body: bytes | memoryview, keep_body: bool) -> Response:
        host = f"{self.host}:{self.port}"
        signed = sign(method, host, path, params, self.creds, dt.datetime.now(dt.timezone.utc))
        target = quote(path, safe="/-_.~") + (f"?{canonical_query(params)}" if params else "")
        all_headers = {**signed, "user-agent": USER_AGENT, **headers}
        if body or method in ("PUT", "POST"):
            all_headers["content-length"] = str(len(body))
        self.conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in all_headers.items():
            self.conn.putheader(name, value)
        self.conn.endheaders(body if len(body) else None)
        resp = self.conn.getresponse()
        first = self.clock()
        kept, count = [], 0
        if method != "HEAD":
            while n := resp.readinto(self._buffer):
                count += n
                if keep_body:
                    kept.append(bytes(self._buffer[:n]))
        resp.close()
        if resp.will_close:
            self.close()
        return Response(resp.status, count, first, {k.lower(): v for k, v in resp.getheaders()}, b"".join(kept))
