"""warp (MinIO's S3 benchmark) against a real MinIO we start: sane rows, its own bucket only.

No Milvus: the ceiling is the store on its own. The warp and MinIO binaries are the pinned builds
(msbench stores install warp minio) unless MSBENCH_WARP_BIN names another warp."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pytest

from msbench.measure.warp import WarpTarget, run_warp, warp_binary
from msbench.providers.s3 import s3_client

from ..conftest import processes_mentioning, store_alone

pytestmark = pytest.mark.integration

MiB = 1 << 20
WARP = warp_binary() or Path("warp (not built)")


@pytest.fixture
def minio(tmp_path):
    """A fresh MinIO on loopback, stopped by PID afterwards; nothing may run from tmp_path then.
    (Not the scratch fixture: that one also fails when some other run's Milvus is up.)"""
    if not os.access(WARP, os.X_OK):
        pytest.skip(f"prerequisite missing: no warp binary at {WARP} (msbench stores install warp)")
    with store_alone("minio", tmp_path, 120) as store:
        yield store
    left = processes_mentioning(tmp_path)
    assert not left, f"processes left running: {[p.info['cmdline'] for p in left]}"


def _target(store, bucket: str) -> WarpTarget:
    return WarpTarget(f"{store.host}:{store.port}", store.access_key, store.secret_key, bucket)


def test_warp_put_then_get_gives_sane_rows_and_leaves_other_buckets_alone(minio, tmp_path):
    s3 = s3_client(minio)
    s3.create_bucket(Bucket="keep")
    s3.put_object(Bucket="keep", Key="milvus/segment.bin", Body=b"x" * 1000)
    work = tmp_path / "warp"
    for op in ("put", "get"):
        began = time.monotonic()
        rows = run_warp(WARP, _target(minio, "warp-bench"), op, MiB, 2, 3.0, work, objects=32 if op == "get" else None)
        print(f"\nwarp {op}, 3 s at concurrency 2: whole call {time.monotonic() - began:.1f} s")
        got = {metric: value for metric, value, _ in rows}
        print("\n".join(f"  {m} = {v:.3f} {u}" for m, v, u in rows))
        stem = f"warp_{op}_"
        assert got[stem + "mib_per_s"] > 0 and got[stem + "obj_per_s"] > 0
        assert 0 < got[stem + "latency_p50_ms"] <= got[stem + "latency_p90_ms"] <= got[stem + "latency_p99_ms"]
        assert got[stem + "requests"] > 0 and got[stem + "errors"] == 0
        assert got[stem + "obj_size_bytes"] == MiB and got[stem + "concurrency"] == 2
    kept = s3.list_objects_v2(Bucket="keep")["Contents"]
    assert [o["Key"] for o in kept] == ["milvus/segment.bin"]
    assert s3.get_object(Bucket="keep", Key="milvus/segment.bin")["Body"].read() == b"x" * 1000
    assert s3.list_objects_v2(Bucket="warp-bench")["KeyCount"] == 0, "warp removes what it wrote"
    assert sorted(p.name for p in work.iterdir()) == sorted(
        f"warp-{op}.{ext}" for op in ("put", "get") for ext in ("csv.zst", "json", "log"))
    for path in work.iterdir():
        raw = pa.input_stream(str(path), compression="zstd").read() if path.suffix == ".zst" else path.read_bytes()
        for key in (minio.access_key, minio.secret_key):
            assert key.encode() not in raw, f"a key in {path.name}"


def test_warp_refuses_a_bucket_holding_objects_it_did_not_write(minio, tmp_path):
    s3 = s3_client(minio)
    s3.create_bucket(Bucket="shared")
    s3.put_object(Bucket="shared", Key="files/insert_log/1", Body=b"milvus data")
    with pytest.raises(ValueError, match="'shared' holds objects warp did not write \\(files/\\)"):
        run_warp(WARP, _target(minio, "shared"), "put", MiB, 2, 3.0, tmp_path / "warp")
    assert s3.get_object(Bucket="shared", Key="files/insert_log/1")["Body"].read() == b"milvus data"
