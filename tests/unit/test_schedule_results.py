import json
from collections import Counter

import pandas as pd
import pytest

from msbench.run import schedule
from msbench.results import RunDir, TrialRecord, check_run_id, redact


def test_rmit_every_round_runs_every_backend_once_in_a_fresh_order():
    order = schedule.plan(["a", "b", "c"], trials=20, seed=7)
    assert [t.seq for t in order] == list(range(60))
    for rnd in range(1, 21):
        in_round = [t for t in order if t.round == rnd]
        assert sorted(t.backend for t in in_round) == ["a", "b", "c"]
        assert all(t.trial == rnd for t in in_round)
    firsts = Counter(t.backend for t in order if t.seq % 3 == 0)
    assert len(firsts) == 3  # orders really vary between rounds
    assert order == schedule.plan(["a", "b", "c"], trials=20, seed=7)  # seeded
    with pytest.raises(ValueError):
        schedule.plan(["a"], trials=0, seed=1)


def test_run_id_validation():
    assert check_run_id("2026-11-27_smoke.1") == "2026-11-27_smoke.1"
    for bad in ("", "../up", "a b", "x" * 100):
        with pytest.raises(ValueError, match="run_id"):   # a ConfigError: one line, exit 2
            check_run_id(bad)


def _record(backend, trial, **fields):
    return TrialRecord("r", backend, backend, "native", trial, 0, **fields)


def _rows(backend, trial):
    return pd.DataFrame([{"run": "r", "backend": backend, "provider": "native", "trial": trial, "seq": 0,
                          "phase": "insert", "metric": "insert_s", "value": 1.0, "unit": "s"}])


def test_trials_written_atomically_and_tables_rebuilt(tmp_path):
    run = RunDir(tmp_path, "r")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "store.log").write_text("key=SECRETKEY123 started\n")
    run.write_trial(_record("a", 1, status="ok"), _rows("a", 1), None, logs, ["SECRETKEY123"])
    run.write_trial(_record("b", 1, error="boom"), _rows("b", 1).iloc[:0], None, None, [])
    assert run.trial_status("a", 1) == "ok" and run.trial_status("b", 1) == "failed"
    assert run.trial_status("a", 2) is None
    published = (run.trial_path("a", 1) / "logs" / "store.log").read_text()
    assert "SECRETKEY123" not in published and "<redacted>" in published
    results = pd.read_parquet(run.path / "results.parquet")
    assert list(results.backend) == ["a"]
    trials = pd.read_csv(run.path / "trials.csv")
    assert set(trials.status) == {"ok", "failed"}
    # A redone trial replaces the failed one; the old attempt is kept beside it, not mixed in.
    run.write_trial(_record("b", 1, status="ok"), _rows("b", 1), None, None, [])
    assert run.trial_status("b", 1) == "ok"
    assert json.loads((run.trial_path("b", 1).with_name("trial-01.previous") / "trial.json").read_text())["error"] == "boom"
    assert sorted(pd.read_csv(run.path / "results.csv").backend) == ["a", "b"]
    assert not list(run.path.rglob(".trial-*"))  # no staging directory left


def test_redact():
    assert redact("a=K1 b=K2", ["K1", "", "K2"]) == "a=<redacted> b=<redacted>"


def test_a_trial_recorded_without_rows_keeps_the_run_tables_readable(tmp_path):
    """A notebook whose kernel died is recorded with no rows at all (pipeline.run_benchmarks):
    the run's tables must still rebuild, and the next trial must still be written."""
    run = RunDir(tmp_path, "r1")
    run.write_trial(_record("minio", 1, failed_phase="notebook", error="DeadKernelError: Kernel died"), pd.DataFrame(),
                    None, None, [])
    rows = pd.DataFrame([{"run": "r1", "backend": "minio", "provider": "native", "trial": 2, "seq": 1,
                          "phase": "insert", "metric": "insert_s", "value": 1.0, "unit": "s"}])
    run.write_trial(_record("minio", 2, status="ok"), rows, None, None, [])
    assert pd.read_csv(run.path / "results.csv").metric.tolist() == ["insert_s"]
    assert pd.read_csv(run.path / "trials.csv").status.tolist() == ["failed", "ok"]
