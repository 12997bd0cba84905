"""The S3 conformance check against every store built here, each started alone (no Milvus): the
record is complete, MinIO passes everything Milvus 2.3.5 needs, and the check leaves nothing in the
store. Then data integrity against one store: objects written under a packet capture are read back
and judged against it, and an object changed behind the capture's back is named."""
from __future__ import annotations

import os
import time

import pytest

from msbench.measure import conformance, traffic
from msbench.measure.integrity import integrity
from msbench.providers import registry
from msbench.providers.s3 import s3_client

from ..conftest import store_alone

pytestmark = pytest.mark.integration

STORES = ["minio", "seaweedfs", "ceph-rgw", "garage", "rustfs"]
# tcpdump, stopped, writes what it has read: packets still in the kernel's buffer are lost (and not
# counted as dropped); a trial stops its capture long after Milvus's last write, this test right after.
CAPTURE_DRAIN_S = 1.0


@pytest.fixture
def running_store(scratch, request):
    """The named backend's store, started alone in the test's scratch area, stopped afterwards."""
    with registry.scratch_dir(f"msbench-check-{request.param}-", os.environ["MSBENCH_WORK_DIR"]) as work:
        with store_alone(request.param, work, 240) as store:
            yield store


@pytest.mark.parametrize("running_store", STORES, indirect=True)
def test_conformance_record_is_complete_and_nothing_is_left_behind(running_store):
    name = running_store.backend.name
    s3 = s3_client(running_store)
    before = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    record = conformance.check_store(running_store, name, running_store.backend.description)
    print("\n" + "\n".join(f"{name} {c.name}: {c.outcome} in {c.seconds:.2f} s {c.detail} {c.notes}"
                           for c in record.checks))

    assert record.error == "" and record.cleanup_error == ""
    assert [c.name for c in record.checks] == list(conformance.CHECK_NAMES)
    for check in record.checks:
        assert check.outcome in (conformance.PASS, conformance.FAIL, conformance.UNSUPPORTED)
        assert check.seconds > 0
        assert check.outcome == conformance.PASS or check.detail, f"{check.name}: {check.outcome} without a reason"
    assert record.leftover_objects == 0 and record.leftover_uploads == 0 and record.bucket_removed
    assert {b["Name"] for b in s3.list_buckets().get("Buckets", [])} == before, "a bucket was left behind"
    assert running_store.access_key not in str(record.to_dict())
    if name == "minio":
        verdict = conformance.fitness(record, conformance.MILVUS_235)
        assert verdict.fit, verdict.reasons


@pytest.mark.parametrize("running_store", ["seaweedfs"], indirect=True)
def test_integrity_reads_back_what_the_capture_saw_written(running_store, scratch):
    missing = traffic.missing_prerequisite()
    if missing:
        pytest.skip(f"prerequisite missing for the capture: {missing}")
    s3, bucket = s3_client(running_store), "msbench-integrity"
    s3.create_bucket(Bucket=bucket)
    objects = {f"files/insert_log/1/{i}": os.urandom(size) for i, size in enumerate((1, 4096, 300_000))}
    parts = [os.urandom(5 << 20), os.urandom(1234)]
    capture = traffic.Capture("lo", running_store.port, scratch / "tmp" / "s3.pcap").start()
    try:
        for key, body in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        upload = s3.create_multipart_upload(Bucket=bucket, Key="files/index_files/big")["UploadId"]
        etags = [s3.upload_part(Bucket=bucket, Key="files/index_files/big", UploadId=upload, PartNumber=n,
                                Body=part)["ETag"] for n, part in enumerate(parts, 1)]
        s3.complete_multipart_upload(Bucket=bucket, Key="files/index_files/big", UploadId=upload, MultipartUpload={
            "Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]})
        time.sleep(CAPTURE_DRAIN_S)
    finally:
        capture.stop()
    written, facts = traffic.parse_capture(capture.path, running_store.port, bucket)
    capture.path.unlink()
    capture.path.with_suffix(".err").unlink()
    assert facts["unparsed_messages"] == 0, facts

    def listing() -> dict[str, int]:
        return {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}

    report = integrity(s3, bucket, listing(), written)
    assert report.objects == 4 and report.bytes_read == sum(map(len, objects.values())) + sum(map(len, parts))
    assert (report.read_errors, report.differs_from_listing, report.differs_from_capture, report.unseen_in_capture,
            report.etag_mismatches) == (0, 0, 0, 0, 0), report.problems

    s3.put_object(Bucket=bucket, Key="files/insert_log/1/1", Body=b"shorter")   # behind the capture's back
    report = integrity(s3, bucket, listing(), written)
    assert report.differs_from_capture == 1 and report.differs_from_listing == 0
    assert report.problems == ["files/insert_log/1/1: Milvus wrote 4096 B, read 7 B"]
