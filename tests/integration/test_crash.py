"""A notebook kernel killed mid-trial: its servers die with it, the run records the trial failed
and goes on with the next, and ``msbench cleanup`` leaves nothing of ours behind (no process,
listening port, PID file, temporary directory; the Docker part finds no engine or nothing)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

from msbench.run import study
from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.providers import registry

from .expect import BRIEF_TRIAL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RUN = ("from msbench import pipeline\nfrom msbench.run import study\n"
       "s = study.open_run({root!r}, 'crash')\n"
       "pipeline.run_benchmarks(s, progress=False)\n")


def _milvus_entry(state) -> dict | None:
    for path in (state / "processes").glob("*.json"):
        entry = json.loads(path.read_text())
        if entry["name"] == "milvus":
            return entry
    return None


def test_a_killed_kernel_leaves_nothing_after_cleanup(scratch):
    reason = unavailable_reason(load_backends()["minio"])
    if reason:
        pytest.skip(f"prerequisite missing for minio: {reason}")
    root = scratch / "runs"
    prepared = study.prepare(backends="minio", trials=2, profile="smoke", results_root=root, run_id="crash",
                             controls=False, overrides={"warp_seconds": 0.0, **BRIEF_TRIAL})
    env = dict(os.environ)   # the scratch fixture's work, temp and state folders
    runner = subprocess.Popen([sys.executable, "-c", RUN.format(root=str(root))], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        state = registry.state_dir()
        deadline = time.monotonic() + 300
        while (entry := _milvus_entry(state)) is None:
            assert runner.poll() is None and time.monotonic() < deadline, runner.stdout.read()
            time.sleep(0.2)
        kernel = psutil.Process(entry["owner_pid"])
        assert "ipykernel" in " ".join(kernel.cmdline()), kernel.cmdline()
        servers = [json.loads(p.read_text())["pid"] for p in (state / "processes").glob("*.json")]
        kernel.send_signal(signal.SIGKILL)
        out, _ = runner.communicate(timeout=600)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, out
    # the servers died with the kernel (PR_SET_PDEATHSIG), before any cleanup
    assert not [pid for pid in servers if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE], servers
    trials = pd.read_csv(prepared.run.path / "trials.csv").set_index("trial")
    assert trials.loc[1, "status"] == "failed" and trials.loc[1, "failed_phase"] == "notebook", trials.to_dict()
    assert "DeadKernelError" in trials.loc[1, "error"] or "died" in trials.loc[1, "error"], trials.loc[1, "error"]
    assert trials.loc[2, "status"] == "ok", trials.to_dict()   # the run went on
    # what the dead kernel left: its scratch folders and Milvus's PID file; cleanup removes them
    left = sorted(p.name for p in (state / "paths").glob("*.json"))
    assert left, "a killed kernel cannot have removed its scratch folders"
    done = subprocess.run([sys.executable, "-m", "msbench.cli", "cleanup"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed" in done.stdout and "msbench-logs-" in done.stdout, done.stdout
    assert not list(state.glob("*/*.json"))
    assert registry.stale_milvus_pid_file() is None
    listening = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in servers]
    assert not listening, listening
    # the scratch fixture then checks: no process of ours, no stack or temporary directory left
