"""A throwaway single-node Ceph cluster (1 mon + 1 bluestore OSD + RGW, no mgr) on loopback.

Why native: Debian ships Ceph 16.2 and no container registry is reachable here.  Each daemon
runs in the foreground as a ``ManagedProcess`` so we hold its own PID and stop it by PID.
Everything (conf, mon/osd data, the sparse bluestore file, run dir, admin sockets, pid files,
cluster log) lives under ``root``, the mon uses a free port and the fsid is fresh, so two
clusters never collide and removing ``root`` removes the cluster.  Auth is ``none``: the
cluster only listens on 127.0.0.1 and lives for one trial; S3 signatures are still checked
by RGW against the user's keys.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .process import (LOOPBACK, ManagedProcess, ReadinessTimeout, apt_install, free_port, http_ok, port_is_open,
                      run_checked, tail)

CEPH_PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common")
CEPH_TOOLS = ("ceph-mon", "ceph-osd", "radosgw", "ceph-authtool", "monmaptool", "radosgw-admin", "ceph")
RGW_UID = "msbench"

def ceph_unavailable_reason() -> str | None:
    """None when every Ceph binary we run is on PATH, else which are missing."""
    missing = [tool for tool in CEPH_TOOLS if shutil.which(tool) is None]
    if not missing:
        return None
    return f"Ceph tools not on PATH: {', '.join(missing)}"


def ensure_ceph_installed() -> str | None:
    """Install Debian's Ceph packages when missing and we are root; return why Ceph is unusable, or None."""
    reason = ceph_unavailable_reason()
    if reason is None:
        return None
    failed = apt_install(*CEPH_PACKAGES)
    return f"{reason}; {failed}" if failed else ceph_unavailable_reason()


class CephStartError(RuntimeError):
    """The cluster did not come up; the message carries the failing step's last log lines."""


@dataclass
class CephRGW:
    """One throwaway cluster: ``start()`` bootstraps it, ``restart()`` reuses its data, ``stop()`` ends it."""

    root: Path
    log_dir: Path
    port: int
    access_key: str
    secret_key: str
    block_size_gib: int = 10
    cgroup: object = None   # a handicap (providers.handicap.CpuQuota) every daemon joins
    mon_port: int = field(default=0, init=False)  # a free port, chosen by start()
    fsid: str = field(default="", init=False)  # fresh for every start()
    _procs: dict[str, ManagedProcess] = field(default_factory=dict, init=False, repr=False)

    # -- paths -------------------------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def osd_dir(self) -> Path:
        return self.root / "osd" / "ceph-0"

    @property
    def block_path(self) -> Path:
        return self.osd_dir / "block"

    @property
    def servers(self) -> list[ManagedProcess]:
        """Every daemon started, running or not."""
        return list(self._procs.values())

    @property
    def data_paths(self) -> list[Path]:
        """Where stored bytes live: the OSD dir, holding the (sparse) bluestore block file."""
        return [self.osd_dir]

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> None:
        """Bootstrap a fresh cluster in ``root`` and wait until S3 answers and the user exists."""
        deadline = time.monotonic() + timeout
        self.root = Path(self.root)
        self.log_dir = Path(self.log_dir)
        if self.block_size_gib < 1:
            raise ValueError(f"block_size_gib must be at least 1, not {self.block_size_gib}")
        self.root.mkdir(parents=True, exist_ok=True)
        if any(self.root.iterdir()):
            raise CephStartError(f"{self.root} is not empty: start() bootstraps a fresh cluster (use restart())")
        self.mon_port = free_port()
        self.fsid = str(uuid.uuid4())
        for sub in ("mon/ceph-a", "osd/ceph-0", "run", "log", "rgw", "crash", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        with self._cleanup_on_failure("start"):
            monmap = self.root / "monmap"
            self._setup(["monmaptool", "--create", "--fsid", self.fsid,
                         "--addv", "a", f"[v2:{LOOPBACK}:{self.mon_port}]", monmap])
            self._setup(["ceph-mon", "-c", self.conf_path, "--mkfs", "-i", "a", "--monmap", monmap])
            self._start_mon(deadline)
            osd_uuid = str(uuid.uuid4())
            osd_id = self._ceph("osd", "new", osd_uuid).strip()
            if osd_id != "0":
                raise CephStartError(f"expected OSD id 0, the mon gave {osd_id!r}")
            with open(self.block_path, "wb") as block:  # sparse: takes no space until written
                block.truncate(self.block_size_gib << 30)
            self._setup(["ceph-osd", "-c", self.conf_path, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid])
            self._start_osd(deadline)
            # Before RGW starts, so its first answer already knows the user (it creates RGW's pools too).
            self._setup(["radosgw-admin", "-c", self.conf_path, "user", "create", f"--uid={RGW_UID}",
                         f"--display-name={RGW_UID}", f"--access-key={self.access_key}",
                         f"--secret-key={self.secret_key}"], timeout=self._left(deadline))
            self._start_rgw(deadline)

    def restart(self, timeout: float = 180.0) -> None:
        """Stop every daemon and start them again over the same data (a cold start of the store)."""
        self.stop()
        deadline = time.monotonic() + timeout
        with self._cleanup_on_failure("restart"):
            self._start_mon(deadline)
            self._start_osd(deadline)
            self._start_rgw(deadline)

    def stop(self) -> None:
        """Stop RGW, then the OSD, then the mon, by PID; an already-dead daemon is fine."""
        for name in ("rgw", "osd", "mon"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                try:
                    proc.stop(grace=20.0, second_grace=10.0)
                except Exception:  # noqa: BLE001 (stop must never raise; the next one still runs)
                    pass

    # -- internals ---------------------------------------------------------------------------
    @contextmanager
    def _cleanup_on_failure(self, what: str):
        """Stop what was started if bootstrapping fails; the error names each daemon's state and last log lines."""
        try:
            yield
        except Exception as err:
            report = [f"Ceph {what} failed in {self.root}: {err}"]
            for name, proc in self._procs.items():
                if isinstance(err, ReadinessTimeout) and proc.log_path.name in str(err):
                    continue  # its log tail is already in the message
                state = "running" if proc.running() else f"exited with {proc.popen.poll() if proc.popen else None}"
                report.append(f"--- {proc.name} ({state}), last lines of {proc.log_path}:\n{tail(proc.log_path, 20)}")
            self.stop()
            raise CephStartError("\n".join(report)) from err
        except BaseException:
            self.stop()
            raise

    def _write_conf(self) -> None:
        r = self.root
        self.conf_path.write_text(f"""\
[global]
fsid = {self.fsid}
mon host = [v2:{LOOPBACK}:{self.mon_port}]
public addr = {LOOPBACK}
cluster addr = {LOOPBACK}
ms bind msgr1 = false
ms bind msgr2 = true
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
run dir = {r}/run
pid file = {r}/run/$cluster-$name.pid
crash dir = {r}/crash
tmp dir = {r}/tmp
keyring = {r}/keyring
log file =
log to file = false
log to stderr = true
err to stderr = true
debug rocksdb = 1/5
mon cluster log to file = true
mon cluster log file = {r}/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0

[mon]
mon data = {r}/mon/$cluster-$id
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
osd data = {r}/osd/$cluster-$id
osd objectstore = bluestore
bluestore block create = false
bluestore block size = {self.block_size_gib << 30}
bluestore fsck on mkfs = false
osd crush update on start = true

[client.rgw]
rgw data = {r}/rgw
# radosgw defaults to a "secure" mon connection, which auth none cannot give: ask for crc.
ms mon client mode = crc
rgw frontends = beast endpoint={LOOPBACK}:{self.port} tcp_nodelay=1
""")

    @staticmethod
    def _left(deadline: float) -> float:
        return max(1.0, deadline - time.monotonic())

    def _setup(self, argv: list, timeout: float = 120.0) -> str:
        return run_checked(argv, self.log_dir / "ceph-setup.log", timeout=timeout)

    def _ceph(self, *args: str, timeout: float = 30.0) -> str:
        return self._setup(["ceph", "-c", self.conf_path, "--connect-timeout", str(int(timeout)), *args],
                           timeout=timeout + 5)

    def _spawn(self, name: str, argv: list) -> ManagedProcess:
        proc = ManagedProcess(name=f"ceph-{name}", argv=argv, log_path=self.log_dir / f"ceph-{name}.log",
                              cwd=self.root, cgroup=self.cgroup)
        self._procs[name] = proc.start()
        return proc

    def _start_mon(self, deadline: float) -> None:
        mon = self._spawn("mon", ["ceph-mon", "-f", "-c", self.conf_path, "-i", "a"])
        mon.wait_ready(lambda: self._quiet_ceph_ok("mon", "stat"), self._left(deadline), "the mon answers")

    def _start_osd(self, deadline: float) -> None:
        osd = self._spawn("osd", ["ceph-osd", "-f", "-c", self.conf_path, "-i", "0"])
        osd.wait_ready(self._osd_up, self._left(deadline), "the OSD is up")

    def _start_rgw(self, deadline: float) -> None:
        if port_is_open(self.port):  # else http_ok would happily probe someone else's server
            raise CephStartError(f"RGW port {self.port} on {LOOPBACK} is already in use")
        rgw = self._spawn("rgw", ["radosgw", "-f", "-c", self.conf_path, "-n", "client.rgw"])
        rgw.wait_ready(lambda: http_ok(self.endpoint + "/", timeout=1.0), self._left(deadline),
                       f"S3 answers on {self.endpoint}")
        try:
            self._setup(["radosgw-admin", "-c", self.conf_path, "user", "info", f"--uid={RGW_UID}"],
                        timeout=self._left(deadline))
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            raise ReadinessTimeout(f"RGW answers but user {RGW_UID!r} is missing: {err}\n"
                                   f"last log lines of {rgw.log_path}:\n{tail(rgw.log_path)}") from err

    def _poll_ceph(self, *args: str) -> subprocess.CompletedProcess | None:
        """One quick ``ceph`` CLI call for readiness polling; None when it fails or hangs."""
        try:
            result = subprocess.run(["ceph", "-c", str(self.conf_path), "--connect-timeout", "2", *args],
                                    capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result if result.returncode == 0 else None

    def _quiet_ceph_ok(self, *args: str) -> bool:
        return self._poll_ceph(*args) is not None

    def _osd_up(self) -> bool:
        result = self._poll_ceph("osd", "dump", "--format", "json")
        if result is None:
            return False
        try:
            osds = json.loads(result.stdout).get("osds", [])
        except ValueError:
            return False
        return any(o.get("osd") == 0 and o.get("up") == 1 and o.get("in") == 1 for o in osds)
