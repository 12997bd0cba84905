"""The registry of what runs started, and ``cleanup``: with real short-lived processes (``sleep``)
and real folders in a private state folder, never anything of another test or run."""
from __future__ import annotations

import json
import os
import subprocess
import time

import psutil
import pytest

from msbench.providers import registry


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("MSBENCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(registry, "MILVUS_PID_FILE", tmp_path / "run-milvus" / "standalone.pid")
    return tmp_path / "state"


def _orphan(entry_file, owner_pid: int) -> None:
    """Make an entry look as if the run that wrote it had died (its owner is a finished process)."""
    entry = json.loads(entry_file.read_text())
    entry.update(owner_pid=owner_pid, owner_started=None)
    entry_file.write_text(json.dumps(entry))


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE   # killed, waiting for init to reap it
    except psutil.NoSuchProcess:
        return True


def _dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_cleanup_stops_an_orphaned_server_and_its_children_and_removes_its_folder(state, tmp_path):
    server = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300"], start_new_session=True)
    time.sleep(0.2)
    child = psutil.Process(server.pid).children()[0]
    registry.started_process(server.pid, "store", ["sh"])
    folder = tmp_path / "msbench-minio-x"
    folder.mkdir()
    registry.made_path(folder, "dir")
    dead = _dead_pid()
    for entry in state.glob("*/*.json"):
        _orphan(entry, dead)
    done = registry.cleanup()
    assert done["processes"] == [f"store (PID {server.pid})"]
    server.wait(timeout=10)
    assert _gone(child)
    assert not folder.exists() and not list(state.glob("*/*.json"))


def test_cleanup_leaves_what_a_live_run_owns(state, tmp_path):
    server = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        registry.started_process(server.pid, "milvus", ["sleep"])   # owned by this (live) process
        done = registry.cleanup()
        assert server.poll() is None and done["processes"] == [] and "milvus" in done["kept"][0]
        assert registry.owned_by_us(server.pid)["name"] == "milvus"
    finally:
        server.kill()
        server.wait()
        registry.stopped_process(server.pid, "milvus", -9)
    assert registry.owned_by_us(server.pid) is None and not list(state.glob("processes/*.json"))


def test_a_reused_pid_is_not_killed(state):
    server = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        registry.started_process(server.pid, "store", ["sleep"])
        entry = state / "processes" / f"{server.pid}.json"
        data = json.loads(entry.read_text())
        data.update(started=data["started"] - 3600, owner_pid=_dead_pid(), owner_started=None)  # another process's start
        entry.write_text(json.dumps(data))
        assert registry.cleanup()["processes"] == [] and server.poll() is None
    finally:
        server.kill()
        server.wait()


def test_a_stale_milvus_pid_file_is_removed_and_a_live_one_kept(state):
    registry.MILVUS_PID_FILE.parent.mkdir(parents=True)
    registry.MILVUS_PID_FILE.write_text(f"{_dead_pid()}\n")
    assert registry.cleanup()["pid_files"] and not registry.MILVUS_PID_FILE.exists()
    registry.MILVUS_PID_FILE.write_text(f"{os.getpid()}\n")
    assert registry.cleanup()["pid_files"] == [] and registry.MILVUS_PID_FILE.exists()


def test_scratch_dir_is_listed_while_it_exists(state):
    with registry.scratch_dir("msbench-logs-") as path:
        listed = [json.loads(p.read_text())["path"] for p in state.glob("paths/*.json")]
        assert listed == [str(path)] and path.is_dir()
    assert not path.exists() and not list(state.glob("paths/*.json"))


def test_servers_die_with_the_thread_that_started_them(state):
    """PR_SET_PDEATHSIG through setpriv: a parent killed with SIGKILL takes its server along."""
    code = ("import subprocess, sys, time\n"
            "from msbench.providers import registry\n"
            "p = subprocess.Popen(registry.die_with_parent(['sleep', '300']))\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(300)\n")
    parent = subprocess.Popen([os.sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server = int(parent.stdout.readline())
    deadline = time.monotonic() + 5
    while psutil.Process(server).cmdline()[:1] != ["sleep"]:   # setpriv sets the signal, then execs
        assert time.monotonic() < deadline, "setpriv did not exec the server"
        time.sleep(0.01)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while psutil.pid_exists(server) and psutil.Process(server).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the server outlived its parent"
        time.sleep(0.05)
