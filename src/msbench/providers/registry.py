"""What a run started, written down before it runs, so that a crash leaves a list to act on.

Every server process, scratch directory, cgroup and mount a trial makes is recorded in the
host's state folder (``MSBENCH_STATE_DIR``, default ``/run/msbench`` as root) while it exists,
with the PID of the run that owns it, and forgotten when the run removes it. Servers also die
with the run where the kernel allows (``setpriv --pdeathsig``, see ``die_with_parent``); what
survives a killed run (its scratch folders, mounts, cgroups, Milvus's fixed PID file) is
removed by ``cleanup()`` (``msbench cleanup``), which touches only what is recorded here and
only when its owner is gone. The run folder also keeps ``processes.jsonl``: what each trial ran, and how it ended.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

import psutil

MILVUS_PID_FILE = Path("/run/milvus/standalone.pid")   # fixed by Milvus 2.3.5: one standalone per host
# The run's journal (processes.jsonl in its folder) and the trial's identity, set while a trial runs.
JOURNAL: contextvars.ContextVar[tuple[Path, dict] | None] = contextvars.ContextVar("msbench_journal", default=None)


def state_dir() -> Path:
    default = "/run/msbench" if os.geteuid() == 0 else os.path.join(tempfile.gettempdir(), f"msbench-state-{os.getuid()}")
    path = Path(os.environ.get("MSBENCH_STATE_DIR", default))
    for sub in ("processes", "paths"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def die_with_parent(argv: Sequence[str], sig: str = "KILL") -> list[str]:
    """``argv`` run so that the kernel sends it ``sig`` when the thread that started it dies
    (PR_SET_PDEATHSIG, through util-linux's setpriv, which then execs it: same PID)."""
    return ["setpriv", "--pdeathsig", sig, "--", *map(str, argv)] if shutil.which("setpriv") else [*map(str, argv)]


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _owner() -> dict:
    return {"owner_pid": os.getpid(), "owner_started": _started(os.getpid())}


def _alive(pid: int, started: float | None) -> bool:
    """The same process still runs (a PID reused since has another start time)."""
    now = _started(pid)
    return now is not None and (started is None or abs(now - started) < 0.01)


def _journal(event: dict) -> None:
    journal = JOURNAL.get()
    if journal is not None:
        path, ident = journal
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps({"at": round(time.time(), 3), **ident, **event}) + "\n")


def _write(path: Path, entry: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)


def started_process(pid: int, name: str, argv: Sequence[str]) -> None:
    entry = {"pid": pid, "name": name, "argv": [str(a) for a in argv][:12], "started": _started(pid), **_owner()}
    _write(state_dir() / "processes" / f"{pid}.json", entry)
    _journal({"event": "started", "pid": pid, "name": name})


def stopped_process(pid: int, name: str, status: int | None) -> None:
    (state_dir() / "processes" / f"{pid}.json").unlink(missing_ok=True)
    _journal({"event": "stopped", "pid": pid, "name": name, "returncode": status})


def _path_entry(path: Path) -> Path:
    return state_dir() / "paths" / (hashlib.sha1(str(path).encode()).hexdigest()[:16] + ".json")


def made_path(path: Path, kind: str) -> None:
    """``kind``: dir (removed), mount (unmounted) or cgroup (its directory removed)."""
    _write(_path_entry(path), {"path": str(path), "kind": kind, **_owner()})


def removed_path(path: Path) -> None:
    _path_entry(path).unlink(missing_ok=True)


def new_dir(prefix: str, base: str | None = None) -> Path:
    """A temporary directory that ``cleanup`` removes if we die before ``remove_dir``."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    made_path(path, "dir")
    return path


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    removed_path(path)


@contextlib.contextmanager
def scratch_dir(prefix: str, base: str | None = None) -> Iterator[Path]:
    """``new_dir`` for the length of a ``with`` block."""
    path = new_dir(prefix, base)
    try:
        yield path
    finally:
        remove_dir(path)


def owned_by_us(pid: int) -> dict | None:
    """The registry's entry for ``pid`` if it is a live process one of our runs started."""
    entry = state_dir() / "processes" / f"{pid}.json"
    try:
        found = json.loads(entry.read_text())
    except (OSError, ValueError):
        return None
    return found if _alive(pid, found.get("started")) else None


def _entries(kind: str) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted((state_dir() / kind).glob("*.json")):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
    return out


def _kill_group(pid: int, started: float | None) -> bool:
    """SIGKILL the server and everything in its session (it was started as a session leader)."""
    if not _alive(pid, started):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=10)
    return True


def _remove(entry: dict) -> str | None:
    """Undo one recorded path; None when done, else why not."""
    path, kind = Path(entry["path"]), entry["kind"]
    if kind == "mount":
        if os.path.ismount(path):
            done = subprocess.run(["umount", "--lazy", str(path)], capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                return f"umount {path}: {done.stderr.strip()}"
        with contextlib.suppress(OSError):
            path.rmdir()
    elif kind == "cgroup":
        with contextlib.suppress(FileNotFoundError):
            try:
                path.rmdir()
            except OSError as err:
                return f"cgroup {path}: {err.strerror}"
    else:
        if any(os.path.ismount(p) for p in (path, *path.glob("**/"))):
            return f"{path} still holds a mount"
        shutil.rmtree(path, ignore_errors=True)
    return None


def cleanup(include_live_owners: bool = False) -> dict[str, list[str]]:
    """Stop what our dead runs left running and remove what they left on disk (ours only).
    A run still alive keeps its own servers unless ``include_live_owners``."""
    done: dict[str, list[str]] = {"processes": [], "paths": [], "pid_files": [], "kept": [], "errors": []}

    def orphaned(entry: dict) -> bool:
        if include_live_owners or not _alive(entry.get("owner_pid", 0), entry.get("owner_started")):
            return True
        done["kept"].append(f"{entry.get('name') or entry.get('path')} (its run, PID {entry['owner_pid']}, is alive)")
        return False

    for file, entry in _entries("processes"):
        if orphaned(entry):
            if _kill_group(entry["pid"], entry.get("started")):
                done["processes"].append(f"{entry['name']} (PID {entry['pid']})")
            file.unlink(missing_ok=True)
    # mounts before the directories holding them, cgroups once their processes are gone
    order = {"mount": 0, "cgroup": 1, "dir": 2}
    for file, entry in sorted(_entries("paths"), key=lambda e: order.get(e[1].get("kind"), 3)):
        if orphaned(entry):
            problem = _remove(entry)
            if problem:
                done["errors"].append(problem)
            else:
                done["paths"].append(f"{entry['kind']} {entry['path']}")
                file.unlink(missing_ok=True)
    stale = stale_milvus_pid_file()
    if stale is not None:
        MILVUS_PID_FILE.unlink(missing_ok=True)
        done["pid_files"].append(f"{MILVUS_PID_FILE} (PID {stale}, no longer running)")
    return done


def stale_milvus_pid_file() -> int | None:
    """The PID in Milvus's fixed PID file when no process of that PID runs (or the file is junk: 0)."""
    try:
        text = MILVUS_PID_FILE.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return 0
    return None if psutil.pid_exists(int(text)) else int(text)
