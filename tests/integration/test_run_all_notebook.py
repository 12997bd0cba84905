"""run_all.ipynb end to end, at the smallest scale that runs every part: 2 rounds of MinIO (the
baseline), SeaweedFS and MinIO's two controls (an A/A twin and a CPU-handicapped twin) on the smoke
workload, the analysis, and the HTML report rendered in headless Chromium. Resuming is tested through
msbench run (test_until_precise.py) and on simulated trials (tests/unit/test_precision.py): the
notebooks resume through the same Study. Whether the study sees the handicapped twin, and no
difference between the A/A twins, is a result of the default study (its report's "Can this run see a
difference?"), not of this test: here the controls must run, be held (only the handicapped twin is
throttled) and be reported."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from msbench import pipeline, report
from msbench.backends import load_backends
from msbench.providers.catalog import unavailable_reason
from msbench.results import load_run
from tests.conftest import milvus_pid_alive, processes_mentioning

from .expect import BRIEF_TRIAL, check_trial

# 8 smoke trials and the analysis: several minutes, more than the suite's 900 s per test on a busy machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]
ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ["Environment", "Trials", "Deviations", "Per-backend summary", "Can this run see a difference?",
            "Comparison with the baseline",
            "Variance", "Search latency", "Power", "A/A", "Published vs reproduced",
            "What Milvus asked of each store", "Each store on its own", "Can this store back Milvus?"]


# The smoke workload with one throughput level, so that every phase runs, and as the default study runs
# it: no second footprint after a forced GC (test_stores.py measures that on every other store), the
# handicapped twin held to a quarter of a CPU (at smoke's twentieth warp alone takes 90 s a trial).
OVERRIDES = {"concurrency": [2], "throughput_seconds": 1.0, "control_cpu": 0.25, **BRIEF_TRIAL}
BACKENDS = ["minio", "seaweedfs", "minio-aa", "minio-slow"]
ROUNDS = 2


def _papermill(cwd: Path, notebook: str, output: Path, env: dict, **params) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "papermill", notebook, str(output), "--no-progress-bar",
            "-y", json.dumps({"overrides": OVERRIDES})]
    for name, value in params.items():
        args += ["-p", name, str(value)]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=2400)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """One real study shared by the tests below; afterwards nothing it started may be left."""
    registry = load_backends()
    for name in ("minio", "seaweedfs"):
        reason = unavailable_reason(registry[name], install=True)
        if reason:
            pytest.skip(f"prerequisite missing for {name}: {reason}")
    base = tmp_path_factory.mktemp("e2e")
    for sub in ("work", "tmp"):
        (base / sub).mkdir()
    env = {**os.environ, "MSBENCH_WORK_DIR": str(base / "work"), "TMPDIR": str(base / "tmp")}
    sockets_before = set(Path("/tmp").glob("*.sock"))
    params = dict(profile="smoke", trials=ROUNDS, run_id="e2e", backends="minio,seaweedfs", controls=True,
                  results_root=base / "runs", report_dir=base / "report", figures_dir=base / "figures")
    try:
        done = _papermill(ROOT, "notebooks/run_all.ipynb", base / "run_all.ipynb", env, **params)
    except BaseException:   # a timeout or an interrupt: the servers of the trial under way must not outlive it
        for proc in processes_mentioning(base):
            proc.kill()
        raise
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    yield {"base": base, "env": env, "params": params, "run": base / "runs" / "e2e"}
    leftovers = processes_mentioning(base)
    for proc in leftovers:
        proc.kill()
    assert not leftovers and not milvus_pid_alive()
    assert not list((base / "work").iterdir())
    assert not set(Path("/tmp").glob("*.sock")) - sockets_before


def test_every_trial_ran_in_interleaved_order_with_every_phase(e2e):
    run = e2e["run"]
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 4 * ROUNDS and set(trials.status) == {"ok"}, trials[["backend", "trial", "status", "error"]]
    manifest = json.loads((run / "manifest.json").read_text())
    order = manifest["order"]
    for rnd in range(1, ROUNDS + 1):   # every round runs each backend once
        assert sorted(t["backend"] for t in order if t["round"] == rnd) == sorted(BACKENDS)
    assert manifest["baseline"] == "minio" and manifest["handicaps"] == {"minio-slow": {"cpu": 0.25}}
    assert manifest["msbench"]["commit"] and manifest["schema_version"] >= 2
    results = pd.read_parquet(run / "results.parquet")
    assert set(results.provider) == {"native"}
    phases = {"insert", "flush", "index", "load_first", "load_warm", "load_noop", "load_cold", "search", "footprint",
              "integrity", "store_alone"}
    for backend in BACKENDS:
        assert phases <= set(results[results.backend == backend].phase)
    for backend in ("minio", "seaweedfs"):   # every figure of every phase (the other stores: test_stores.py)
        check_trial(results[(results.backend == backend) & (results.trial == 1)], backend, after_gc=False)
    # every trial's S3 requests were captured and attributed to its phases; warp ran on every store
    summary = pd.read_csv(run / "s3_summary.csv")
    for backend in BACKENDS:
        mine = summary[(summary.backend == backend) & (summary.operation == "all")]
        assert set(mine.trial) == set(range(1, ROUNDS + 1)) and {"flush", "load_first", "load_cold"} <= set(mine.phase)
        assert (mine.errors == 0).all() or backend == "minio-slow", mine
    warp = results[(results.phase == "store_alone") & (results.metric == "warp_get_mib_per_s")]
    stores = warp[warp.backend.isin(["minio", "seaweedfs"])]
    assert len(stores) == 2 * ROUNDS and (stores.value > 0).all(), stores
    # a quarter of a CPU may leave warp too little to analyse: then the trial says so, and stays ok
    ran = set(zip(warp.backend, warp.trial))
    noted = trials[trials.store_alone_note.fillna("") != ""]
    assert all((b, t) in ran or ((noted.backend == b) & (noted.trial == t)).any()
               for b, t in zip(trials.backend, trials.trial))
    assert len(list((run / "notebooks").glob("benchmark-*-trial-*.ipynb"))) == 4 * ROUNDS
    # each store kind was checked once before the first trial (the controls are MinIO)
    assert set(manifest["conformance"]) == {"minio", "seaweedfs"}
    for kind, checked in manifest["conformance"].items():
        assert not checked.get("error") and all(c["outcome"] == "pass" for c in checked["checks"]
                                                if c["name"] in ("range_get", "list_pagination", "multipart")), (kind, checked)
    # the handicap really held the store back, and only the handicapped twin; Milvus said which version ran
    for backend in BACKENDS:
        for t in range(1, ROUNDS + 1):
            meta = json.loads((run / "trials" / backend / f"trial-{t:02d}" / "trial.json").read_text())
            throttled = meta["handicap"].get("throttled_s", 0)
            assert (throttled > 0) == (backend == "minio-slow"), (backend, t, meta["handicap"])
            assert "2.3.5" in meta["ran"]["milvus_version"], meta["ran"]


def test_the_controls_are_reported_beside_the_stores(e2e):
    """The controls' own section compares each twin with its store on every compared metric; the
    comparison table leaves them out and says where the store mattered."""
    run = load_run(e2e["run"])
    table = report.controls_table(run)
    assert len(table) >= 15 and table["positive-control reading"].str.len().all()
    comparison = report.comparison_table(run)
    assert set(comparison["backend"]) == {"seaweedfs"}
    assert "does the store matter here? (positive control)" in comparison


def test_report_has_every_section_and_no_secret(e2e):
    report = e2e["base"] / "report" / "index.html"
    html = report.read_text()
    for section in SECTIONS:
        assert section in html, f"section {section!r} missing from the report"
    assert "<table" in html and "data:image/png;base64" in html
    assert not re.search(r"src=[\"']https?://|import\(\s*[\"']https?://", html), "the report must open offline"
    code_cell = re.search(r"class=\"[^\"]*jp-InputArea-editor", html)
    assert not code_cell and "report.show(" not in html, "no code in the report"
    assert (e2e["run"] / "report.html").exists() and list((e2e["base"] / "figures").glob("*.svg"))
    # Access keys are generated per trial as msb + 16 hex digits: none may be published.
    for path in e2e["run"].rglob("*"):
        if path.is_file() and path.suffix in (".log", ".ipynb", ".html", ".json", ".csv", ""):
            assert not re.search(r"msb[0-9a-f]{16}", path.read_text(errors="replace")), f"key in {path}"


def test_report_renders_in_headless_chromium(e2e):
    report = e2e["base"] / "report" / "index.html"
    dom = pipeline.chromium("--dump-dom", report.as_uri(), profile=e2e["base"] / "chromium")
    if dom is None:
        pytest.skip("prerequisite missing: Debian's chromium (scripts/setup installs it as root)")
    loaded = re.search(r'data-figures="(\d+)/(\d+)"', dom.stdout)
    assert loaded, dom.stderr[-2000:]
    assert int(loaded.group(2)) >= 5 and loaded.group(1) == loaded.group(2), "a figure did not load"
    assert dom.stdout.count("<table") >= 5
    # publish_report kept the first screen beside the report; it opens on the verdict.
    shot = e2e["run"] / "first-screen.png"
    assert shot.exists() and shot.stat().st_size > 10_000
    assert "Verdict: which store, and how sure" in dom.stdout.split("<table")[0]
