"""S3 request accounting (traffic.py) against ground truth, on real Milvus and real stores:
what the bucket holds after insert+flush+index must have been written by captured PUTs (or
completed multipart uploads) of exactly those sizes, and the first load must have read every
index file, each byte of it, as the listing states; the trial's trace (trace.py) of that load
passes its checks and holds the same requests and bytes."""
from __future__ import annotations

import time

import pytest

from msbench.measure import trace, traffic
from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.config import make_params
from msbench.results import TrialRecord
from msbench.run.phases import TrialState, flush, index_build, insert, load_first
from msbench.providers.native import NativeStack
from msbench.run.workload import load_dataset

pytestmark = pytest.mark.integration

# a response's headers: what its wire bytes may exceed its body by (status line and headers)
HEADER_BOUND = 1024


@pytest.mark.parametrize("name", ["minio", "seaweedfs", "garage"])
def test_captured_requests_match_the_bucket(scratch, name):
    backend = load_backends()[name]
    reason = unavailable_reason(backend) or traffic.missing_prerequisite()
    if reason:
        pytest.skip(f"prerequisite missing for {name}: {reason}")
    params = make_params("smoke")
    data = load_dataset(params)
    windows = []
    with NativeStack(backend, params, scratch / "logs") as stack:
        state = TrialState(stack, params, data)
        state.connect()   # first: the capture must start cleanly beside pymilvus's gRPC threads
        capture = traffic.start_capture(stack, scratch / "s3.pcap")
        try:
            for phase in (insert, flush, index_build):
                phase(state)
            listing = {o["Key"]: o["Size"] for page in stack.s3().get_paginator("list_objects_v2").paginate(
                Bucket=stack.bucket) for o in page.get("Contents", [])}
            opened = time.time()
            load_first(state)
            windows.append(("load_first", opened, time.time()))
        finally:
            state.disconnect()
            capture.stop()
        requests, summary, facts = traffic.account(capture, stack.bucket, windows)
    assert facts["packets_dropped"] == 0 and facts["unparsed_messages"] == 0, facts
    milvus = requests[(requests["client"] == "milvus") & (requests["status"] < 300)]
    assert listing, "Milvus wrote nothing to the bucket"

    # every object was written by a PUT of its size, or by parts adding up to it and a completion
    for key, size in listing.items():
        writes = milvus[milvus["key"] == key]
        puts = writes[writes["operation"] == "PUT"]
        if len(puts):
            assert puts["request_body_bytes"].iloc[-1] == size, (key, puts)
        else:
            assert (writes["operation"] == "multipart complete").any(), f"no captured write of {key}"
            assert writes.loc[writes["operation"] == "multipart part", "request_body_bytes"].sum() == size

    # the first load read each index file whole, and the wire bytes bound the bodies
    index_files = {k: v for k, v in listing.items() if "/index_files/" in f"/{k}"}
    assert index_files, "no index files in the bucket"
    loaded = milvus[(milvus["phase"] == "load_first") & milvus["operation"].str.startswith("GET")]
    read = loaded[loaded["prefix"] == "index_files"].groupby("key")["response_body_bytes"].sum()
    assert read.to_dict() == index_files
    overhead = loaded["response_wire_bytes"] - loaded["response_body_bytes"]
    assert ((overhead > 0) & (overhead < HEADER_BOUND)).all(), loaded
    row = summary[(summary["phase"] == "load_first") & (summary["operation"] == "all")].iloc[0]
    assert row["bytes_received"] >= sum(index_files.values()) and row["errors"] == 0

    # the trial's trace: the load's requests of Milvus, every byte it read, nothing between phases
    record = TrialRecord(run="r", backend=name, store=name, provider="native", trial=1, seq=0)
    made, note = trace.of_trial(requests, windows, record)
    assert note == "" and made.phases == ["load_first"], note
    described = trace.describe(made).iloc[0]
    assert described["requests"] == (requests[requests["client"] == "milvus"]["phase"] == "load_first").sum()
    assert described["object_bytes_read"] >= sum(index_files.values())

