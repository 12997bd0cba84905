"""The native provider: Milvus + one object store as local processes, fresh per trial.

``NativeStack`` is a context manager: entering provisions (store, bucket, Milvus), leaving
tears everything down (processes by PID, the scratch directory) whatever happened inside.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from msbench.providers import PROBE_TIMEOUT_S, StackBase, Watched, registry
from msbench.providers.handicap import CpuQuota
from msbench.providers.milvus_native import MilvusNative, S3Target, milvus_settings
from msbench.providers.process import ManagedProcess, http_ok, run_checked
from msbench.providers.s3 import s3_client
from msbench.providers.stores import ObjectStore, make_store

PROVIDER = "native"


def drop_page_cache() -> tuple[bool, str]:
    """Flush dirty pages and drop the host page cache; says whether it happened and why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True, "dropped (sync; echo 3 > /proc/sys/vm/drop_caches)"
    except OSError as err:
        return False, f"not dropped: {err.strerror or err} (needs root and a writable /proc/sys/vm)"


@dataclass
class NativeStack(StackBase):
    root: Path = field(init=False)
    store: ObjectStore = field(init=False)
    milvus: MilvusNative = field(init=False)
    quota: CpuQuota | None = field(default=None, init=False)
    provider: str = PROVIDER

    def __post_init__(self) -> None:
        base = (self.user.work_dir if self.user else None) or os.environ.get("MSBENCH_WORK_DIR")
        if base:
            Path(base).mkdir(parents=True, exist_ok=True)
        self.root = registry.new_dir(f"msbench-{self.backend.name}-", base)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def store_root(self) -> Path:
        return self.root / "store"

    def _small_disk(self) -> None:
        """The store's files on a tmpfs of ``store_disk_mib``: a disk that fills (the fault tests)."""
        self.store_root.mkdir(parents=True, exist_ok=True)
        registry.made_path(self.store_root, "mount")
        run_checked(["mount", "-t", "tmpfs", "-o", f"size={self.params.store_disk_mib}m,mode=0700",
                     "msbench-store", self.store_root], self.log_dir / "mount.log", timeout=30)

    def start(self, timeout: float = 240.0) -> dict[str, float]:
        if self.backend.handicap:
            self.quota = CpuQuota.create(self.backend.name, self.backend.handicap["cpu"])
        if self.params.store_disk_mib:
            self._small_disk()
        self.store = make_store(self.backend, self.store_root, self.log_dir, self.user, self.quota)
        timings = {"store_ready_s": self.store.start(timeout)}
        if not self.store.restartable:  # external: a bucket of our own, so footprints are ours alone
            self.bucket = f"msbench-{os.path.basename(self.root).lower().replace('_', '-')}"
        s3_client(self.store).create_bucket(Bucket=self.bucket)
        mmap_dir = self.root / "milvus" / "mmap"
        if self.params.milvus_mmap:
            mmap_dir.mkdir(parents=True, exist_ok=True)
        self.milvus = MilvusNative(
            self.root / "milvus", self.log_dir,
            S3Target(self.store.host, self.store.port, self.store.access_key, self.store.secret_key, self.bucket),
            session_ttl_s=self.params.milvus_session_ttl_s, extra_config=milvus_settings(self.params, str(mmap_dir)))
        timings["milvus_ready_s"] = self.milvus.start(timeout)
        return timings

    def restart(self, timeout: float = 240.0) -> dict[str, object]:
        """Cold restart: stop Milvus, restart the store, drop the page cache, start Milvus.
        Returns what really happened, so the record says which steps a cold load had."""
        began = time.monotonic()
        self.milvus.stop()
        store_restarted = self.store.restartable
        self.store.restart(timeout)
        dropped, how = drop_page_cache() if self.params.drop_page_cache else (False, "not requested")
        self.milvus.restart(timeout)
        return {"milvus_restarted": True, "store_restarted": store_restarted, "page_cache_dropped": dropped,
                "page_cache_note": how, "restart_s": time.monotonic() - began}

    def processes(self) -> dict[str, list[ManagedProcess]]:
        """Running processes by role, for resource sampling."""
        milvus = getattr(self, "milvus", None)
        store = getattr(self, "store", None)
        return {"milvus": [milvus.process] if milvus and milvus.process else [],
                "store": store.processes if store else []}

    def watched(self) -> list[Watched]:
        out = []
        store, milvus = getattr(self, "store", None), getattr(self, "milvus", None)
        if store is not None:
            pids = tuple(p.pid for p in store.servers)
            out += [Watched(f"store {self.backend.name} ({proc.name}, PID {proc.pid})", proc.exit_status, None,
                            (proc.pid,)) for proc in store.servers]
            url = store.health_url
            out.append(Watched(f"store {self.backend.name} ({url})", lambda: None,
                               lambda: http_ok(url, PROBE_TIMEOUT_S), pids))
        if milvus is not None and milvus.process is not None:
            proc = milvus.process
            out.append(Watched(f"milvus (PID {proc.pid})", proc.exit_status, milvus.healthy, (proc.pid,)))
        return out

    def data_paths(self) -> list[Path]:
        return self.store.data_paths

    def ran(self) -> dict[str, object]:
        """The pacing and load-read settings Milvus ran with (the binaries' hashes are in the manifest)."""
        milvus = getattr(self, "milvus", None)
        return {"milvus_settings": milvus.settings()} if milvus is not None and milvus.process else {}

    def handicap_facts(self) -> dict[str, float]:
        """The handicap applied and how long the store was held back by it (0 = it never bit)."""
        if self.quota is None:
            return {}
        return {"cpu": self.quota.cpu, "throttled_s": round(self.quota.throttled_s(), 3)}

    def s3(self):
        return s3_client(self.store)

    @property
    def uri(self) -> str:
        return self.milvus.uri

    def close(self) -> None:
        """Stop what this stack started, by PID, then remove its scratch directory. No graceful
        shutdown: the data is discarded, and a graceful stop costs 10-40 s per trial."""
        errors = []
        for part in ("milvus", "store"):
            obj = getattr(self, part, None)
            if obj is None:
                continue
            try:
                obj.stop(fast=True)
            except Exception as err:  # keep tearing down the rest
                errors.append(f"{part}: {err}")
        if self.quota is not None:
            try:
                self.quota.close()
            except OSError as err:
                errors.append(f"handicap cgroup {self.quota.path}: {err}")
        if os.path.ismount(self.store_root):
            try:
                run_checked(["umount", self.store_root], self.log_dir / "mount.log", timeout=60)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
                errors.append(f"unmounting {self.store_root}: {err}")
        if not os.path.ismount(self.store_root):
            registry.removed_path(self.store_root)
            registry.remove_dir(self.root)
        if errors:
            raise RuntimeError("teardown incomplete: " + "; ".join(errors))
