"""`msbench sweep` end to end: two tiny sizes, real Milvus 2.3.5 on real MinIO and MinIO held to half
a CPU (the handicapped control, mild so the test stays short), one trial each; the larger size with
the smoke profile's fine pacing, the smaller with Milvus's own (--at)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from msbench.analysis import scaling
from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.providers.milvus_native import DEFAULTS_2_3_5, FINE_PACING
from msbench.report import sweep as sweep_report
from msbench.results import load_sweep

pytestmark = pytest.mark.integration


def test_cli_sweep_runs_each_size_as_a_study_and_records_what_the_fits_need(scratch):
    reason = unavailable_reason(load_backends()["minio"], install=True)
    if reason:
        pytest.skip(f"prerequisite missing for minio: {reason}")
    root = scratch / "sweeps"
    args = ["sweep", "--sizes", "1MB,2MB", "--dim", "32", "--backends", "minio", "--controls", "slow",
            "--trials", "1", "--profile", "smoke", "--sweep-id", "it", "--results", str(root), "--no-progress",
            "--set", "footprint_after_gc=false", "--set", "n_queries=50",
            "--set", "warmup_queries=5", "--set", "control_cpu=0.5", "--set", "milvus_session_ttl_s=5",
            "--at", "1MB:milvus_pacing=default"]   # a mild handicap and a short restart: this tests the sweep
    done = subprocess.run([sys.executable, "-m", "msbench.cli", *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    sweep = load_sweep(root / "it")
    assert list(sweep.runs) == ["1MB", "2MB"]
    for label, run in sweep.runs.items():
        assert sorted(run.trials["backend"]) == ["minio", "minio-slow"] and set(run.trials["status"]) == {"ok"}
        found = sweep.manifest.bucket_bytes[label]   # the footprint's bytes, recorded in sweep.json
        assert 0.75 <= found / sweep.point(label).target_bytes <= 1.25, (label, found)
        settings = json.loads((run.path / "trials" / "minio" / "trial-01" / "trial.json").read_text())["ran"]
        expected = FINE_PACING if label == "2MB" else {}
        assert settings["milvus_settings"] == {**DEFAULTS_2_3_5, **expected}
        mine = run.results[run.results["backend"] == "minio"]
        rows = mine.set_index(["phase", "metric"])["value"]
        for phase in ("load_first", "load_warm", "load_cold"):   # a load's store part, off the 1 s tick
            assert 0 < rows[phase, f"{phase}_segments_s"] <= rows[phase, f"{phase}_s"] + 0.05
            assert 0 < rows[phase, f"{phase}_s3_span_s"] < rows[phase, f"{phase}_s"]
    results, summary = sweep_report.frames(sweep)
    points = scaling.trial_points(results, summary)
    moved = points[points["metric"] == "load_first_s"].groupby("size")["moved_gb"].mean()
    assert 1.5 < moved["2MB"] / moved["1MB"] < 2.5   # twice the bytes in the bucket, twice the bytes read
    assert "No line could be fitted" in sweep_report.fit_table(sweep).attrs["note"]   # 2 points a store
    ceiling = sweep_report.ceiling_table(sweep)   # warp beside each size's loads
    assert sorted(zip(ceiling["size"], ceiling["backend"])) == [
        ("1MB", "minio"), ("1MB", "minio-slow"), ("2MB", "minio"), ("2MB", "minio-slow")]
