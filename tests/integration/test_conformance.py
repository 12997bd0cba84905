"""The S3 conformance check against every store built here, each started alone (no Milvus): the
record is complete, MinIO passes everything Milvus 2.3.5 needs, the check leaves nothing in the store,
and the store's servers, traced by strace from start to stop, connected and sent to loopback only (no
update check, telemetry or name lookup of an outside host). Then data integrity against one store:
objects written under a packet capture are read back and judged against it, and an object changed
behind the capture's back is named."""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from msbench.backends import find_binary, load_backends
from msbench.measure import conformance, traffic
from msbench.measure.integrity import integrity
from msbench.providers import registry
from msbench.providers.s3 import s3_client

from ..conftest import processes_mentioning, store_alone

pytestmark = pytest.mark.integration

STORES = ["minio", "seaweedfs", "ceph-rgw", "garage", "rustfs"]
# tcpdump, stopped, writes what it has read: packets still in the kernel's buffer are lost (and not
# counted as dropped); a trial stops its capture long after Milvus's last write, this test right after.
CAPTURE_DRAIN_S = 1.0


# the servers of a Ceph RGW store (its set-up tools run before them, and only talk to its monitor)
CEPH_DAEMONS = ("ceph-mon", "ceph-osd", "radosgw")
NETWORK_CALLS = re.compile(r"\b(connect|sendto|sendmsg|bind)\(")
# the address a call sends to or binds (not one inside a netlink query's payload), and its IP
SOCKADDR = re.compile(r"\{sa_family=AF_INET6?, [^{}]*\}")
ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6?, "([^"]+)"')
PORT = re.compile(r"sin6?_port=htons\((\d+)\)")


def _traced(name: str, folder: Path, monkeypatch) -> Path:
    """The store's servers start under strace (their network calls logged in the returned folder):
    a wrapper per server, found first through the backend's binary variable or PATH."""
    if not shutil.which("strace"):
        pytest.skip("prerequisite missing: strace (scripts/setup installs it as root)")
    backend, wrappers, logs = load_backends()[name], folder / "traced", folder / "strace"
    wrappers.mkdir()
    logs.mkdir()
    servers = CEPH_DAEMONS if backend.launcher == "ceph" else (backend.binary,)
    for server in servers:
        real = shutil.which(server) if backend.launcher == "ceph" else find_binary(backend)
        if real is None:
            return logs   # store_alone skips, saying what is missing
        wrapper = wrappers / server
        # -D: the server keeps the wrapper's PID (strace traces it from a grandchild), so it is stopped
        # as it would be untraced, and strace ends with it
        wrapper.write_text(f"#!/bin/sh\nexec strace -D -f -qq --seccomp-bpf -e trace=connect,sendto,sendmsg,bind "
                           f"-e signal=none -o {logs / server}.log {real} \"$@\"\n")
        wrapper.chmod(0o755)
    if backend.binary_env:
        monkeypatch.setenv(backend.binary_env, str(wrappers / backend.binary))
    else:
        monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
    return logs


def outside_addresses(log: str) -> list[str]:
    """The calls of a strace log that reach beyond this host: a connect or send to an address that is not
    loopback (or unspecified, which Linux takes as this host), a bind of a port to one."""
    found = []
    for line in log.splitlines():
        call = NETWORK_CALLS.search(line)
        if not call:
            continue
        for sockaddr in SOCKADDR.findall(line):
            v4, v6 = ADDRESS.search(sockaddr).groups()
            ip = ipaddress.ip_address(v4 or v6)
            port = PORT.search(sockaddr)
            if call.group(1) == "bind":
                if not ip.is_loopback and port and port.group(1) != "0":
                    found.append(line)
            elif not (ip.is_loopback or ip.is_unspecified):
                found.append(line)
    return found


@pytest.fixture
def running_store(scratch, request, monkeypatch):
    """The named backend's store, started alone in the test's scratch area under strace, stopped
    afterwards; then nothing it did may have left this host."""
    with registry.scratch_dir(f"msbench-check-{request.param}-", os.environ["MSBENCH_WORK_DIR"]) as work:
        logs = _traced(request.param, scratch, monkeypatch)
        with store_alone(request.param, work, 240) as store:
            yield store
    deadline = time.monotonic() + 10
    while processes_mentioning(logs) and time.monotonic() < deadline:   # strace ends with what it traced
        time.sleep(0.1)
    written = {log.name: log.read_text(errors="replace") for log in logs.glob("*.log")}
    assert written and all(NETWORK_CALLS.search(text) for text in written.values()), f"strace saw nothing: {written}"
    outside = {name: found for name, text in written.items() if (found := outside_addresses(text))}
    assert not outside, f"{request.param} reached beyond loopback: {outside}"


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


def test_the_trace_reader_finds_what_leaves_the_host():
    """Lines as strace 6.1 writes them: what the guard above must flag, and what it must let pass."""
    passes = ['27709 bind(7, {sa_family=AF_INET6, sin6_port=htons(25134), sin6_flowinfo=htonl(0), '
              'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
              '1 connect(3, {sa_family=AF_INET, sin_port=htons(9000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
              '1 bind(3, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("0.0.0.0")}, 16) = 0',
              '1 sendto(3, [{nlmsg_len=17}], 17, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 17',
              # RustFS asks the kernel which route a documentation address would take (its own outward IP):
              # a netlink query, no packet
              '3 sendto(12, [{nlmsg_len=36, nlmsg_type=RTM_GETROUTE, nlmsg_flags=NLM_F_REQUEST}, {rtm_family=AF_INET}, '
              '[{nla_len=8, nla_type=RTA_DST}, inet_addr("192.0.2.0")]], 36, 0, NULL, 0) = 36']
    flagged = ['2 connect(9, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("140.82.112.3")}, 16) = '
               '-1 EINPROGRESS', '2 sendto(5, "\\1\\2", 40, MSG_NOSIGNAL, {sa_family=AF_INET, sin_port=htons(53), '
               'sin_addr=inet_addr("10.0.2.3")}, 16) = 40',
               '2 bind(4, {sa_family=AF_INET, sin_port=htons(9000), sin_addr=inet_addr("0.0.0.0")}, 16) = 0',
               '2 connect(6, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
               'inet_pton(AF_INET6, "2606:4700::1", &sin6_addr), sin6_scope_id=0}, 28) = 0']
    assert outside_addresses("\n".join(passes)) == []
    assert outside_addresses("\n".join(flagged)) == flagged
