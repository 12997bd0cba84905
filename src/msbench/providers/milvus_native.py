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
from typing import Any, Mapping

import yaml

from msbench.config import Params
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


# Milvus's own pacing (Params.milvus_pacing): the coordinator intervals that decide when a flush, an
# index build and a load are seen done, so every such time falls on their steps. "default" keeps
# Milvus's; "fine" sets them near 100 ms. Each key read once at start, must be > 0 (a 0 ticker
# panics). Sources in Milvus v2.3.5 (pkg/util/paramtable/component_param.go and the users named):
FINE_PACING: dict[str, Any] = {
    "queryCoord.distPullInterval": 100,          # ms (500): load tasks are dispatched after each pull
    "queryCoord.checkSegmentInterval": 100,      # ms (1000): segment checker, makes segment load tasks
    "queryCoord.checkChannelInterval": 100,      # ms (1000): channel checker (also the balance checker)
    "queryCoord.UpdateNextTargetInterval": 0.2,  # s (10): next -> current target, saves one 1 s observer tick
    "queryCoord.checkHealthInterval": 1000,      # ms (3000): retries a delayed node-up after a restart
    "proxy.timeTickInterval": 100,               # ms (200): DML time ticks, the flowgraphs' cadence
    "dataNode.timetick.interval": 100,           # ms (500): when datacoord sees sealed segments flushable
    "dataNode.dataSync.skipMode.enable": False,  # (true): idle channels process 1 tick in 5
    "indexCoord.scheduler.interval": 100,        # ms (1000): index builder polls builds for completion
}
PACING: dict[str, dict[str, Any]] = {"default": {}, "fine": FINE_PACING}
MMAP_KEY = "queryNode.mmapDirPath"   # 2.3.5: non-empty = segments and indexes mmapped from local files
# What 2.3.5 runs with where its config file does not set a key (code default or the wheel's template).
DEFAULTS_2_3_5: dict[str, Any] = {
    "queryCoord.distPullInterval": 500, "queryCoord.checkSegmentInterval": 1000,
    "queryCoord.checkChannelInterval": 1000, "queryCoord.UpdateNextTargetInterval": 10,
    "queryCoord.checkHealthInterval": 3000, "proxy.timeTickInterval": 200, "dataNode.timetick.interval": 500,
    "dataNode.dataSync.skipMode.enable": True, "indexCoord.scheduler.interval": 1000, MMAP_KEY: "",
}
# Pacing no key changes in 2.3.5 (so load times stay on whole seconds whatever the pacing).
HARD_CODED_2_3_5 = {
    "CollectionObserver period (writes load progress and the Loaded state)": "1 s",
    "release: wait for the distribution to show nothing loaded": "200 ms poll",
    "datacoord flush re-trigger of a segment": "2 s",
    "data-node periodic channel checkpoint": "60 s",
    "index-for-segment fallback loop": "60 s",
    "sealed segment flushable after its last insert (dataCoord.segment.assignmentExpiration, left alone)": "2000 ms",
}


def milvus_settings(params: Params, mmap_dir: str) -> dict[str, Any]:
    """The config overrides the parameters ask of a Milvus msbench starts: its pacing, and mmap."""
    return {**PACING[params.milvus_pacing], **({MMAP_KEY: mmap_dir} if params.milvus_mmap else {})}


def settings_facts(params: Params) -> dict[str, Any]:
    """For the manifest: the pacing and load-read settings asked for, and what no setting changes."""
    return {"pacing": params.milvus_pacing, "mmap": params.milvus_mmap,
            "settings": milvus_settings(params, "<stack>/mmap"), "hard_coded_in_2_3_5": HARD_CODED_2_3_5}


def _normal(name: str) -> str:
    """How Milvus matches a config key: case ignored, '.', '_' and '/' ignored (pkg/config/config.go)."""
    return re.sub(r"[._/]", "", name.lower())


def effective_settings(config: dict[str, Any], env: Mapping[str, str],
                       defaults: Mapping[str, Any] = DEFAULTS_2_3_5) -> dict[str, Any]:
    """The value Milvus runs with for each key of ``defaults``, by its own precedence: an environment
    variable of the same normalised name, then the config file, then its default."""
    flat: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        else:
            flat[_normal(path)] = node

    walk(config, "")
    environment = {_normal(name): value for name, value in env.items()}
    out = {}
    for key, default in defaults.items():
        norm = _normal(key)
        out[key] = yaml.safe_load(environment[norm]) if norm in environment else flat.get(norm, default)
    return out


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
        self.process = ManagedProcess("milvus", [bin_dir / "milvus", "run", "standalone"],
                                      self.log_dir / "milvus.log", env=self._environment(bin_dir, conf_dir),
                                      cwd=self.root).start()
        return self.process.wait_ready(lambda: self.healthy(2.0), timeout, "healthz answered")

    def _environment(self, bin_dir: Path, conf_dir: Path) -> dict[str, str]:
        return {
            "DEPLOY_MODE": "STANDALONE", "MILVUSCONF": str(conf_dir), "METRICS_PORT": str(self.metrics_port),
            "LD_LIBRARY_PATH": f"{bin_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":"),
            "MINIO_ACCESS_KEY_ID": self.s3.access_key, "MINIO_SECRET_ACCESS_KEY": self.s3.secret_key,
            **NO_METADATA_LOOKUP,
        }

    def settings(self) -> dict[str, Any]:
        """The pacing and load-read settings this Milvus runs with: its config file, overridden by its
        environment (ours and the inherited one), as Milvus itself resolves them."""
        conf_dir = self.root / "configs"
        config = yaml.safe_load((conf_dir / "milvus.yaml").read_text())
        return effective_settings(config, {**os.environ, **self._environment(unpack_binaries(), conf_dir)})

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
