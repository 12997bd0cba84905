"""Store servers built from source registries, through their communities' ordinary clients.

MinIO ships its community server as source only (its README: ``go install``) and Garage is a
crate on crates.io (``cargo install``). A backend says what to build in its ``install:`` field,
e.g. ``{go: github.com/minio/minio, version: v0.0.0-...}`` or ``{cargo: garage, version: 2.5.0}``.
:func:`install` builds that pinned version once into the msbench cache (outside the checkout)
and writes ``install.json`` beside the binary: version, the registry's checksum of the source
(the Go module's ``h1:`` sum, the crate's SHA-256) and the binary's SHA-256, all of which go into
each run's manifest. The toolchains keep their own caches (GOMODCACHE, GOCACHE, CARGO_HOME), so
a new machine pays each build once and a rebuild of the same pin is quick.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping

from msbench.config import ConfigError
from msbench.files import cache_dir, sha256_file

TOOLS = ("go", "cargo")
BUILD_TIMEOUT_S = 3 * 3600
# Clients built the same way. warp measures each store on its own (ceiling.py); sum.golang.org has
# no entry for its tag that this machine can read, so the module's h1: sum is pinned here and checked.
CLIENTS = {"warp": {"go": "github.com/minio/warp", "version": "v1.3.1",
                    "sum": "h1:EHNax13sUn7YUR4bYpUrgXW+ldtMKoELPYzN4rrtH6U="}}


def _cache_root() -> Path:
    return cache_dir() / "stores"


def validate(name: str, raw: object) -> dict[str, str]:
    """``{go|cargo: what, version: pin}``, checked when definitions load."""
    if raw in (None, {}):
        return {}
    if not isinstance(raw, Mapping) or len([t for t in TOOLS if t in raw]) != 1 or not raw.get("version") \
            or set(raw) - {*TOOLS, "version", "sum"} or ("sum" in raw and "go" not in raw):
        raise ConfigError(f"backend {name!r}: install must be {{go: MODULE, version: V[, sum: h1:...]}} or "
                          f"{{cargo: CRATE, version: V}}, got {raw!r}")
    return {k: str(v) for k, v in raw.items()}


def _tool(spec: Mapping[str, str]) -> str:
    return next(t for t in TOOLS if t in spec)


def target_dir(binary: str, spec: Mapping[str, str]) -> Path:
    return _cache_root() / binary / spec["version"]


def installed(binary: str, spec: Mapping[str, str]) -> Path | None:
    """The pinned binary when it was built here (its install.json is written last), else None."""
    if not spec:
        return None
    folder = target_dir(binary, spec)
    path = folder / binary
    return path if (folder / "install.json").is_file() and os.access(path, os.X_OK) else None


def record(binary: str, spec: Mapping[str, str]) -> dict | None:
    path = installed(binary, spec)
    return json.loads((path.parent / "install.json").read_text()) if path else None


def missing_tool(spec: Mapping[str, str]) -> str | None:
    tool = _tool(spec)
    if shutil.which(tool) is None:
        return f"'{tool}' is not on PATH (needed to build {spec[tool]}@{spec['version']})"
    return None


def _run(argv: list[str], log: Path, env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    with open(log, "a") as fh:
        fh.write(f"\n=== {' '.join(argv)}\n")
        fh.flush()
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=fh, text=True, timeout=BUILD_TIMEOUT_S,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, cwd=cwd)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({done.returncode}); last lines of {log}:\n{tail}")
    return done.stdout


def _go_build(spec: Mapping[str, str], out: Path, log: Path, binary: str) -> str:
    """``go install MODULE@VERSION`` (GOBIN = out); returns the module's h1: checksum from the proxy.
    With a pinned ``sum`` the checksum database is skipped for this module, the downloaded source
    is checked against the pin instead and built where it lies (``go install`` would also ask the
    proxy for the module's version list, which it may refuse)."""
    pinned = f"{spec['go']}@{spec['version']}"
    if "sum" not in spec:
        info = json.loads(_run(["go", "mod", "download", "-json", pinned], log))
        _run(["go", "install", "-trimpath", pinned], log, env={"GOBIN": str(out), "CGO_ENABLED": "0"})
        return info.get("Sum", "")
    info = json.loads(_run(["go", "mod", "download", "-json", pinned], log, env={"GONOSUMDB": spec["go"]}))
    if info.get("Sum") != spec["sum"]:
        raise RuntimeError(f"{pinned}: the proxy's source has sum {info.get('Sum')}, pinned {spec['sum']}")
    _run(["go", "build", "-trimpath", "-o", str(out / binary), "."], log, env={"CGO_ENABLED": "0"}, cwd=info["Dir"])
    return info["Sum"]


def _cargo_build(spec: Mapping[str, str], out: Path, log: Path) -> str:
    """``cargo install CRATE --version V --locked`` (root = out); returns the .crate's SHA-256,
    the checksum crates.io's index holds for it."""
    with tempfile.TemporaryDirectory(prefix="msbench-cargo-") as root:
        # a kept target directory per crate: a rebuild (--force, another pin) reuses the compiled
        # dependencies, and two crates build side by side without waiting for each other's lock
        _run(["cargo", "install", spec["cargo"], "--version", spec["version"], "--locked", "--root", root], log,
             env={"CARGO_TARGET_DIR": str(_cache_root() / "cargo-target" / spec["cargo"])})
        for built in (Path(root) / "bin").iterdir():
            shutil.move(str(built), out / built.name)
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    crates = sorted(home.glob(f"registry/cache/*/{spec['cargo']}-{spec['version']}.crate"))
    return f"sha256:{sha256_file(crates[0])}" if crates else ""


def install(binary: str, spec: Mapping[str, str], log=print, force: bool = False) -> dict:
    """Build the pinned version unless it is already built; returns its install record."""
    done = record(binary, spec)
    if done and not force:
        log(f"{binary} {spec['version']}: already built ({done['binary']})")
        return done
    reason = missing_tool(spec)
    if reason:
        raise RuntimeError(reason)
    folder = target_dir(binary, spec)
    (folder / "install.json").unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    build_log = folder / "build.log"
    tool = _tool(spec)
    log(f"{binary}: building {spec[tool]}@{spec['version']} with {tool} (log: {build_log})")
    began = time.monotonic()
    checksum = (_go_build(spec, folder, build_log, binary) if tool == "go" else
                _cargo_build(spec, folder, build_log))
    path = folder / binary
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{tool} finished but built no {binary} in {folder}")
    facts = {"binary": str(path), "tool": tool, "source": spec[tool], "version": spec["version"],
             "source_checksum": checksum, "sha256": sha256_file(path),
             "build_s": round(time.monotonic() - began, 1),
             "toolchain": subprocess.run([tool, "version" if tool == "go" else "--version"], capture_output=True,
                                         text=True).stdout.strip()}
    (folder / "install.json").write_text(json.dumps(facts, indent=1) + "\n")
    log(f"{binary}: built in {facts['build_s']} s -> {path}")
    return facts
