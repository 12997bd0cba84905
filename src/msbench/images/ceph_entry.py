"""Entrypoint of msbench-local/ceph-rgw: the native backend's throwaway cluster, in a container.

Runs ``msbench.providers.ceph.CephRGW`` (copied into the image as ``msbench_ceph``): the first
start bootstraps 1 mon + 1 bluestore OSD + RGW in /var/lib/msbench-ceph (a named volume) with
the S3 user from MSBENCH_ACCESS_KEY/MSBENCH_SECRET_KEY on 127.0.0.1:MSBENCH_RGW_PORT (host
networking); a container restart starts the daemons again over the same data. SIGTERM stops
them by PID. /tmp/msbench-ready exists while S3 answers (the healthcheck).
"""
import os
import signal
import sys
import time
from pathlib import Path

from msbench_ceph.ceph import CephRGW

ROOT = Path("/var/lib/msbench-ceph")
READY = Path("/tmp/msbench-ready")
LOGS = Path("/var/log/msbench")


def main() -> int:
    READY.unlink(missing_ok=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    cluster = CephRGW(root=ROOT, log_dir=LOGS, port=int(os.environ["MSBENCH_RGW_PORT"]),
                      access_key=os.environ["MSBENCH_ACCESS_KEY"], secret_key=os.environ["MSBENCH_SECRET_KEY"])
    try:
        if (ROOT / "ceph.conf").exists():
            print("msbench: restarting the cluster over its data", flush=True)
            cluster.restart(timeout=float(os.environ.get("MSBENCH_CEPH_TIMEOUT", "240")))
        else:
            print("msbench: bootstrapping a fresh cluster", flush=True)
            cluster.start(timeout=float(os.environ.get("MSBENCH_CEPH_TIMEOUT", "240")))
    except Exception as err:  # the container exits; its log says why
        print(f"msbench: ceph failed to start: {err}", file=sys.stderr, flush=True)
        cluster.stop()
        return 1
    READY.write_text("ok\n")
    print("msbench: S3 answers", flush=True)
    while not stop and all(p.running() for p in cluster.servers) and len(cluster.servers) == 3:
        time.sleep(0.5)
    READY.unlink(missing_ok=True)
    died = [] if stop else [p.name for p in cluster.servers if not p.running()]
    cluster.stop()
    if died:
        print(f"msbench: daemon(s) exited: {died}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
