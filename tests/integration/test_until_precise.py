"""Trials until precise on real Milvus and MinIO: `msbench run --until-precise` adds rounds until the
rule stops it, records why, shows its progress, resumes, and the analysis notebook (its run_id left
empty, as it opens in JupyterLab) finds the run and says why it stopped."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from msbench import execute, pipeline
from msbench.run import stopping
from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.results import Manifest, RunDir
from msbench.run.phases import PHASES

from .expect import BRIEF_TRIAL

# 2 to 3 smoke trials of about a minute each, then the analysis notebook.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
TARGET, MAX_TRIALS = 0.5, 3


def _msbench(*args, timeout=1200):
    return subprocess.run([sys.executable, "-m", "msbench.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_until_precise_stops_for_the_reason_it_records(scratch):
    reason = unavailable_reason(load_backends()["minio"], install=True)
    if reason:
        pytest.skip(f"prerequisite missing for minio: {reason}")
    results = scratch / "runs"
    args = ["run", "--backends", "minio", "--trials", "2", "--until-precise", f"{TARGET:.0%}", "--max-trials",
            str(MAX_TRIALS), "--profile", "smoke", "--no-controls", "--set", "warp_seconds=0",
            *(arg for k, v in BRIEF_TRIAL.items() for arg in ("--set", f"{k}={v}")), "--run-id", "precise",
            "--results", str(results)]
    done = _msbench(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    run = results / "precise"
    manifest = json.loads((run / "manifest.json").read_text())
    typed = Manifest.from_json((run / "manifest.json").read_text())
    trials = pd.read_csv(run / "trials.csv")
    stop = manifest["stopping"]
    rounds = len(trials)
    assert trials.status.tolist() == ["ok"] * rounds and rounds in (2, 3)
    assert manifest["until_precise"] == {"target": TARGET, "max_trials": MAX_TRIALS, "max_minutes": None,
                                         "confidence": stopping.calibrated_level(2, MAX_TRIALS, TARGET)}
    assert stop["rounds"] == rounds == max(t["round"] for t in manifest["order"])
    assert [c["rounds"] for c in stop["checks"]] == list(range(2, rounds + 1))
    # The recorded reason is the one the run's own figures give.
    rundir = RunDir(results, "precise")
    table = stopping.widths(rundir.rows(), rundir.records(), typed)
    assert len(table) >= 15 and (table.n == rounds).all()
    precise = bool((table.relative <= TARGET).all())
    assert stop["reason"] == ("precise" if precise else "max_trials"), table.to_string()
    assert precise or rounds == MAX_TRIALS
    assert stop["too_wide"] == int((~(table.relative <= TARGET)).sum())
    # What it showed: a line per trial and per decision, the bar with the phase under way, no kernel noise.
    for n in range(1, rounds + 1):
        assert re.search(rf"^minio trial {n} \(round {n}, #{n}\): ok in \d", done.stdout, re.M), done.stdout
    assert re.search(r"^round 2: \d+ of \d+ intervals wider than ±50%", done.stdout, re.M), done.stdout
    assert stopping.describe(typed) in done.stdout
    names = "|".join(["provision", "teardown", *(p.name for p in PHASES)])
    assert re.search(rf"minio #\d \(round \d\): ({names}) \d", done.stderr), done.stderr[-3000:]
    assert "trials |" in done.stderr and "elapsed" in done.stderr
    # Resuming: nothing more runs, and the rule says the same.
    again = _msbench(*args, timeout=300)
    assert again.returncode == 0 and "0 ok, 0 failed this time" in again.stdout, again.stdout + again.stderr
    assert json.loads((run / "manifest.json").read_text())["stopping"]["reason"] == stop["reason"]
    # The analysis notebook as JupyterLab opens it (run_id ""): it finds this run and says why it stopped.
    executed = scratch / "analysis.ipynb"
    notebook = pipeline.project_root() / "notebooks" / "analysis.ipynb"
    execute.notebook(notebook, executed, {"results_root": str(results), "figures_dir": str(scratch / "figures")},
                     cwd=notebook.parent)
    text = json.dumps([c.get("outputs", []) for c in nbformat.read(executed, as_version=4).cells])
    assert "run_id not given: analysing precise, the newest complete run" in text
    assert json.dumps(stopping.describe(typed))[1:-1] in text
