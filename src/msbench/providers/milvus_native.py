"""Milvus 2.3.5 standalone as a native process, from the binary the PyPI ``milvus`` wheel ships.

Embedded etcd and rocksmq live in the process, so a native stack is Milvus + one object store.
Pitfalls handled here (see FIELD-NOTES): a short session TTL plus a wait after restart (stale
sessions break load), TERM twice then KILL, the fixed PID file under /run/milvus, and every
role advertised as 127.0.0.1 and its embedded etcd on loopback (2.3.5 has no listen-address setting
for its gRPC ports: they listen on every interface, and no other host is ever told of them).
"""
from __future__ import annotations

import lzma
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from msbench.files import cache_dir, sha256_file
from msbench.providers import registry
from msbench.providers.process import LOOPBACK, ManagedProcess, free_port, http_ok

# Else the AWS C++ SDK in Milvus asks the EC2 instance metadata service (169.254.169.254) for its
# region at start (seen with strace): traffic stays on loopback.
NO_METADATA_LOOKUP = {"AWS_EC2_METADATA_DISABLED": "true"}
_ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")
_TEMPLATE_VAR = re.compile(r"\{\{\s*(\w+)(?:\((\w+)\))?(?::\s*([^}]*?))?\s*\}\}")
# Short GC and compaction-check periods (seconds), so the footprint phase can measure the bucket
# after a forced compaction and GC within seconds. Defaults: GC every hour, files kept 1-3 h,
# compaction results collected every 10 s. missingTolerance stays a minute: files not yet in
# the meta (uploads in flight) look like orphans, and a shorter one could delete them.
GC_CONFIG: dict[str, int] = {
    "dataCoord.gc.interval": 5,
    "dataCoord.gc.missingTolerance": 60,
    "dataCoord.gc.dropTolerance": 1,
    "dataCoord.compaction.check.interval": 1,
}


def _package_dir() -> Path:
    import milvus  # the PyPI wheel: binaries as .lzma, a config template

    return Path(milvus.__file__).parent


def milvus_version() -> str:
    return metadata.version("milvus")


def unpack_binaries() -> Path:
    """Decompress the wheel's binaries once into the cache; returns the bin directory."""
    target = cache_dir() / f"milvus-{milvus_version()}" / "bin"
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for packed in sorted((_package_dir() / "data" / "bin").glob("*.lzma")):
        out = target / packed.name[: -len(".lzma")]
        tmp = out.with_suffix(out.suffix + ".tmp")
        with lzma.open(packed) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        tmp.chmod(0o755)
        tmp.replace(out)
    done.write_text("ok\n")
    return target


def binary_sha256() -> str:
    return sha256_file(unpack_binaries() / "milvus")


def render_config(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Fill the wheel's template (its ``{{ name(type): default }}`` slots), then apply overrides."""
    template = (_package_dir() / "data" / "config.yaml.template").read_text()

    def fill(match: re.Match) -> str:
        name, _type, default = match.groups()
        return str(values.get(name, default if default is not None else ""))

    config = yaml.safe_load(_TEMPLATE_VAR.sub(fill, template))
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = value
    return config


def check_pid_file(log: Path) -> None:
    """Milvus 2.3.5 refuses to start while its fixed PID file names a live process: say whose it
    is (a run of ours, or someone else's Milvus) and what to do; a stale file is removed, logged."""
    pid_file = registry.MILVUS_PID_FILE
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        named = pid_file.read_text().strip()
    except FileNotFoundError:
        return
    if named.isdigit() and Path(f"/proc/{named}").exists():
        ours = registry.owned_by_us(int(named))
        if ours is None:
            raise RuntimeError(f"another Milvus standalone (PID {named}), not started by msbench, runs on this "
                               f"machine; Milvus 2.3.5 allows one per host ({pid_file}): stop it first")
        raise RuntimeError(f"a Milvus started by an msbench run (PID {named}, run by PID {ours['owner_pid']}) "
                           f"still runs; Milvus 2.3.5 allows one per host ({pid_file}): wait for that run, or stop "
                           f"it and run `msbench cleanup`")
    pid_file.unlink(missing_ok=True)
    with open(log, "a") as fh:
        fh.write(f"=== msbench: removed a stale {pid_file} (PID {named or '?'} no longer runs)\n")


@dataclass
class S3Target:
    """Where Milvus persists: an S3 endpoint on loopback, a bucket and a root path."""

    host: str
    port: int
    access_key: str
    secret_key: str
    bucket: str
    root_path: str = "files"
    region: str = "us-east-1"


@dataclass
class MilvusNative:
    root: Path                # scratch dir for this stack's Milvus (etcd, rocksmq, local cache)
    log_dir: Path
    s3: S3Target
    session_ttl_s: int = 10
    extra_config: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    metrics_port: int = 0
    process: ManagedProcess | None = None

    def _write_config(self) -> Path:
        ports = {name: free_port() for name in ("root_coord_port", "proxy_internal_port", "query_coord_port",
                                                 "query_node_port", "index_coord_port", "index_node_port",
                                                 "data_coord_port", "data_node_port", "etcd_port")}
        self.port, self.metrics_port = free_port(), free_port()
        values = {
            **ports, "proxy_port": self.port,
            "etcd_data_dir": self.root / "etcd", "local_storage_dir": self.root / "local",
            "rocksmq_data_dir": self.root / "rdb_data", "system_log_path": "",
            "etcd_log_path": self.log_dir / "milvus-etcd.log",
        }
        overrides: dict[str, Any] = {
            "common.storageType": "minio",
            "common.session.ttl": self.session_ttl_s,
            "minio.address": self.s3.host, "minio.port": self.s3.port,
            "minio.bucketName": self.s3.bucket, "minio.rootPath": self.s3.root_path,
            "minio.useSSL": False, "minio.cloudProvider": "aws", "minio.useVirtualHost": False,
            "minio.region": self.s3.region,
            "etcd.config.path": str(self.root / "configs" / "embedEtcd.yaml"),
            # Placeholders only: the keys reach Milvus through the environment, never a file we keep.
            "minio.accessKeyID": "", "minio.secretAccessKey": "",
            **{f"{role}.ip": LOOPBACK for role in _ROLES},
            **GC_CONFIG,
            **self.extra_config,
        }
        config = render_config(values, overrides)
        conf_dir = self.root / "configs"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "milvus.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        shutil.copy(_package_dir() / "data" / "glog.conf", conf_dir / "glog.conf")  # segcore crashes without it
        # The embedded etcd listens where this file says, on loopback and free ports.
        client, peer = free_port(), free_port()
        (conf_dir / "embedEtcd.yaml").write_text(yaml.safe_dump({
            "listen-client-urls": f"http://{LOOPBACK}:{client}", "advertise-client-urls": f"http://{LOOPBACK}:{client}",
            "listen-peer-urls": f"http://{LOOPBACK}:{peer}", "initial-advertise-peer-urls": f"http://{LOOPBACK}:{peer}",
            "initial-cluster": f"default=http://{LOOPBACK}:{peer}", "data-dir": str(self.root / "etcd"),
        }))
        return conf_dir

    def start(self, timeout: float = 180.0) -> float:
        """Start a fresh server; returns seconds until healthz answered."""
        check_pid_file(self.log_dir / "milvus.log")
        conf_dir = self.root / "configs"
        if not (conf_dir / "milvus.yaml").exists():
            conf_dir = self._write_config()
        bin_dir = unpack_binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        env = {
            "DEPLOY_MODE": "STANDALONE", "MILVUSCONF": str(conf_dir), "METRICS_PORT": str(self.metrics_port),
            "LD_LIBRARY_PATH": f"{bin_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":"),
            "MINIO_ACCESS_KEY_ID": self.s3.access_key, "MINIO_SECRET_ACCESS_KEY": self.s3.secret_key,
            **NO_METADATA_LOOKUP,
        }
        self.process = ManagedProcess("milvus", [bin_dir / "milvus", "run", "standalone"],
                                      self.log_dir / "milvus.log", env=env, cwd=self.root).start()
        return self.process.wait_ready(lambda: self.healthy(2.0), timeout, "healthz answered")

    def healthy(self, timeout: float = 5.0) -> bool:
        return http_ok(f"http://{LOOPBACK}:{self.metrics_port}/healthz", timeout)

    def stop(self, fast: bool = False) -> None:
        """Graceful (TERM, TERM, KILL) unless ``fast``: at teardown the data is discarded."""
        if self.process is not None:
            self.process.stop(grace=3.0 if fast else 30.0, second_grace=1.0 if fast else 10.0)
            self.process = None

    def restart(self, timeout: float = 180.0) -> float:
        """Stop, start over the same data, and wait out stale sessions; returns seconds to ready."""
        self.stop()
        ready = self.start(timeout)
        time.sleep(self.session_ttl_s + 2)
        return ready + self.session_ttl_s + 2

    @property
    def uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"
