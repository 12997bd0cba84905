"""The shipped trace (data/traces/smoke-minio.parquet, Milvus's requests of a smoke trial on MinIO)
replayed natively against two real stores, no Milvus: every request is issued and answered, the
request counts and object bytes come back exactly as recorded, the run folder is written, and no
key of the trace appears in it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import psutil
import pytest

from msbench.backends import load_backends
from msbench.measure import traffic
from msbench.providers.catalog import unavailable_reason
from msbench.measure import trace as tr
from msbench.replay import fidelity, record, runner
from tests.unit.test_replay import captured

pytestmark = pytest.mark.integration

TRACE = Path(__file__).resolve().parents[2] / "data" / "traces" / "smoke-minio.parquet"
STORES = ("minio", "seaweedfs")


@pytest.fixture
def stores():
    missing = {name: unavailable_reason(load_backends()[name]) for name in STORES}
    missing = {name: why for name, why in missing.items() if why}
    if missing:
        pytest.skip("prerequisite missing: " + "; ".join(f"{n}: {why}" for n, why in missing.items()))
    return ",".join(STORES)


def test_the_shipped_trace_replays_on_two_stores_with_its_counts_and_bytes(store_scratch, stores):
    recorded = tr.describe(tr.read(TRACE)).set_index("phase")
    replay = runner.prepare([TRACE], backends=stores, trials=1, run_id="replay-it", results_root=store_scratch / "runs")
    outcomes = runner.run_all(replay, show=False)
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.error for o in outcomes]

    run = record.load(store_scratch / "runs" / "replay-it")
    for backend in STORES:
        mine = run.results[run.results["backend"] == backend]
        got = mine.pivot_table(index="phase", columns="name", values="value", aggfunc="first")
        assert (got["errors"] == 0).all(), got
        for column in ("requests", "object_bytes_read", "object_bytes_written"):
            assert got.loc[recorded.index, column].tolist() == recorded[column].tolist(), (backend, column)
        assert (got["replay_s"] > 0).all() and (got["busy_s"] <= got["replay_s"]).all()
    if traffic.missing_prerequisite() is None:   # root and tcpdump: the wire saw every request too
        table = fidelity.run_fidelity(run)
        assert len(table) == len(recorded) and table["exact"].all(), table
        print("\n" + table[["phase", "busy_s_recorded", "busy_s_replayed", "busy_ratio"]].to_string(index=False))

    folder = replay.run.path
    assert run.manifest.kind == "replay" and run.manifest.traces[0].sha256 == replay.traces[0].sha256
    assert [(r.backend, r.trace, r.status) for r in replay.run.records()] == [(b, TRACE.stem, "ok") for b in STORES]
    assert len(pd.read_csv(folder / "trials.csv")) == 2 and len(pd.read_parquet(folder / "replay_requests.parquet"))
    keys = set(tr.read(TRACE).requests["key"]) - {""}
    ours = [p for p in folder.rglob("*") if p.is_file() and not {"traces", "logs"} & set(p.parts)]   # not the stores' logs
    assert {"s3_requests.parquet", "replay_requests.parquet", "trial.json", "results.csv"} <= {p.name for p in ours}
    for path in ours:
        text = path.read_bytes()
        assert not [k for k in keys if k.encode() in text], f"{path.name} names keys of the trace"


def test_recorded_pacing_keeps_the_offsets_and_counts_late_starts(store_scratch, stores):
    replay = runner.prepare([TRACE], backends="minio", trials=1, pacing="recorded", phases="load_first",
                            run_id="replay-open", results_root=store_scratch / "runs", capture=False)
    assert [o.status for o in runner.run_all(replay, show=False)] == ["ok"]
    run = record.load(store_scratch / "runs" / "replay-open")
    requests = run.requests
    assert (requests["start_s"] >= requests["scheduled_s"] - 1e-3).all()   # never before its recorded offset
    late = run.results[run.results["name"] == "late_starts"]["value"].iloc[0]
    assert late == (requests["late_s"] > 0.002).sum()
    assert run.results[run.results["name"] == "replay_s"]["value"].iloc[0] >= requests["scheduled_s"].max()


def test_recorded_pressure_holds_cpu_beside_the_store(store_scratch, stores, tmp_path):
    """--pressure recorded: burners use the trace's recorded cores beside the store during the phase
    (a shipped trace made before the field, given one core of company here) and are gone after."""
    trace = tr.read(TRACE).only(["load_first", "load_warm"])
    cpu = pd.DataFrame([{"phase": p, "metric": "milvus_cpu_s", "value": span.duration_s, "unit": "s"}
                        for p, span in zip(trace.phases, trace.meta.phases)])
    busy = tr.write(tr.with_beside_cores(trace, cpu), tmp_path / "busy.parquet")
    replay = runner.prepare([busy], backends="minio", trials=1, pressure="recorded", run_id="replay-busy",
                            results_root=store_scratch / "runs", capture=False)
    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    assert [o.status for o in runner.run_all(replay, show=False)] == ["ok"]
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= ours   # no burner (nor store) outlives it
    got = record.load(store_scratch / "runs" / "replay-busy").results.set_index("metric")["value"]
    for phase in trace.phases:
        assert got[f"pressure_cores [{phase}]"] == 1.0 and got[f"pressure_used_cores [{phase}]"] > 0.2, got


def test_a_repeated_phase_completes_an_upload_of_its_own(store_scratch, stores, tmp_path):
    """The default study's flush completes the insert's last multipart upload. Replayed three times as it
    was, MinIO answered the second and third completion 404; each repetition now begins the upload
    again first (untimed), and every request is answered as recorded."""
    key, part = "files/insert_log/1/2/3/100/8", 5 * 2**20   # every part but the last at least 5 MiB
    frame = captured([("insert", 1, 100.1, 100.2, "multipart create", key, "", 0, 250, 200),
                      ("insert", 1, 100.3, 100.5, "multipart part", key, "", part, 0, 200),
                      ("insert", 1, 100.6, 100.7, "multipart part", key, "", 1000, 0, 200),
                      ("flush", 1, 110.1, 110.3, "multipart complete", key, "", 300, 250, 200)])
    windows = pd.DataFrame({"phase": ["insert", "flush"], "start": [100.0, 110.0], "end": [105.0, 114.0]})
    trace = tr.write(tr.from_requests(frame, windows, {"store": "minio"}), tmp_path / "multipart.parquet")
    replay = runner.prepare([trace], backends="minio", trials=1, repeat=3, run_id="replay-mp",
                            results_root=store_scratch / "runs", capture=False)
    assert [o.status for o in runner.run_all(replay, show=False)] == ["ok"]
    requests = record.load(store_scratch / "runs" / "replay-mp").requests
    assert (requests["error"] == "").all(), requests[requests["error"] != ""]
    assert requests.groupby("phase")["repetition"].nunique().to_dict() == {"flush": 3, "insert": 3}
