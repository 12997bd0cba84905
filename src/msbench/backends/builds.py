"""Store servers built from source registries, through their communities' ordinary clients.

MinIO ships its community server as source only (its README: ``go install``); Garage and RustFS are
crates on crates.io (``cargo install``). A backend says what to build in its ``install:`` field,
e.g. ``{go: github.com/minio/minio, version: v0.0.0-...}`` or ``{cargo: rustfs, version: 1.0.1,
args: [--no-default-features], needs: [protoc], minutes: 150}``. :func:`install` builds that
pinned version once into the msbench cache (outside the checkout) and writes ``install.json``
beside the binary: version, the registry's checksum of the source (the Go module's ``h1:`` sum,
the crate's SHA-256), the binary's SHA-256, the command's extra arguments and how long it took,
all of which go into each run's manifest. The toolchains keep their own caches (GOMODCACHE,
GOCACHE, CARGO_HOME; each crate its own target folder), so a new machine pays each build once and
a rebuild of the same pin is quick. ``minutes`` is what the build takes on 2 cores, cold: the test
set-up skips builds longer than it can afford (``msbench stores install --max-minutes``), a run's
set-up does them all.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from msbench.config import ConfigError
from msbench.files import cache_dir, sha256_file

TOOLS = ("go", "cargo")
BUILD_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class Build:
    """A pinned build: ``tool`` (go or cargo) installs ``source`` at ``version``."""

    tool: str
    source: str               # the Go module, or the crate
    version: str
    sum: str = ""             # go: the module's h1: sum, checked instead of the checksum database
    args: tuple[str, ...] = ()    # extra arguments of the install command (cargo: features, rust version)
    needs: tuple[str, ...] = ()   # programs a build script calls (e.g. protoc), besides the toolchain
    minutes: float = 0.0      # a cold build on 2 cores, about

    @property
    def pin(self) -> str:
        return f"{self.source}@{self.version}"


# Clients built the same way. warp measures each store on its own (measure.warp); sum.golang.org has
# no entry for its tag that this machine can read, so the module's h1: sum is pinned here and checked.
CLIENTS = {"warp": Build("go", "github.com/minio/warp", "v1.3.1", sum="h1:EHNax13sUn7YUR4bYpUrgXW+ldtMKoELPYzN4rrtH6U=",
                         minutes=1)}
_KEYS = {*TOOLS, "version", "sum", "args", "needs", "minutes"}


def _cache_root() -> Path:
    return cache_dir() / "stores"


def validate(name: str, raw: Any) -> Build | None:
    """A definition's ``install:`` as a Build, checked when definitions load."""
    if raw in (None, {}):
        return None
    tools = [t for t in TOOLS if isinstance(raw, Mapping) and t in raw]
    words = lambda v: isinstance(v, (list, tuple)) and all(isinstance(w, str) and w for w in v)   # noqa: E731
    if (not isinstance(raw, Mapping) or len(tools) != 1 or not raw.get("version") or set(raw) - _KEYS
            or ("sum" in raw and "go" not in raw) or not words(raw.get("args", [])) or not words(raw.get("needs", []))
            or not isinstance(raw.get("minutes", 0), (int, float)) or isinstance(raw.get("minutes"), bool)):
        raise ConfigError(f"backend {name!r}: install must be {{go: MODULE, version: V[, sum: h1:...]}} or "
                          f"{{cargo: CRATE, version: V}}, optionally with args: [words], needs: [programs] and "
                          f"minutes: N, got {raw!r}")
    return Build(tools[0], str(raw[tools[0]]), str(raw["version"]), str(raw.get("sum", "")),
                 tuple(raw.get("args", ())), tuple(raw.get("needs", ())), float(raw.get("minutes", 0)))


def target_dir(binary: str, build: Build) -> Path:
    return _cache_root() / binary / build.version


def installed(binary: str, build: Build | None) -> Path | None:
    """The pinned binary when it was built here (its install.json is written last), else None."""
    if build is None:
        return None
    folder = target_dir(binary, build)
    path = folder / binary
    return path if (folder / "install.json").is_file() and os.access(path, os.X_OK) else None


def record(binary: str, build: Build | None) -> dict | None:
    path = installed(binary, build)
    return json.loads((path.parent / "install.json").read_text()) if path else None


def missing_tool(build: Build) -> str | None:
    """Why this machine cannot build it: a toolchain or a program a build script needs, not on PATH."""
    missing = [tool for tool in (build.tool, *build.needs) if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(repr(t) for t in missing)} not on PATH (needed to build {build.pin})"
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


def _go_build(build: Build, out: Path, log: Path, binary: str) -> str:
    """``go install MODULE@VERSION`` (GOBIN = out); returns the module's h1: checksum from the proxy.
    With a pinned ``sum`` the checksum database is skipped for this module, the downloaded source
    is checked against the pin instead and built where it lies (``go install`` would also ask the
    proxy for the module's version list, which it may refuse)."""
    if not build.sum:
        info = json.loads(_run(["go", "mod", "download", "-json", build.pin], log))
        _run(["go", "install", "-trimpath", *build.args, build.pin], log, env={"GOBIN": str(out), "CGO_ENABLED": "0"})
        return info.get("Sum", "")
    info = json.loads(_run(["go", "mod", "download", "-json", build.pin], log, env={"GONOSUMDB": build.source}))
    if info.get("Sum") != build.sum:
        raise RuntimeError(f"{build.pin}: the proxy's source has sum {info.get('Sum')}, pinned {build.sum}")
    _run(["go", "build", "-trimpath", *build.args, "-o", str(out / binary), "."], log, env={"CGO_ENABLED": "0"},
         cwd=info["Dir"])
    return info["Sum"]


def _cargo_build(build: Build, out: Path, log: Path) -> str:
    """``cargo install CRATE --version V --locked [args]`` (root = out); returns the .crate's SHA-256,
    the checksum crates.io's index holds for it."""
    with tempfile.TemporaryDirectory(prefix="msbench-cargo-") as root:
        # a kept target directory per crate: a rebuild (--force, another pin) reuses the compiled
        # dependencies, and two crates build side by side without waiting for each other's lock
        _run(["cargo", "install", build.source, "--version", build.version, "--locked", *build.args, "--root", root],
             log, env={"CARGO_TARGET_DIR": str(_cache_root() / "cargo-target" / build.source)})
        for built in (Path(root) / "bin").iterdir():
            shutil.move(str(built), out / built.name)
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    crates = sorted(home.glob(f"registry/cache/*/{build.source}-{build.version}.crate"))
    return f"sha256:{sha256_file(crates[0])}" if crates else ""


def install(binary: str, build: Build, log=print, force: bool = False) -> dict:
    """Build the pinned version unless it is already built; returns its install record."""
    done = record(binary, build)
    if done and not force:
        log(f"{binary} {build.version}: already built ({done['binary']})")
        return done
    reason = missing_tool(build)
    if reason:
        raise RuntimeError(reason)
    folder = target_dir(binary, build)
    (folder / "install.json").unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    build_log = folder / "build.log"
    about = f", about {build.minutes:g} min on 2 cores" if build.minutes else ""
    log(f"{binary}: building {build.pin} with {build.tool}{about} (log: {build_log})")
    began = time.monotonic()
    checksum = (_go_build(build, folder, build_log, binary) if build.tool == "go" else
                _cargo_build(build, folder, build_log))
    path = folder / binary
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{build.tool} finished but built no {binary} in {folder}")
    facts = {"binary": str(path), "tool": build.tool, "source": build.source, "version": build.version,
             "args": list(build.args), "source_checksum": checksum, "sha256": sha256_file(path),
             "build_s": round(time.monotonic() - began, 1),
             "toolchain": subprocess.run([build.tool, "version" if build.tool == "go" else "--version"],
                                         capture_output=True, text=True).stdout.strip()}
    (folder / "install.json").write_text(json.dumps(facts, indent=1) + "\n")
    log(f"{binary}: built in {facts['build_s']} s -> {path}")
    return facts
