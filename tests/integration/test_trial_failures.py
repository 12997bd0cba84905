"""A trial that fails mid-way, or is interrupted, on real Milvus and real SeaweedFS: what ran before is
kept (or nothing is recorded), and nothing is left running or listening."""
from __future__ import annotations

import pandas as pd
import pytest

from msbench.backends import load_backends
from msbench.config import make_params
from msbench.providers.catalog import unavailable_reason
from msbench.providers.process import port_is_open
from msbench.results import RunDir
from msbench.run.phases import Phase, insert
from msbench.run.trial import run_trial
from msbench.run.workload import load_dataset

pytestmark = pytest.mark.integration


def _require(*names):
    registry = load_backends()
    for name in names:
        reason = unavailable_reason(registry[name], install=True)
        if reason:
            pytest.skip(f"prerequisite missing for {name}: {reason}")


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
