"""The S3 request accounting's pure logic, on pcap files written here byte by byte (the
integration test checks it against a real Milvus and a real bucket)."""
from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest

from msbench.measure import traffic

PORT = 9000
BUCKET = "milvus-bucket"
MINIO_GO = "MinIO (linux; amd64) minio-go/v7.0.56"


class Pcap:
    """Ethernet/IPv4/TCP frames as tcpdump writes them, truncated to a snap length."""

    def __init__(self, snaplen: int = traffic.SNAPLEN):
        self.snaplen, self.frames, self.seq = snaplen, [], {}

    def send(self, t: float, client_port: int, to_server: bool, payload: bytes, seq: int | None = None,
             flags: int = 0x18) -> None:
        key = (client_port, to_server)
        start = self.seq.get(key, 1000) if seq is None else seq
        self.seq[key] = max(self.seq.get(key, 1000), start + len(payload))
        sport, dport = (client_port, PORT) if to_server else (PORT, client_port)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, start, 0, 5 << 4, flags, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0, 64, 6, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        frame = b"\0" * 12 + b"\x08\x00" + ip + tcp + payload
        self.frames.append((t, frame[:self.snaplen], len(frame)))

    def write(self, path) -> None:
        with open(path, "wb") as fh:
            fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, self.snaplen, 1))
            for t, data, length in self.frames:
                fh.write(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)), len(data), length))
                fh.write(data)


def request(method: str, target: str, body: int = 0, agent: str = MINIO_GO, extra: str = "") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nUser-Agent: {agent}\r\n" \
           f"Authorization: AWS4-HMAC-SHA256 Credential=msbSECRETKEY/20261127/us-east-1/s3/aws4_request\r\n"
    if body:
        head += f"Content-Length: {body}\r\n"
    return (head + extra + "\r\n").encode()


def response(status: str, body: int = 0, text: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {body or len(text)}\r\n\r\n{text}".encode()


def parse(tmp_path, pcap: Pcap) -> pd.DataFrame:
    pcap.write(tmp_path / "c.pcap")
    table, facts = traffic.parse_capture(tmp_path / "c.pcap", PORT, BUCKET)
    assert facts["unparsed_messages"] == 0
    return table


def test_keep_alive_requests_bodies_and_times(tmp_path):
    pcap = Pcap()
    key = f"/{BUCKET}/files/insert_log/1/2/3/100/4"
    pcap.send(10.0, 50000, True, request("PUT", key, body=70_000))
    for i in range(2):   # a body larger than one segment, truncated by the snap length
        pcap.send(10.001 + i / 1000, 50000, True, bytes(35_000))
    pcap.send(10.010, 50000, False, response("200 OK"))
    pcap.send(10.020, 50000, True, request("GET", key, extra="Range: bytes=0-99\r\n"))
    pcap.send(10.025, 50000, False, response("206 Partial Content", body=100) + bytes(100))
    table = parse(tmp_path, pcap)
    put, get = table.iloc[0], table.iloc[1]
    assert (put["operation"], put["prefix"], put["key"]) == ("PUT", "insert_log", key[len(BUCKET) + 2:])
    assert put["request_body_bytes"] == 70_000 and put["request_wire_bytes"] == 70_000 + len(request("PUT", key, 70_000))
    assert put["duration_ms"] == pytest.approx(10.0) and put["ttfb_ms"] == pytest.approx(8.0)
    assert (get["operation"], get["status"], get["response_body_bytes"]) == ("GET range", 206, 100)
    assert get["response_wire_bytes"] - get["response_body_bytes"] == len(response("206 Partial Content", 100))
    assert set(table["client"]) == {"milvus"}
    assert not table.astype(str).apply(lambda c: c.str.contains("SECRET")).any().any()


def test_retransmissions_are_counted_once_and_100_continue_keeps_the_request_open(tmp_path):
    pcap = Pcap()
    target = f"/{BUCKET}/files/index_files/9/1/2/3/HNSW_0?partNumber=1&uploadId=abc"
    head = request("PUT", target, body=5000, extra="Expect: 100-continue\r\n")
    pcap.send(1.0, 50001, True, head)
    pcap.send(1.001, 50001, True, head, seq=1000)   # the same bytes again
    pcap.send(1.002, 50001, False, b"HTTP/1.1 100 Continue\r\n\r\n")
    pcap.send(1.003, 50001, True, bytes(5000))
    pcap.send(1.004, 50001, False, response("200 OK"))
    table = parse(tmp_path, pcap)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["operation"] == "multipart part" and row["request_wire_bytes"] == len(head) + 5000
    assert row["query"] == "partNumber=1&uploadId"   # the part's number, never the store's upload token


def test_slowdown_and_the_retry_that_follows(tmp_path):
    pcap = Pcap()
    key = f"/{BUCKET}/files/stats_log/1/2/3/100/1"
    pcap.send(1.0, 50002, True, request("GET", key))
    pcap.send(1.1, 50002, False, response("503 Slow Down", text="<Error><Code>SlowDown</Code></Error>"))
    pcap.send(1.2, 50002, True, request("GET", key))
    pcap.send(1.3, 50002, False, response("200 OK", body=10) + bytes(10))
    table = traffic.assign_phases(parse(tmp_path, pcap), [("load_first", 0.5, 2.0)])
    assert list(table["retry"]) == [False, True]
    assert table["error_code"].iloc[0] == "SlowDown"
    row = traffic.summarize(table).set_index("operation").loc["GET"]
    assert (row["requests"], row["errors"], row["slowdowns"], row["retries"]) == (2, 1, 1, 1)


@pytest.mark.parametrize("method,target,headers,expected", [
    ("GET", f"/{BUCKET}?list-type=2&prefix=files/delta_log/", {}, ("LIST", "delta_log")),
    ("GET", f"/{BUCKET}/?location=", {}, ("bucket other", "other")),
    ("POST", f"/{BUCKET}/files/insert_log/a?uploads=", {}, ("multipart create", "insert_log")),
    ("POST", f"/{BUCKET}/files/insert_log/a?uploadId=x", {}, ("multipart complete", "insert_log")),
    ("POST", f"/{BUCKET}?delete=", {}, ("DELETE multi", "other")),
    ("DELETE", f"/{BUCKET}/files/insert_log/a?uploadId=x", {}, ("multipart abort", "insert_log")),
    ("PUT", f"/{BUCKET}/files/stats_log/b", {"x-amz-copy-source": "/x/y"}, ("COPY", "stats_log")),
    ("PUT", f"/{BUCKET}", {}, ("create bucket", "other")),
    ("HEAD", f"/{BUCKET}/files/index_files/c", {}, ("HEAD", "index_files")),
])
def test_operations_and_prefixes(method, target, headers, expected):
    from urllib.parse import parse_qsl, urlsplit

    url = urlsplit(target)
    key = url.path[len(BUCKET) + 2:]
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    assert (traffic.classify(method, key, query, headers), traffic.prefix_of(key, query)) == expected


def test_other_clients_and_presigned_credentials(tmp_path):
    pcap = Pcap()
    pcap.send(1.0, 50003, True, request("GET", f"/{BUCKET}/k?X-Amz-Credential=msbKEY&X-Amz-Signature=s",
                                        agent="Boto3/1.35"))
    pcap.send(1.1, 50003, False, response("200 OK", body=4) + b"abcd")
    table = parse(tmp_path, pcap)
    assert table["client"].iloc[0] == "other" and table["query"].iloc[0] == ""
    assert traffic.summarize(traffic.assign_phases(table, [])).empty   # ours is not Milvus's


def test_a_request_left_unanswered_and_a_response_without_its_request(tmp_path):
    pcap = Pcap()
    pcap.send(1.0, 50004, False, response("200 OK"))            # its request came before the capture
    pcap.send(1.1, 50004, True, request("HEAD", f"/{BUCKET}/x"))
    pcap.write(tmp_path / "c.pcap")
    table, facts = traffic.parse_capture(tmp_path / "c.pcap", PORT, BUCKET)
    assert facts["responses_without_request"] == 1
    assert np.isnan(table["status"].iloc[0]) and np.isnan(table["duration_ms"].iloc[0])
    summary = traffic.summarize(traffic.assign_phases(table, [("flush", 0.0, 5.0)]))
    assert tuple(summary.set_index("operation").loc["HEAD", ["errors", "unanswered"]]) == (0, 1)


def test_busy_seconds_and_peak_concurrency():
    rows = pd.DataFrame({"client": "milvus", "phase": "load_first", "method": "GET", "operation": "GET",
                         "start": [0.0, 0.5, 2.0, 2.1, 2.2], "end": [1.0, 1.5, 2.5, 2.6, 2.3],
                         "status": 200.0, "error_code": "", "retry": False, "request_body_bytes": 0.0,
                         "response_body_bytes": 10.0, "duration_ms": 1.0, "ttfb_ms": 1.0})
    assert traffic.peak_concurrency(rows) == 3
    all_ops = traffic.summarize(rows).set_index("operation").loc["all"]
    assert all_ops["busy_s"] == pytest.approx(1.5 + 0.6) and all_ops["span_s"] == pytest.approx(2.6)
    assert all_ops["bytes_received"] == 50


def test_a_loads_reads_span_from_its_load_call_and_leave_the_gc_out():
    """The cold load's restart GETs (before load() was sent) and the GC's LISTs are not the load's reads."""
    rows = pd.DataFrame({"client": "milvus", "phase": ["load_first"] * 4 + ["load_cold"] * 3,
                         "method": ["HEAD", "GET", "GET", "GET", "GET", "GET", "GET"],
                         "operation": ["HEAD", "GET", "GET", "LIST", "GET", "GET", "GET"],
                         "prefix": ["index_files", "index_files", "stats_log", "insert_log", "index_files",
                                    "stats_log", "other"],   # a LIST's prefix is its query's
                         "start": [10.2, 10.25, 10.6, 11.0, 19.0, 20.5, 20.6],
                         "end": [10.21, 10.4, 10.9, 13.0, 19.1, 21.0, 20.7],
                         "response_body_bytes": [0.0, 100.0, 10.0, 1.0, 5.0, 100.0, 10.0]})
    got = {(p, m): v for p, m, v, _ in traffic.load_reads(rows, {"load_first": 10.0, "load_cold": 20.0})}
    assert got[("load_first", "load_first_s3_span_s")] == pytest.approx(0.7)
    assert got[("load_first", "load_first_s3_busy_s")] == pytest.approx(0.01 + 0.15 + 0.3)
    assert got[("load_first", "load_first_s3_read_bytes")] == 110
    assert got[("load_first", "load_first_s3_first_read_s")] == pytest.approx(0.2)
    assert got[("load_cold", "load_cold_s3_span_s")] == pytest.approx(0.5)
    assert got[("load_cold", "load_cold_s3_read_bytes")] == 100
    assert not any(p == "load_warm" for p, _ in got)


def test_phase_windows_assign_by_first_byte():
    table = pd.DataFrame({"start": [1.0, 2.5, 9.0]})
    phases = traffic.assign_phases(table, [("flush", 0.0, 2.0), ("index", 2.0, 3.0)])["phase"]
    assert list(phases) == ["flush", "index", traffic.BETWEEN]


def test_not_a_pcap(tmp_path):
    (tmp_path / "x.pcap").write_bytes(b"not a capture at all, no")
    with pytest.raises(ValueError, match="not a pcap"):
        list(traffic.read_segments(tmp_path / "x.pcap", PORT))


def test_a_client_port_used_again_is_a_new_connection(tmp_path):
    """Loopback reuses a closed connection's port at once (tcp_tw_reuse): its SYN starts a new
    connection, whose sequence numbers start anew, instead of being taken for retransmissions."""
    pcap = Pcap()
    for t, seq in ((1.0, 1000), (2.0, 500)):   # the second connection's numbers lie below the first's
        pcap.send(t, 50005, True, b"", seq=seq - 1, flags=0x02)
        pcap.send(t + 0.1, 50005, True, request("GET", f"/{BUCKET}/a"), seq=seq)
        pcap.send(t + 0.2, 50005, False, response("200 OK", body=3) + b"abc", seq=seq)
    table = parse(tmp_path, pcap)
    assert len(table) == 2 and table["conn"].nunique() == 2


def test_what_a_replay_needs_is_kept_and_no_token(tmp_path):
    """A listing's prefix (as its key), the query values a replay needs (never an upload's token),
    and the object's whole size where a response states it."""
    pcap = Pcap()
    pcap.send(1.0, 50006, True, request("GET", f"/{BUCKET}/?delimiter=%2F&list-type=2&prefix=files%2Finsert_log%2F"
                                               f"&continuation-token=T0KEN"))
    pcap.send(1.1, 50006, False, response("200 OK", text="<ListBucketResult/>"))
    pcap.send(1.2, 50006, True, request("GET", f"/{BUCKET}/files/insert_log/1", extra="Range: bytes=10-19\r\n"))
    pcap.send(1.3, 50006, False, b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n"
                                 b"Content-Range: bytes 10-19/4096\r\n\r\n" + bytes(10))
    pcap.send(1.4, 50006, True, request("HEAD", f"/{BUCKET}/files/insert_log/1"))
    pcap.send(1.5, 50006, False, b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n")
    pcap.send(1.6, 50006, True, request("PUT", f"/{BUCKET}/files/index_files/2?partNumber=3&uploadId=UPL0AD", body=5))
    pcap.send(1.61, 50006, True, bytes(5))
    pcap.send(1.7, 50006, False, response("200 OK"))
    table = parse(tmp_path, pcap)
    listing, ranged, head, part = (table.iloc[i] for i in range(4))
    assert (listing["operation"], listing["key"]) == ("LIST", "files/insert_log/")
    assert listing["query"] == "continuation-token&delimiter=/&list-type=2&prefix"
    assert (ranged["object_bytes"], head["object_bytes"], head["response_body_bytes"]) == (4096, 4096, 0)
    assert part["query"] == "partNumber=3&uploadId" and np.isnan(part["object_bytes"])
    assert not table.astype(str).apply(lambda c: c.str.contains("T0KEN|UPL0AD")).any().any()
