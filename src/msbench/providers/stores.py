"""Object stores a native stack can run on: a definition in, a running S3 endpoint out."""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from msbench.backends import BackendDef, fill_template, find_binary
from msbench.config import ConfigError, UserConfig
from msbench.providers.handicap import CpuQuota
from msbench.providers.process import LOOPBACK, ManagedProcess, ReadinessTimeout, free_port, http_ok, run_checked


def new_credentials(prefix: str = "msb", access_hex: int = 16, secret_hex: int = 40) -> tuple[str, str]:
    """Fresh keys per trial: nothing to leak across runs, and long enough for every store
    (a store wanting another shape, like Garage's GK + 24 hex digits, says so in its definition)."""
    return prefix + secrets.token_hex(access_hex // 2), secrets.token_hex(secret_hex // 2)


def credentials_for(fmt: Mapping[str, object]) -> tuple[str, str]:
    """Keys in the shape a definition's ``credentials`` asks for (default: ours)."""
    return new_credentials(str(fmt.get("access_key_prefix", "msb")), int(fmt.get("access_key_hex", 16)),
                           int(fmt.get("secret_key_hex", 40)))


@dataclass
class ObjectStore:
    """The common face of a store: endpoint, keys, its processes and where its bytes live."""

    backend: BackendDef
    root: Path
    log_dir: Path
    host: str = LOOPBACK
    port: int = 0
    access_key: str = ""
    secret_key: str = ""
    restartable: bool = True
    quota: CpuQuota | None = None   # the handicap its processes run under, if any

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def servers(self) -> list[ManagedProcess]:
        """Every server process started, also those that have exited (the watchdog asks how)."""
        return []

    @property
    def processes(self) -> list[ManagedProcess]:
        """The servers running now (for resource sampling)."""
        return [p for p in self.servers if p.running()]

    @property
    def health_url(self) -> str:
        """What the watchdog asks while a phase runs: any answer below 500 is alive."""
        return self.endpoint_url

    @property
    def data_paths(self) -> list[Path]:
        return []

    def start(self, timeout: float) -> float:
        raise NotImplementedError

    def restart(self, timeout: float) -> float:
        self.stop()
        return self.start(timeout)

    def stop(self, fast: bool = False) -> None:
        """Nothing to stop by default (external endpoints). ``fast``: the data will be discarded,
        so no graceful shutdown is owed (cold restarts use the graceful one)."""


@dataclass
class ProcessStore(ObjectStore):
    """A store that is one server process started from the definition's command template."""

    binary: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    process: ManagedProcess | None = None
    captured: dict[str, str] = field(default_factory=dict)   # what bootstrap steps captured, e.g. node_id

    def __post_init__(self) -> None:
        self.access_key, self.secret_key = credentials_for(self.backend.credentials)
        self.rpc_secret = secrets.token_hex(32)   # for stores whose nodes authenticate each other
        self.ports = {name: free_port() for name in self.backend.ports}
        self.port = self.ports["s3"]

    def _values(self) -> dict[str, str]:
        return {"binary": self.binary, "data_dir": str(self.root / "data"), "conf_dir": str(self.root / "conf"),
                "log_dir": str(self.log_dir), "rpc_secret": self.rpc_secret,
                "access_key": self.access_key, "secret_key": self.secret_key,
                **{f"port_{name}": str(port) for name, port in self.ports.items()}, **self.captured}

    def _fill(self, text: str) -> str:
        return fill_template(text, self._values(), f"backend {self.backend.name!r}")

    def start(self, timeout: float) -> float:
        first = self.process is None
        if first:
            for sub in ("data", "conf"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            for name, text in self.backend.files.items():
                (self.root / "conf" / name).write_text(self._fill(text))
        argv = [self._fill(a) for a in self.backend.command]
        env = {k: self._fill(v) for k, v in self.backend.env.items()}
        self.process = ManagedProcess(self.backend.name, argv, self.log_dir / f"{self.backend.name}.log",
                                      env=env, cwd=self.root, cgroup=self.quota).start()
        began = time.monotonic()
        if first:
            self._bootstrap(began + timeout)
        ready_url = self._fill(self.backend.ready_url)
        bootstrapped = time.monotonic() - began
        return bootstrapped + self.process.wait_ready(lambda: http_ok(ready_url), timeout, f"{ready_url} answered")

    def _bootstrap(self, deadline: float) -> None:
        """The definition's one-time set-up commands (e.g. Garage's layout and key), in order; each is
        retried until it succeeds, since the server may still be starting, or the deadline passes."""
        log = self.log_dir / f"{self.backend.name}-bootstrap.log"
        for step in self.backend.bootstrap:
            while True:
                try:
                    out = run_checked([self._fill(str(a)) for a in step["run"]], log, timeout=30)
                    break
                except (RuntimeError, subprocess.TimeoutExpired) as err:
                    if not self.process.running() or time.monotonic() > deadline:
                        raise ReadinessTimeout(f"{self.backend.name} bootstrap failed: {err}") from err
                    time.sleep(0.5)
            if step.get("capture"):
                found = re.search(step.get("pattern", "(.+)"), out, re.MULTILINE)
                if not found:
                    raise ReadinessTimeout(f"{self.backend.name} bootstrap: no {step['capture']} in {out[-300:]!r}")
                self.captured[step["capture"]] = found.group(1)

    def stop(self, fast: bool = False) -> None:
        if self.process is not None:
            if fast:   # one TERM, 3 s, then KILL: SeaweedFS's filer takes 15 s to end its streams
                self.process.stop(grace=3.0, second_grace=0.0)
            else:
                self.process.stop(grace=self.backend.stop_grace_s)
        for pattern in self.backend.leftovers:
            Path(self._fill(pattern)).unlink(missing_ok=True)

    @property
    def servers(self) -> list[ManagedProcess]:
        return [self.process] if self.process else []

    @property
    def health_url(self) -> str:
        return self._fill(self.backend.ready_url)

    @property
    def data_paths(self) -> list[Path]:
        return [self.root / "data"]


@dataclass
class CephStore(ObjectStore):
    """Ceph RGW on a throwaway single-node cluster (see providers.ceph)."""

    cluster: object = None

    def __post_init__(self) -> None:
        from msbench.providers.ceph import CephRGW

        self.access_key, self.secret_key = new_credentials()
        self.port = free_port()
        self.cluster = CephRGW(root=self.root, log_dir=self.log_dir, port=self.port,
                               access_key=self.access_key, secret_key=self.secret_key, cgroup=self.quota)

    def start(self, timeout: float) -> float:
        began = time.monotonic()
        self.cluster.start(timeout)
        return time.monotonic() - began

    def restart(self, timeout: float) -> float:
        began = time.monotonic()
        self.cluster.restart(timeout)
        return time.monotonic() - began

    def stop(self, fast: bool = False) -> None:
        self.cluster.stop()

    @property
    def servers(self) -> list[ManagedProcess]:
        return self.cluster.servers

    @property
    def data_paths(self) -> list[Path]:
        return self.cluster.data_paths


@dataclass
class ExternalStore(ObjectStore):
    """An endpoint someone else runs: nothing started, nothing restarted, keys from the environment."""

    def __post_init__(self) -> None:
        url = urlparse(self.backend.endpoint)   # http://HOST:PORT, checked when the definition loaded
        self.host, self.port, self.restartable = url.hostname, url.port, False
        self.access_key = os.environ.get(self.backend.access_key_env, "")
        self.secret_key = os.environ.get(self.backend.secret_key_env, "")

    def start(self, timeout: float) -> float:
        began = time.monotonic()
        deadline = began + timeout
        while not http_ok(self.endpoint_url):
            if time.monotonic() > deadline:
                raise TimeoutError(f"external endpoint {self.endpoint_url} did not answer in {timeout:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - began

    def restart(self, timeout: float) -> float:
        return 0.0


def make_store(backend: BackendDef, root: Path, log_dir: Path, user: UserConfig | None = None,
               quota: CpuQuota | None = None) -> ObjectStore:
    """The right store for a definition (whether it can run here was checked before: providers.catalog)."""
    if backend.launcher == "process":
        binary = find_binary(backend, user)
        if binary is None:
            raise ConfigError(f"backend {backend.name!r}: no '{backend.binary}' binary found. To enable: "
                              f"{backend.enable_hint}")
        return ProcessStore(backend, root, log_dir, quota=quota, binary=binary)
    if backend.launcher == "ceph":
        return CephStore(backend, root, log_dir, quota=quota)
    return ExternalStore(backend, root, log_dir)
