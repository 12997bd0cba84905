"""The replay's pure logic: the trace format and its checks, a trial's trace written with its folder, the
order rule and the pacing (on a fake clock), what the bucket must hold before a phase, the typed records
of a replay run, the fidelity table, the report's tables, and a capture imported through the same parser
the trials use (a pcap written here byte by byte). The integration test (tests/integration/test_replay.py)
replays a real trace against real stores."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import threading

import time

import botocore.auth
import numpy as np
import pandas as pd
import psutil
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from msbench import cli, pipeline
from msbench.config import ConfigError, Params
from msbench.measure import trace as tr, traffic
from msbench.replay import client, engine, fidelity, pressure, runner, sources
from msbench.replay.record import ReplayManifest, ReplayRun, ReplayRunDir, ReplayTrialRecord, TraceFacts
from msbench.report import replay as report
from msbench.results import TIDY_COLUMNS, Manifest, PlannedTrial, Run, RunDir, TrialRecord, load_run
from msbench.run import trial as study_trial

from .test_traffic import BUCKET, PORT, Pcap, request, response

KEY = "files/insert_log/1/2/3/100/7"


def captured(rows: list[tuple]) -> pd.DataFrame:
    """A trial's s3_requests: (phase, conn, start, end, operation, key, range, sent, received, status)."""
    out = []
    for phase, conn, start, end, op, key, rng, sent, received, status in rows:
        out.append({"conn": conn, "client": "milvus", "start": start, "request_end": start, "response_start": end,
                    "end": end, "method": tr.REPLAYABLE[op], "operation": op, "key": key, "query": "",
                    "range": rng, "status": status, "request_body_bytes": sent, "response_body_bytes": received,
                    "object_bytes": np.nan, "phase": phase})
    return pd.DataFrame(out)


WINDOWS = pd.DataFrame({"phase": ["flush", "load_first"], "start": [100.0, 110.0], "end": [105.0, 114.0]})
BASIC = [("flush", 7, 100.5, 100.6, "PUT", KEY, "", 1000, 0, 200),
         ("flush", 9, 100.7, 100.8, "LIST", "files/insert_log/", "", 0, 300, 200),
         ("load_first", 7, 110.2, 110.3, "HEAD", KEY, "", 0, 0, 200),
         ("load_first", 7, 110.4, 110.6, "GET range", KEY, "bytes=0-99", 0, 100, 206),
         ("load_first", 11, 110.5, 110.7, "GET", KEY, "", 0, 1000, 200),
         (traffic.BETWEEN, 7, 107.0, 107.1, "LIST", "", "", 0, 10, 200)]


def basic_trace() -> tr.Trace:
    return tr.from_requests(captured(BASIC), WINDOWS, {"run": "r", "backend": "minio", "store": "minio", "trial": 1})


def test_a_trial_becomes_a_trace_and_survives_the_file(tmp_path):
    trace = basic_trace()
    frame = trace.requests
    assert trace.phases == ["flush", "load_first"] and trace.meta.excluded == {"other clients": 0, "between phases": 1}
    assert [p.duration_s for p in trace.meta.phases] == [5.0, 4.0]
    assert list(frame["start_s"].round(6)) == [0.5, 0.7, 0.2, 0.4, 0.5]   # from each phase's window start
    assert list(frame["conn"]) == [0, 1, 0, 0, 2] and list(frame["seq"]) == [0, 0, 1, 2, 0]
    path = tr.write(trace, tmp_path / "t.parquet")
    back = tr.read(path)
    assert back.meta == trace.meta
    pd.testing.assert_frame_equal(back.requests, frame)
    assert list(back.requests.columns) == tr.COLUMNS


def cpu_rows(phase_cpu: dict[str, dict[str, float]]) -> pd.DataFrame:
    """A trial's tidy resource rows: phase -> role -> CPU seconds."""
    return pd.DataFrame([{"phase": phase, "metric": f"{role}_cpu_s", "value": cpu, "unit": "s"}
                         for phase, roles in phase_cpu.items() for role, cpu in roles.items()])


def test_a_trace_keeps_the_cpu_its_phases_had_beside_the_store(tmp_path):
    """Every role's CPU but the store's, over the phase's window; None where the trial measured none.
    A trial folder whose trace predates the field gets it from the trial's results on export."""
    results = cpu_rows({"flush": {"milvus": 2.0, "client": 0.5, "store": 9.0}})
    trace = tr.with_beside_cores(basic_trace(), results)
    assert [(p.name, p.beside_cores) for p in trace.meta.phases] == [("flush", 0.5), ("load_first", None)]
    assert tr.read(tr.write(trace, tmp_path / "t.parquet")).meta == trace.meta
    tdir = tmp_path / "trials" / "minio" / "trial-01"
    tr.write(basic_trace(), tdir / tr.TRIAL_FILE)
    results.to_csv(tdir / "results.csv", index=False)
    assert sources.export_trial(tdir).meta.phases[0].beside_cores == 0.5


def test_burners_use_the_cores_they_are_asked_for_and_are_gone_after():
    """replay.pressure: real processes; asked for half a core, they use about that (CPU time is read in
    10 ms ticks), nothing at zero, and none of them outlives the block."""
    with pressure.Pressure(cores=1) as burners:
        assert burners.set(5.0) == 1.0   # capped at the cores it has
        with burners.holding(0.5) as held:
            time.sleep(0.6)
        used = held.used
        assert held.asked == 0.5 and burners.level == 0.0   # none after the block
        time.sleep(0.05)
        idle = burners.cpu_s()
        time.sleep(0.3)
        idle = burners.cpu_s() - idle
        pids = [proc.pid for proc in burners._procs]
    assert 0.3 < used < 0.7 and idle < 0.03, (used, idle)
    assert not [pid for pid in pids if psutil.pid_exists(pid)]


def record_of(backend: str, trial: int, **fields) -> TrialRecord:
    return TrialRecord(run="r", backend=backend, store=backend, provider="native", trial=trial, seq=0, **fields)


class FakeCapture:
    facts = {"enabled": True}


def test_a_trial_that_captured_traffic_writes_its_trace_and_a_bad_one_is_noted(tmp_path, monkeypatch):
    """run.trial's _account: the trace of the captured requests goes into the trial's folder with the tables;
    requests a trace cannot hold (a negative size) leave a note in the record and the trial's tables intact."""
    windows = list(WINDOWS.itertuples(index=False, name=None))
    for requests, written in ((captured(BASIC).assign(prefix="other"), True),
                              (captured(BASIC).assign(prefix="other", request_body_bytes=-1), False)):
        monkeypatch.setattr(traffic, "account", lambda capture, bucket, w: (requests, pd.DataFrame(), {"enabled": True}))
        record, tables = record_of("minio", 1 if written else 2, status="ok", failed_phase=""), {}
        files = study_trial._account(FakeCapture(), "bucket", windows, record, tables, [], {})
        folder = RunDir(tmp_path, "r").write_trial(record, pd.DataFrame(columns=TIDY_COLUMNS), None, None, [],
                                                   tables, files)
        assert (folder / "s3_requests.parquet").exists() and (folder / tr.TRIAL_FILE).exists() == written
        if written:
            back = tr.read(folder / tr.TRIAL_FILE)
            assert back.meta.source == {"run": "r", "backend": "minio", "store": "minio", "provider": "native",
                                        "trial": 1}
            assert len(back.requests) == 5 and record.trace_note == ""
        else:
            assert record.trace_note.startswith("no trace: the trace of minio trial 2: row 0") and \
                "request_bytes is negative" in record.trace_note


def test_a_trace_of_another_schema_version_is_refused(tmp_path):
    trace = basic_trace()
    path = tr.write(tr.Trace(trace.requests, tr.TraceMeta(trace.meta.phases, schema_version=99)), tmp_path / "t.parquet")
    with pytest.raises(ConfigError, match="schema version 99; this msbench reads version 1"):
        tr.read(path)


def broken(change) -> tr.Trace:
    trace = basic_trace()
    frame = trace.requests.copy()
    frame = change(frame) if change(frame) is not None else frame
    return tr.Trace(frame, trace.meta)


def _set(column, row, value):
    def change(frame):
        frame[column] = frame[column].astype(object)
        frame.at[row, column] = value
        return frame
    return change


@pytest.mark.parametrize("change,expected", [
    (lambda f: f.drop(columns="range"), "missing column(s) range; valid columns: phase, conn"),
    (lambda f: f.assign(authorization="x"), "unknown column(s) authorization"),
    (_set("request_bytes", 0, -5), "row 0 (phase flush, connection 0, #0 on it): request_bytes is negative (-5)"),
    (_set("response_bytes", 3, "many"), "row 3: response_bytes must be a number"),
    (_set("range", 3, "bytes=950-1049"), "range bytes=950-1049: 100 bytes were read from byte 950 of an object of "
                                         "1000 bytes"),
    (_set("range", 3, "bytes=1000-1099"), "starts past the object's end (1000 bytes)"),
    (_set("range", 3, "bytes=9-3"), "is not a single byte range"),
    (_set("operation", 0, "COPY"), "operation COPY cannot be replayed: its source (a header) is not recorded"),
    (_set("operation", 0, "RENAME"), "unknown operation 'RENAME'; valid: GET, GET range"),
    (_set("method", 0, "POST"), "operation PUT is made with PUT, not POST"),
    (_set("start_s", 3, 0.21), "row 3 (phase load_first, connection 0, #2 on it): starts at 0.210000 s, before the "
                                "request before it on its connection ended (0.300000 s)"),
    (_set("seq", 3, 1), "its number on the connection is used twice"),
    (_set("phase", 4, "search"), "phase 'search' is not in the trace's header"),
    (_set("status", 0, 1000), "status 1000 is not an HTTP status"),
])
def test_a_bad_trace_is_refused_in_one_line(change, expected):
    with pytest.raises(ConfigError) as err:
        tr.validate(broken(change))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_declared_object_table_bounds_ranges_the_trace_cannot(tmp_path):
    rows = [("load_first", 1, 110.0, 110.1, "GET range", "k", "bytes=100-199", 0, 100, 206)]
    trace = tr.from_requests(captured(rows), WINDOWS)
    tr.validate(trace)   # nothing says how big k is
    (tmp_path / "objects.csv").write_text("key,size\nk,150\n")
    with pytest.raises(ConfigError, match="of an object of 150 bytes"):
        tr.validate(trace, tr.read_objects(tmp_path / "objects.csv"))
    (tmp_path / "bad.csv").write_text("key,bytes\nk,150\n")
    with pytest.raises(ConfigError, match="columns must be key, size"):
        tr.read_objects(tmp_path / "bad.csv")


def test_pseudonyms_are_stable_keyed_and_keep_milvus_prefix():
    trace = basic_trace()
    a, b = tr.pseudonymize(trace, "s3cret"), tr.pseudonymize(trace, "other")
    keys = a.requests["key"]
    assert a.meta.keys == "pseudonym" and keys[0] == keys[2] == keys[4] and keys[0].startswith("insert_log/")
    assert KEY not in set(keys) and keys[0] != b.requests["key"][0]
    tr.validate(a)


# -- the order rule and the pacing -----------------------------------------------------------------

def test_the_order_rule_keeps_what_followed_and_lets_overlaps_overlap():
    frame = pd.DataFrame({"conn": [0, 1, 2, 0], "seq": [0, 0, 0, 1], "start_s": [0.0, 0.05, 0.3, 0.4],
                          "duration_s": [0.2, 0.2, 0.05, 0.1], "method": "GET", "operation": "GET", "key": "k",
                          "query": "", "range": "", "request_bytes": 0, "response_bytes": 1, "status": 200})
    plan = engine.plan_phase(frame)
    first, overlapping, later = plan[0][0], plan[1][0], plan[2][0]
    assert first.after == 0 and overlapping.after == 0   # it began while the first was open
    assert later.after == 2                               # both had ended before it began


def test_the_frontier_moves_over_the_done_prefix_whatever_the_order_of_marks():
    frontier = engine.Frontier(3)
    frontier.mark(2)
    assert not frontier.wait(1, timeout=0.01)
    got = []
    waiter = threading.Thread(target=lambda: got.append(frontier.wait(3, timeout=5)))
    waiter.start()
    frontier.mark(0)
    frontier.mark(1)
    waiter.join()
    assert got == [True] and frontier.reached == 3


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeIssuer:
    """Each request takes its recorded duration times ``slower`` on the fake clock."""

    def __init__(self, clock: FakeClock, slower: float):
        self.clock, self.slower = clock, slower

    def issue(self, conn, step, n):
        self.clock.now += step.duration_s * self.slower
        return engine.Response(200, step.response_bytes, self.clock.now, {}), 0


def steps_at(offsets, durations) -> list[engine.Step]:
    return [engine.Step(i, i, 0, i, o, d, "GET", "GET", "k", "", "", 0, 5, 200.0)
            for i, (o, d) in enumerate(zip(offsets, durations))]


@pytest.mark.parametrize("mode,slower,starts,late", [
    ("recorded", 1.0, [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]),    # on time: each waits for its offset
    ("recorded", 3.0, [1.0, 2.5, 4.0], [0.0, 0.5, 1.0]),    # a slow store: the connection holds the next ones back
    ("fast", 3.0, [0.0, 1.5, 3.0], [0.0, 0.0, 0.0]),        # closed loop: back to back, nothing is late
])
def test_pacing_on_a_fake_clock(mode, slower, starts, late):
    clock = FakeClock()
    steps = steps_at([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    frontier = engine.Frontier(len(steps))
    pacer = engine.Pacer(mode, clock, clock.sleep)
    out = engine.run_connection(steps, None, FakeIssuer(clock, slower), pacer, frontier, 0.0, lambda: 0)
    assert [o.start_s for o in out] == pytest.approx(starts)
    assert [o.late_s for o in out] == pytest.approx(late)
    assert all(math.isnan(o.scheduled_s) for o in out) == (mode == "fast")
    rows = engine.request_rows(engine.PhaseReplay("load_first", out, out[-1].end_s, 0))
    tidy = dict((m, v) for m, v, _ in engine.phase_rows("load_first", rows, out[-1].end_s, mode))
    if mode == "recorded":
        assert tidy["late_starts [load_first]"] == sum(x > engine.LATE_TOLERANCE_S for x in late)
    assert tidy["requests [load_first]"] == 3 and tidy["errors [load_first]"] == 0
    assert tidy["busy_s [load_first]"] == pytest.approx(3 * 0.5 * slower)


def test_multipart_uploads_are_numbered_and_listings_restart_from_the_top():
    frame = pd.DataFrame({"phase": "index", "conn": [0, 1, 2, 0], "seq": [0, 0, 0, 1],
                          "start_s": [0.0, 0.1, 0.1, 0.3], "operation": ["multipart create", "multipart part",
                                                                         "multipart part", "multipart complete"],
                          "key": "k", "query": ["uploads", "partNumber&uploadId", "partNumber=7&uploadId", "uploadId"]})
    assert engine.assign_uploads(frame) == {0: (0, 0), 1: (0, 1), 2: (0, 7), 3: (0, 0)}
    step = engine.Step(0, 0, 0, 0, 0.0, 0.1, "LIST", "GET", "files/x/", "continuation-token&delimiter=/&prefix",
                       "", 0, 0, 200.0)
    assert engine.Issuer("b", b"")._list_params(step) == {"delimiter": "/", "prefix": "files/x/"}


def test_what_the_bucket_holds_before_the_first_phase():
    rows = [("flush", 1, 100.0, 100.1, "PUT", "written-before", "", 50, 0, 200),
            ("flush", 1, 100.2, 100.3, "PUT", "deleted-before", "", 50, 0, 200),
            ("flush", 1, 100.4, 100.5, "DELETE", "deleted-before", "", 0, 0, 204),
            ("load_first", 1, 110.0, 110.1, "GET range", "read-first", "bytes=100-199", 0, 100, 206),
            ("load_first", 1, 110.2, 110.3, "GET", "read-first", "", 0, 400, 200),
            ("load_first", 1, 110.4, 110.5, "HEAD", "missing", "", 0, 0, 404),
            ("load_first", 1, 110.6, 110.7, "PUT", "written-here", "", 70, 0, 200),
            ("load_first", 1, 110.8, 110.9, "GET", "written-here", "", 0, 70, 200)]
    full = tr.from_requests(captured(rows), WINDOWS)
    assert runner.objects_to_create(full.only(["load_first"]), full) == {"written-before": 50, "read-first": 400}
    assert runner.objects_to_create(full, full) == {"read-first": 400}


# -- fidelity and the report -----------------------------------------------------------------------

def tidy_rows(backend: str, trial: int, phase_values: dict[str, dict[str, float]]) -> list[dict]:
    return [{"run": "r", "backend": backend, "provider": "native", "trial": trial, "seq": 0, "phase": phase,
             "metric": f"{name} [{phase}]", "value": value, "unit": "s"}
            for phase, values in phase_values.items() for name, value in values.items()]


def test_fidelity_is_exact_on_counts_and_bytes_and_states_the_busy_ratio():
    trace = tr.with_beside_cores(basic_trace(), cpu_rows({"flush": {"milvus": 5.0}, "load_first": {"milvus": 2.0}}))
    described = tr.describe(trace).set_index("phase")
    rows = []
    for trial, scale in ((1, 0.9), (2, 1.1)):
        rows += tidy_rows("minio", trial, {phase: {"requests": d["requests"], "object_bytes_read": d["object_bytes_read"],
                                                   "object_bytes_written": d["object_bytes_written"],
                                                   "wire_requests": d["requests"],
                                                   "wire_store_busy_s": d["store_busy_s"] * scale,
                                                   "pressure_used_cores": d["beside_cores"] * scale}
                                           for phase, d in described.iterrows()})
    table = fidelity.fidelity(trace, pd.DataFrame(rows), "t", "minio").set_index("phase")
    assert table["exact"].all() and table["busy_within_tolerance"].all()
    assert table["beside_cores_recorded"].tolist() == [1.0, 0.5] and table["beside_cores_held"].tolist() == [1.0, 0.5]
    assert table.loc["load_first", "busy_ratio"] == pytest.approx(1.0)
    assert (table.loc["load_first", "busy_ratio_min"], table.loc["load_first", "busy_ratio_max"]) == pytest.approx((0.9, 1.1))
    slow = [{**r, "value": r["value"] * 5} if r["metric"].startswith("wire_store_busy_s") else r for r in rows]
    assert not fidelity.fidelity(trace, pd.DataFrame(slow))["busy_within_tolerance"].any()   # 5x is beyond the factor 4
    rows[0]["value"] += 1   # one trial replayed one request too many
    assert not fidelity.fidelity(trace, pd.DataFrame(rows)).set_index("phase").loc["flush", "exact"]


CONTROLS = {"minio-aa": {"alias_of": "minio"}, "minio-slow": {"alias_of": "minio", "handicap": {"cpu": 0.05}}}
STORES = {"minio": "minio", "minio-aa": "minio", "minio-slow": "minio", "seaweedfs": "seaweedfs"}


def replay_run(trace: tr.Trace) -> ReplayRun:
    """A replay run of three rounds: the handicapped twin 5x slower, the A/A twin the same, low noise."""
    rng = np.random.default_rng(1)
    factor = {"minio": 1.0, "minio-aa": 1.0, "minio-slow": 5.0, "seaweedfs": 1.0}
    rows, requests = [], []
    for trial in (1, 2, 3):
        for backend, f in factor.items():
            rows += tidy_rows(backend, trial, {p: {"replay_s": f * 0.2 * rng.normal(1, 0.02),
                                                   **({"throttled_s": 0.1 * (p == "flush")} if f > 1 else {})}
                                               for p in trace.phases})
            requests += [{"backend": backend, "trial": trial, "phase": "load_first", "operation": "GET",
                          "error": "", "late_s": 0.0, "latency_ms": f * rng.normal(5, 0.2)} for _ in range(20)]
    results = pd.DataFrame(rows)
    parts = results["metric"].str.extract(r"^(?P<name>\S+) \[(?P<phase>[^,\]]+)(?:, (?P<op>[^\]]+))?\]$")
    results = results.assign(name=parts["name"], operation=parts["op"])
    trials = pd.DataFrame([{"backend": b, "trial": t, "status": "ok", "trace": "t"} for b in factor for t in (1, 2, 3)])
    manifest = ReplayManifest(run="r", backends=list(factor), baseline="minio", pacing="fast", stores=STORES,
                              handicaps={"minio-slow": {"cpu": 0.05}}, controls=CONTROLS)
    return ReplayRun(None, manifest, trials, results, pd.DataFrame(requests), {"t": trace})


def study_run() -> Run:
    """A study of three rounds in which load_first barely depends on the store: the handicapped twin is
    not seen through Milvus (noise 20%, 10% slower)."""
    rng = np.random.default_rng(2)
    factor = {"minio": 1.0, "minio-aa": 1.0, "minio-slow": 1.1, "seaweedfs": 1.0}
    rows = [{"run": "s", "backend": b, "provider": "native", "trial": t, "seq": 0, "phase": phase,
             "metric": f"{phase}_s", "value": f * 2.0 * rng.normal(1, 0.2), "unit": "s"}
            for phase in ("flush", "load_first") for t in (1, 2, 3) for b, f in factor.items()]
    trials = pd.DataFrame([{"backend": b, "trial": t, "status": "ok"} for b in factor for t in (1, 2, 3)])
    manifest = Manifest(run="s", params=Params(), backends=list(factor), stores=STORES, baseline="minio",
                        handicaps={"minio-slow": {"cpu": 0.05}}, controls=CONTROLS)
    empty = pd.DataFrame()
    return Run(None, manifest, trials, pd.DataFrame(rows), empty, empty, empty, empty)


def test_the_report_claims_the_handicapped_twin_and_not_the_aa_twin():
    run = replay_run(basic_trace())
    found = report.claims(run)
    assert found.family.stores == ("minio", "seaweedfs") and found.family.metrics == ("flush", "load_first")
    assert [(f.stores, f.expected, f.size) for f in found.controls] == [
        (("minio", "minio-aa"), None, 2), (("minio", "minio-slow"), "worse", 2)]
    table = report.comparison_table(run)
    slow = table[table["backend"] == "minio-slow"]
    assert len(slow) == 2 and slow["verdict"].str.endswith(": worse").all()
    assert (slow["compared with"] == "minio").all() and table.attrs["note"]
    assert not table[table["backend"] == "minio-aa"]["verdict"].str.contains("better|worse").any()
    assert len(report.phase_time_table(run)) == 8 and report.phase_time_table(run).attrs["note"]
    assert set(report.errors_table(run)["errors"]) == {0}
    assert len(report.latency_table(run)) == 4
    side = report.side_by_side(run, study_run()).set_index(["phase", "backend"])
    assert side.loc[("load_first", "minio-slow"), "seen only by the replay"] == "yes"
    assert side.loc[("load_first", "minio-slow"), "through Milvus (study)"].startswith("load_first_s: not detectable")
    assert side.loc[("flush", "minio-slow"), "through Milvus (study)"].startswith("flush_s: not detectable")
    assert side.loc[("flush", "seaweedfs"), "through Milvus (study)"].startswith("flush_s: no claim (not a primary")
    assert side.loc[("load_first", "minio-aa"), "seen only by the replay"] == ""


def test_a_replay_runs_records_are_typed_and_read_back(tmp_path):
    folder = ReplayRunDir(tmp_path, "r")
    manifest = ReplayManifest(run="r", traces=[TraceFacts("t", "ab12", {"store": "minio"}, "plain", ["flush"], 3)],
                              backends=["minio"], baseline="minio", order=[PlannedTrial(0, 1, "minio", 1)])
    folder.write_manifest(manifest)
    assert folder.read_manifest() == manifest and json.loads((folder.path / "manifest.json").read_text())["kind"] == "replay"
    record = ReplayTrialRecord(run="r", backend="minio", store="minio", provider="native", trial=1, seq=0, round=1,
                               trace="t", status="ok", failed_phase="", objects_created=4)
    folder.write_trial(record, pd.DataFrame(columns=TIDY_COLUMNS), None, None, [])
    assert folder.records() == [record] and folder.trial_status("minio", 1) == "ok"
    assert pd.read_csv(folder.path / "trials.csv").loc[0, "trace"] == "t"
    for read_as_study in (lambda: sources.find_traces([folder.path]), lambda: load_run(folder.path)):
        with pytest.raises(ConfigError, match="is a replay run, not a study"):
            read_as_study()
    with pytest.raises(ConfigError, match=r"no complete run under .* \(0 run folder"):
        pipeline.choose_run(tmp_path, "")   # the analysis notebook's newest complete run is a study's
    assert pipeline.replay_folder("r", str(tmp_path)) == folder.path   # run_all's replay_run, by id or folder
    assert pipeline.replay_folder(str(folder.path)) == folder.path and pipeline.replay_folder("") is None
    with pytest.raises(ConfigError, match=r"replay_run 'nope': .* is not a run of `msbench replay` \(valid: "):
        pipeline.replay_folder("nope", str(tmp_path))


def test_with_one_store_only_the_controls_make_claims():
    run = replay_run(basic_trace())
    alone = dataclasses.replace(run, results=run.results[run.results["backend"] != "seaweedfs"])
    found = report.claims(alone)
    assert found.family is None and set(found.rows["backend"]) == {"minio-aa", "minio-slow"}
    assert (found.rows.loc[found.rows["backend"] == "minio-slow", "verdict"] == "worse").all()
    assert "Claimed between the stores" not in report.summary(alone)


def test_the_notebook_section_says_what_was_claimed_and_draws_its_figures(tmp_path):
    assert report.tables(None, study_run()) == [] and report.figures(None, tmp_path) == []
    assert "notebook parameter `replay_run`" in report.summary(None)
    run = replay_run(basic_trace())
    said = report.summary(run)
    assert "The positive control minio-slow is claimed worse in 2 of 2 phases (its CPU quota held it back in 1 of " \
           "them)" in said
    assert "The A/A control minio-aa is claimed different in 0 of 2 phases" in said and "on 2 phases" in said
    assert [t.attrs["note"] != "" for t in report.tables(run, study_run())] == [True] * 6
    assert [p.name for p in report.figures(run, tmp_path) if p.exists()] == ["replay_replay_s.png",
                                                                             "replay_fidelity.png"]


# -- a capture brought from elsewhere, and the command line ----------------------------------------

def user_capture(path) -> None:
    """Milvus (minio-go) writing an object and reading part of it back, as tcpdump would save it."""
    pcap = Pcap()
    target = f"/{BUCKET}/files/index_files/9/1/2/3/HNSW_0"
    pcap.send(1.0, 50010, True, request("PUT", target, body=4096))
    pcap.send(1.001, 50010, True, bytes(4096))
    pcap.send(1.01, 50010, False, response("200 OK"))
    pcap.send(1.5, 50011, True, request("GET", target, extra="Range: bytes=0-1023\r\n"))
    pcap.send(1.52, 50011, False, response("206 Partial Content", body=1024) + bytes(1024))
    pcap.send(1.6, 50012, True, request("GET", f"/{BUCKET}/other", agent="Boto3/1.35"))   # not Milvus
    pcap.send(1.61, 50012, False, response("404 Not Found"))
    pcap.write(path)


def test_a_users_capture_becomes_a_trace_through_the_same_parser(tmp_path):
    user_capture(tmp_path / "cluster.pcap")
    trace = tr.from_pcap(tmp_path / "cluster.pcap", PORT, BUCKET)
    frame = trace.requests
    assert trace.phases == [tr.CAPTURE_PHASE] and trace.meta.excluded["other clients"] == 1
    assert list(frame["operation"]) == ["PUT", "GET range"] and list(frame["start_s"].round(3)) == [0.0, 0.5]
    assert tr.describe(trace)["object_bytes_read"].iloc[0] == 1024
    hidden = tr.from_pcap(tmp_path / "cluster.pcap", PORT, BUCKET, pseudonym_secret="k")
    assert hidden.meta.keys == "pseudonym" and not hidden.requests["key"].str.contains("HNSW").any()
    windows = pd.DataFrame({"phase": ["index", "load_first"], "start": [0.9, 1.4], "end": [1.2, 2.0]})
    assert tr.from_pcap(tmp_path / "cluster.pcap", PORT, BUCKET, windows).phases == ["index", "load_first"]
    with pytest.raises(ConfigError, match="no S3 request to or from port 9999"):
        tr.from_pcap(tmp_path / "cluster.pcap", 9999, BUCKET)


def test_the_command_line(tmp_path, capsys, monkeypatch):
    user_capture(tmp_path / "cluster.pcap")
    monkeypatch.setenv("TRACE_SECRET", "k")
    assert cli.main(["trace", "from-pcap", str(tmp_path / "cluster.pcap"), "--port", str(PORT), "--bucket", BUCKET,
                     "--pseudonymize-env", "TRACE_SECRET", "--out", str(tmp_path / "t.parquet")]) == 0
    assert cli.main(["trace", "show", str(tmp_path / "t.parquet")]) == 0
    assert "keys pseudonym" in capsys.readouterr().out
    for argv, said in ((["--pacing", "slow"], "--pacing 'slow' not valid; valid: fast, recorded"),
                       (["--phases", "search"], "phase(s) search not in the trace; it has: capture"),
                       (["--backends", "nosuch"], "unknown backend(s) nosuch"),
                       (["--controls", "--control-cpu", "2"], "control_cpu (the handicapped twin's share of one CPU) "
                                                                "must be from 0.01 to 1.0, got 2.0"),
                       (["--pressure", "high"], "--pressure 'high' not valid; valid: none, recorded"),
                       (["--pressure", "recorded"], "trace t: no recorded CPU beside the store for phase(s) capture")):
        args = ["replay", str(tmp_path / "t.parquet"), "--backends", "minio", "--results", str(tmp_path / "runs"), *argv]
        assert cli.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and "\n" not in err
    assert not (tmp_path / "runs").exists()   # refused before anything was written


def test_export_writes_a_trace_per_trial_that_captured_traffic(tmp_path):
    run = tmp_path / "run"
    for backend, number, rows in (("minio", 1, BASIC), ("seaweedfs", 1, [])):
        tdir = run / "trials" / backend / f"trial-{number:02d}"
        tdir.mkdir(parents=True)
        (tdir / "trial.json").write_text(record_of(backend, number, status="ok").to_json())
        if rows:
            captured(rows).to_parquet(tdir / "s3_requests.parquet")
            WINDOWS.to_csv(tdir / "phase_windows.csv", index=False)
    written = sources.export_run(run)
    assert [p.name for p in written] == ["minio-trial-01.parquet"]
    assert tr.read(written[0]).meta.source["store"] == "minio"
    with pytest.raises(ConfigError, match=r"trial\(s\) garage/1 not in"):
        sources.export_run(run, ["garage/1"])


def test_a_replay_of_a_study_holds_its_twin_to_the_studys_cpu_share(tmp_path):
    runs = []
    for name, cpu in (("a", 0.25), ("b", 0.25), ("c", 0.05)):
        (tmp_path / name / "trials").mkdir(parents=True)
        manifest = Manifest(run=name, params=dataclasses.replace(Params(), control_cpu=cpu), backends=["minio"])
        (tmp_path / name / "manifest.json").write_text(manifest.to_json())
        runs.append(tmp_path / name)
    assert sources.studies_control_cpu(runs[:2]) == 0.25
    assert sources.studies_control_cpu([tmp_path / "t.parquet"]) is None   # a trace file: the replay's default
    with pytest.raises(ConfigError, match=r"different CPU shares \(0.05, 0.25\); give --control-cpu"):
        sources.studies_control_cpu(runs)


def test_the_signature_is_the_one_botocore_computes(monkeypatch):
    """The replay's own SigV4 (no boto3 on the hot path) signs as AWS's SDK does, query and all."""
    when = dt.datetime(2026, 12, 2, 7, 0, 0, tzinfo=dt.timezone.utc)
    path, params = "/bucket/files/index_files/1/2/HNSW_0.bin", {"partNumber": "3", "uploadId": "a/b+c="}
    mine = client.sign("PUT", "127.0.0.1:9000", path, params, client.Credentials("AKID", "SECRET"), when)
    request = AWSRequest("PUT", f"http://127.0.0.1:9000{path}?{client.canonical_query(params)}")
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when.replace(tzinfo=None))
    botocore.auth.S3SigV4Auth(Credentials("AKID", "SECRET"), "s3", "us-east-1").add_auth(request)
    assert mine["authorization"] == request.headers["Authorization"]


class FakeConnection:
    """Answers like a store would, and remembers what it was asked."""

    def __init__(self):
        self.asked = []

    def request(self, method, path, params=None, headers=None, body=b"", keep_body=False):
        self.asked.append((method, path, dict(params or {}), dict(headers or {}), bytes(body)))
        if "uploads" in (params or {}):
            return client.Response(200, 90, 0.0, {}, b"<InitiateMultipartUploadResult><UploadId>U-1</UploadId>"
                                                     b"</InitiateMultipartUploadResult>")
        etag = {"partNumber": f'"etag-{(params or {}).get("partNumber")}"'} if "partNumber" in (params or {}) else {}
        return client.Response(200, 0, 0.0, {"etag": etag.get("partNumber", "")})


def test_a_repeated_phase_begins_again_the_uploads_it_completes():
    """Flush completed the insert's last upload in the default study's traces: repeated as it was,
    MinIO and Garage answered the second completion 404. Before a later repetition, the create and
    parts of such an upload are issued again."""
    frame = pd.DataFrame({"phase": ["insert", "insert", "insert", "insert", "flush", "flush", "flush", "flush"],
                          "conn": 0, "seq": range(8), "start_s": [0.0, 0.1, 0.2, 0.3, 0.0, 0.1, 0.2, 0.3],
                          "operation": ["multipart create", "multipart part", "multipart part", "PUT",
                                        "multipart complete", "multipart create", "multipart part",
                                        "multipart complete"],
                          "key": ["a", "a", "a", "b", "a", "c", "c", "c"],
                          "query": ["uploads", "partNumber=1&uploadId", "partNumber=2&uploadId", "", "uploadId",
                                    "uploads", "partNumber=1&uploadId", "uploadId"]})
    uploads = engine.assign_uploads(frame)
    assert list(engine.earlier_uploads(frame, "flush", uploads).index) == [0, 1, 2]
    none = engine.earlier_uploads(frame, "insert", uploads)              # completes none it did not begin
    assert none.empty and list(none.columns) == list(frame.columns)
    assert engine.earlier_uploads(frame.drop(index=4), "flush", uploads).empty   # its own upload only


def test_a_multipart_upload_is_replayed_with_the_replays_own_upload_and_etags():
    issuer = engine.Issuer("bucket", np.random.default_rng(0).bytes(2000 + engine.POOL_SLACK))
    conn = FakeConnection()
    steps = [engine.Step(0, 0, 0, 0, 0.0, 0.1, "multipart create", "POST", "k", "uploads", "", 0, 90, 200.0, 0, 0),
             engine.Step(1, 1, 1, 0, 0.2, 0.1, "multipart part", "PUT", "k", "partNumber=2&uploadId", "", 1000, 0,
                         200.0, 0, 2),
             engine.Step(2, 1, 2, 0, 0.2, 0.1, "multipart part", "PUT", "k", "partNumber=1&uploadId", "", 2000, 0,
                         200.0, 0, 1),
             engine.Step(3, 3, 0, 1, 0.4, 0.1, "multipart complete", "POST", "k", "uploadId", "", 200, 0, 200.0, 0, 0)]
    sent = [issuer.issue(conn, step, n)[1] for n, step in enumerate(steps)]
    (_, _, create, _, _), (_, _, part2, _, body2), (_, _, part1, _, body1), (_, path, done, _, xml) = conn.asked
    assert create == {"uploads": ""} and path == "/bucket/k"
    assert part2 == {"uploadId": "U-1", "partNumber": "2"} and part1 == {"uploadId": "U-1", "partNumber": "1"}
    assert (len(body2), len(body1), body1[:1000] != body2) == (1000, 2000, True)   # of their sizes, not alike
    assert done == {"uploadId": "U-1"} and xml == (b'<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>'
                                                   b'<ETag>"etag-1"</ETag></Part><Part><PartNumber>2</PartNumber>'
                                                   b'<ETag>"etag-2"</ETag></Part></CompleteMultipartUpload>')
    assert sent[:3] == [0, 1000, 2000]
    with pytest.raises(LookupError, match="its upload was not created in this replay"):
        engine.Issuer("bucket", bytes(1000)).issue(conn, steps[1], 0)


def test_repeated_replays_of_a_phase_give_median_times_summed_errors_and_the_first_counts():
    reps = [[("replay_s [p]", t, "s"), ("requests [p]", 40.0, "count"), ("errors [p]", e, "count"),
             ("latency_p50_ms [p, GET]", 10 * t, "ms")] for t, e in ((1.0, 0.0), (9.0, 1.0), (2.0, 0.0))]
    assert engine.combine(reps) == [("replay_s [p]", 2.0, "s"), ("requests [p]", 40.0, "count"),
                                    ("errors [p]", 1.0, "count"), ("latency_p50_ms [p, GET]", 20.0, "ms")]
