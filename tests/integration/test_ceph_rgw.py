"""A real throwaway Ceph cluster answers S3, keeps an object across a restart, and stops cleanly."""
from __future__ import annotations

import os
import secrets
import time
from types import SimpleNamespace

import psutil
import pytest

from msbench.providers.ceph import CephRGW, ensure_ceph_installed
from msbench.providers.process import LOOPBACK, free_port, port_is_open
from msbench.providers.s3 import s3_client

pytestmark = pytest.mark.integration


def _s3(cluster: CephRGW):
    return s3_client(SimpleNamespace(endpoint_url=f"http://{LOOPBACK}:{cluster.port}", access_key=cluster.access_key,
                                     secret_key=cluster.secret_key))


def _processes_under(root) -> list[psutil.Process]:
    """Every live process whose command line mentions the cluster's root dir (ours, by construction)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(root) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_ceph_rgw_put_get_restart_stop(tmp_path):
    reason = ensure_ceph_installed()
    if reason:
        pytest.skip(f"Ceph is not available: {reason}")

    cluster = CephRGW(root=tmp_path / "ceph", log_dir=tmp_path / "logs", port=free_port(),
                      access_key=secrets.token_hex(10).upper(), secret_key=secrets.token_hex(20))
    payload = os.urandom(1 << 20)
    bucket, key = "msbench-it", "dir/one-mebibyte.bin"
    pids: list[int] = []
    try:
        t0 = time.monotonic()
        cluster.start()
        print(f"\nceph start -> S3 ready in {time.monotonic() - t0:.1f} s")
        pids += [p.pid for p in cluster.servers if p.running()]
        assert len(pids) == 3, "mon, OSD and RGW should be running"
        assert all(path.exists() for path in cluster.data_paths)

        s3 = _s3(cluster)
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=payload)
        listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert [(o["Key"], o["Size"]) for o in listed] == [(key, len(payload))]
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == payload

        t0 = time.monotonic()
        cluster.restart()
        print(f"ceph restart -> S3 ready in {time.monotonic() - t0:.1f} s")
        pids += [p.pid for p in cluster.servers if p.running()]
        assert len(pids) == 6
        s3 = _s3(cluster)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == payload, "object lost across restart"
    finally:
        cluster.stop()

    assert not [p for p in cluster.servers if p.running()]
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"daemon PIDs still alive after stop(): {alive}"
    assert _processes_under(cluster.root) == []
    assert not port_is_open(cluster.port), f"RGW port {cluster.port} still open after stop()"
