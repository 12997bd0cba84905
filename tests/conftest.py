"""Shared fixtures: a scratch area per test and a check that nothing we started outlives it."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.providers.registry import MILVUS_PID_FILE
from msbench.providers.stores import make_store


def processes_mentioning(path: Path) -> list[psutil.Process]:
    """Processes whose command line names ``path`` or that run in it (Milvus's command line names no
    directory, its working directory is its stack's): only ours can, it is a fresh tmp dir."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            named = any(str(path) in part for part in (proc.info["cmdline"] or []))
            inside = str(proc.info["cwd"] or "").startswith(str(path))
            if (named or inside) and proc.pid != os.getpid():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def milvus_pid_alive() -> bool:
    if not MILVUS_PID_FILE.exists():
        return False
    pid = MILVUS_PID_FILE.read_text().strip()
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Stack dirs, temp files and the registry of what this test started live here; afterwards
    nothing may run from it, and the registry must hold nothing."""
    yield from _scratch(tmp_path, monkeypatch, milvus=True)


@pytest.fixture
def store_scratch(tmp_path, monkeypatch):
    """``scratch`` for a test that starts stores alone: a Milvus another test runs (under the
    Milvus lock) is none of its business."""
    yield from _scratch(tmp_path, monkeypatch, milvus=False)


def _scratch(tmp_path, monkeypatch, milvus: bool):
    work, tmp, state = tmp_path / "work", tmp_path / "tmp", tmp_path / "state"
    work.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("MSBENCH_WORK_DIR", str(work))
    monkeypatch.setenv("MSBENCH_STATE_DIR", str(state))
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    sockets_before = set(Path("/tmp").glob("*.sock"))
    yield tmp_path
    leftovers = processes_mentioning(tmp_path)
    for proc in leftovers:  # clean up our own mess even when the assertion below fails
        proc.kill()
    assert not leftovers, f"processes left running: {[p.info['cmdline'] for p in leftovers]}"
    assert not (milvus and milvus_pid_alive()), "a Milvus standalone is still running"
    assert not list(work.iterdir()), f"stack directories left behind: {list(work.iterdir())}"
    assert not list(tmp.iterdir()), f"temporary files left behind: {list(tmp.iterdir())}"
    registered = sorted(p.name for p in state.glob("*/*.json"))
    assert not registered, f"the registry still lists what we started: {registered}"
    new_sockets = set(Path("/tmp").glob("*.sock")) - sockets_before
    assert not new_sockets, f"unix sockets left in /tmp: {sorted(new_sockets)}"


@contextmanager
def store_alone(name: str, folder: Path, timeout_s: float):
    """The named backend's store started alone (no Milvus) in ``folder``, stopped afterwards; the test
    is skipped, saying why, where the store cannot run here."""
    backend = load_backends()[name]
    reason = unavailable_reason(backend)
    if reason:
        pytest.skip(f"prerequisite missing for {name}: {reason}")
    store = make_store(backend, folder / "store", folder / "logs")
    try:
        store.start(timeout_s)
        yield store
    finally:
        store.stop(fast=True)
