"""Child processes the native provider starts: logged, measured, and always stopped.

Every server of a native stack is a ``ManagedProcess``: started with ``Popen`` directly (so
the PID we hold is the server's own), its stdout/stderr kept in the trial's log folder, and
stopped by PID with an escalating TERM -> TERM -> KILL (Milvus ignores the first TERM while a
collection is loaded).  Nothing is ever stopped by name.  Each is recorded in the registry while
it runs and dies with the thread that started it (``registry.die_with_parent``), so a killed run
leaves no server behind.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import psutil

from . import registry   # relative: the Ceph image carries this module without the msbench package

if TYPE_CHECKING:
    from msbench.providers.handicap import CpuQuota

LOOPBACK = "127.0.0.1"


class ReadinessTimeout(RuntimeError):
    """A server did not become ready in time; the message carries its last log lines."""


_HANDED_OUT: set[int] = set()


def _listen_range() -> range:
    """Ports below the kernel's ephemeral range: an outgoing connection is never given one of
    these, so a port we pick cannot be taken by a client socket before our server binds it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(10_000, max(low, 12_000))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now and that this process has not handed out."""
    candidates = _listen_range()
    rng = random.Random()
    for _ in range(1000):
        port = rng.choice(candidates)
        if port in _HANDED_OUT:
            continue
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free TCP port on {LOOPBACK} in {candidates.start}-{candidates.stop - 1}")


def port_is_open(port: int, host: str = LOOPBACK) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers with a status below 500 (readiness, not correctness)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
            return resp.status < 500
    except urllib.error.HTTPError as err:
        return err.code < 500
    except (OSError, ValueError):
        return False


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One server process of a stack, with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    cgroup: "CpuQuota | None" = None   # a handicap the process joins before it runs
    popen: subprocess.Popen | None = None
    stopped: bool = False   # stopped by us (a restart, the teardown): its end is no fault

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # appended: a restart keeps the earlier log
        log.write(f"\n=== msbench: starting {self.name}: {' '.join(map(str, self.argv))}\n".encode())
        log.flush()
        full_env = {**os.environ, **self.env}
        self.stopped = False
        self.popen = subprocess.Popen(
            registry.die_with_parent(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=self.cwd,
            start_new_session=True,  # Ctrl-C in the notebook reaches us, not the servers
            preexec_fn=self.cgroup.join_self if self.cgroup else None,
        )
        log.close()
        registry.started_process(self.popen.pid, self.name, self.argv)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_status(self) -> str | None:
        """None while it runs or after we stopped it, else how it ended ("was killed by SIGKILL",
        "exited with code 1"): what the watchdog reports."""
        code = self.popen.poll() if self.popen else None
        if code is None or self.stopped:
            return None
        return describe_exit(code)

    def psutil(self) -> psutil.Process | None:
        if not self.running():
            return None
        try:
            return psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return None

    def stop(self, grace: float = 30.0, second_grace: float = 10.0) -> int | None:
        """TERM, wait; TERM again, wait; KILL. Also reaps children the server forked."""
        if self.popen is None:
            return None
        self.stopped = True
        children = []
        proc = self.psutil()
        if proc is not None:
            try:
                children = proc.children(recursive=True)
            except psutil.Error:
                children = []
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGTERM, second_grace), (signal.SIGKILL, 10.0)):
            if self.popen.poll() is not None:
                break
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
        registry.stopped_process(self.popen.pid, self.name, self.popen.poll())
        return self.popen.poll()

    def wait_ready(self, check: Callable[[], bool], timeout: float, what: str = "") -> float:
        """Poll ``check`` until it is true; return seconds waited. Fails fast if the process died."""
        start = time.monotonic()
        while True:
            if check():
                return time.monotonic() - start
            if not self.running():
                raise ReadinessTimeout(
                    f"{self.name} exited with code {self.popen.poll() if self.popen else None} "
                    f"before {what or 'it was ready'}; last log lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            if time.monotonic() - start > timeout:
                raise ReadinessTimeout(
                    f"{self.name} not ready ({what or 'readiness check'}) after {timeout:.0f} s; "
                    f"last log lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.2)


def run_checked(argv: Sequence[str], log_path: Path, timeout: float = 120.0, env: Mapping[str, str] | None = None,
                input_text: str | None = None) -> str:
    """Run a short setup command, append its output to the log, raise with the output on failure."""
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, input=input_text,
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n=== msbench: {' '.join(map(str, argv))} -> {result.returncode}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:3]))} failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    return result.stdout


def apt_install(*packages: str) -> str | None:
    """Install Debian packages (root only); None on success, else why not and the command to run.
    Tries with the current package lists first and refreshes them only when that fails."""
    how = f"apt-get install -y --no-install-recommends {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"Debian packages {' '.join(packages)} are missing; install them as root: {how}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:  # stale or missing package lists
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600)
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{how} failed: {err}"
    return None if done.returncode == 0 else f"{how} failed ({done.returncode}): {(done.stderr or done.stdout)[-1000:]}"
