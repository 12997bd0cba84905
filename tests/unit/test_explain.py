"""The report's S3-request and warp sections (msbench.report.explain) on synthetic runs (no servers)."""
import numpy as np
import pandas as pd
import pytest

from msbench.measure import traffic
from msbench.report import explain
from msbench.results import IDENT, RunDir, TrialRecord, load_run

from .test_report import make_run

PHASES = [("flush", 0.0, 3.0), ("load_first", 3.0, 7.0), ("load_cold", 7.0, 11.0)]


def requests_of(slow_gets: float, extra_lists: int, rng) -> pd.DataFrame:
    """A trial's requests: 5 PUTs in flush, 6 GETs (latency x slow_gets) and LISTs in the loads."""
    rows = []

    def add(phase_start, op, method, n, ms, body):
        for i in range(n):
            start = phase_start + 0.3 * i
            rows.append({"conn": i, "client": "milvus", "start": start, "request_end": start,
                         "response_start": start + ms / 2000, "end": start + ms / 1000, "method": method,
                         "operation": op, "prefix": "index_files", "key": f"k{i}", "query": "", "range": "",
                         "status": 200.0, "error_code": "", "request_wire_bytes": 500 + (body if method == "PUT" else 0),
                         "response_wire_bytes": 300 + (body if method == "GET" else 0),
                         "request_body_bytes": float(body if method == "PUT" else 0),
                         "response_body_bytes": float(body if method == "GET" else 0),
                         "duration_ms": ms, "ttfb_ms": ms / 2, "retry": False})
    add(0.1, "PUT", "PUT", 5, 20 * (1 + 0.05 * rng.standard_normal()), 1 << 20)
    for begin in (3.1, 7.1):
        add(begin, "GET", "GET", 6, 10 * slow_gets * (1 + 0.05 * rng.standard_normal()), 2 << 20)
        add(begin + 0.05, "LIST", "GET", 3 + extra_lists, 1.0, 0)
    return traffic.assign_phases(pd.DataFrame(rows), PHASES)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """minio and "slowstore" (GETs twice as slow, loads 1.5x slower); warp failed once on slowstore."""
    root = tmp_path_factory.mktemp("explain")
    make_run(root, {"minio": {}, "slowstore": {"load_first_s": 1.5, "load_cold_s": 1.5}}, 3)
    rundir = RunDir(root, "synthetic")
    for tdir in rundir.trial_dirs():
        record = TrialRecord.from_json((tdir / "trial.json").read_text())
        ident = {k: getattr(record, k) for k in IDENT}
        slow = record.backend == "slowstore"
        rng = np.random.default_rng(record.trial)
        requests = requests_of(2.0 if slow else 1.0, 2 if slow else 0, rng)
        requests.assign(**ident).to_parquet(tdir / "s3_requests.parquet")
        traffic.summarize(requests).assign(**ident).to_csv(tdir / "s3_summary.csv", index=False)
        pd.DataFrame(PHASES, columns=["phase", "start", "end"]).assign(**ident).to_csv(tdir / "phase_windows.csv",
                                                                                        index=False)
        results = pd.read_csv(tdir / "results.csv")
        warp_failed = slow and record.trial == 2
        warp = {"warp_put_mib_per_s": 200.0, "warp_get_mib_per_s": 800.0 * (0.5 if slow else 1.0),
                "warp_put_latency_p50_ms": 5.0, "warp_put_latency_p99_ms": 9.0, "warp_get_latency_p50_ms": 2.0,
                "warp_get_latency_p99_ms": 4.0, "warp_put_errors": 0.0, "warp_get_errors": 0.0,
                "warp_put_obj_size_bytes": 2 << 20, "warp_get_obj_size_bytes": 2 << 20,
                "warp_put_concurrency": 2.0, "warp_get_concurrency": 2.0}
        if warp_failed:
            warp = {k: v for k, v in warp.items() if not k.startswith("warp_get")} | {"warp_get_failed": 1.0}
            record.store_alone_note = "warp get: RuntimeError: warp get failed (exit 1): internal error"
            (tdir / "trial.json").write_text(record.to_json())
        extra = pd.DataFrame([{**ident, "phase": "store_alone", "metric": m, "value": v * (1 + 0.02 * rng.random()),
                               "unit": "x"} for m, v in warp.items()])
        pd.concat([results, extra]).to_csv(tdir / "results.csv", index=False)
    rundir.rebuild_tables()
    return load_run(rundir.path)


def test_requests_table_has_every_phase_with_intervals(run):
    table = explain.requests_table(run)
    assert list(table["phase"].drop_duplicates()) == ["flush", "load_first", "load_cold"]
    row = table[(table.phase == "load_first") & (table.backend == "slowstore")].iloc[0]
    assert row["requests"].startswith("11 [") and row["MiB received (GET bodies)"].startswith("12 [")
    assert "Student t" in table.attrs["note"] and "{" not in table.attrs["note"]
    by_op = explain.requests_table(run, by_operation=True)
    assert {"PUT", "GET", "LIST"} == set(by_op["operation"])


def test_a_slower_phase_is_pointed_at_its_slower_requests(run):
    table = explain.explain_phases(run, "minio").set_index("phase")
    assert table.loc["load_first", "operation differing most"] == "GET"
    assert table.loc["load_first", "reading"] == "as many and slower GET requests"
    assert "slower" in table.loc["load_first", "phase time vs minio"]


def test_warp_tables_and_the_failure_they_record(run):
    warp = explain.warp_table(run).set_index("backend")
    assert warp.loc["minio", "warp failed"] == "no"
    assert warp.loc["slowstore", "warp failed"].startswith("1 of 3 trials: warp get")
    assert warp.loc["slowstore", "GET MiB/s"].startswith("40")   # the two trials that ran, about 400
    ratio = explain.milvus_vs_store(run)
    first = ratio[(ratio.phase == "load_first") & (ratio.backend == "minio")].iloc[0]
    assert first["n"] == 3 and first["Milvus / warp"] != "–"


def test_figures_are_written(run, tmp_path):
    assert explain.fig_timeline(run, tmp_path).stat().st_size > 10_000
    assert explain.fig_warp(run, tmp_path).stat().st_size > 5_000


def test_a_run_without_capture_says_so(tmp_path):
    bare = make_run(tmp_path, {"minio": {}, "other": {}}, 2)
    assert explain.requests_table(bare).empty and "No S3 requests" in explain.requests_table(bare).attrs["note"]
    assert "did not run" in explain.warp_table(bare).attrs["note"]
    assert explain.fig_timeline(bare, tmp_path).exists()
