"""Real Milvus 2.3.5 on real SeaweedFS and real Ceph RGW, every phase, through the CLI and the API."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.config import make_params
from msbench.run.phases import Phase, insert
from msbench.providers.process import port_is_open
from msbench.results import RunDir
from msbench.run.trial import run_trial
from msbench.run.workload import load_dataset

from .expect import check_trial

pytestmark = pytest.mark.integration

def _require(*names):
    registry = load_backends()
    for name in names:
        reason = unavailable_reason(registry[name], install=True)
        if reason:
            pytest.skip(f"prerequisite missing for {name}: {reason}")


def _msbench(*args, env=None, timeout=1500):
    return subprocess.run([sys.executable, "-m", "msbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_cli_run_records_every_phase_and_resumes(scratch):
    """Through `msbench run` (the notebooks' end-to-end test covers both stores over 3 trials)."""
    _require("ceph-rgw")
    results = scratch / "runs"
    args = ["run", "--backends", "ceph-rgw", "--trials", "1", "--profile", "smoke", "--no-controls",
            "--run-id", "it", "--results", str(results), "--no-progress"]
    done = _msbench(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    run = results / "it"
    trials = pd.read_csv(run / "trials.csv")
    assert trials.backend.tolist() == ["ceph-rgw"] and trials.status.tolist() == ["ok"], trials.to_string()
    df = pd.read_parquet(run / "results.parquet")
    assert set(df.columns) >= {"run", "backend", "provider", "trial", "phase", "metric", "value", "unit"}
    check_trial(df, "ceph-rgw")
    lat = pd.read_parquet(run / "latencies.parquet")
    assert len(lat) == 200 and lat.warmup.sum() == 20
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["milvus"]["version"] == "2.3.5" and len(manifest["milvus"]["sha256"]) == 64
    assert manifest["components"]["ceph-rgw"]["sha256"] and manifest["host"]["cores"] >= 1
    assert "not requested" in manifest["skipped"]["seaweedfs"] and "minio" in manifest["skipped"]
    assert (run / "trials" / "ceph-rgw" / "trial-01" / "logs" / "milvus.log").exists()
    # Resumable: the same run_id runs nothing that already completed.
    again = _msbench(*args, timeout=120)
    assert again.returncode == 0 and "1 already complete" in again.stdout, again.stdout + again.stderr


def _explode(state):
    raise RuntimeError("phase failed on purpose")


def _interrupt(state):
    raise KeyboardInterrupt


def test_failed_phase_is_recorded_and_leaves_nothing_behind(scratch):
    _require("seaweedfs")
    params = make_params("smoke", {"n_vectors": 1000, "n_queries": 50, "warmup_queries": 5})
    run = RunDir(scratch / "runs", "fail")
    meta = run_trial(run, load_backends()["seaweedfs"], 1, 0, params, load_dataset(params), phases=(Phase("insert", insert), Phase("_explode", _explode)))
    assert meta.status == "failed" and meta.failed_phase == "_explode"
    assert "phase failed on purpose" in meta.error
    kept = pd.read_csv(run.path / "results.csv")
    assert "insert_rows_per_s" in set(kept.metric)  # what finished before the failure is kept
    assert pd.read_csv(run.path / "trials.csv").status.tolist() == ["failed"]
    # the scratch fixture then checks: no process, no stack directory, no temp file left


def test_interrupt_tears_down_and_records_nothing(scratch):
    _require("seaweedfs")
    params = make_params("smoke", {"n_vectors": 1000, "n_queries": 50, "warmup_queries": 5})
    run = RunDir(scratch / "runs", "interrupted")
    ports = []

    def spy(state):
        ports.extend([state.stack.milvus.port, state.stack.store.port])
        return insert(state)

    with pytest.raises(KeyboardInterrupt):
        run_trial(run, load_backends()["seaweedfs"], 1, 0, params, load_dataset(params), phases=(Phase("insert", spy), Phase("_interrupt", _interrupt)))
    assert run.trial_status("seaweedfs", 1) is None  # an interrupted trial is redone on resume
    assert ports and not any(port_is_open(p) for p in ports)
