"""The conformance check's rules (measure.conformance), its report tables and the integrity judge,
on plain data: how answers are classified, what a ranged GET must return, which store is fit to
back which Milvus, and what counts as an object the store did not keep."""
from __future__ import annotations

import base64
import hashlib
import math
import zlib

import pandas as pd
import pytest
from botocore.exceptions import ClientError

from msbench.measure import conformance as c
from msbench.measure.integrity import ObjectRead, judge, written_sizes
from msbench.report.conformance import FLAG, as_text, check_matrix, conformance_table


def test_a_refusal_is_unsupported_only_when_the_store_says_so():
    assert c.classify(c.Answer(501, "NotImplemented")) == c.UNSUPPORTED
    assert c.classify(c.Answer(400, "NotImplemented")) == c.UNSUPPORTED
    assert c.classify(c.Answer(403, "AccessDenied")) == c.FAIL
    assert c.classify(c.Answer(None)) == c.FAIL


def test_an_answer_is_read_from_botocore_s_error():
    err = ClientError({"Error": {"Code": "PreconditionFailed", "Message": "At least one of the\n  pre-conditions"},
                       "ResponseMetadata": {"HTTPStatusCode": 412}}, "PutObject")
    answer = c.Answer.of(err)
    assert answer == c.Answer(412, "PreconditionFailed", "At least one of the pre-conditions")
    assert not answer.ok and c.Answer(204).ok
    assert str(answer) == "412 PreconditionFailed (At least one of the pre-conditions)"


@pytest.mark.parametrize("first, second, kept, outcome, says", [
    (c.Answer(200), c.Answer(412, "PreconditionFailed"), True, c.PASS, ""),
    (c.Answer(200), c.Answer(200), False, c.FAIL, "ignored If-None-Match: * on an existing key: answered 200 and overwrote"),
    (c.Answer(200), c.Answer(200), True, c.FAIL, "ignored If-None-Match"),
    (c.Answer(200), c.Answer(412), False, c.FAIL, "answered 412 but the object was overwritten"),
    (c.Answer(501, "NotImplemented"), c.Answer(None), None, c.UNSUPPORTED, "on a new key refused: 501"),
    (c.Answer(200), c.Answer(501, "NotImplemented"), True, c.UNSUPPORTED, "expected 412, got 501"),
    (c.Answer(200), c.Answer(400, "InvalidArgument"), True, c.FAIL, "expected 412, got 400 InvalidArgument"),
])
def test_conditional_put_passes_only_on_412_with_the_first_object_kept(first, second, kept, outcome, says):
    got, detail = c.judge_conditional_put(first, second, kept)
    assert got == outcome
    assert says in detail


@pytest.mark.parametrize("size, spec, expected", [
    (100, "bytes=0-9", (0, 9)), (100, "bytes=99-99", (99, 99)), (100, "bytes=90-200", (90, 99)),
    (100, "bytes=50-", (50, 99)), (100, "bytes=-10", (90, 99)), (100, "bytes=-1000", (0, 99)),
    (100, "bytes=100-110", None), (100, "bytes=-0", None), (1, "bytes=0-0", (0, 0)), (0, "bytes=-5", None),
])
def test_the_bytes_a_range_selects(size, spec, expected):
    assert c.expected_range(size, spec) == expected


@pytest.mark.parametrize("spec", ["bytes=-", "bytes=1-2,4-5", "items=0-1"])
def test_a_range_that_is_not_one_byte_range_is_refused(spec):
    with pytest.raises(ValueError):
        c.expected_range(10, spec)


DATA = bytes(range(256)) * 4   # 1,024 bytes, every offset recognisable


@pytest.mark.parametrize("spec, status, body, content_range, says", [
    ("bytes=10-19", 206, DATA[10:20], "bytes 10-19/1024", ""),
    ("bytes=1000-1100", 206, DATA[1000:], "bytes 1000-1023/1024", ""),
    ("bytes=1024-1030", 416, b"", "", ""),
    ("bytes=10-19", 206, DATA[10:15], "bytes 10-19/1024", "5 B returned, 10 expected"),
    ("bytes=10-19", 206, DATA[10:18] + b"\0\0", "bytes 10-19/1024", "wrong bytes from offset 18"),
    ("bytes=10-19", 200, DATA, "", "expected 206, got 200 with 1024 B (the whole object: the range was ignored)"),
    ("bytes=10-19", 206, DATA[10:20], "bytes 10-19/*", "Content-Range 'bytes 10-19/*'"),
    ("bytes=1024-1030", 200, DATA, "", "expected 416, got 200 with 1024 B (the whole object"),
    ("bytes=1024-1030", 206, b"", "", "expected 416, got 206 with 0 B"),
])
def test_a_ranged_answer_is_judged_on_status_bytes_and_content_range(spec, status, body, content_range, says):
    found = c.judge_range(DATA, spec, status, body, content_range)
    assert (found == "") if not says else (says in found), found


def test_the_range_cases_cover_start_middle_end_and_past_the_end():
    size = 8 * c.MIB + 3
    for spec in [*c.range_specs(size).values(), *c.edge_specs(size).values()]:
        c.expected_range(size, spec)   # each one is a valid single range
    assert c.expected_range(size, c.edge_specs(size)["past the end"]) is None
    first, last = c.expected_range(size, c.range_specs(size)["middle"])
    assert last - first == c.MIB and first // c.MIB != last // c.MIB   # crosses a MiB boundary
    assert c.expected_range(1, c.range_specs(1)["middle"]) == (0, 0)


def test_checksum_headers_are_the_big_endian_checksum_in_base64():
    assert c.crc64nvme(b"123456789") == 0xAE8B14860A799888   # the CRC-64/NVME check value
    assert c.crc64nvme(b"") == 0
    assert c.checksum_header(zlib.crc32(b"hello"), 4) == base64.b64encode(bytes.fromhex("3610a686")).decode()


def test_a_multipart_etag_is_the_md5_of_the_part_md5s_and_their_count():
    parts = [b"a" * 10, b"b" * 3]
    inner = hashlib.md5(hashlib.md5(parts[0]).digest() + hashlib.md5(parts[1]).digest()).hexdigest()
    assert c.multipart_etag(parts) == f'"{inner}-2"'


def _record(store: str = "s", **outcomes: str) -> c.StoreConformance:
    """A record in which every check passed but those named (name=outcome)."""
    checks = [c.CheckResult(k.name, outcomes.get(k.name, c.PASS), 0.1, detail=f"{k.name} went wrong"
                            if outcomes.get(k.name, c.PASS) != c.PASS else "",
                            needed_by=[t for t in c.TARGETS if t in k.needed_by]) for k in c.CHECKS]
    return c.StoreConformance(store, "http://127.0.0.1:1", checks=checks, leftover_objects=0, leftover_uploads=0,
                              bucket_removed=True)


def test_a_store_that_passes_everything_can_back_both():
    record = _record()
    assert all(c.fitness(record, t).fit for t in c.TARGETS)


def test_failures_no_milvus_depends_on_leave_a_store_fit():
    record = _record(checksum_crc64nvme=c.UNSUPPORTED, delete_objects_md5=c.FAIL, list_start_after=c.FAIL,
                     range_edge_cases=c.FAIL)
    assert all(c.fitness(record, t).fit for t in c.TARGETS)


def test_woodpecker_s_needs_decide_2_6_only():
    verdict = {t: c.fitness(_record(conditional_put=c.FAIL), t) for t in c.TARGETS}
    assert verdict[c.MILVUS_235].fit and not verdict[c.MILVUS_26].fit
    assert verdict[c.MILVUS_26].reasons == ("conditional_put fail (Woodpecker (its WAL on object storage) fences "
                                            "with If-None-Match: *): conditional_put went wrong",)


@pytest.mark.parametrize("name", ["list_pagination", "put_streaming_signed", "put_md5_signed", "read_after_write", "list_v1"])
def test_a_check_2_3_5_depends_on_makes_the_store_unfit_for_it(name):
    verdict = c.fitness(_record(**{name: c.FAIL}), c.MILVUS_235)
    assert not verdict.fit and verdict.reasons[0].startswith(f"{name} fail (")


def test_a_check_not_run_or_a_store_not_checked_is_not_fit():
    partial = _record()
    partial.checks = [k for k in partial.checks if k.name != "multipart"]
    assert c.fitness(partial, c.MILVUS_235).reasons[0].startswith("multipart: not run")
    broken = c.StoreConformance("x", "http://127.0.0.1:1", error="did not start: boom")
    assert c.fitness(broken, c.MILVUS_26).reasons[0] == "not checked: did not start: boom"


def test_records_round_trip_through_json_and_csv(tmp_path):
    records = [_record("a", multipart=c.FAIL), c.StoreConformance("b", "http://127.0.0.1:2", error="no")]
    records[0].checks[0].notes = ["a note"]
    path_json, path_csv = c.save(records, tmp_path / "out")
    assert c.load(path_json) == records
    table = pd.read_csv(path_csv)
    assert len(table) == len(c.CHECKS) and set(table["store"]) == {"a"}
    assert table.set_index("check").loc["multipart", "outcome"] == c.FAIL


def test_the_report_flags_a_store_unfit_for_2_3_5_and_says_why():
    records = [_record("good"), _record("bad", list_pagination=c.FAIL), _record("old", conditional_put=c.FAIL)]
    table = conformance_table([r.to_dict() for r in records]).set_index("store")
    assert table.loc["good", c.MILVUS_235] == "yes" and table.loc["good", c.MILVUS_26] == "yes"
    assert table.loc["bad", c.MILVUS_235] == FLAG and "list_pagination fail" in table.loc["bad", f"why not ({c.MILVUS_235})"]
    assert table.loc["old", c.MILVUS_235] == "yes" and table.loc["old", c.MILVUS_26] == FLAG
    assert table.loc["good", "left in the store"] == "nothing"
    matrix = check_matrix(records).set_index("store")
    assert matrix.loc["bad", "list_pagination"] == "FAIL" and matrix.loc["good", "multipart"] == "pass"
    assert matrix.loc["needed by Milvus", "conditional_put"] == "2.6"
    assert matrix.loc["needed by Milvus", "list_v1"] == "2.3.5"
    assert "bad list_pagination fail: list_pagination went wrong" in as_text(records)


def _writes(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["start", "key", "operation", "status", "request_body_bytes"])


def test_the_size_written_is_the_last_successful_put_or_the_parts_of_the_last_upload():
    written = _writes(
        (1, "a", "PUT", 200, 10.0), (2, "a", "PUT", 200, 12.0),           # overwritten: the last counts
        (1, "b", "PUT", 500, 99.0), (2, "b", "PUT", 200, 7.0),            # a failed try, then its retry
        (1, "m", "multipart create", 200, 0.0), (2, "m", "multipart part", 200, 5.0),
        (3, "m", "multipart part", 503, 6.0), (4, "m", "multipart part", 200, 6.0),
        (5, "m", "multipart complete", 200, 100.0),
        (1, "n", "PUT", 200, math.nan),                                      # no length on the wire
        (1, "o", "multipart create", 200, 0.0), (2, "o", "multipart part", 200, 5.0),   # never completed
        (1, "g", "GET", 200, 0.0))
    assert written_sizes(written) == {"a": 12, "b": 7, "m": 11, "n": None}


def test_integrity_counts_and_names_what_the_store_did_not_keep():
    md5 = hashlib.md5(b"x" * 4).hexdigest()
    reads = [ObjectRead("ok", 4, 4, f'"{md5}"', md5),
             ObjectRead("short", 10, 8, '"abc-2"', "f"),                  # listed 10, served 8
             ObjectRead("gone", 5, None, error="404 NoSuchKey"),
             ObjectRead("wrote-more", 4, 4, "", "e"),                     # the capture saw 6 written
             ObjectRead("unseen", 3, 3, "", "e"),                         # the capture saw no write
             ObjectRead("corrupt", 4, 4, f'"{md5}"', "0" * 32)]
    report = judge(reads, {"ok": 4, "short": 10, "gone": 5, "wrote-more": 6, "corrupt": 4})
    assert (report.objects, report.read_errors, report.differs_from_listing, report.differs_from_capture,
            report.unseen_in_capture, report.etag_mismatches) == (6, 1, 1, 2, 1, 1)
    assert report.bytes_listed == 30 and report.bytes_read == 23
    assert "short: listed 10 B, read 8 B" in report.problems
    assert "gone: read failed (404 NoSuchKey)" in report.problems
    assert "wrote-more: Milvus wrote 6 B, read 4 B" in report.problems
    rows = {metric: value for _, metric, value, _ in report.rows()}
    assert rows["integrity_read_errors"] == 1 and rows["integrity_size_differs_from_capture"] == 2


def test_without_a_capture_only_the_listing_is_judged():
    report = judge([ObjectRead("a", 4, 4), ObjectRead("b", 4, 3)], None)
    assert not report.capture_available and report.differs_from_listing == 1
    rows = {metric: value for _, metric, value, _ in report.rows()}
    assert math.isnan(rows["integrity_size_differs_from_capture"]) and math.isnan(rows["integrity_unseen_in_capture"])
